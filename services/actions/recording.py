"""Recording attempts in the audit trail: one entry per attempt, refusals included, each naming the model
and the versions it is about."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from services.actions.plan import result_of, versions_of
from services.audit import AuditEntry, AuditTrail
from services.errors import ConsoleError
from services.identity import Actor
from services.policy import GateResult
from services.serving import ServingBackend

log = logging.getLogger(__name__)


@dataclass
class Recorder:
    audit: AuditTrail
    serving: ServingBackend

    def record(self, actor: Actor, action: str, target: str, result: str, *, reason: str = "",
               error: ConsoleError | str | None = None, before=None, after=None, gates=None, details=None,
               model: str | None = None) -> AuditEntry:
        err = ""
        if isinstance(error, ConsoleError):
            err = f"{error.kind}: {error.source}: {error.message}"
        elif error:
            err = str(error)
        details = {**(details or {}), "model": model, "versions": versions_of(before, after, details)}
        if actor.name != actor.subject:
            details["actor_name"] = actor.name
        if actor.authenticated_by != "dev":  # how they were identified: oidc, proxy, token
            details["authenticated_by"] = actor.authenticated_by
        return self.audit.append(actor=actor.subject, action=action, target=target, result=result,
                                 reason=reason, error=err, before=before, after=after,
                                 gates=[g.as_dict() if isinstance(g, GateResult) else g for g in gates or []],
                                 details=details)

    def quietly(self, *args, **kwargs) -> None:
        """Record while another error is being raised: that error is the one that matters, but it says when
        its attempt could not be recorded (the audit store is down too), and the log keeps the attempt."""
        try:
            self.record(*args, **kwargs)
        except ConsoleError as failed:
            err = kwargs.get("error")
            log.error("the audit trail could not record an attempt (%s): %s", failed,
                      json.dumps({"args": args, **{k: v for k, v in kwargs.items() if k != "error"},
                                  "error": str(err)}, default=str))
            if isinstance(err, ConsoleError) and "audit trail" not in err.message:
                err.message += f" (this attempt could NOT be written to the audit trail: {failed.message})"

    def refusal(self, actor: Actor, action: str, target: str, error: ConsoleError, *, stage: str,
                params: dict | None = None) -> None:
        details = {"stage": stage} | ({"params": params} if params else {})
        self.quietly(actor, str(action)[:64], str(target)[:512], result_of(error), error=error, details=details,
                     model=self.model_of(target))

    def model_of(self, endpoint: str) -> str | None:
        """Which model the endpoint serves, if it can be read (for the entry of a refusal)."""
        try:
            return self.serving.get_endpoint(endpoint).model
        except (ConsoleError, TypeError, ValueError):
            return None
