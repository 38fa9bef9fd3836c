"""Who acts on the command line. Development mode: a configured identity named by ``--as`` or
``MLOPS_ACTOR``. Otherwise only a verified bearer token says who acts (``MLOPS_TOKEN``, or the file named by
``MLOPS_TOKEN_FILE``): its subject, name and groups, mapped to roles like a browser sign-in; ``--as`` is
refused, since nothing vouches for it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from services.auth.claims import principal_from_claims
from services.errors import Invalid, PermissionDenied
from services.identity import Actor

SOURCE = "cli"


def _token(env: Mapping[str, str]) -> str | None:
    if env.get("MLOPS_TOKEN"):
        return env["MLOPS_TOKEN"]
    path = env.get("MLOPS_TOKEN_FILE")
    if path:
        try:
            return Path(path).expanduser().read_text().strip()
        except OSError as exc:
            raise PermissionDenied(f"cannot read MLOPS_TOKEN_FILE {path}: {exc.strerror}", source=SOURCE) from exc
    return None


def claimed_name(settings, as_name: str | None, env: Mapping[str, str]) -> str:
    """What the audit entry of a refused attempt names as its actor, before anyone is verified."""
    if settings.auth_mode == "dev":
        return as_name or env.get("MLOPS_ACTOR") or "(nobody)"
    return "(unverified token)" if (env.get("MLOPS_TOKEN") or env.get("MLOPS_TOKEN_FILE")) else "(no token)"


def cli_actor(c, as_name: str | None, env: Mapping[str, str], *, what: str = "acts") -> Actor:
    """The actor of a command, from the container ``c`` (settings, directory, token verifier, clock)."""
    settings = c.settings
    if settings.auth_mode == "dev":
        name = as_name or env.get("MLOPS_ACTOR")
        if not name:
            raise Invalid(f"say who {what}: --as NAME (or MLOPS_ACTOR)", source=SOURCE)
        return c.directory.get(name)
    if as_name or env.get("MLOPS_ACTOR"):
        given = "--as" if as_name else "MLOPS_ACTOR"
        raise PermissionDenied(f"{given} is not accepted with MLOPS_AUTH_MODE={settings.auth_mode}: who acts "
                               "comes from a verified token only (MLOPS_TOKEN)", source=SOURCE)
    claims = c.token_verifier.verify(_token(env), c.clock())
    return principal_from_claims(claims, roles_claim=settings.oidc_roles_claim, role_map=settings.role_map,
                                 default_role=settings.default_role, authenticated_by="token",
                                 source="token").actor
