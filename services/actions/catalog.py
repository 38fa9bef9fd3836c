"""Every action, declared once: its name, label, approval kind, default roles and planner.

The policy (which roles may do what, which kinds need a second person), the CLI and the pages all read
this catalog; adding an action means adding one entry here and its planner in
:mod:`services.actions.planners`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.actions import planners
from services.actions.repair import plan_repair
from services.actions.retrain import plan_retrain
from services.actions.scaling import set_scaling
from services.policy import PolicyVocabulary


@dataclass(frozen=True)
class ActionSpec:
    name: str
    label: str
    kind: str | None  # what ``require_approval`` names in the policy; None for the decisions on requests and repair
    default_roles: tuple[str, ...]
    planner: Callable | None  # None for approve/reject: they decide a request, they are not planned
    # repair is planned (its dry run) but never needs approval: it finishes a change that was already decided
    help: str = ""

    @property
    def planned(self) -> bool:
        return self.planner is not None


_SPECS = (
    ActionSpec("request_promotion", "Promote version", "promote", ("requester", "operator"),
               planners.request_promotion, "make a version stable at 100% and move @champion to it"),
    ActionSpec("promote_canary", "Promote canary", "promote", ("operator",), planners.promote_canary,
               "make the running canary stable at 100% and move @champion to it"),
    ActionSpec("start_canary", "Start canary", "start_canary", ("operator",), planners.start_canary,
               "send a share of the traffic to another version"),
    ActionSpec("set_canary_weight", "Set canary weight", "set_canary_weight", ("operator",),
               planners.set_canary_weight, "change the running canary's share of the traffic"),
    ActionSpec("abort_canary", "Abort canary", "abort_canary", ("operator",), planners.abort_canary,
               "send all traffic back to the stable version and remove the canary"),
    ActionSpec("rollback", "Roll back", "rollback", ("operator",), planners.rollback,
               "go back to a version that was stable on this endpoint before"),
    ActionSpec("set_scaling", "Set scaling", "set_scaling", ("operator",), set_scaling,
               "change the endpoint's minimum and maximum replicas and the autoscaler's target"),
    ActionSpec("retrain", "Retrain", "retrain", ("operator",), plan_retrain,
               "retrain what the endpoint serves as stable on its training data plus a window of labelled traffic; "
               "the new version becomes the challenger (nothing that serves changes)"),
    ActionSpec("repair", "Repair", None, ("operator",), plan_repair,
               "finish what a stopped process left half-done: move @champion to what the endpoint serves, decide "
               "the request it was applying, close the record (the endpoint itself is not changed)"),
    ActionSpec("approve", "Approve request", None, ("approver",), None, "approve another person's request"),
    ActionSpec("reject", "Reject request", None, ("approver",), None, "reject a request"),
)

ACTIONS: dict[str, ActionSpec] = {s.name: s for s in _SPECS}
PLANNED: tuple[str, ...] = tuple(s.name for s in _SPECS if s.planned)
KINDS: tuple[str, ...] = tuple(dict.fromkeys(s.kind for s in _SPECS if s.kind))
VOCABULARY = PolicyVocabulary(default_roles={s.name: s.default_roles for s in _SPECS}, kinds=KINDS)


def label(action: str) -> str:
    spec = ACTIONS.get(action)
    return spec.label if spec else action.replace("_", " ")
