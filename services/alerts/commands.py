"""``python -m services alerts`` and ``python -m services ack`` (registered by :mod:`services.cli`).

``alerts [--endpoint E] [--state firing|resolved] [--from … --to …] [--limit N] [--json]``: the console's alerts
and Alertmanager's (where configured), firing first, as an aligned table; an Alertmanager that cannot be read
is said on stderr and the console's alerts are still listed. ``ack ALERT_ID --as NAME [--note …]``:
acknowledge one, recorded in the audit trail (an unknown id exits 4, an unknown identity 7, both audited).
"""

from __future__ import annotations

import os
import sys

from services.alerts.usecases import acknowledge, list_alerts, record_refusal
from services.cli_output import emit, table
from services.errors import ConsoleError

HEADERS = ["ID", "STATE", "SEVERITY", "ENDPOINT", "RULE", "STARTED", "RESOLVED", "VALUE", "ACK", "SUMMARY"]


def _when(dt) -> str | None:
    return None if dt is None else dt.strftime("%Y-%m-%d %H:%M:%S UTC")


def _value(v) -> str | None:
    return None if v is None else f"{v:.4g}"


def run_alerts(c, args) -> int:
    from services.metrics import parse_time

    now = c.clock()
    end = parse_time(args.to, now=now, end=True, what="--to")
    start = parse_time(args.from_, now=now, what="--from")
    found = list_alerts(c.alerts, c.external_alerts, endpoint=args.endpoint, state=args.state, start=start,
                        end=end, limit=args.limit or None, firing_first=True)
    for p in found.problems:
        print(f"warning: {p.source}: {p.message}" + (f" ({p.detail})" if p.detail else "")
              + " — showing the console's own alerts only", file=sys.stderr)
    rows = [[a.id, a.state.upper() if a.firing else a.state, a.severity, a.endpoint, a.rule, _when(a.started_at),
             _when(a.resolved_at), _value(a.last_value if a.firing else a.value),
             a.acknowledged_by and f"{a.acknowledged_by}", a.summary] for a in found.alerts]
    text = table(HEADERS, rows) if rows else "(no alerts)"
    emit(args, [a.as_dict() for a in found.alerts], text)
    return 0


def run_ack(c, args) -> int:
    from services.auth.cli import claimed_name, cli_actor

    try:
        actor = cli_actor(c, args.as_, os.environ, what="acknowledges")
    except ConsoleError as exc:
        record_refusal(c.audit, claimed_name(c.settings, args.as_, os.environ), args.alert_id, exc,
                       note=args.note or "")
        raise
    a = acknowledge(c.alerts, c.audit, actor, args.alert_id, args.note or "", clock=c.clock)
    if a.acknowledged_by == actor.subject:
        text = (f"alert {a.id} ({a.endpoint} · {a.rule}) acknowledged by {a.acknowledged_by} at "
                f"{_when(a.acknowledged_at)}")
    else:
        text = (f"alert {a.id} ({a.endpoint} · {a.rule}) was already acknowledged by {a.acknowledged_by} at "
                f"{_when(a.acknowledged_at)}; that stays (your attempt is in the audit trail)")
    emit(args, a.as_dict(), text)
    return 0


def add_command(sub, common) -> None:
    """``alerts`` and ``ack``."""
    sp = sub.add_parser("alerts", help="alerts, firing first (the console's and Alertmanager's)", parents=[common])
    sp.add_argument("--endpoint")
    sp.add_argument("--state", choices=["firing", "resolved"])
    sp.add_argument("--from", dest="from_", metavar="WHEN",
                    help="alerts active from then on: ISO date/datetime, or relative: --from=-24h")
    sp.add_argument("--to", metavar="WHEN", help="…and before then: ISO date (the whole day)/datetime, or now")
    sp.add_argument("--limit", type=int, default=200, help="at most this many (0: all)")
    sp.set_defaults(fn=run_alerts)
    sp = sub.add_parser("ack", help="acknowledge an alert (recorded in the audit trail)", parents=[common])
    sp.add_argument("alert_id", metavar="ALERT_ID")
    sp.add_argument("--note", default="", help="what you are doing about it")
    sp.set_defaults(fn=run_ack)
