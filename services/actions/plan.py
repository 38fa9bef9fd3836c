"""The plan of an action (its dry run) and its outcome, as plain data; pure helpers over them."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from services.audit import canonical
from services.errors import Conflict, ConsoleError, Invalid, NotFound, PermissionDenied, PreconditionFailed, Unavailable
from services.policy import GateResult
from services.serving import Change, Endpoint, ServingState

SOURCE = "actions"
MISSING = "—"


@dataclass(frozen=True)
class Plan:
    """Exactly what an action will change, checked against the state it was made on."""

    action: str
    kind: str
    endpoint: str
    model: str | None
    actor: str  # the subject id of whoever planned it
    params: dict
    change: Change | None  # None for a repair: it never changes the endpoint
    before: dict
    after: dict
    endpoint_diff: list[dict]
    registry_changes: list[dict]
    gates: list[GateResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    needs_approval: bool = False
    backend: str = ""
    backend_preview: Any = None
    plan_hash: str = ""
    label: str = ""
    notes: list[str] = field(default_factory=list)  # what happened (a repair: the exact difference it found)
    steps: list[str] = field(default_factory=list)  # what executing does besides the endpoint and registry rows
    retraining: dict | None = None  # retrain: parent, window, retrainer, payload, evidence (services.actions.retrain)

    @property
    def failing_gates(self) -> list[GateResult]:
        return [g for g in self.gates if g.passed is False]

    def as_dict(self) -> dict:
        d = asdict(self)
        ch = self.change
        d["change"] = ch and {"op": ch.op, "expected_resource_version": ch.expected_resource_version,
                              "version": ch.version.version if ch.version else None, "weight": ch.weight,
                              **({"scaling": ch.scaling.as_dict()} if ch.scaling else {})}
        return d


@dataclass(frozen=True)
class Outcome:
    status: str  # applied | pending_approval | rejected
    action: str
    endpoint: str
    message: str
    request_id: int | None = None
    audit_seq: int | None = None
    endpoint_after: dict | None = None
    overridden_gates: list[str] = field(default_factory=list)
    run: Any = None  # retrain: the RetrainRun it started

    def as_dict(self) -> dict:
        run, d = self.run, asdict(replace(self, run=None))
        d["run"] = run.as_dict() if run is not None else None
        return d


def plan_hash(bound: dict) -> str:
    """What an approval is bound to: the change and the state it was planned on."""
    return hashlib.sha256(canonical(bound).encode()).hexdigest()


def state_of(ep: Endpoint, champion: str | None) -> dict:
    return {**ep.state().as_dict(), "resource_version": ep.resource_version, "champion": champion}


def endpoint_diff(before: ServingState, after: ServingState, ep: Endpoint) -> list[dict]:
    rows = []
    for f in ("stable_version", "canary_version", "canary_weight"):
        b, a = getattr(before, f), getattr(after, f)
        rows.append({"field": f, "before": b, "after": a, "changed": b != a})
    bt = Endpoint(ep.name, ep.model, before.stable_version, before.canary_version, before.canary_weight).traffic()
    at = Endpoint(ep.name, ep.model, after.stable_version, after.canary_version, after.canary_weight).traffic()

    def fmt(t: dict) -> str:
        return ", ".join(f"v{v}: {p}%" for v, p in t.items()) or "none"

    rows.append({"field": "traffic", "before": fmt(bt), "after": fmt(at), "changed": bt != at})
    return rows


def what_changed(old: Plan, new: Plan) -> str:
    parts = []
    for k in ("stable_version", "canary_version", "canary_weight", "champion", "resource_version"):
        a, b = old.before.get(k), new.before.get(k)
        if a != b:
            parts.append(f"{k.replace('_', ' ')} {MISSING if a is None else a} → {MISSING if b is None else b}")
    return ", ".join(parts) or "the planned change differs"


def versions_of(before: Any, after: Any, details: dict | None) -> list[str]:
    """Every model version an audit entry is about (states before and after, and the parameters)."""
    found: set[str] = set()
    for st in (before, after):
        if isinstance(st, dict):
            found.update(str(st[k]) for k in ("stable_version", "canary_version", "champion") if st.get(k))
    params = (details or {}).get("params")
    if isinstance(params, dict):
        found.update(str(params[k]) for k in ("version", "to_version") if params.get(k) not in (None, ""))
    return sorted(found, key=lambda v: (len(v), v))


def ends_canary(ep: Endpoint, doing: str) -> list[str]:
    if not ep.canary_version:
        return []
    return [f"{doing} ENDS the running canary v{ep.canary_version} ({ep.canary_weight}% of the traffic): it is "
            "removed from the endpoint and its evaluation stops"]


def result_of(exc: ConsoleError) -> str:
    """Audit result of a failed attempt: refused (a rule said no), conflict (state moved), failed (a source broke)."""
    if isinstance(exc, Conflict):
        return "conflict"
    if isinstance(exc, Invalid | NotFound | PermissionDenied | PreconditionFailed):
        return "refused"
    return "failed"


def applied_but(what: str, step: str, exc: ConsoleError | None, *, endpoint: str | None = None) -> ConsoleError:
    """The change is live but a bookkeeping step failed: say so loudly, never as a plain failure. With
    ``endpoint``: the action's intent was left for repair, and the message says where to repair it."""
    err = Unavailable(f"{what} WAS APPLIED, but {step} failed"
                      + (f" ({exc.message})" if exc else " (the record changed meanwhile)")
                      + ("; do not retry: " + repair_hint(endpoint) if endpoint else
                         "; do not retry: check the endpoint and record the change by hand"),
                      source=exc.source if exc else SOURCE, detail=exc.detail if exc else None)
    err.applied = True
    return err


def repair_hint(endpoint: str) -> str:
    return (f"{endpoint} shows as needs repair: repair it on its Deployments page or with "
            f"`python -m services repair --endpoint {endpoint}`")


def plan_from_request(req) -> Plan:
    """The plan an approval request was filed with (as stored)."""
    p = req.plan
    ch = p["change"]
    return Plan(action=p["action"], kind=p["kind"], endpoint=p["endpoint"], model=p["model"], actor=p["actor"],
                params=p["params"], change=Change(ch["op"], ch["expected_resource_version"]) if ch else None,
                before=p["before"],
                after=p["after"], endpoint_diff=p["endpoint_diff"], registry_changes=p["registry_changes"],
                plan_hash=p["plan_hash"], label=p.get("label") or p["action"].replace("_", " "))


def left_for_repair(progress, err: ConsoleError, endpoint: str, why: str) -> ConsoleError:
    """``err`` after giving the intent up: marked ``needs_repair`` and saying where to repair."""
    if progress is not None:
        progress.give_up(why)
    if "needs repair" not in err.message:
        applied = getattr(err, "applied", False)
        err = type(err)(f"{err.message}; do not retry: {repair_hint(endpoint)}", source=err.source,
                        detail=err.detail)
        err.applied = applied
    err.needs_repair = True
    return err
