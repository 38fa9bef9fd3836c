"""Parsing what people and pipelines type (pure): weights, versions, reasons, request ids."""

from __future__ import annotations

import re
from typing import Any

from services.errors import Invalid

SOURCE = "actions"
MAX_REASON = 2000


def parse_weight(value: Any) -> int:
    """An integer percent 0..100; refuses fractions, booleans and text."""
    msg = f"canary weight must be a whole number from 0 to 100, got {value!r}"
    if isinstance(value, bool) or value is None:
        raise Invalid(msg, source=SOURCE)
    if isinstance(value, int):
        w = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise Invalid(msg, source=SOURCE)
        w = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"-?[0-9]+", text):
            raise Invalid(msg, source=SOURCE)
        w = int(text)
    else:
        raise Invalid(msg, source=SOURCE)
    if not 0 <= w <= 100:
        raise Invalid(msg, source=SOURCE)
    return w


def parse_version(value: Any) -> str:
    text = str(value).strip() if value is not None else ""
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise Invalid(f"version must be a positive whole number, got {value!r}", source=SOURCE)
    return str(int(text))


def parse_reason(value: Any) -> str:
    text = (value or "").strip() if isinstance(value, str) else ""
    if not text:
        raise Invalid("a reason is required", source=SOURCE)
    if len(text) > MAX_REASON:
        raise Invalid(f"a reason is at most {MAX_REASON} characters", source=SOURCE)
    return text


def parse_request_id(value: Any) -> int:
    text = str(value).strip().lstrip("#") if value is not None else ""
    if not text.isascii() or not text.isdigit():
        raise Invalid(f"a request id is a whole number, got {value!r}", source=SOURCE)
    return int(text)
