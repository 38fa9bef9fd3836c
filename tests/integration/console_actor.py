"""A console replica's service layer in its own OS process, in lock-step with a test over stdin/stdout.

``python -m tests.integration.console_actor ACTOR`` builds the container from the environment (as a console
process does: ``services.composition.build()``), then reads one JSON command per line and answers one line
``@@ {json}`` per command:

* ``{"op": "plan", "action": A, "endpoint": E, "params": {...}}`` → ``{"planned": {...the state it read...}}``
* ``{"op": "execute", "reason": R}`` → ``{"result": "ok" | "conflict" | KIND, "message": ...}`` (the last plan)

So a plan can be made in this process, something else can happen in another, and then the plan is executed
here: what it is checked against is the database, not anything this process remembers.
"""

from __future__ import annotations

import json
import sys


def main(actor_name: str) -> int:
    from services.composition import build
    from services.errors import ConsoleError

    c = build()
    actor = c.directory.get(actor_name)
    plan = None
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["op"] == "plan":
                plan = c.actions.plan(actor, cmd["action"], cmd["endpoint"], **cmd.get("params", {}))
                out = {"planned": plan.before}
            else:
                outcome = c.actions.execute(plan, actor, cmd["reason"])
                out = {"result": "ok", "message": outcome.message}
        except ConsoleError as exc:
            out = {"result": exc.kind, "message": exc.message}
        print("@@ " + json.dumps(out, default=str), flush=True)
    c.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
