"""Anchors of the audit trail outside the console database: cutting the trail's tail is detected.

The hash chain shows an edit, a deletion inside or a reordering, but not a truncation: the first ``n`` entries
of a chain are a valid chain. So the head — ``(entries, head hash, time)`` — is written, on a schedule (``up``
every ``MLOPS_AUDIT_ANCHOR_MINUTES``) or by ``python -m services anchor-audit``, to a place the database's
users cannot rewrite together with it: ``MLOPS_AUDIT_ANCHOR_FILE`` (append-only JSON lines; in production a
write-once volume or an object-store mount). :func:`check` then verifies the chain and that the entry at the
latest anchor's position still carries the anchored hash: fewer entries, or another hash there, is a cut (or a
rewrite). A broken chain is never anchored.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from services.audit import AuditTrail, VerifyResult
from services.clock import iso, parse_iso
from services.errors import Invalid, PreconditionFailed, Unavailable

SOURCE = "audit anchor"


@dataclass(frozen=True)
class Anchor:
    entries: int
    head_hash: str
    at: datetime

    def as_dict(self) -> dict:
        return {**asdict(self), "at": iso(self.at)}


class FileAnchors:
    """Anchors as JSON lines appended to one file (each write flushed and fsynced)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def write(self, anchor: Anchor) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(anchor.as_dict(), sort_keys=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise Unavailable(f"cannot write the audit anchor to {self.path}: {exc.strerror or exc}",
                              source=SOURCE) from exc

    def latest(self) -> Anchor | None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
        except OSError as exc:
            raise Unavailable(f"cannot read the audit anchors in {self.path}: {exc.strerror or exc}",
                              source=SOURCE) from exc
        for line in reversed(lines):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                return Anchor(int(d["entries"]), str(d["head_hash"]), parse_iso(d["at"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise Invalid(f"the last audit anchor in {self.path} is not readable: {line[:120]!r}",
                              source=SOURCE) from exc
        return None


def anchor_now(audit: AuditTrail, anchors: FileAnchors, at: datetime) -> Anchor:
    """Verify the chain and anchor its head; a broken chain is refused (anchoring it would bless the damage)."""
    res = audit.verify()
    if not res.ok:
        raise PreconditionFailed(f"the audit chain is broken at entry {res.first_bad_seq} ({res.problem}): not "
                                 "anchored", source=SOURCE)
    anchor = Anchor(res.entries, res.head_hash, at)
    anchors.write(anchor)
    return anchor


def check(audit: AuditTrail, anchors: FileAnchors) -> tuple[VerifyResult, Anchor | None, str]:
    """The chain's verification, the latest anchor, and what is wrong against it ("" when nothing)."""
    res = audit.verify()
    anchor = anchors.latest()
    if anchor is None or not res.ok:
        return res, anchor, ""
    if res.entries < anchor.entries:
        return res, anchor, (f"the trail was cut: the anchor of {iso(anchor.at)} saw {anchor.entries} entries, "
                             f"it now has {res.entries}")
    if audit.head_at(anchor.entries) != anchor.head_hash:
        return res, anchor, (f"entry {anchor.entries} no longer carries the hash anchored at {iso(anchor.at)}: "
                             "the trail was rewritten up to there")
    return res, anchor, ""
