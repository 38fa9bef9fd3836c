"""Console roles from a person's groups: ``MLOPS_OIDC_ROLE_MAP`` and the claim (or header) that lists groups."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from services.errors import Invalid
from services.identity import ROLES

ROLE_MAP_SETTING = "MLOPS_OIDC_ROLE_MAP"
DEFAULT_ROLES = ("viewer", "none")  # MLOPS_OIDC_DEFAULT_ROLE: what a person whose groups map to nothing gets


def parse_role_map(text: str, *, setting: str = ROLE_MAP_SETTING) -> dict[str, tuple[str, ...]]:
    """``"ml-approvers=approver, ml-ops=operator+requester"`` -> {"ml-approvers": ("approver",), ...}.

    A group name may contain ``=`` (the last one separates the roles) but not ``,``. Every role must be one
    of the console's; a group mapped twice is refused (which line would win is not obvious)."""
    out: dict[str, tuple[str, ...]] = {}
    for chunk in str(text or "").split(","):
        chunk = chunk.strip()
        if not chunk:
            continue
        group, sep, roles_text = chunk.rpartition("=")
        group = group.strip()
        roles = tuple(r.strip() for r in roles_text.split("+") if r.strip())
        if not sep or not group or not roles:
            raise Invalid(f"{setting} entry {chunk!r} is not GROUP=ROLE[+ROLE...]", source="settings")
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            raise Invalid(f"{setting} entry {chunk!r}: unknown role {unknown[0]!r}; roles are {', '.join(ROLES)}",
                          source="settings")
        if group in out:
            raise Invalid(f"{setting} maps group {group!r} twice", source="settings")
        out[group] = tuple(dict.fromkeys(roles))
    if not out:
        raise Invalid(f"{setting} is empty: say which groups get which roles, e.g. "
                      "ml-approvers=approver,ml-ops=operator+requester", source="settings")
    return out


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The claim named ``path``; a dotted path reaches into nested claims (Keycloak's ``realm_access.roles``)
    when no claim has the dotted name itself."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def groups_from(value: Any) -> tuple[str, ...]:
    """The groups in a claim or header value: a list of strings, or one comma-separated string."""
    if value is None:
        return ()
    items: Iterable[Any] = value.split(",") if isinstance(value, str) else value if isinstance(value, list | tuple) \
        else ()
    return tuple(dict.fromkeys(s.strip() for s in items if isinstance(s, str) and s.strip()))


def roles_for(groups: Iterable[str], role_map: Mapping[str, tuple[str, ...]], default_role: str = "viewer"
              ) -> tuple[tuple[str, ...], bool]:
    """The console roles of someone in ``groups`` (in the order of ROLES), and whether any group was mapped.
    Nobody mapped gets ``default_role`` ("viewer"), or no role at all ("none")."""
    mapped = {role for g in groups for role in role_map.get(g, ())}
    if mapped:
        return tuple(r for r in ROLES if r in mapped), True
    return ((default_role,) if default_role in ROLES else ()), False
