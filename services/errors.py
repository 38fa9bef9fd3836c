"""One error vocabulary for the whole console.

Adapters translate whatever their outside system raises into one of these,
naming the *source* (``"MLflow registry"``, ``"KServe"``, ``"audit store"`` ...).
Use cases raise them for refusals. The UI has exactly one renderer for them
and the CLI maps them to exit codes, so nothing upstream needs to know which
library failed.
"""

from __future__ import annotations


class ConsoleError(Exception):
    """Base class. ``kind`` is a stable machine-readable word."""

    kind = "error"
    exit_code = 1

    def __init__(self, message: str, *, source: str = "console", detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.source = source
        self.detail = detail

    def to_dict(self) -> dict:
        d = {"error": self.kind, "source": self.source, "message": self.message}
        if self.detail:
            d["detail"] = self.detail
        return d

    def __str__(self) -> str:  # pragma: no cover - trivial
        return f"{self.source}: {self.message}"


class NotFound(ConsoleError):
    kind = "not_found"
    exit_code = 4


class Conflict(ConsoleError):
    """The state changed since it was read (compare-and-set lost)."""

    kind = "conflict"
    exit_code = 5


class PreconditionFailed(ConsoleError):
    """A rule of the domain refuses the action (gate failed, stale approval, ...)."""

    kind = "precondition_failed"
    exit_code = 6


class PermissionDenied(ConsoleError):
    kind = "permission_denied"
    exit_code = 7


class Unavailable(ConsoleError):
    """The outside system is down, unreachable or misconfigured.

    ``write_sent`` tells a write's caller whether the system may have applied it: ``None`` unknown (sent, and
    the answer was lost), ``False`` certainly not (never sent: refused before sending, no connection, or an
    error answer)."""

    kind = "unavailable"
    exit_code = 8
    write_sent: bool | None = None


class Invalid(ConsoleError):
    """Bad input from the user."""

    kind = "invalid"
    exit_code = 2


ERROR_TYPES = (NotFound, Conflict, PreconditionFailed, PermissionDenied, Unavailable, Invalid)
