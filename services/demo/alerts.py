"""The demo history's alerts: the policy's rules evaluated at the moments the story makes interesting (the bad
canary's run, the drift's first hours) with the real evaluator, backdated, so the Incidents page and
the Overview show a past incident at first start. A few dozen evaluations, not every minute of a week."""

from __future__ import annotations

from datetime import datetime, timedelta

STEP = timedelta(minutes=10)


def moments(stories, now: datetime) -> list[datetime]:
    """When to evaluate: every 10 minutes while each ended canary ran and for 70 minutes after (fire, then
    resolve once its data has left the windows), hourly over the drift's first 8 hours; before ``now``."""
    out: set[datetime] = set()
    for s in stories:
        for w in s.canaries:
            if w.end >= now:
                continue  # the running canary: the live evaluator's business
            t = w.start - STEP
            while t <= w.end + timedelta(minutes=70):  # an hour's window empties 60 minutes after the end
                out.add(t)
                t += STEP
        if s.drift is not None:
            out.update(s.drift[2] + timedelta(hours=h) for h in range(0, 9))
    return sorted(t for t in out if t < now)


def replay_alerts(c, stories, now: datetime) -> dict:
    """Run the alert evaluator at :func:`moments`; returns how many alerts fired and resolved."""
    from services.alerts.runner import run_once

    fired = resolved = 0
    for t in moments(stories, now):
        for change in run_once(c.alerts, c.policy, c.metrics, c.predictions, c.serving, lambda t=t: t):
            fired += change.kind == "fired"
            resolved += change.kind == "resolved"
    return {"fired": fired, "resolved": resolved}
