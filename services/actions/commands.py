"""``python -m services repair`` and ``python -m services endpoints`` (registered by :mod:`services.cli`).

``repair --endpoint E [--dry-run] --reason R --as NAME [--json]``: what a stopped process left half-done on E,
exactly what differs, and what repairing does (the dry run); without ``--dry-run`` it repairs (an operator or
admin), with the exit codes of :mod:`services.cli` (5: the state moved since the dry run, 6: nothing to repair).
``endpoints``: what serves where, whether the registry agrees, and which endpoints need repair (listed first in
their notes, with the command that repairs them). ``requests`` says the same of a request left ``applying``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from services.actions.catalog import ACTIONS
from services.cli_output import emit, table
from services.errors import ConsoleError

# command -> the catalog's actions it runs (services.cli has the others; retrain's is services.retraining.commands)
COMMANDS = {"repair": ("repair",), "retrain": ("retrain",)}


def add_command(sub, common) -> None:
    sp = sub.add_parser("repair", help=ACTIONS["repair"].help.replace("%", "%%"), parents=[common])
    sp.add_argument("--endpoint", required=True)
    sp.add_argument("--reason", default="")
    sp.add_argument("--dry-run", action="store_true", help="show what differs and what repairing does; change nothing")
    sp.set_defaults(fn=run_repair)


def _actor(c, args, target: str):
    """Who acts (services/auth/cli.py: a dev identity or a verified token); refusals are audited like any other."""
    from services.auth.cli import claimed_name, cli_actor

    try:
        return cli_actor(c, args.as_, os.environ)
    except ConsoleError as exc:
        c.actions.audit_refusal(claimed_name(c.settings, args.as_, os.environ), "repair", target, exc)
        raise


def plan_text(plan) -> str:
    lines = [f"{plan.label} on {plan.endpoint} (model {plan.model}) — planned by {plan.actor}", "  what happened:"]
    lines += [f"    {n}" for n in plan.notes]
    lines.append("  repairing will:")
    lines += [f"    - {s}" for s in plan.steps]
    lines.append("  the endpoint itself is not changed")
    return "\n".join(lines)


def run_repair(c, args) -> int:
    actor = _actor(c, args, args.endpoint)
    plan = c.actions.plan(actor, "repair", args.endpoint)
    if args.dry_run:
        emit(args, {"plan": plan.as_dict()}, plan_text(plan) + "\n(dry run: nothing changed)")
        return 0
    out = c.actions.execute(plan, actor, args.reason)
    emit(args, {"plan": plan.as_dict(), "outcome": out.as_dict()}, plan_text(plan) + f"\n{out.message}")
    return 0


def repairs(c) -> dict[str, Any]:
    """Endpoint -> its finding (what needs repair); a store that cannot be read is said on stderr."""
    try:
        return {f.endpoint: f for f in c.actions.needs_repair()}
    except ConsoleError as exc:
        print(f"warning: {exc.source}: {exc.message} — cannot tell which endpoints need repair", file=sys.stderr)
        return {}


def cmd_endpoints(c, args) -> int:
    from services.deployments import serving_overview

    views = serving_overview(c.serving, c.registry)
    found = repairs(c)
    data = [{"name": v.endpoint.name, "model": v.endpoint.model, "stable": v.endpoint.stable_version,
             "canary": v.endpoint.canary_version, "canary_weight": v.endpoint.canary_weight,
             "ready": v.endpoint.ready, "champion": v.champion, "resource_version": v.endpoint.resource_version,
             "warnings": v.warnings, "needs_repair": found[v.endpoint.name].as_dict() if v.endpoint.name in found
             else None} for v in views]
    rows = [[d["name"], d["model"], _v(d["stable"]),
             f"{_v(d['canary'])} @ {d['canary_weight']}%" if d["canary"] else None, _v(d["champion"]),
             "yes" if d["ready"] else "no",
             "NEEDS REPAIR" if d["needs_repair"] else "DISAGREES" if d["warnings"] else "agrees"] for d in data]
    text = table(["ENDPOINT", "MODEL", "STABLE", "CANARY", "CHAMPION", "READY", "REGISTRY"], rows,
                 notes=[_notes(d) for d in data])
    emit(args, data, text if data else "(no endpoints)")
    return 0


def _notes(d: dict) -> list[str]:
    out = []
    if d["needs_repair"]:
        out += [f"! NEEDS REPAIR: {line}" for line in d["needs_repair"]["lines"]]
        out.append(f"! repair: python -m services repair --endpoint {d['name']} --dry-run (then without "
                   "--dry-run, with --reason)")
    return out + [f"! {w}" for w in d["warnings"]]


def _v(version: Any) -> str | None:
    return f"v{version}" if version not in (None, "") else None
