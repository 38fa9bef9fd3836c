"""Overview: the fleet now — models and champions, what serves, pending approvals, recent activity."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data
from dashboard.alerts_view import alerts_panel
from dashboard.bootstrap import container
from dashboard.components import clean_frame, flash, fmt_time, guard, table
from dashboard.monitoring_view import live_line
from dashboard.nav import href, link
from dashboard.repair_view import findings, section
from services.history import activity_feed

RECENT = 10  # lines of recent activity
AUDIT_WINDOW = 300  # newest successful audit entries searched for champion moves


def recent_activity(views) -> None:
    """Versions registered and champion moves the console made (MLflow keeps no time for alias moves; the
    audit trail does), newest first."""
    moves = []
    with guard("audit"):
        moves = container().audit.entries(result="ok", limit=AUDIT_WINDOW)
    feed = activity_feed(data.recent(data.key(), RECENT), moves, {v.endpoint.name: v.endpoint.model for v in views
                                                                  if v.endpoint.model}, limit=RECENT)
    if not feed:
        st.caption("No activity yet.")
        return
    df = clean_frame(pd.DataFrame([{
        "When": fmt_time(a.when), "Model": a.model,
        "What": f"v{a.version} registered" if a.kind == "registered" else a.text,
        "Where": f"{a.endpoint} ({a.action})" if a.endpoint else None,
        "Open": href("models", model=a.model, version=a.version) if a.model and a.version else None,
    } for a in feed]))
    st.dataframe(df, hide_index=True, key="recent-table", column_config={
        "Open": st.column_config.LinkColumn("Open", display_text="open ↗"),
        "What": st.column_config.TextColumn(width="medium"), "Where": st.column_config.TextColumn(width="large")})


def main() -> None:
    st.title("MLOps Console")
    st.caption("What is registered, what serves, and what waits for a decision.")
    flash()
    models = []
    counters = st.columns(4)
    with guard("registry"), st.spinner("Reading the registry…"):
        models = data.models(data.key())
    counters[0].metric("Registered models", len(models))
    counters[1].metric("Model versions", sum(m.version_count for m in models))
    views = []
    with guard("serving"):
        views = data.serving_views(data.key())
    repairs = []
    with guard("repairs"):
        repairs = findings()
    attention = {v.endpoint.name for v in views if not v.agrees} | {f.endpoint for f in repairs}
    counters[2].metric("Endpoints", len(views), f"{len(attention)} need attention" if attention else None,
                       delta_color="inverse")
    pending = []
    with guard("approvals"):
        pending = container().actions.requests(status="pending")
    counters[3].metric("Pending approvals", len(pending))

    section(repairs, key="overview")
    st.subheader("Alerts", anchor=False)
    with guard("alerts"):
        alerts_panel(key="overview-alerts")

    left, right = st.columns([3, 2])
    with left:
        st.subheader("Champions", anchor=False)
        serving: dict[str, list[str]] = {}
        for v in views:
            if v.endpoint.model:
                serving.setdefault(v.endpoint.model, []).append(
                    f"{v.endpoint.name}: v{v.endpoint.stable_version}"
                    + (f" + canary v{v.endpoint.canary_version} @ {v.endpoint.canary_weight}%"
                       if v.endpoint.canary_version else ""))
        if models:
            df = clean_frame(pd.DataFrame([{"Model": m.name, "Open": href("models", model=m.name),
                                "Champion": f"v{m.aliases['champion']}" if "champion" in m.aliases else "—",
                                "Challenger": f"v{m.aliases['challenger']}" if "challenger" in m.aliases else "—",
                                "Versions": m.version_count, "Serving": "; ".join(serving.get(m.name, [])) or "—"}
                               for m in models]))
            table(df, key="champions-table", file_name="champions.csv",
                  column_config={"Open": st.column_config.LinkColumn("Open", display_text="open ↗")})
        else:
            st.info("No registered models yet.")
        if views:
            st.subheader("Live traffic", anchor=False)
            for v in views:
                st.markdown(f"**{v.endpoint.name}** — {live_line(v.endpoint.name)}")
        attention = [v for v in views if not v.agrees and v.endpoint.name not in {f.endpoint for f in repairs}]
        if attention:
            st.subheader("Needs attention", anchor=False)
            for v in attention:
                for w in v.warnings:
                    st.warning(f"**{v.endpoint.name}** — {w}", icon=":material/sync_problem:")
                link("deployments", f"Open {v.endpoint.name}", endpoint=v.endpoint.name)
    with right:
        st.subheader("Pending approvals", anchor=False)
        if pending:
            for r in pending[:8]:
                st.markdown(f"- **#{r['id']}** `{r['endpoint']}` {r['action'].replace('_', ' ')} "
                            f"{', '.join(f'{k} {v}' for k, v in r['params'].items())} — by {r['requester']}")
            link("approvals", "Open approvals", icon=":material/how_to_reg:")
        else:
            st.caption("Nothing waits for a decision.")
    st.subheader("Recent registry activity", anchor=False)
    with guard("registry"):
        recent_activity(views)

with guard("Overview"):
    main()
