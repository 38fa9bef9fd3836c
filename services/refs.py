"""Value types shared by the registry and serving sides (plain data, no dependencies)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VersionRef:
    """A registry version as a serving backend needs it."""

    model: str
    version: str
    run_id: str | None = None
    storage_uri: str = ""  # real artifact location, never models:/
