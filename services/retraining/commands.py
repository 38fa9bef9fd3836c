"""``python -m services retrain`` and ``retrain-status`` (registered by :mod:`services.cli`).

``retrain --endpoint E [--from … --to …] --reason R [--evidence JSON] [--wait SECONDS] [--dry-run] --as NAME``:
the guarded action ``retrain`` (:mod:`services.actions.retrain`: roles and approval from the policy, a dry run):
retrain what E serves as stable with the configured retrainer (``MLOPS_RETRAINER``): ``local`` trains and registers
the challenger before it returns; ``webhook`` and ``airflow`` hand it to a pipeline (``--wait`` follows an Airflow
run until it ends). Where the policy requires approval for ``retrain`` a request is filed instead (exit 0). Every
attempt is one entry in the audit trail (action ``retrain``).
``retrain-status RUN_ID [--wait SECONDS]``: a run's state. ``retrain-check [--endpoint E] [--dry-run]``: the policy's
retraining rules (:mod:`services.retraining.rules`) measured on every endpoint (or E), firing where they say so.
"""

from __future__ import annotations

import json
import os

from services.cli_output import emit
from services.errors import ConsoleError, Invalid
from services.retraining.usecases import ACTION, record


def _text(run) -> str:
    lines = [f"retraining run {run.run_id} ({run.backend}): {run.state}"]
    if run.request is not None and run.request.endpoint:
        lines.append(f"  {run.request.endpoint}: {run.request.model} v{run.request.version}")
    if run.new_version:
        lines.append(f"  new version v{run.new_version} (alias challenger, tagged mlops.candidate=retraining)")
    for key in sorted(k for k in run.metrics if k.startswith(("holdout_", "champion_holdout_"))):
        lines.append(f"  {key}: {run.metrics[key]:.4f}")
    if run.detail:
        lines.append(f"  {run.detail}")
    if run.url:
        lines.append(f"  {run.url}")
    return "\n".join(lines)


def file_promotion(c, actor, run) -> dict:
    """After a retraining that registered a version: request its promotion on the endpoint — the usual guarded
    action (roles, gates, audit) — only where the policy has a person approve it; never applied by itself."""
    from services.errors import PreconditionFailed

    if not run.new_version or run.request is None:
        return {"status": "not filed", "message": "the retraining registered no version (yet)"}
    try:
        plan = c.actions.plan(actor, "request_promotion", run.request.endpoint, version=run.new_version)
        if not plan.needs_approval:
            raise PreconditionFailed("the policy needs no approval to promote on this endpoint, so filing it would "
                                     "apply it: a person requests this promotion", source="retraining")
        outcome = c.actions.execute(plan, actor, f"retraining run {run.run_id}: {run.request.reason}"[:2000],
                                    context={"retraining_run": run.run_id})
    except ConsoleError as exc:
        return {"status": "not filed", "message": f"{exc.kind}: {exc.source}: {exc.message}"}
    return {"status": outcome.status, "request_id": outcome.request_id, "message": outcome.message}


def _follow(c, run, wait: float):
    if wait and run.open:
        from services.retraining.http import follow

        return follow(c.retrainer, run.run_id, timeout_s=wait)
    return run


def plan_text(plan) -> str:
    """The dry run of a ``retrain`` plan, for people."""
    r = plan.retraining or {}
    window = r.get("window") or {}
    lines = [f"{plan.label} on {plan.endpoint}: {plan.model} v{r.get('parent_version')} (serves as stable; "
             f"champion v{r.get('champion')}) — planned by {plan.actor}",
             f"  window: {window.get('start')} → {window.get('end')}", f"  retrainer: {plan.backend}"]
    lines += [f"  ! {w}" for w in plan.warnings]
    live = (r.get("evidence") or {}).get("live") or []
    lines += ["  evidence (live traffic in the window):"] + [
        f"    v{e['version']} {e['role']}: {e['requests']} requests, {e['errors']} errors, {e['labelled']} labelled"
        + (f", accuracy {e['accuracy']}, mae {e['mae']}" if e.get("labelled") else "") for e in live] if live else \
        ["  evidence: no live traffic in the window"]
    if (r.get("evidence") or {}).get("given"):
        lines.append(f"  evidence given: {json.dumps(r['evidence']['given'], sort_keys=True)}")
    lines.append("  confirming will:" if not plan.needs_approval else
                 "  the policy requires another person's approval: confirming files a request to:")
    lines += [f"    - {s}" for s in plan.steps]
    lines.append(f"  sent to the retrainer: {json.dumps(plan.backend_preview, sort_keys=True, default=str)}")
    return "\n".join(lines)


def run_retrain(c, args) -> int:
    """Through the guarded action ``retrain`` (roles and approval from the policy, the dry run, one audit entry)."""
    from services.auth.cli import claimed_name, cli_actor
    from services.metrics import parse_time

    try:
        evidence = json.loads(args.evidence) if args.evidence else {}
        if not isinstance(evidence, dict):
            raise Invalid("--evidence must be a JSON object", source="retraining")
        actor = cli_actor(c, args.as_, os.environ, what="retrains")
    except (ConsoleError, json.JSONDecodeError) as exc:
        err = exc if isinstance(exc, ConsoleError) else Invalid(f"--evidence is not JSON: {exc}", source="retraining")
        record(c.audit, claimed_name(c.settings, args.as_, os.environ), args.endpoint, err, reason=args.reason or "")
        raise err from None
    now = c.clock()
    end = parse_time(args.to, now=now, end=True, what="--to")
    start = parse_time(args.from_, now=now, what="--from")
    plan = c.actions.plan(actor, ACTION, args.endpoint, start=start, end=end, evidence=evidence or None)
    if args.dry_run:
        emit(args, {"plan": plan.as_dict()}, plan_text(plan) + "\n(dry run: nothing started)")
        return 0
    outcome = c.actions.execute(plan, actor, args.reason or "")
    if outcome.run is None:  # the policy wants a second person: a request was filed
        emit(args, outcome.as_dict(), outcome.message)
        return 0
    run = _follow(c, outcome.run, args.wait)
    data, text = run.as_dict(), _text(run)
    if args.request_promotion:
        data["promotion"] = promo = file_promotion(c, actor, run)
        text += f"\n  promotion of v{run.new_version}: {promo['status']} — {promo['message']}"
    emit(args, data, text)
    return 0 if run.state != "failed" else 1


def run_status(c, args) -> int:
    run = _follow(c, c.retrainer.status(args.run_id), args.wait)
    emit(args, run.as_dict(), _text(run))
    return 0 if run.state != "failed" else 1


def drift_share(c):
    """The stable version's share of drifted features over a window, by the policy's drift method (None: unknown)."""
    from services.drift.windows import endpoint_drift

    def share(endpoint: str, version: str, start, end):
        view = endpoint_drift(c.predictions, c.policy.for_endpoint(endpoint).drift, endpoint, start, end,
                              version=version)
        return view.verdict.share

    return share


def check_rules(c, endpoint: str | None = None, *, dry_run: bool = False) -> list:
    """The policy's retraining rules on every endpoint (or one), firing where due: a list of Check."""
    from services.retraining.rules import RetrainRules, check_endpoint

    rules = RetrainRules.load(c.settings.policy_file)
    names = [endpoint] if endpoint else [e.name for e in c.serving.list_endpoints()]
    checks = []
    for name in names:
        found, _run = check_endpoint(c.retrainer, c.audit, c.serving, c.predictions, rules.for_endpoint(name), name,
                                     drift=drift_share(c), clock=c.clock, dry_run=dry_run,
                                     promote=lambda actor, run: file_promotion(c, actor, run),
                                     leases=c.retrain_leases)
        checks += found
    return checks


def has_rules(c) -> bool:
    """True when the policy file has a ``retraining:`` section (a broken one too: its loop then says why)."""
    from services.retraining.rules import RetrainRules

    try:
        rules = RetrainRules.load(c.settings.policy_file)
    except ConsoleError:
        return True
    return bool(rules.defaults or rules.endpoints)


def rules_loop(c, stop, say, every_s: float | None = None) -> None:
    """The worker's loop: check the rules now and every MLOPS_RETRAIN_CHECK_MINUTES; say what fired or failed."""
    every = every_s if every_s is not None else c.settings.retrain_check_minutes * 60
    while not stop.is_set():
        try:
            for k in check_rules(c):
                if k.outcome == "fired":
                    say(f"retraining: {k.endpoint} rule {k.rule} ({k.metric} {k.value:.4g} {k.threshold}) started "
                        f"run {k.run_id}")
        except ConsoleError as exc:
            say(f"retraining rules: {exc.source}: {exc.message}; will retry")
        except Exception as exc:  # noqa: BLE001 - the next round retries; the worker's other loops go on
            say(f"retraining rules failed ({type(exc).__name__}: {exc}); will retry")
        stop.wait(every)


def run_check(c, args) -> int:
    from services.cli_output import table

    checks = check_rules(c, args.endpoint, dry_run=args.dry_run)
    rows = [[k.endpoint, k.rule, k.metric, None if k.value is None else f"{k.value:.4g}", k.threshold,
             k.outcome.upper() if k.outcome in ("fired", "would fire") else k.outcome, k.run_id, k.note]
            for k in checks]
    text = table(["ENDPOINT", "RULE", "METRIC", "VALUE", "THRESHOLD", "OUTCOME", "RUN", "NOTE"], rows) if rows \
        else "(no retraining rules apply)"
    emit(args, [k.as_dict() for k in checks], text)
    return 0


def add_command(sub, common) -> None:
    """``retrain`` and ``retrain-status``."""
    sp = sub.add_parser(ACTION, help="retrain what an endpoint serves on its training data + labelled window",
                        parents=[common])
    sp.add_argument("--endpoint", required=True)
    sp.add_argument("--from", dest="from_", metavar="WHEN", help="window start (ISO, or relative: --from=-7d)")
    sp.add_argument("--to", metavar="WHEN", help="window end (ISO or now; default now)")
    sp.add_argument("--reason", help="why (required; recorded in the audit trail)")
    sp.add_argument("--evidence", help="a JSON object recorded with the request and sent to the pipeline")
    sp.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="follow the run until it ends")
    sp.add_argument("--request-promotion", action="store_true",
                    help="then request the new version's promotion (gates, a second person approves)")
    sp.add_argument("--dry-run", action="store_true", help="show what retraining would do and send; start nothing")
    sp.set_defaults(fn=run_retrain)
    sp = sub.add_parser("retrain-status", help="the state of a retraining run", parents=[common])
    sp.add_argument("run_id", metavar="RUN_ID")
    sp.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="follow the run until it ends")
    sp.set_defaults(fn=run_status)
    sp = sub.add_parser("retrain-check", help="measure the policy's retraining rules; retrain where they fire",
                        parents=[common])
    sp.add_argument("--endpoint")
    sp.add_argument("--dry-run", action="store_true", help="say what would fire; start nothing")
    sp.set_defaults(fn=run_check)
