"""``python -m services drift``: per-column drift of a current file against a reference file
(:mod:`services.drift.files`), or of an endpoint's logged traffic against the version's reference profile
(:mod:`services.drift.windows`, from the histograms kept at ingest). Registered by :mod:`services.cli`."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from services.cli_output import emit
from services.drift.files import SOURCE, _names, files_report, report_text
from services.drift.stats import dataset_verdict
from services.drift.windows import endpoint_drift, performance
from services.errors import Invalid
from services.metrics import parse_time
from services.policy import DRIFT_METHODS


def add_command(sub, common):
    """``python -m services drift …`` (registered by services.cli); returns the parser, for further modes."""
    sp = sub.add_parser("drift", help="per-column drift of current data against a reference, and the verdict",
                        parents=[common])
    sp.add_argument("--reference", metavar="FILE", help="reference data: a .csv or .parquet file")
    sp.add_argument("--current", metavar="FILE", help="current data: a .csv or .parquet file")
    sp.add_argument("--method", default=None,
                    help="auto (default: Evidently's choice per column), ks, chisquare, z, wasserstein, "
                         "jensenshannon, psi or hellinger, for every column")
    sp.add_argument("--columns", metavar="A,B", help="only these columns (default: every column of either file)")
    sp.add_argument("--categorical", metavar="A,B", help="treat these columns as categorical (default: inferred)")
    sp.add_argument("--share-threshold", type=float, default=None,
                    help="dataset drift when at least this share of the computable columns drifted (0.5; with "
                         "--endpoint, the policy's)")
    sp.add_argument("--endpoint", help="logged traffic of this endpoint instead of files (its stored histograms)")
    sp.add_argument("--version", help="with --endpoint: the version (default: the busiest in the window)")
    sp.add_argument("--from", dest="from_", metavar="WHEN", help="with --endpoint: start (default -24h)")
    sp.add_argument("--to", metavar="WHEN", help="with --endpoint: end (default now)")
    sp.set_defaults(fn=run)
    return sp


def run(c, args) -> int:
    if getattr(args, "reference", None) or getattr(args, "current", None):
        if not (args.reference and args.current):
            raise Invalid("give both --reference and --current", source=SOURCE)
        if args.endpoint:
            raise Invalid("give either files (--reference, --current) or --endpoint, not both", source=SOURCE)
        share = 0.5 if args.share_threshold is None else args.share_threshold
        rep = files_report(args.reference, args.current, method=args.method, columns=_names(args.columns),
                           categorical=_names(args.categorical), share_threshold=share)
        emit(args, rep, report_text(rep))
        return 0
    if args.endpoint:
        return run_endpoint(c, args)
    raise Invalid("give --reference and --current (CSV or Parquet files), or --endpoint E", source=SOURCE)


# -- python -m services drift --endpoint E [--version V] [--from …] [--to …] [--method M] [--json] ------------
def run_endpoint(c, args) -> int:

    now = c.clock()
    end = parse_time(args.to, now=now, end=True, what="--to") or now
    start = parse_time(args.from_, now=now, what="--from") or end - timedelta(hours=24)
    policy = c.policy.for_endpoint(args.endpoint).drift
    if args.method not in (None, "auto"):
        if args.method not in DRIFT_METHODS:
            raise Invalid(f"logged traffic is compared on the versions' fixed bins: --method must be one of "
                          f"{', '.join(DRIFT_METHODS)}", source=SOURCE)
        policy = replace(policy, method=args.method, features={})
    if args.share_threshold is not None:
        if not 0 < args.share_threshold <= 1:
            raise Invalid("--share-threshold must be in (0, 1]", source=SOURCE)
        policy = replace(policy, share=args.share_threshold)
    model = c.serving.get_endpoint(args.endpoint).model
    offline = None
    if model and args.version:
        offline = c.registry.get_version(model, args.version).metrics
    v = endpoint_drift(c.predictions, policy, args.endpoint, start, end, version=args.version, model=model,
                       offline=offline)
    if offline is None and model:  # the busiest version, now known
        v.performance = performance(c.predictions, args.endpoint, v.version, start, end,
                                    c.registry.get_version(model, v.version).metrics)
    wanted = set(args.columns.split(",")) if args.columns else None
    cols = [f for f in v.features if wanted is None or f.column in wanted]
    rep = {**v.as_dict(), **dataset_verdict(cols, policy.share).as_dict(),
           "reference": f"v{v.version} reference ({v.profile_source}, {v.reference_rows} rows)",
           "current": f"{v.endpoint} v{v.version} {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC "
                      f"({v.current_rows} requests)"}
    text = report_text(rep)
    if v.prediction is not None and v.prediction.statistic is not None:
        text += (f"\nprediction drift ({v.prediction.method}): {v.prediction.statistic:.4g}"
                 f" ({'DRIFT' if v.prediction.drifted else 'no'})")
    if v.label is not None and v.label.statistic is not None:
        text += f"\nlabel drift ({v.label.method}): {v.label.statistic:.4g} ({'DRIFT' if v.label.drifted else 'no'})"
    p = v.performance
    if p:
        off = p["offline_accuracy"]
        text += (f"\nlive accuracy {p['accuracy']:.3f} (95 % {p['accuracy_low']:.3f}–{p['accuracy_high']:.3f}, "
                 f"{p['labelled']} labelled)" + ("" if off is None else f" vs offline {off:.3f}"
                                                 + (": DEGRADED" if p["degraded"] else "")))
    for a in v.alarms:
        text += (f"\nalarm: {a['feature']} {a['direction']} ({a['detector']}) at {a['at']:%Y-%m-%d %H:%M}, "
                 f"since {a['since']:%Y-%m-%d %H:%M}")
    emit(args, rep, text)
    return 0
