"""Guarded actions on serving endpoints: plan (dry run), then execute; approvals; the audit of every attempt.

Every action is two steps:

1. **plan** — :meth:`Actions.plan` checks the actor's role, runs the action's planner
   (:mod:`~services.actions.planners`) on the current state and returns a :class:`Plan`: exactly what will
   change on the endpoint and in the registry, the gates with their numbers, the warnings. Nothing changes.
2. **execute** — :meth:`Actions.execute` applies the plan with compare-and-set on the state it showed (or,
   when the policy says so, files an approval request bound to the plan's hash). Approving a request
   re-plans against the current state; a different hash means the request is void.

Where things are: the catalog of actions (:mod:`.catalog`: name, label, approval kind, default roles,
planner — declared once), input parsing (:mod:`.inputs`), plans and their pure helpers (:mod:`.plan`), what
planners share (:mod:`.planning`), the planners (:mod:`.planners`), execution (:mod:`.execute`), decisions on
requests (:mod:`.decisions`), audit recording (:mod:`.recording`), the facade (:mod:`.service`).

Nothing half-done: every action records its intent before the endpoint write (:mod:`.intents`, SQL adapter
:mod:`.intents_sql`) and closes it last; :mod:`.stalled` finds what a stopped process left (a dead owner, a lease
run out, a request left ``applying``) and says exactly what differs; the ``repair`` action (:mod:`.repair`)
finishes it forward; its command and ``endpoints`` are in :mod:`.commands`.

``retrain`` (:mod:`.retrain`) is planned and approved like the others but writes nothing to the serving backend: it
runs the retraining use case (:mod:`services.retraining.usecases`), which writes its one audit entry.
"""

from services.actions.catalog import ACTIONS, KINDS, PLANNED, VOCABULARY, ActionSpec, label
from services.actions.inputs import MAX_REASON, parse_reason, parse_request_id, parse_version, parse_weight
from services.actions.plan import Outcome, Plan, plan_hash
from services.actions.service import Actions

__all__ = ["ACTIONS", "KINDS", "MAX_REASON", "PLANNED", "VOCABULARY", "ActionSpec", "Actions", "Outcome", "Plan",
           "label", "parse_reason", "parse_request_id", "parse_version", "parse_weight", "plan_hash"]
