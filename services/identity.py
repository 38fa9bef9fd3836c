"""Who is acting, and what their roles allow.

Dev identities come from settings; signed-in people (OIDC, an authenticating proxy, a CLI bearer token)
become the same :class:`Actor` through :mod:`services.auth`.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.errors import Invalid, PermissionDenied

ROLES = ("viewer", "requester", "operator", "approver", "admin")


@dataclass(frozen=True)
class Actor:
    """Who acts. ``subject`` (a stable id: the OIDC ``sub``; a dev identity's name) is what approvals, plans
    and the audit trail compare and record; ``name`` is only shown."""

    name: str
    roles: tuple[str, ...]
    authenticated_by: str = "dev"  # "dev" | "oidc" (browser sign-in) | "proxy" | "token" (CLI bearer token)
    subject_id: str = ""

    def has_any(self, roles: tuple[str, ...] | list[str]) -> bool:
        return "admin" in self.roles or any(r in self.roles for r in roles)

    @property
    def subject(self) -> str:
        """The stable id that approvals, plans and the audit trail compare (dev identities: the name)."""
        return self.subject_id or self.name

    @property
    def privilege(self) -> int:
        """How much the roles allow (for choosing the least-privileged identity)."""
        return max((ROLES.index(r) for r in self.roles if r in ROLES), default=-1) * 10 + len(self.roles)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class Directory:
    """Dev identities: name -> roles."""

    def __init__(self, identities: dict[str, tuple[str, ...]]):
        self.identities = dict(identities)

    def names(self) -> list[str]:
        return list(self.identities)

    def least_privileged(self) -> str:
        """Where a new development session starts: the identity that may do the least (a viewer)."""
        return min(self.names(), key=lambda n: (self.get(n).privilege, self.names().index(n)))

    def get(self, name: str) -> Actor:
        if not isinstance(name, str) or not name.strip():
            raise Invalid("an identity is required", source="identity")
        if name not in self.identities:
            raise PermissionDenied(f"unknown identity {name!r}; known: {', '.join(self.identities)}",
                                   source="identity")
        return Actor(name, tuple(self.identities[name]))
