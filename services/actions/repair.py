"""Repair: finishing what a stopped process left half-done, as a guarded action (``repair`` in the catalog).

**Which way.** A process that stopped after the endpoint write left the endpoint serving the new version while
the registry's ``champion`` still names the old one (and a request ``applying``). Repair finishes *forward*: it
moves the alias to what the endpoint serves and decides the request by what happened; it never writes the
endpoint. The endpoint write was the lock: it won the compare-and-set on the state the people involved saw and
approved, and the new version has been taking the traffic since. Restoring the endpoint would be a second,
unreviewed change of what serves production, made without the gates and the second person a change of version
needs; moving an alias changes no traffic and only makes the registry say what is true. Whoever wants the old
version back has the fast path for it: a rollback (with its preflight). An action that is still running in
its process does restore the endpoint when its alias move fails (the person is there and was not told
"done"); after a crash nobody is.

* :func:`findings` — every endpoint that needs repair, with the exact difference (pages, CLI, counts);
* :func:`plan_repair` — the planner (the dry run): the alias move and the records it will write, bound to the
  state it read and to the version of every record it will close;
* :class:`Repairer` — executes such a plan: claims every record by compare-and-set (two people repairing at
  once: one wins), moves the alias only while it is still where it was read, one audit entry.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from services.actions.inputs import parse_reason
from services.actions.intents import REPAIRED, REPAIRING, Owner, Progress
from services.actions.plan import SOURCE, Outcome, Plan, endpoint_diff, plan_hash, result_of
from services.actions.planning import Planning
from services.actions.recording import Recorder
from services.actions.stalled import APPLIED, RETRAIN, STATE_KEYS, Finding, Stalled, Stalls, assess
from services.approvals import ApprovalRepository
from services.clock import Clock
from services.errors import Conflict, ConsoleError, PermissionDenied, PreconditionFailed
from services.history.serving import ServedState, ServingHistory
from services.identity import Actor
from services.serving import Endpoint


def _assess(p: Planning, ep: Endpoint, items: list[Stalled]) -> Finding:
    champion = p.champion(ep.model) if ep.model else None
    history_state = None
    if not p.serving.records_history:  # the console records the history for this backend: is it there?
        last = p.history.changes(ep.name)[-1:]
        history_state = last[0].as_dict() if last else {}
    now = {**ep.state().as_dict(), "resource_version": ep.resource_version, "champion": champion,
           "scaling": ep.scaling.as_dict() if ep.scaling else None}
    return assess(ep.name, ep.model, now, _started(p, ep.name, items), history_state=history_state)


def _started(p: Planning, endpoint: str, items: list[Stalled]) -> list[Stalled]:
    """Each retraining request left applying, with the run started for it if there is one: the ``retrain`` audit
    entry (written once the retrainer answered) names the request. None when the process stopped before."""
    if not any(s.action == RETRAIN and s.request_id is not None for s in items):
        return items
    runs: dict[int, str] = {}
    if p.retraining is not None:
        for e in p.retraining().audit.entries(limit=200, action=RETRAIN, endpoint=endpoint, result="ok"):
            d, after = (x if isinstance(x, dict) else {} for x in (e.details, e.after))
            if d.get("request_id") is not None and after.get("run_id"):
                runs.setdefault(d["request_id"], f"run {after['run_id']} ({after.get('state')}, audit entry "
                                                 f"{e.seq})")
    return [replace(s, started=runs.get(s.request_id)) if s.action == RETRAIN else s for s in items]


def findings(p: Planning, stalls: Stalls, endpoint: str | None = None) -> list[Finding]:
    """Every endpoint (or ``endpoint``) that needs repair. One whose state cannot be read is listed all the same,
    with ``unreadable`` saying why (nothing can be decided until it can)."""
    stopped: dict[str, list[Stalled]] = {}
    for s in stalls.find(endpoint):
        if s.stopped:
            stopped.setdefault(s.endpoint, []).append(s)
    out = []
    for name, items in stopped.items():
        try:
            out.append(_assess(p, p.endpoint(name), items))
        except ConsoleError as exc:
            why = f"{exc.source}: {exc.message}"
            out.append(Finding(name, items[0].model, {}, tuple(items), (), unreadable=why, lines=[
                f"endpoint {name}: what it serves cannot be read now ({why})",
                *[f"{s.what} — {s.stopped}" for s in items]]))
    return out


def plan_repair(p: Planning, spec, actor: Actor, endpoint: str) -> Plan:
    """The dry run of a repair: what differs, and exactly what repairing does. Nothing changes."""
    return _plan(p, spec.name, spec.label, actor, endpoint)[0]


def _plan(p: Planning, name: str, label: str, actor: Actor, endpoint: str) -> tuple[Plan, Finding]:
    ep = p.endpoint(endpoint)
    every = p.stalled(ep.name) if p.stalled else []
    items = [s for s in every if s.stopped]
    if not items:
        running = [s for s in every if not s.stopped]
        raise PreconditionFailed(f"{ep.name} needs no repair: no action was left half-done on it"
                                 + (f" ({running[0].what} is being applied right now)" if running else ""),
                                 source=SOURCE)
    f = _assess(p, ep, items)
    before = {**{k: f.serving[k] for k in STATE_KEYS}, "champion": f.serving["champion"]}
    after = {**before, "champion": f.registry_changes[-1]["to"] if f.registry_changes else before["champion"]}
    bound = {"action": name, "endpoint": ep.name, "before": before, "after": after,
             "registry_changes": f.registry_changes, "items": [s.key() for s in items],
             "record_history": f.record_history, "decisions": f.decisions}
    plan = Plan(action=name, kind="repair", endpoint=ep.name, model=ep.model, actor=actor.subject, params={},
                change=None, before=before, after=after, endpoint_diff=endpoint_diff(ep.state(), ep.state(), ep),
                registry_changes=f.registry_changes, backend=p.serving.name, plan_hash=plan_hash(bound),
                label=label, notes=f.lines, steps=f.steps)
    return plan, f


@dataclass
class Repairer:
    planning: Planning
    stalls: Stalls
    approvals: ApprovalRepository
    history: ServingHistory
    recorder: Recorder
    clock: Clock

    @property
    def lease(self) -> timedelta:
        return self.stalls.lease

    def execute(self, plan: Plan, actor: Actor, reason: Any, *, context: dict | None = None) -> Outcome:
        target = plan.endpoint
        claimed: list[Progress] = []
        done: list[str] = []
        details: dict = {"plan_hash": plan.plan_hash, "difference": plan.notes}
        if context:
            details["context"] = context
        try:
            if actor.subject != plan.actor:
                raise PermissionDenied("a plan can only be executed by whoever planned it", source=SOURCE)
            reason = parse_reason(reason)
            self.planning.require_role(actor, plan.action, target)
            current, f = _plan(self.planning, plan.action, plan.label, actor, target)
            if current.plan_hash != plan.plan_hash:
                raise Conflict(f"{target} changed since the repair was planned: now "
                               + "; ".join(current.notes) + ". Plan the repair again", source=SOURCE)
            details["finished"] = [{"what": s.what, "action": s.action, "actor": s.actor,
                                    "approved_by": s.approved_by, "request_id": s.request_id,
                                    "intent_id": s.intent.id if s.intent else None, "outcome": o,
                                    "params": s.params} for s, o in zip(f.items, f.outcomes, strict=True)]
            bumped = self._claim(f.items, actor, claimed)
            for m in f.registry_changes:
                if self.planning.champion(m["model"]) != m["from"]:
                    raise Conflict(f"the champion alias of {m['model']} moved since the repair was planned",
                                   source=self.planning.registry.source)
                self.planning.registry.set_alias(m["model"], m["alias"], m["to"])
                done.append(f"moved {m['model']}@{m['alias']} from v{m['from']} to v{m['to']}")
            if f.record_history:
                self._record_history(plan, f, actor, reason)
                done.append("recorded the serving history")
            for d in f.decisions:
                rv = d["row_version"] + (1 if d["request_id"] in bumped else 0)
                if not self.approvals.transition(d["request_id"], from_status="applying", to_status=d["to"],
                                                 row_version=rv, by=d["by"] or actor.subject,
                                                 reason=f"{d['reason']} (repair by {actor.name}: {reason})"):
                    raise Conflict(f"request #{d['request_id']} was decided meanwhile", source=SOURCE)
                done.append(f"marked request #{d['request_id']} {d['to']}")
        except ConsoleError as exc:
            for c in claimed:
                c.give_up(f"a repair by {actor.subject} failed ({exc.message})"
                          + (f" after it {', '.join(done)}" if done else ""))
            self.recorder.quietly(actor, plan.action, target, result_of(exc),
                                  reason=reason if isinstance(reason, str) else "", error=exc, before=plan.before,
                                  after=plan.after, model=plan.model, details={**details, "done": done})
            raise
        try:
            entry = self.recorder.record(actor, plan.action, target, "ok", reason=reason, before=plan.before,
                                         after=plan.after, model=plan.model,
                                         details={**details, "steps": plan.steps, "done": done})
        except ConsoleError as exc:
            for c in claimed:
                c.give_up(f"repaired by {actor.subject}, but writing the audit entry failed ({exc.message})")
            raise
        for c in claimed:
            c.close(REPAIRED, f"repaired by {actor.subject} (audit entry {entry.seq})")
        closed = sum(1 for s in f.items if s.intent is not None)
        done += [f"closed {closed} record{'s' if closed != 1 else ''} of unfinished actions"] if closed else []
        return Outcome("applied", plan.action, target, f"{target} repaired: {'; '.join(done)}.",
                       audit_seq=entry.seq, endpoint_after=plan.after)

    def _claim(self, items: tuple[Stalled, ...], actor: Actor, claimed: list[Progress]) -> set[int]:
        """Compare-and-set on every record the plan read: intents become ``repairing`` (ours), requests left
        applying without one get their version bumped. Returns the requests bumped."""
        bumped: set[int] = set()
        now = self.clock()
        store = self.stalls.intents
        for s in items:
            if s.intent is not None:
                i = s.intent
                if not store.update(i.id, row_version=i.row_version, now=now, state=REPAIRING, owner=Owner.current(),
                                    lease_until=now + self.lease, note=f"repair by {actor.subject}"):
                    raise Conflict(f"{s.what} was taken on by someone else meanwhile (another repair, or its process "
                                   "came back)", source=SOURCE)
                claimed.append(Progress(store, self.clock, self.lease, i.id, i.row_version + 1))
            elif s.request_id is not None and s.request_row_version is not None:
                if not self.approvals.transition(s.request_id, from_status="applying", to_status="applying",
                                                 row_version=s.request_row_version):
                    raise Conflict(f"request #{s.request_id} was decided meanwhile", source=SOURCE)
                bumped.add(s.request_id)
        return bumped

    def _record_history(self, plan: Plan, f: Finding, actor: Actor, reason: str) -> None:
        applied = [s for s, o in zip(f.items, f.outcomes, strict=True) if o == APPLIED]
        last = applied[-1]
        st = f.serving
        self.history.record(ServedState(
            plan.endpoint, self.clock(), st["stable_version"], st["canary_version"], st["canary_weight"],
            last.actor, last.approved_by, f"recorded by a repair ({actor.subject}): {reason}"[:500], "console"))
