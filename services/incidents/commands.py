"""``python -m services timeline`` and ``python -m services served-at`` (registered by :mod:`services.cli`):
the Incidents page's timeline and "what served at T", for people and scripts."""

from __future__ import annotations

from datetime import timedelta

from services.cli_output import emit, table
from services.clock import iso
from services.errors import Invalid
from services.metrics import parse_time

SOURCE = "cli"
DETAIL_NOTES = ("reason", "error", "note", "summary")


def add_command(sub, common) -> None:
    sp = sub.add_parser("timeline", help="an endpoint's incident timeline: serving changes, actions, approvals, "
                                         "registrations, alias moves, alerts, drift alarms", parents=[common])
    sp.add_argument("--endpoint", required=True)
    sp.add_argument("--from", dest="from_", metavar="WHEN",
                    help="ISO date/datetime, or relative: --from=-24h (default: 24 h before --to)")
    sp.add_argument("--to", metavar="WHEN", help="ISO date (the whole day)/datetime, or now (default), exclusive")
    sp.set_defaults(fn=run_timeline)
    sp = sub.add_parser("served-at", help="what served on an endpoint at a moment: stable and canary versions "
                                          "and weights, the changes around it, the requests answered",
                        parents=[common])
    sp.add_argument("--endpoint", required=True)
    sp.add_argument("--at", metavar="WHEN", default="now", help="ISO datetime, or relative: --at=-2h (default now)")
    sp.set_defaults(fn=run_served_at)


def _window(c, args):
    now = c.clock()
    end = parse_time(args.to, now=now, end=True, what="--to") or now
    start = parse_time(args.from_, now=now, what="--from") or end - timedelta(hours=24)
    if start >= end:
        raise Invalid(f"--from ({start:%Y-%m-%d %H:%M:%S}) must be before --to ({end:%Y-%m-%d %H:%M:%S})",
                      source=SOURCE)
    return start, end


def run_timeline(c, args) -> int:
    start, end = _window(c, args)
    events = c.incidents.timeline(args.endpoint, start, end)
    data = {"endpoint": args.endpoint, "from": iso(start), "to": iso(end), "events": [e.as_dict() for e in events]}
    rows = [[f"{e.at:%Y-%m-%d %H:%M:%S}", e.kind, e.source, e.title, e.actor or None] for e in events]
    notes = [[f"{k}: {e.details[k]}" for k in DETAIL_NOTES if e.details.get(k) and str(e.details[k]) not in e.title]
             for e in events]
    head = f"{args.endpoint} from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC: {len(events)} events"
    text = head + "\n" + (table(["TIME (UTC)", "KIND", "SOURCE", "WHAT", "WHO"], rows, notes) if rows
                          else "(no events in this window)")
    emit(args, data, text)
    return 0


def run_served_at(c, args) -> int:
    now = c.clock()
    at = parse_time(args.at, now=now, what="--at")
    if at is None:
        raise Invalid("--at needs a time: now, -2h, or an ISO datetime", source=SOURCE)
    out = c.incidents.served_at(args.endpoint, at)
    emit(args, out, served_text(out))
    return 0


def served_text(d: dict) -> str:
    lines = [f"{d['endpoint']} at {d['at']}"]
    if d["known"]:
        canary = f", canary v{d['canary_version']} at {d['canary_weight']}%" if d["canary_version"] else ""
        lines.append(f"  stable v{d['stable_version']} at {d['stable_weight']}%{canary} (since {d['since']})")
    else:
        lines.append(f"  unknown: {d['note']}")
    for key, label in (("change_before", "change before"), ("change_after", "next change")):
        ch = d.get(key)
        if ch:
            who = (f" by {ch['actor']}" if ch.get("actor") else "") + (
                f", approved by {ch['approved_by']}" if ch.get("approved_by") else "")
            lines.append(f"  {label}: {ch['at']} {ch['what']}{who}")
    if d["traffic"]:
        lines.append(f"  requests {d['window']['from']} → {d['window']['to']}:")
        lines += [f"    v{t['version']} ({t['role']}): {t['requests']} requests, {t['errors']} errors"
                  for t in d["traffic"]]
    if d["requests"]:
        lines.append("  request ids: " + ", ".join(f"{r['request_id']} (v{r['version']})" for r in d["requests"]))
    lines += [f"  ! {w}" for w in d["warnings"]]
    return "\n".join(lines)
