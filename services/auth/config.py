"""Streamlit's own ``[auth]`` section (``.streamlit/secrets.toml``), which ``st.login`` reads: what is missing
from it, said before a person presses *Sign in* rather than after."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

REQUIRED = ("redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url")


def auth_section_problems(section: Mapping[str, Any] | None) -> list[str]:
    """What keeps ``st.login()`` (the default, unnamed provider) from working; empty when nothing does."""
    if not section:
        return ["MLOPS_AUTH_MODE=oidc needs an [auth] section in .streamlit/secrets.toml with "
                + ", ".join(REQUIRED)]
    out = [f"[auth] {key} is missing" for key in REQUIRED if not str(section.get(key) or "").strip()]
    redirect = str(section.get("redirect_uri") or "")
    if redirect and not redirect.rstrip("/").endswith("/oauth2callback"):
        out.append(f"[auth] redirect_uri must be this app's URL ending in /oauth2callback, got {redirect!r}")
    for key in ("redirect_uri", "server_metadata_url"):
        value = str(section.get(key) or "")
        if value and urlsplit(value).scheme not in ("http", "https"):
            out.append(f"[auth] {key} must be an absolute http(s) URL, got {value!r}")
    secret = str(section.get("cookie_secret") or "")
    if secret and len(secret) < 32:
        out.append("[auth] cookie_secret is too short to sign identity cookies (use 32 random characters or more)")
    return out


def provider_host(section: Mapping[str, Any] | None) -> str:
    """Where *Sign in* sends the person (shown on the login screen)."""
    return urlsplit(str((section or {}).get("server_metadata_url") or "")).netloc
