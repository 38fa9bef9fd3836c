"""Who is acting, and what their roles allow.

Dev identities come from settings (no login yet); a later OIDC adapter
produces the same :class:`Actor` from a verified token.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.errors import Invalid, PermissionDenied

ROLES = ("viewer", "requester", "operator", "approver", "admin")


@dataclass(frozen=True)
class Actor:
    name: str
    roles: tuple[str, ...]
    authenticated_by: str = "dev"  # "dev" | "oidc" | "cli"

    def has_any(self, roles: tuple[str, ...] | list[str]) -> bool:
        return "admin" in self.roles or any(r in self.roles for r in roles)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class Directory:
    """Dev identities: name -> roles."""

    def __init__(self, identities: dict[str, tuple[str, ...]]):
        self.identities = dict(identities)

    def names(self) -> list[str]:
        return list(self.identities)

    def get(self, name: str) -> Actor:
        if not isinstance(name, str) or not name.strip():
            raise Invalid("an identity is required", source="identity")
        if name not in self.identities:
            raise PermissionDenied(f"unknown identity {name!r}; known: {', '.join(self.identities)}",
                                   source="identity")
        return Actor(name, tuple(self.identities[name]))
