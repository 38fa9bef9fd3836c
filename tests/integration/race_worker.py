"""A separate OS process for the concurrency test: plans and executes an action in lock-step with a rival."""

from __future__ import annotations

from pathlib import Path


def run(role: str, tracking_uri: str, database_url: str, data_dir: str, rounds: int, barrier, out) -> None:
    from services.errors import Conflict, ConsoleError
    from tests.conftest import ENDPOINT, make_container

    c = make_container(tracking_uri, database_url, Path(data_dir))
    me = c.directory.get("alice" if role == "A" else "dana")
    base = 10 if role == "A" else 60
    for r in range(rounds):
        barrier.wait(timeout=60)
        try:
            plan = c.actions.plan(me, "set_canary_weight", ENDPOINT, weight=base + r % 40)
            planned_rv = plan.before["resource_version"]
        except ConsoleError as exc:  # pragma: no cover - reported to the parent
            out.put((r, role, "plan-error", str(exc), None))
            barrier.wait(timeout=60)
            continue
        barrier.wait(timeout=60)  # both planned on the same state
        try:
            c.actions.execute(plan, me, f"round {r} by {role}")
            out.put((r, role, "ok", "", planned_rv))
        except Conflict as exc:
            out.put((r, role, "conflict", exc.message, planned_rv))
        except ConsoleError as exc:  # pragma: no cover
            out.put((r, role, "error", f"{exc.kind}: {exc.message}", planned_rv))
    c.engine.dispose()
