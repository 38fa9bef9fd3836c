"""A person asks for a retraining: checked here (role, reason, window, what serves), handed to the retrainer,
and recorded in the audit trail — refusals and failures included — with who, why, the evidence and the run.

The role: ``operator`` (or ``admin``). What is retrained is what the endpoint serves as stable (the parent
version); the evidence recorded is what the person gave plus the window's live traffic per version (requests,
errors, labelled rows, accuracy or MAE) read from the prediction log's rollups.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from services.audit import AuditTrail
from services.clock import utcnow
from services.errors import (
    Conflict,
    ConsoleError,
    Invalid,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
)
from services.identity import Actor
from services.retraining import OPEN_STATES, Retrainer, RetrainRequest, RetrainRun, payload
from services.retraining.leases import LEASE, RetrainLeases

ACTION = "retrain"
ROLES = ("operator",)  # admins too (Actor.has_any)
DEFAULT_WINDOW = timedelta(days=7)
MAX_REASON = 2000


def live_evidence(predictions, endpoint: str, start: datetime, end: datetime) -> list[dict]:
    """Per version and role: requests, errors and what the labels say over the window (from the rollups)."""
    out = []
    for t in predictions.served(endpoint, start, end):
        row = {"version": t.version, "role": t.role, "requests": t.requests, "errors": t.errors,
               "labelled": t.labelled}
        if t.labelled:
            row["accuracy"] = round(t.correct / t.labelled, 4)
            row["mae"] = round(t.abs_error_sum / t.labelled, 4)
        out.append(row)
    return out


def request_retraining(retrainer: Retrainer, audit: AuditTrail, serving, actor: Actor, endpoint: str, reason: str,
                       *, start: datetime | None = None, end: datetime | None = None, evidence: dict | None = None,
                       predictions=None, clock: Callable[[], datetime] = utcnow, roles: tuple[str, ...] | None = ROLES,
                       extra: dict | None = None, leases: RetrainLeases | None = None) -> RetrainRun:
    """``actor`` retrains what ``endpoint`` serves as stable; one audit entry per attempt. ``roles``: who may (None:
    the caller checked them — the guarded action ``retrain``, by the policy's roles); ``extra``: more audit details
    (the plan's hash, the request approved and by whom). With ``leases`` it holds the endpoint's lease from before
    its open-run check until the run is recorded: of two concurrent starts one is refused (Conflict)."""
    reason = (reason or "").strip()
    end = end or clock()
    start = start or end - DEFAULT_WINDOW
    details: dict = {"window": {"start": start.isoformat(), "end": end.isoformat()},
                     "backend": retrainer.backend, "evidence": dict(evidence or {}), **(extra or {})}
    holder = f"{actor.subject}#{uuid.uuid4().hex[:12]}"
    try:
        run, request, before = _start(retrainer, audit, serving, actor, endpoint, reason, start, end, details,
                                      predictions, roles, leases, holder, clock)
        if run.new_version:
            details["versions"] = [request.version, run.new_version]
        details.update({"run_id": run.run_id, "state": run.state, "new_version": run.new_version,
                        "metrics": run.metrics, "detail": run.detail, "request": payload(request)})
        if actor.authenticated_by != "dev":
            details["authenticated_by"] = actor.authenticated_by
        audit.append(actor=actor.subject, action=ACTION, target=endpoint, result="ok", reason=reason, before=before,
                     after={"run_id": run.run_id, "state": run.state, "new_version": run.new_version},
                     details=details)
        return run
    finally:  # only once the run is recorded: the next one's open-run check sees it
        if leases is not None:
            try:
                leases.release(endpoint, holder)
            except ConsoleError:
                pass  # it lapses by itself at its ``until``


def _start(retrainer, audit, serving, actor: Actor, endpoint: str, reason: str, start, end, details: dict,
           predictions, roles, leases, holder: str, clock):
    """Check, take the lease, check nothing is open, trigger: (run, request, before); a refusal or failure is
    audited here."""
    before = None
    try:
        if roles is not None and not actor.has_any(roles):
            raise PermissionDenied(f"{actor.name} may not retrain: that takes the role {' or '.join(roles) or 'admin'}"
                                   " (or admin)", source="policy")
        if not reason:
            raise Invalid("say why: a reason is required to retrain", source="retraining")
        if len(reason) > MAX_REASON:
            raise Invalid(f"the reason is longer than {MAX_REASON} characters", source="retraining")
        if start >= end:
            raise Invalid(f"the window starts ({start:%Y-%m-%d %H:%M}) after it ends ({end:%Y-%m-%d %H:%M})",
                          source="retraining")
        ep = serving.get_endpoint(endpoint)
        if not ep.model or not ep.stable_version:
            raise PreconditionFailed(f"endpoint {endpoint} serves no known model version to retrain",
                                     source="retraining")
        before = {"model": ep.model, "version": ep.stable_version, "canary_version": ep.canary_version}
        details.update(model=ep.model, versions=[ep.stable_version])  # what the audit filters find it by
        if leases is not None:
            now = clock()
            leases.acquire(endpoint, holder, now=now, until=now + LEASE)
            opened = open_run(retrainer, audit, endpoint)
            if opened is not None:
                raise Conflict(f"a retraining of {endpoint} is still open: run {opened[0]} ({opened[1]}); at most "
                               "one at a time", source="retraining")
        if predictions is not None:
            try:
                details["evidence"].setdefault("live", live_evidence(predictions, endpoint, start, end))
            except ConsoleError as exc:  # the evidence is extra: its source failing does not stop a retraining
                details["evidence"]["live_unavailable"] = f"{exc.source}: {exc.message}"
        request = RetrainRequest(endpoint=endpoint, model=ep.model, version=ep.stable_version, reason=reason,
                                 trigger=actor.subject, evidence=details["evidence"], window_start=start,
                                 window_end=end)
        return retrainer.trigger(request), request, before
    except ConsoleError as exc:
        record(audit, actor.subject, endpoint, exc, reason=reason, before=before, details=details)
        raise


def record(audit: AuditTrail, actor_name: str, endpoint: str, exc: ConsoleError, *, reason: str = "",
           before=None, details=None) -> None:
    """Audit a retraining that was refused or failed."""
    result = "conflict" if isinstance(exc, Conflict) else (
        "refused" if isinstance(exc, Invalid | NotFound | PreconditionFailed | PermissionDenied) else "failed")
    try:
        audit.append(actor=actor_name or "(nobody)", action=ACTION, target=str(endpoint or "")[:512], result=result,
                     reason=reason, error=f"{exc.kind}: {exc.source}: {exc.message}", before=before,
                     details=details or {})
    except ConsoleError:
        pass  # the refusal itself is the error that matters


def open_run(retrainer: Retrainer, audit: AuditTrail, endpoint: str) -> tuple[str, str] | None:
    """The endpoint's retraining that is still open (queued or running, asked of the retrainer; a state that cannot
    be read counts as open) as (run id, state), else None: at most one open retraining per endpoint."""
    last = last_entry(audit, endpoint)
    if last is None:
        return None
    after = last.after if isinstance(last.after, dict) else {}
    run_id, state = after.get("run_id"), after.get("state")
    if not run_id or state not in OPEN_STATES:
        return None
    try:
        state = retrainer.status(run_id).state
    except ConsoleError as exc:
        state = f"{state} (its state cannot be read now: {exc.message})"
    return None if state in ("succeeded", "failed") else (run_id, state)


def last_entry(audit: AuditTrail, endpoint: str):
    """The audit entry of the endpoint's latest retraining that started (result ok), or None."""
    return next(iter(audit.entries(limit=1, action=ACTION, endpoint=endpoint, result="ok")), None)


def last_run(retrainer: Retrainer | None, audit: AuditTrail, endpoint: str) -> dict | None:
    """The endpoint's latest retraining for a page: run id, state (asked of the retrainer while the record says it
    is open; ``state_note`` when that cannot be read), who started it, when, the new version."""
    entry = last_entry(audit, endpoint)
    if entry is None:
        return None
    after = entry.after if isinstance(entry.after, dict) else {}
    before = entry.before if isinstance(entry.before, dict) else {}
    out = {"run_id": after.get("run_id"), "state": after.get("state"), "new_version": after.get("new_version"),
           "by": entry.actor, "at": entry.ts, "parent_version": before.get("version"), "state_note": ""}
    if retrainer is not None and out["run_id"] and out["state"] in OPEN_STATES:
        try:
            run = retrainer.status(out["run_id"])
            out["state"], out["new_version"] = run.state, run.new_version or out["new_version"]
        except ConsoleError as exc:
            out["state_note"] = f"its current state cannot be read ({exc.source}: {exc.message})"
    return out
