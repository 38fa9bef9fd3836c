"""The incident report: one window of an endpoint as Markdown (to paste into a postmortem) and as JSON."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from services.clock import iso
from services.incidents.events import (
    ACTION,
    ALERT_FIRED,
    APPROVAL,
    SOURCE_UNAVAILABLE,
    Event,
    plain,
    utc,
)

TIME = "%Y-%m-%d %H:%M:%S"


def _cell(value) -> str:
    text = " ".join(str("—" if value in (None, "") else value).split())
    return text.replace("|", "\\|")


def _table(headers: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return out + ["| " + " | ".join(_cell(v) for v in r) + " |" for r in rows]


def _pct(v) -> str:
    return "—" if v is None else f"{v:.2%}"


def _ms(v) -> str:
    return "—" if v is None else f"{v:.1f}"


def report(endpoint: str, start: datetime, end: datetime, events: Iterable[Event], served: dict | None,
           metrics_window: dict | None = None) -> tuple[str, dict]:
    """``(markdown, data)``. ``served`` is :func:`~services.incidents.served.served_at`'s answer (or None),
    ``metrics_window`` :func:`services.metrics.report.window_report`'s (per version and role, and the
    canary-vs-stable tests) or None."""
    events = list(events)
    start, end = utc(start), utc(end)
    actions = [e for e in events if e.kind in (ACTION, APPROVAL) and not e.details.get("refused")]
    refused = [e for e in events if e.kind == ACTION and e.details.get("refused")]
    missing = [e for e in events if e.kind == SOURCE_UNAVAILABLE]
    data = {"endpoint": endpoint, "from": iso(start), "to": iso(end),
            "counts": dict(Counter(e.kind for e in events)),
            "events": [e.as_dict() for e in events], "served": plain(served) if served else None,
            "metrics": plain(metrics_window) if metrics_window else None,
            "actions": [e.as_dict() for e in actions], "refused": [e.as_dict() for e in refused],
            "unavailable": [e.as_dict() for e in missing]}

    md = [f"# Incident report: {endpoint}", "",
          f"Window: {start:{TIME}} → {end:{TIME}} UTC", ""]
    alerts = [e for e in events if e.kind == ALERT_FIRED]
    summary = [f"- {n} {kind.replace('_', ' ')} event{'s' if n != 1 else ''}"
               for kind, n in sorted(data["counts"].items()) if kind != SOURCE_UNAVAILABLE]
    md += ["## Summary", "", *(summary or ["- no events in this window"])]
    if alerts:
        md.append(f"- first alert: {alerts[0].title} at {alerts[0].at:{TIME}} UTC")
    for e in missing:
        md.append(f"- **incomplete**: {e.title}")
    md += ["", "## Timeline", ""]
    md += _table(["Time (UTC)", "Kind", "Source", "What", "Who"],
                 [[f"{e.at:{TIME}}", e.kind.replace("_", " "), e.source, e.title, e.actor] for e in events]
                 ) if events else ["(no events)"]
    if served:
        md += ["", f"## What served at {served['at']}", ""]
        if served.get("known"):
            canary = (f", canary v{served['canary_version']} at {served['canary_weight']} %"
                      if served.get("canary_version") else "")
            md.append(f"- stable v{served['stable_version']} at {served['stable_weight']} %{canary}")
        else:
            md.append(f"- unknown: {served.get('note')}")
        for key, label in (("change_before", "change before"), ("change_after", "next change")):
            ch = served.get(key)
            if ch:
                md.append(f"- {label}: {ch['at']} — {ch['what']}" + (f" by {ch['actor']}" if ch.get("actor") else "")
                          + (f", approved by {ch['approved_by']}" if ch.get("approved_by") else ""))
        if served.get("traffic"):
            md += ["", *_table(["Version", "Role", "Requests", "Errors", "Error rate"],
                               [[f"v{t['version']}", t["role"], t["requests"], t["errors"], _pct(t["error_rate"])]
                                for t in served["traffic"]])]
        if served.get("requests"):
            md += ["", "Requests around that moment: " + ", ".join(
                f"`{r['request_id']}` (v{r['version']})" for r in served["requests"])]
    if metrics_window and metrics_window.get("versions"):
        md += ["", "## Per version over the window", ""]
        md += _table(["Version", "Role", "Requests", "Errors", "Error rate", "p50 ms", "p95 ms", "p99 ms"],
                     [[f"v{v['version']}" if v.get("version") else "unknown", v["role"], f"{v['requests']:g}",
                       f"{v['errors']:g}", _pct(v["error_rate"]), _ms(v["latency_p50_ms"]), _ms(v["latency_p95_ms"]),
                       _ms(v["latency_p99_ms"])] for v in metrics_window["versions"]])
        for t in metrics_window.get("tests", []):
            p = "—" if t.get("p_value") is None else f"{t['p_value']:.3g}"
            md.append(f"\n- canary v{t['candidate']} vs stable v{t['baseline']} on {t['metric']}: {t['test']}, "
                      f"p-value {p}")
    md += ["", "## Actions taken", ""]
    md += [f"- {e.at:{TIME}} UTC — {e.title}" for e in actions] or ["- none in this window"]
    if refused:
        md += ["", "Refused or failed attempts:", *[f"- {e.at:{TIME}} UTC — {e.title}" for e in refused]]
    return "\n".join(md) + "\n", data
