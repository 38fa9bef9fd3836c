"""The alerts panel of the Overview (every endpoint) and of an endpoint's Monitoring page: firing first, each
linked to the Incidents page at its moment (``/incidents?endpoint&alert&from&to``)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import streamlit as st

from dashboard.bootstrap import container, settings_key
from dashboard.components import MISSING, fmt_time, table
from dashboard.data import windowed
from dashboard.nav import href
from services.alerts.usecases import list_alerts

RECENT = timedelta(hours=24)
SEVERITY_ORDER = {"page": 0, "ticket": 1, "info": 2}


@windowed(fresh=10, stale=30, kind="state")
def _alerts(key: str, endpoint: str | None, start: datetime, end: datetime) -> tuple[list, list[str]]:  # noqa: ARG001
    c = container()
    found = list_alerts(c.alerts, c.external_alerts, endpoint=endpoint, start=start, end=end, firing_first=True)
    return found.alerts, [f"{p.source}: {p.message}" for p in found.problems]


def _incident_link(a) -> str:
    start = a.started_at - timedelta(hours=2)
    return href("incidents", endpoint=a.endpoint, alert=a.id, **{"from": start.strftime("%Y-%m-%dT%H:%M"),
                                                                  "to": "now"})


def alerts_panel(*, endpoint: str | None = None, start: datetime | None = None, end: datetime | None = None,
                 key: str = "alerts") -> None:
    """Firing alerts first (then the window's resolved ones), with severity, since when and a link to
    investigate; nothing but a caption when all is quiet."""
    end = end or container().clock()
    start = start or end - RECENT
    found, problems = _alerts(settings_key(), endpoint, start, end)
    for p in problems:
        st.warning(f"Not shown: {p}", icon=":material/cloud_off:")
    from dashboard.incidents_view import order

    found = order(found)
    firing = [a for a in found if a.firing]
    if not found:
        st.caption("No alert " + (f"on {endpoint} " if endpoint else "") + "in the last 24 hours." if start ==
                   end - RECENT else "No alert in this window.")
        return
    if firing:
        worst = min(firing, key=lambda a: SEVERITY_ORDER.get(a.severity, 3))
        say = {"page": st.error, "ticket": st.warning}.get(worst.severity, st.info)
        say(f"{len(firing)} alert{'s' if len(firing) > 1 else ''} firing — the worst: **{worst.rule}** on "
            f"**{worst.endpoint}** ({worst.severity}). [Investigate]({_incident_link(worst)})",
            icon=":material/notifications_active:")
    df = pd.DataFrame([{"State": "firing" if a.firing else "resolved", "Severity": a.severity,
                        "Endpoint": a.endpoint, "Rule": a.rule, "Since": fmt_time(a.started_at),
                        "Resolved": fmt_time(a.resolved_at) if a.resolved_at else MISSING,
                        "Acknowledged by": a.acknowledged_by or MISSING, "Summary": a.summary,
                        "Investigate": _incident_link(a)} for a in found])
    table(df, key=key, file_name="alerts.csv",
          column_config={"Investigate": st.column_config.LinkColumn("Investigate", display_text="incident ↗")})
