"""``python -m services ...``: the same use cases as the pages, for people and pipelines.

Exit codes: 0 done (or request filed), 2 invalid input, 4 not found, 5
conflict, 6 precondition failed (gates, stale/expired requests, nothing to repair), 7
permission denied, 8 a source is unavailable. ``--json`` prints one JSON document on
stdout, errors included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from typing import Any

from services.actions.catalog import ACTIONS
from services.actions.commands import add_command as repair_command
from services.actions.commands import cmd_endpoints
from services.cli_output import cell as _cell
from services.cli_output import emit as _print
from services.cli_output import table as _table
from services.errors import ConsoleError, Invalid
from services.metrics.report import add_command as metrics_command


def _actor(c, args, action: str, target: str):
    """Who acts (services/auth/cli.py: a dev identity or a verified token). Refusals are audited like any other."""
    from services.auth.cli import claimed_name, cli_actor

    try:
        return cli_actor(c, args.as_, os.environ)
    except ConsoleError as exc:
        c.actions.audit_refusal(claimed_name(c.settings, args.as_, os.environ), action, target, exc)
        raise


def _plan_text(plan) -> str:
    lines = [f"{plan.label} on {plan.endpoint} (model {plan.model}) — planned by {plan.actor}"]
    for row in plan.endpoint_diff:
        if row["changed"]:
            lines.append(f"  endpoint {row['field']}: {row['before']} → {row['after']}")
    for rc in plan.registry_changes:
        lines.append(f"  registry {rc['model']}@{rc['alias']}: v{rc['from']} → v{rc['to']}")
    for g in plan.gates:
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[g.passed]
        lines.append(f"  gate [{mark}] {g.name}: {g.detail}")
    for w in plan.warnings:
        lines.append(f"  warning: {w}")
    if plan.needs_approval:
        lines.append("  needs approval by another person")
    return "\n".join(lines)


def _act(c, args, action: str, **params) -> int:
    actor = _actor(c, args, action, args.endpoint)
    plan = c.actions.plan(actor, action, args.endpoint, **params)
    if args.dry_run:
        _print(args, {"plan": plan.as_dict()}, _plan_text(plan) + "\n(dry run: nothing changed)")
        return 0
    outcome = c.actions.execute(plan, actor, args.reason, override_reason=args.override_reason)
    _print(args, {"plan": plan.as_dict(), "outcome": outcome.as_dict()}, _plan_text(plan) + f"\n{outcome.message}")
    return 0


def cmd_seed_demo(c, args) -> int:
    from services.demo import needs_seed, seed_demo

    if args.if_empty and not needs_seed(c.settings, c.serving):
        _print(args, {"seeded": False}, "registry is not empty (or not local): demo seed skipped")
        return 0
    summary = seed_demo(c.settings, c.registry, c.serving, progress=None if args.json else print,
                        allow_remote=args.allow_remote)
    _print(args, summary, f"demo ready in {summary.get('seconds', 0):.1f}s")
    return 0


def cmd_models(c, args) -> int:
    from services.history import list_models

    models = list_models(c.registry, args.search or "")
    data = [{"name": m.name, "versions": m.version_count, "aliases": m.aliases, "latest": m.latest_version,
             "last_updated": m.last_updated} for m in models]
    text = "\n".join(f"{m.name}\t{m.version_count} versions\t"
                     + " ".join(f"@{a}=v{v}" for a, v in sorted(m.aliases.items())) for m in models)
    _print(args, data, text or "(no models)")
    return 0


def cmd_requests(c, args) -> int:
    reqs = c.actions.requests(status=args.status)
    rows = [[r["id"], r["status"] + (" (NEEDS REPAIR)" if r.get("needs_repair") else ""), r["endpoint"],
             " ".join([r["action"], _params(r.get("params"))]).strip(), r["requester"], _when(r.get("created_at")),
             _when(r.get("expires_at")), r.get("reason")] for r in reqs]
    text = _table(["ID", "STATUS", "ENDPOINT", "ACTION", "REQUESTER", "CREATED", "EXPIRES", "REASON"], rows,
                  notes=[[f"! {r[k]}" for k in ("needs_repair", "applying_now") if r.get(k)] for r in reqs])
    _print(args, reqs, text if reqs else "(no requests)")
    return 0


def _params(params: Any) -> str:
    """``{"version": "4", "weight": 20}`` → ``version 4 weight 20``."""
    if isinstance(params, dict):
        return " ".join(f"{k} {v}" for k, v in params.items() if v is not None)
    return "" if params is None else str(params)


def _when(ts: Any, *, seconds: bool = False) -> str | None:
    """Stored ISO time → ``YYYY-MM-DD HH:MM UTC`` (with ``:SS`` when asked); unparseable text as it is."""
    from services.clock import parse_iso

    if not ts:
        return None
    try:
        dt = parse_iso(str(ts))
    except ValueError:
        return str(ts)
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def cmd_approve(c, args) -> int:
    out = c.actions.approve(_actor(c, args, "approve", f"request #{args.id}"), args.id, args.reason,
                            override_reason=args.override_reason)
    _print(args, out.as_dict(), out.message)
    return 0


def cmd_reject(c, args) -> int:
    out = c.actions.reject(_actor(c, args, "reject", f"request #{args.id}"), args.id, args.reason)
    _print(args, out.as_dict(), out.message)
    return 0


def cmd_set_canary(c, args) -> int:
    from services.errors import NotFound

    try:
        ep = c.serving.get_endpoint(args.endpoint)
    except NotFound:
        ep = None  # planning refuses it again, and the refusal is audited
    if ep and ep.canary_version and str(ep.canary_version) == str(args.version).strip():
        return _act(c, args, "set_canary_weight", weight=args.weight)
    return _act(c, args, "start_canary", version=args.version, weight=args.weight)


def cmd_audit(c, args) -> int:
    from services.audit import entry_subjects, time_bound

    since = time_bound(args.from_, what="--from")
    until = time_bound(args.to, end=True, what="--to")
    if since and until and since > until:
        raise Invalid(f"--from {args.from_} is after --to {args.to}", source="cli")
    entries = c.audit.entries(limit=args.limit, actor=args.actor, action=args.action, result=args.result,
                              since=since, until=until, endpoint=args.endpoint, model=args.model,
                              version=args.version)
    rows = [[e.seq, _when(e.ts, seconds=True), e.actor, e.action, e.target,
             ", ".join(_version_sort(entry_subjects(e)[1])), e.result, e.reason] for e in entries]
    text = _table(["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "VERSIONS", "RESULT", "REASON"], rows,
                  notes=[[f"! {_cell(e.error)}"] if e.error else [] for e in entries])
    _print(args, [e.as_dict() for e in entries], text if entries else "(no audit entry matches)")
    return 0


def _version_sort(versions) -> list[str]:
    return sorted(versions, key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v))


def cmd_verify_audit(c, args) -> int:
    """The chain, and the latest anchor outside the database (a cut tail is invisible to the chain alone)."""
    from services.audit.anchor import FileAnchors, check

    res, anchor, cut = check(c.audit, FileAnchors(c.settings.anchor_file))
    text = (f"audit chain OK: {res.entries} entries, head {res.head_hash[:16]}…" if res.ok
            else f"audit chain BROKEN at entry {res.first_bad_seq}: {res.problem}")
    text += (f"\nanchor of {anchor.at:%Y-%m-%d %H:%M} UTC ({anchor.entries} entries): " + (cut or "holds")
             if anchor else "\nno anchor yet (python -m services anchor-audit, or `up` every hour)")
    _print(args, {**res.as_dict(), "anchor": anchor.as_dict() if anchor else None, "cut": cut or None}, text)
    return 0 if res.ok and not cut else 9


def cmd_anchor_audit(c, args) -> int:
    from services.audit.anchor import FileAnchors, anchor_now

    a = anchor_now(c.audit, FileAnchors(c.settings.anchor_file), c.clock())
    _print(args, a.as_dict(), f"anchored {a.entries} entries, head {a.head_hash[:16]}… in {c.settings.anchor_file}")
    return 0


# command -> the catalog's actions it runs (set-canary starts a canary, or re-weights the running one)
ACTION_COMMANDS = {"request-promotion": ("request_promotion",), "set-canary": ("start_canary", "set_canary_weight"),
                   "promote-canary": ("promote_canary",), "abort-canary": ("abort_canary",),
                   "rollback": ("rollback",), "set-scaling": ("set_scaling",)}


def _planner_params(*actions: str) -> dict[str, bool]:
    """The parameters the actions' planners take (name -> required), in order."""
    import inspect

    out: dict[str, bool] = {}
    for action in actions:
        params = list(inspect.signature(ACTIONS[action].planner).parameters.values())[4:]  # after p, spec, actor, ep
        for prm in params:
            required = prm.default is inspect.Parameter.empty and (len(actions) == 1 or action == actions[0])
            out[prm.name] = out.get(prm.name, False) or required
    return out


@contextmanager
def _db_engine(c):
    """The console database opened WITHOUT the schema check (an old database must be upgradable); closed
    afterwards unless the container passed its own."""
    from services.store.db import make_engine

    if "engine" in c.overrides:
        yield c.overrides["engine"]
        return
    engine = make_engine(c.settings.database_url, check_schema=False)
    try:
        yield engine
    finally:
        engine.dispose()


def cmd_db_current(c, args) -> int:
    from services.store import migrations
    from services.store.db import UPGRADE_COMMAND

    with _db_engine(c) as engine:
        st = migrations.status(engine)
    if st.empty:
        text = f"no console tables yet: the database is created at {st.head} (head) on first use"
    elif st.at_head:
        text = f"{st.revision} (head)"
    else:
        legacy = "" if st.stamped else " (written before schema migrations)"
        text = (f"{st.revision}{legacy}: behind head {st.head}: run `{UPGRADE_COMMAND}`" if st.behind else
                f"{st.revision}: unknown to this version (head {st.head}): a newer version wrote it")
    _print(args, st.as_dict(), text)
    return 0


def cmd_db_upgrade(c, args) -> int:
    from services.store import migrations

    with _db_engine(c) as engine:
        res = migrations.upgrade(engine)
    before = res.before
    if before.empty:
        text = f"created the console database at {res.after} (head)"
    elif not res.changed:
        text = f"the console database is at {res.after} (head): nothing to do"
    else:
        legacy = " (written before schema migrations)" if not before.stamped else ""
        text = f"upgraded the console database from {before.revision}{legacy} to {res.after} (head)"
    _print(args, res.as_dict(), text)
    return 0


def cmd_serve(c, args) -> int:
    from services.gateway.server import serve

    return serve(c, args.host, args.port)


def _add_db_commands(sub, common) -> None:
    sp = sub.add_parser("db", help="the console database schema: current, upgrade")
    db = sp.add_subparsers(dest="db_command", required=True)
    db.add_parser("current", help="the schema revision, and whether it is at head", parents=[common]
                  ).set_defaults(fn=cmd_db_current)
    db.add_parser("upgrade", help="migrate the console database to this version's schema (head)",
                  parents=[common]).set_defaults(fn=cmd_db_upgrade)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON")
    common.add_argument("--as", dest="as_", metavar="NAME", help="dev identity acting (or MLOPS_ACTOR)")
    p = argparse.ArgumentParser(prog="python -m services", description="MLOps Console command line")
    p.add_argument("--json", dest="json_global", action="store_true", help="print JSON")
    p.add_argument("--as", dest="as_global", metavar="NAME", help="dev identity acting (or MLOPS_ACTOR)")
    sub = p.add_subparsers(dest="command", required=True)

    def act(name, help_, fn):
        sp = sub.add_parser(name, help=help_, parents=[common])
        sp.add_argument("--endpoint", required=True)
        sp.add_argument("--reason", default="")
        sp.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
        sp.add_argument("--override-reason", default=None, help="admin only: override failing gates")
        sp.set_defaults(fn=fn)
        return sp

    sp = sub.add_parser("seed-demo", help="register the demo models and endpoints", parents=[common])
    sp.add_argument("--allow-remote", action="store_true")
    sp.add_argument("--if-empty", action="store_true", help="only when the local registry has no models")
    sp.set_defaults(fn=cmd_seed_demo)
    sp = sub.add_parser("models", help="list registered models", parents=[common])
    sp.add_argument("--search", default="")
    sp.set_defaults(fn=cmd_models)
    sub.add_parser("endpoints", help="what serves where", parents=[common]).set_defaults(fn=cmd_endpoints)
    sp = sub.add_parser("requests", help="approval requests", parents=[common])
    sp.add_argument("--status", choices=["pending", "applying", "approved", "rejected", "expired", "void", "failed"])
    sp.set_defaults(fn=cmd_requests)

    for command, actions in ACTION_COMMANDS.items():  # the actions' catalog: one command per action
        spec = ACTIONS[actions[0]]
        sp = act(command, " / ".join(ACTIONS[a].help for a in actions).replace("%", "%%"), None)
        params = _planner_params(*actions)
        for name, required in params.items():
            sp.add_argument("--" + name.replace("_", "-"), dest=name, required=required, default=None)
        sp.set_defaults(fn=cmd_set_canary if command == "set-canary" else
                        (lambda c, a, action=spec.name, names=tuple(params): _act(
                            c, a, action, **{n: getattr(a, n) for n in names})))

    for name, fn in (("approve", cmd_approve), ("reject", cmd_reject)):
        sp = sub.add_parser(name, help=f"{name} a request", parents=[common])
        sp.add_argument("id")
        sp.add_argument("--reason", default="approved" if name == "approve" else "")
        if name == "approve":
            sp.add_argument("--override-reason", default=None)
        sp.set_defaults(fn=fn)

    sp = sub.add_parser("audit", help="the audit trail, newest first", parents=[common])
    sp.add_argument("--limit", type=int, default=50, help="at most this many entries (0: all)")
    sp.add_argument("--actor")
    sp.add_argument("--action")
    sp.add_argument("--result")
    sp.add_argument("--from", dest="from_", metavar="WHEN",
                    help="from this ISO date or datetime on (UTC unless it names a zone)")
    sp.add_argument("--to", metavar="WHEN", help="up to this ISO date (the whole day) or datetime, inclusive")
    sp.add_argument("--endpoint", help="entries whose target is exactly this endpoint")
    sp.add_argument("--model", help="entries about this registered model")
    sp.add_argument("--version", help="entries about this model version (its main version: the one promoted, "
                                      "rolled back to, or started as canary)")
    sp.set_defaults(fn=cmd_audit)
    sub.add_parser("verify-audit", help="verify the audit hash chain and its latest anchor",
                   parents=[common]).set_defaults(fn=cmd_verify_audit)
    sub.add_parser("anchor-audit", help="anchor the audit head outside the database (MLOPS_AUDIT_ANCHOR_FILE)",
                   parents=[common]).set_defaults(fn=cmd_anchor_audit)
    _add_db_commands(sub, common)
    metrics_command(sub, common)
    repair_command(sub, common)  # repair
    sp = sub.add_parser("serve", help="serve the local endpoints (KServe V1/V2, docs/gateway.md)",
                        parents=[common])
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8080)
    sp.set_defaults(fn=cmd_serve)
    from services.ingest.commands import add_commands
    add_commands(sub, common)  # ingest, predictions, labels
    from services.demo.history import add_command as add_history
    from services.drift.profiles import add_command as add_profile
    add_profile(sub, common)
    from services.runtime import add_commands as add_runtime
    add_runtime(sub, common)  # up, traffic
    add_history(sub, common)  # seed-history
    from services.drift.commands import add_command as add_drift
    add_drift(sub, common)  # drift
    from services.explain.commands import add_command as add_explain
    add_explain(sub, common)  # explain
    from services.alerts.commands import add_command as add_alerts
    add_alerts(sub, common)  # alerts, ack
    from services.incidents.commands import add_command as add_incidents
    add_incidents(sub, common)  # timeline, served-at
    from services.retraining.commands import add_command as add_retrain
    add_retrain(sub, common)  # retrain, retrain-status
    return p


def main(argv: list[str] | None = None, container=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.json = args.json or args.json_global
    args.as_ = args.as_ or args.as_global
    try:
        from services.composition import build
        from services.settings import Settings

        people = args.command in {*ACTION_COMMANDS, "approve", "reject", "ack", "retrain"}  # dev ids: local data only
        c = container or build(Settings.from_env(for_people=people))
        return args.fn(c, args)
    except ConsoleError as exc:
        if args.json:
            print(json.dumps(exc.to_dict(), ensure_ascii=False))
        print(f"error: {exc.source}: {exc.message}" + (f" ({exc.detail})" if exc.detail else ""), file=sys.stderr)
        return exc.exit_code
