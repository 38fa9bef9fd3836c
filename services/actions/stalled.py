"""What a stopped process left half-done, and exactly how the endpoint and the registry differ because of it.

The evidence is in the console database, so any process finds it (the next start, another replica):

* an **intent** (:mod:`services.actions.intents`) still unfinished whose owner stopped working on it: its process
  is gone (known at once on the same machine), its lease ran out (anywhere, a cluster included), or the owner
  gave it up (the answer to a write was lost and could not be re-read, a restore failed);
* a request left **applying** with no intent in progress (its process stopped after claiming it, or an older
  version of the console left it so) once the lease has passed since it was claimed.

:func:`assess` (pure) compares what each of them set out to do with what the endpoint serves and what the
registry's champion is now, and says what repairing means: the endpoint write was the lock and the change was
live, so repair finishes forward (moves the alias to what the endpoint serves, records what is missing, decides
the request by what happened) and never changes the endpoint itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from services.actions.intents import ABANDONED, LEASE, REPAIRING, Intent, IntentStore
from services.approvals import ApprovalRepository
from services.clock import Clock
from services.registry import CHAMPION
from services.retraining.leases import LEASE as RETRAIN_LEASE  # bounds a local retraining (30 min)

STATE_KEYS = ("stable_version", "canary_version", "canary_weight")
# A retraining's approval holds its request ``applying`` while the retraining starts; a local one trains right
# there, so it is deemed stopped only after RETRAIN_LEASE has passed.
RETRAIN = "retrain"
APPLIED, NOT_APPLIED, SUPERSEDED = "applied", "not_applied", "superseded"


def when(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "an unknown time"


def describe(state: dict) -> str:
    """``v5 as stable`` / ``v5 as stable and canary v6 at 10%``."""
    out = f"v{state.get('stable_version')} as stable" if state.get("stable_version") else "no stable version"
    if state.get("canary_version"):
        out += f" and canary v{state['canary_version']} at {state.get('canary_weight')}%"
    return out


@dataclass(frozen=True)
class Stalled:
    """One action some process started on an endpoint and has not finished."""

    endpoint: str
    model: str | None
    action: str
    label: str
    params: dict
    actor: str  # who made (or requested) the change
    approved_by: str | None
    request_id: int | None
    request_row_version: int | None  # set while the request is ``applying``: repair decides it
    intent: Intent | None
    since: datetime
    before: dict
    after: dict
    registry_changes: list[dict]
    stopped: str | None  # why nobody works on it any more; None while it is being applied right now
    started: str | None = None  # retrain: the run started for the request (found by the repair), else None

    @property
    def what(self) -> str:
        p = self.params
        parts = [f"v{p['version']}"] if p.get("version") else []
        parts += [f"to v{p['to_version']}"] if p.get("to_version") else []
        parts += [("at " if parts else "") + f"{p['weight']}%"] if p.get("weight") not in (None, "") else []
        parts += [f"{k.replace('_', ' ')} {v}" for k, v in p.items()
                  if k not in ("version", "to_version", "weight") and v not in (None, "")]
        doing = " ".join([self.label.lower(), *parts])
        if self.request_id is not None:
            return (f"request #{self.request_id} ({doing}, requested by {self.actor}) applying since "
                    f"{when(self.since)}" + (f" by {self.approved_by}" if self.approved_by else ""))
        return f"{self.actor}'s {doing} started {when(self.since)}"

    def key(self) -> list:
        """What a repair plan is bound to (compare-and-set on each record)."""
        i = self.intent
        return [i.id if i else None, i.row_version if i else None, self.request_id, self.request_row_version]


@dataclass(frozen=True)
class Finding:
    """An endpoint that needs repair: what differs, and what repairing it does."""

    endpoint: str
    model: str | None
    serving: dict  # now: stable_version, canary_version, canary_weight, resource_version, champion
    items: tuple[Stalled, ...]
    outcomes: tuple[str, ...]  # per item: applied | not_applied | superseded
    registry_changes: list[dict] = field(default_factory=list)
    record_history: bool = False
    decisions: list[dict] = field(default_factory=list)  # {"request_id", "row_version", "to", "reason", "by"}
    lines: list[str] = field(default_factory=list)  # the exact difference, for people
    steps: list[str] = field(default_factory=list)  # what repairing does
    unreadable: str = ""  # the endpoint or the registry could not be read: nothing can be decided yet

    @property
    def summary(self) -> str:
        return "; ".join(self.lines)

    @property
    def short(self) -> str:
        """For a table cell: ``request #12 stopped half-way``."""
        what = ", ".join(f"request #{s.request_id}" if s.request_id is not None else f"{s.actor}'s {s.label.lower()}"
                         for s in self.items)
        return f"{what} stopped half-way"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["items"] = [{"what": s.what, "stopped": s.stopped, "request_id": s.request_id, "action": s.action,
                       "intent_id": s.intent.id if s.intent else None, "step": s.intent.step if s.intent else None}
                      for s in self.items]
        d["summary"], d["short"] = self.summary, self.short
        return d


def outcome(item: Stalled, now: dict) -> str:
    """Whether the change it set out to make is what the endpoint serves (its stable version serving counts: the
    endpoint may have changed further since), the state it started from, or something else. A retraining changes
    nothing that serves: it is applied when a run was started for its request."""
    if item.action == RETRAIN:
        return APPLIED if item.started else NOT_APPLIED
    keys = (*STATE_KEYS, "scaling") if "scaling" in item.after else STATE_KEYS  # set_scaling: what serves stays
    st = {k: now.get(k) for k in keys}
    after, before = ({k: d.get(k) for k in keys} for d in (item.after, item.before))
    if st == after:
        return APPLIED
    if st == before:
        return NOT_APPLIED
    if after["stable_version"] != before["stable_version"] and st["stable_version"] == after["stable_version"]:
        return APPLIED
    return SUPERSEDED


def assess(endpoint: str, model: str | None, now: dict, items: list[Stalled], *,
           history_state: dict | None = None) -> Finding:
    """Pure. ``now``: the endpoint's state (+ resource_version) and ``champion`` as read now; ``history_state``:
    the latest state in the serving history, for backends that do not record it with their own write (None:
    the backend records it itself)."""
    champion, stable = now.get("champion"), now.get("stable_version")
    outcomes = tuple(outcome(i, now) for i in items)
    head = f"endpoint {endpoint} serves {describe(now)}, registry champion is " + (
        f"v{champion}" if champion else "not set")
    lines, steps, moves, decisions = [head], [], [], []
    for item, out in zip(items, outcomes, strict=True):
        said = f"{item.what} — {item.stopped}"
        rcs = [rc for rc in item.registry_changes if rc.get("alias") == CHAMPION]
        if item.action == RETRAIN:
            said += (f"; its retraining WAS started: {item.started}" if out == APPLIED else
                     "; no retraining was started for it (nothing of it runs)")
        elif out == APPLIED:
            said += "; its endpoint change WAS applied"
            for rc in rcs:
                if champion == rc["to"]:
                    said += f", the champion was moved to v{rc['to']}"
                elif champion == rc["from"] and stable == rc["to"]:
                    said += f", the champion was NOT moved (still v{champion}, should be v{rc['to']})"
                    moves = [{"model": rc["model"], "alias": CHAMPION, "from": champion, "to": stable}]
                else:
                    said += f"; the champion was moved to v{champion} by someone else since: left as it is"
        elif out == NOT_APPLIED:
            said += "; the endpoint was not changed (nothing of it is live)"
        else:
            said += f"; the endpoint has changed since (it set out to serve {describe(item.after)})"
        lines.append(said)
        if item.request_row_version is not None:
            to = "approved" if out == APPLIED else "failed"
            reason = {APPLIED: "its change is live; finished by a repair after the process applying it stopped",
                      NOT_APPLIED: "the process applying it stopped before the endpoint changed: nothing changed",
                      SUPERSEDED: "the process applying it stopped and the endpoint has changed since: it is not "
                                  f"what serves (now {describe(now)})"}[out]
            if item.action == RETRAIN:
                reason = (f"its retraining was started ({item.started}); finished by a repair after the process "
                          "approving it stopped" if out == APPLIED else
                          "the process approving it stopped before the retraining started: nothing started")
            decisions.append({"request_id": item.request_id, "row_version": item.request_row_version, "to": to,
                              "reason": reason, "by": item.approved_by})
    for m in moves:
        steps.append(f"move {m['model']}@{CHAMPION} from v{m['from']} to v{m['to']}, to match what the endpoint "
                     "serves (the change was live; the endpoint is not touched)")
    record = (history_state is not None and any(o == APPLIED and i.action != RETRAIN
                                                 for i, o in zip(items, outcomes, strict=True))
              and {k: history_state.get(k) for k in STATE_KEYS} != {k: now.get(k) for k in STATE_KEYS})
    if record:
        steps.append(f"record in the serving history that {endpoint} serves {describe(now)} (the stopped "
                     "process did not)")
    steps += [f"mark request #{d['request_id']} {d['to']} ({d['reason']})" for d in decisions]
    steps += [f"close the record of {i.what}" for i in items if i.intent is not None]
    steps.append("write one audit entry (action repair) naming all of it")
    return Finding(endpoint, model, dict(now), tuple(items), outcomes, moves, bool(record), decisions, lines, steps)


@dataclass
class Stalls:
    """Finds the unfinished actions in the console database and tells stopped ones from running ones."""

    intents: IntentStore
    approvals: ApprovalRepository
    clock: Clock
    lease: timedelta = LEASE

    def find(self, endpoint: str | None = None) -> list[Stalled]:
        """Every unfinished action (on ``endpoint``, or everywhere), oldest first; ``stopped`` says which ones
        nobody works on any more."""
        now = self.clock()
        applying = {r.id: r for r in self.approvals.list(status="applying", endpoint=endpoint)}
        out = []
        for i in self.intents.unfinished(endpoint):
            req = applying.pop(i.request_id, None) if i.request_id is not None else None
            p = i.plan
            out.append(Stalled(i.endpoint, i.model, i.action, p.get("label") or i.action.replace("_", " "),
                               p.get("params") or {}, i.actor, i.approved_by, i.request_id,
                               req.row_version if req else None, i, i.started_at, p.get("before") or {},
                               p.get("after") or {}, p.get("registry_changes") or [], self._stopped(i, now)))
        for r in applying.values():
            since = r.decided_at or r.created_at
            stopped = None
            lease, takes = ((RETRAIN_LEASE, "starting a retraining takes at most as long as a local one")
                            if r.action == RETRAIN else (self.lease, "an apply takes seconds"))
            if r.decided_at is None or now >= r.decided_at + lease:
                stopped = (f"nothing has worked on it since {when(r.decided_at)}: no action in progress is on "
                           f"record for it, and {takes} (lease {_minutes(lease)})")
            p = r.plan
            out.append(Stalled(r.endpoint, r.model, r.action, p.get("label") or r.action.replace("_", " "),
                               r.params, r.requester, r.decided_by, r.id, r.row_version, None, since,
                               p.get("before") or {}, p.get("after") or {}, p.get("registry_changes") or [], stopped))
        return sorted(out, key=lambda s: s.since)

    def _stopped(self, i: Intent, now: datetime) -> str | None:
        if i.state == ABANDONED:
            return f"the process applying it gave up half-way: {i.note}"
        who = "the repair working on it" if i.state == REPAIRING else "the process applying it"
        alive = i.owner.alive()
        if alive is False:
            return f"{who} ({i.owner}) stopped; the last step it recorded: {i.step}"
        if now >= i.lease_until:
            return (f"{who} ({i.owner}) gave no sign of life since {when(i.updated_at)} (its lease ran out at "
                    f"{when(i.lease_until)}" + ("; the process still runs but hangs" if alive else "")
                    + f"); the last step it recorded: {i.step}")
        return None


def _minutes(d: timedelta) -> str:
    return f"{d.total_seconds() / 60:g} min"
