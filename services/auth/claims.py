"""Verified OIDC claims (Streamlit's ``st.user`` after ``st.login``, or a verified bearer token) → who acts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.auth.roles import claim_at, groups_from, roles_for
from services.errors import PermissionDenied
from services.identity import Actor


@dataclass(frozen=True)
class Principal:
    """A signed-in person: the :class:`Actor` the use cases check, and what the sidebar shows."""

    actor: Actor
    email: str | None = None
    groups: tuple[str, ...] = ()
    mapped: bool = True  # False: none of their groups is in the role map (they got the default role)

    @property
    def may_enter(self) -> bool:
        """Whether they have any console role at all (MLOPS_OIDC_DEFAULT_ROLE=none leaves the unmapped out)."""
        return bool(self.actor.roles)


def _text(claims: Mapping[str, Any], *names: str) -> str | None:
    for n in names:
        v = claims.get(n)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return None


def principal_from_claims(claims: Mapping[str, Any], *, roles_claim: str, role_map: Mapping[str, tuple[str, ...]],
                          default_role: str = "viewer", authenticated_by: str = "oidc",
                          source: str = "identity provider") -> Principal:
    """``sub`` is the subject approvals and the audit trail record (stable; a name or an email can change
    hands); the name is only shown. Roles come from the ``roles_claim`` groups through ``role_map``."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        raise PermissionDenied("the identity carries no subject ('sub' claim)", source=source)
    name = _text(claims, "name", "preferred_username", "email") or sub
    groups = groups_from(claim_at(claims, roles_claim))
    roles, mapped = roles_for(groups, role_map, default_role)
    actor = Actor(name[:255], roles, authenticated_by=authenticated_by, subject_id=sub.strip()[:255])
    return Principal(actor, email=_text(claims, "email"), groups=groups, mapped=mapped)


def signed_in_at(claims: Mapping[str, Any]) -> datetime | None:
    """When the person signed in: ``auth_time`` if the provider says, else when the ID token was issued."""
    for key in ("auth_time", "iat"):
        v = claims.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return datetime.fromtimestamp(v, UTC)
    return None


def session_too_old(claims: Mapping[str, Any], now: datetime, max_hours: int) -> str | None:
    """Why a browser sign-in must be renewed (None: it is fresh enough). Streamlit keeps the identity cookie
    30 days; the groups in it are the ones of the sign-in, so a bound on its age bounds stale roles."""
    at = signed_in_at(claims)
    if at is None:
        return "the sign-in does not say when it happened"
    if now - at > timedelta(hours=max_hours):
        return (f"you signed in at {at:%Y-%m-%d %H:%M} UTC, more than {max_hours} h ago "
                "(MLOPS_OIDC_SESSION_HOURS): sign in again so your roles are current")
    return None
