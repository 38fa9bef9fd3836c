"""The audit trail port: an append-only, tamper-evident record of every attempted action.

Each entry's ``hash`` is SHA-256 over its own fields and the previous entry's hash, so editing,
deleting or reordering any entry breaks the chain from there on; :meth:`AuditTrail.verify` names the
first bad entry. The value types and the pure helpers (hashing, what an entry is about, time bounds)
live here; the SQL adapter is :mod:`services.audit.sql`, the in-memory fake ``tests/fakes.py``.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from datetime import time as dtime
from typing import Any

from services.errors import Invalid

GENESIS = "0" * 64
FIELDS = ("seq", "ts", "actor", "action", "target", "result", "reason", "error", "before", "after", "gates",
          "details")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(prev_hash: str, row: dict) -> str:
    payload = "\x1f".join([prev_hash, *(str(row[f]) for f in FIELDS)])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts: str
    actor: str
    action: str
    target: str
    result: str  # ok | refused | failed | requested
    reason: str
    error: str
    before: Any
    after: Any
    gates: Any
    details: Any
    prev_hash: str
    hash: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str = ""
    head_hash: str = GENESIS

    def as_dict(self) -> dict:
        return asdict(self)



class AuditTrail(ABC):
    """Append-only: no method changes or removes an entry."""

    source = "audit store"

    @abstractmethod
    def append(self, *, actor: str, action: str, target: str, result: str, reason: str = "", error: str = "",
               before: Any = None, after: Any = None, gates: Any = None, details: Any = None) -> AuditEntry:
        """Chain one entry after the current head (concurrent appends never take the same place)."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def entries(self, *, limit: int | None = 500, actor: str | None = None, action: str | None = None,
                target_contains: str | None = None, result: str | None = None, since: str | None = None,
                until: str | None = None, endpoint: str | None = None, model: str | None = None,
                version: str | None = None) -> list[AuditEntry]:
        """Newest first, filtered; ``since``/``until`` are ISO strings as stored (see :func:`time_bound`)."""

    @abstractmethod
    def targets(self) -> list[str]:
        """Distinct targets (for pickers)."""

    @abstractmethod
    def verify(self, *, start: VerifyResult | None = None) -> VerifyResult:
        """Check the chain; with ``start`` (an earlier OK result) only the entries after it are read."""

    @abstractmethod
    def head_at(self, seq: int) -> str | None:
        """The hash of entry ``seq`` (None when there is no such entry): what an anchor is checked against."""


_VERSION_KEYS = ("stable_version", "canary_version", "champion")
_PARAM_VERSION_KEYS = ("version", "to_version")


def entry_subjects(entry: AuditEntry | dict) -> tuple[str | None, set[str]]:
    """Pure: which registered model and which versions an entry is about.

    Entries written with ``details["model"]`` / ``details["versions"]`` say so themselves; for older
    entries the model is unknown (``None``) and the versions are derived from ``before``/``after``
    (``stable_version``, ``canary_version``, ``champion``) and ``details.params`` / ``details.version``.
    """
    get = entry.get if isinstance(entry, dict) else lambda k: getattr(entry, k, None)
    details = get("details")
    details = details if isinstance(details, dict) else {}
    model = details.get("model")
    model = str(model) if model not in (None, "") else None
    if isinstance(details.get("versions"), list | tuple):
        return model, {str(v) for v in details["versions"] if _is_version(v)}
    found = []
    for state in (get("before"), get("after")):
        if isinstance(state, dict):
            found += [state.get(k) for k in _VERSION_KEYS]
    params = details.get("params")
    if isinstance(params, dict):
        found += [params.get(k) for k in _PARAM_VERSION_KEYS]
    found.append(details.get("version"))
    return model, {str(v).strip() for v in found if _is_version(v)}


def _is_version(v: Any) -> bool:
    return v is not None and not isinstance(v, dict | list | bool) and str(v).strip() not in ("", "None")


def time_bound(value: str | date | datetime | None, *, end: bool = False, what: str = "time") -> str | None:
    """An ISO date or datetime (UTC when it has no zone) as the fixed-width ISO string stored in ``ts``.

    A bare date is the start of that day, or with ``end=True`` its last microsecond, so that
    ``since=time_bound(d)`` and ``until=time_bound(d, end=True)`` both include the whole day.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, str):
            text = value.strip()
            value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        if not isinstance(value, datetime):
            value = datetime.combine(value, dtime.max if end else dtime.min)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return f"{value.year:04d}-{value:%m-%dT%H:%M:%S.%f}Z"  # iso(), zero-padded for years < 1000 too
    except (ValueError, OverflowError):
        raise Invalid(f"{what} {str(value).strip()!r} is not an ISO date or datetime (e.g. 2026-11-01 or "
                      "2026-11-01T14:30; UTC unless it names a zone)", source="audit filter") from None


