"""One window of an endpoint as plain data and as text: per version and role, and canary vs stable
(``python -m services metrics``; the Monitoring page reads the same data)."""

from __future__ import annotations

from datetime import datetime

from services.errors import Invalid
from services.metrics import MetricsSource, VersionStats, _order, compare

HEADERS = ["VERSION", "ROLE", "REQUESTS", "ERRORS", "ERROR RATE", "P50 MS", "P95 MS", "P99 MS", "QUALITY"]


def window_report(source: MetricsSource, endpoint: str, start: datetime, end: datetime) -> dict:
    """Per version and role over the window, with the canary-vs-stable tests."""
    if start >= end:
        raise Invalid(f"the window starts ({start:%Y-%m-%d %H:%M}) after it ends ({end:%Y-%m-%d %H:%M})",
                      source="metrics")
    aggs = source.aggregates(endpoint, start, end)
    return {"endpoint": endpoint, "from": start, "to": end, "source": source.source,
            "versions": [VersionStats.of(a).as_dict() for a in sorted(aggs, key=_order)],
            "tests": [t.as_dict() for t in compare(aggs)]}


def _num(v, fmt: str = "{:.1f}") -> str:
    return "—" if v is None else fmt.format(v)


def _quality(v: dict) -> str:
    if v["accuracy"] is not None:
        return f"acc {v['accuracy']:.3f}"
    if v["mae"] is not None:
        return f"MAE {v['mae']:.3g} RMSE {v['rmse']:.3g}"
    return "—"


def report_text(rep: dict) -> str:
    rows = [[f"v{v['version']}" if v["version"] else "unknown", v["role"], _num(v["requests"], "{:g}"),
             _num(v["errors"], "{:g}"), _num(v["error_rate"], "{:.2%}"), _num(v["latency_p50_ms"]),
             _num(v["latency_p95_ms"]), _num(v["latency_p99_ms"]), _quality(v)] for v in rep["versions"]]
    out = [f"{rep['endpoint']} from {rep['from']:%Y-%m-%d %H:%M} to {rep['to']:%Y-%m-%d %H:%M} UTC "
           f"({rep['source']}; latency quantiles interpolated within histogram buckets)"]
    if not rows:
        return "\n".join([*out, "(no requests in this window)"])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [HEADERS, *rows]]
    for t in rep["tests"]:
        mde = t.get("min_detectable_diff")
        mde_text = f"; smallest detectable increase {mde:.2%}" if mde is not None else ""
        out.append(f"canary v{t['candidate']} vs stable v{t['baseline']} {t['metric']}: {t['test']}: "
                   f"p-value {_num(t['p_value'], '{:.3g}')}{mde_text}")
    return "\n".join(out)


def add_command(sub, common) -> None:
    """``python -m services metrics --endpoint E [--from …] [--to …] [--json]`` (registered by services.cli)."""
    sp = sub.add_parser("metrics", help="live metrics of an endpoint per version and role, canary vs stable",
                        parents=[common])
    sp.add_argument("--endpoint", required=True)
    sp.add_argument("--from", dest="from_", metavar="WHEN",
                    help="ISO date/datetime, or relative: --from=-24h (default -1h)")
    sp.add_argument("--to", metavar="WHEN", help="ISO date (the whole day)/datetime, or now (default)")
    sp.set_defaults(fn=run)


def run(c, args) -> int:
    import json
    from datetime import timedelta

    from services.metrics import parse_time

    now = c.clock()
    end = parse_time(args.to, now=now, end=True, what="--to") or now
    start = parse_time(args.from_, now=now, what="--from") or end - timedelta(hours=1)
    rep = window_report(c.metrics, args.endpoint, start, end)
    print(json.dumps(rep, indent=2, default=str, ensure_ascii=False) if args.json else report_text(rep))
    return 0
