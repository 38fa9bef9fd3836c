"""The Audit page's filters (restored from and written to the URL) and its entries as readable rows.

Everything here but :func:`filter_widgets` is pure, so it is tested without a browser."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date
from typing import Any

import streamlit as st

from dashboard import state
from dashboard.components import MISSING, fmt_missing
from services.actions.catalog import ACTIONS
from services.audit import AuditEntry, entry_subjects, time_bound
from services.clock import parse_iso

RESULTS = ("ok", "requested", "refused", "conflict", "failed")
TEXT_FILTERS = ("actor", "action", "result", "endpoint", "model", "version")
DATE_FILTERS = ("from", "to")
KEYS = {"actor": state.AUDIT_FILTER_ACTOR, "action": state.AUDIT_FILTER_ACTION,
        "result": state.AUDIT_FILTER_RESULT, "endpoint": state.AUDIT_FILTER_TARGET, "model": "audit-model",
        "version": "audit-version", "from": "audit-from", "to": "audit-to"}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


@dataclass(frozen=True)
class Filters:
    actor: str = ""
    action: str = ""
    result: str = ""
    endpoint: str = ""
    model: str = ""
    version: str = ""
    start: date | None = None  # URL ``from``
    end: date | None = None  # URL ``to`` (inclusive: the whole day)

    def query(self) -> dict[str, str]:
        """The URL query parameters for these filters (empty ones left out)."""
        out = {k: getattr(self, k).strip() for k in TEXT_FILTERS if getattr(self, k).strip()}
        if self.start:
            out["from"] = self.start.isoformat()
        if self.end:
            out["to"] = self.end.isoformat()
        return out

    def store_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``AuditTrail.entries``."""
        kw: dict[str, Any] = {k: getattr(self, k).strip() or None for k in TEXT_FILTERS}
        kw["since"] = time_bound(self.start)
        kw["until"] = time_bound(self.end, end=True)
        return kw

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


def dates_from_query(query: dict[str, str]) -> tuple[dict[str, date | None], list[str]]:
    """``from``/``to`` URL values as dates; a value that is not an ISO date is dropped with a message."""
    out: dict[str, date | None] = {}
    problems = []
    for k in DATE_FILTERS:
        raw = (query.get(k) or "").strip()
        try:
            out[k] = date.fromisoformat(raw) if raw else None
        except ValueError:
            out[k] = None
            problems.append(f"`{k}={raw}` in the address is not a date (YYYY-MM-DD); ignored")
    return out, problems


def sync_query(qp, filters: Filters) -> None:
    """Write the filters to ``st.query_params`` (or any dict-like): set the present ones, drop the rest."""
    want = filters.query()
    for k in (*TEXT_FILTERS, *DATE_FILTERS):
        if k in want:
            if qp.get(k) != want[k]:
                qp[k] = want[k]
        elif k in qp:
            del qp[k]


def with_value(options: list[str], value: str | None) -> list[str]:
    """``options`` plus a URL value that is not among them (still searchable: matches what it matches)."""
    return options + [value] if value and value not in options else options


def fmt_ts(ts: str | None) -> str:
    if not ts:
        return MISSING
    try:
        return parse_iso(ts).strftime(TIME_FORMAT)
    except ValueError:
        return str(ts)


def _value(v: Any) -> str:
    if isinstance(v, dict):
        return " ".join(f"{k} {_value(x)}" for k, x in v.items() if x not in (None, "", "None"))
    if isinstance(v, list | tuple):
        return ", ".join(_value(x) for x in v)
    return str(v)


DETAIL_ORDER = ("request_id", "requester", "request_action", "model", "versions", "params", "stage", "plan_hash",
                "overridden_gates", "override_reason", "backend")  # the rest follow, by name


def describe_details(details: Any) -> str:
    """An entry's ``details`` as one readable line, e.g. ``request #3 · requester alice · plan 1a2b3c4d…``."""
    if details in (None, "", {}, []):
        return MISSING
    if not isinstance(details, dict):
        return _value(details)
    parts = []
    for k in sorted(details, key=lambda k: (DETAIL_ORDER.index(k) if k in DETAIL_ORDER else len(DETAIL_ORDER), k)):
        v = details[k]
        if v in (None, "", [], {}):
            continue
        if k == "request_id":
            parts.append(f"request #{v}")
        elif k == "plan_hash":
            parts.append(f"plan {str(v)[:8]}…")
        elif k == "request_action":
            parts.append(f"for {v}")
        elif k == "overridden_gates":
            parts.append(f"overrode gates: {_value(v)}")
        elif k == "override_reason":
            parts.append(f"override reason: {v}")
        elif k == "stage":
            parts.append(f"stage {v}")
        elif k == "params":
            parts.append(_value(v) or MISSING)
        elif k == "versions":
            parts.append(f"version{'s' if len(v) > 1 else ''} {_value(v)}")
        else:
            parts.append(f"{k.replace('_', ' ')} {_value(v)}")
    return " · ".join(p for p in parts if p and p != MISSING) or MISSING


def _mark(passed) -> str:
    return "pass" if passed else "FAIL" if passed is False else "n/a"


def describe_change(before, after) -> str:
    if not isinstance(before, dict) or not isinstance(after, dict):
        return MISSING
    keys = ("stable_version", "canary_version", "canary_weight", "champion")
    parts = [f"{k}: {fmt_missing(before.get(k))} → {fmt_missing(after.get(k))}" for k in keys
             if before.get(k) != after.get(k)]
    return "; ".join(parts) or MISSING


def rows(entries: list[AuditEntry]) -> list[dict]:
    out = []
    for e in entries:
        model, versions = entry_subjects(e)
        gates = e.gates if isinstance(e.gates, list) else []
        out.append({
            "seq": e.seq, "time": fmt_ts(e.ts), "actor": e.actor, "action": e.action, "target": e.target,
            "result": e.result, "change": describe_change(e.before, e.after), "reason": fmt_missing(e.reason),
            "error": fmt_missing(e.error), "model": fmt_missing(model),
            "versions": ", ".join(sorted(versions, key=_version_key)) or MISSING,
            "gates": "; ".join(f"{_mark(g.get('passed'))}: {g.get('name')}" for g in gates if isinstance(g, dict))
            or MISSING,
            "details": describe_details(e.details), "hash": e.hash[:12],
        })
    return out


def _version_key(v: str):
    return (not v.isdigit(), int(v) if v.isdigit() else 0, v)


def filter_widgets(qp, *, actors: list[str], endpoints: list[str]) -> Filters:
    """The filter widgets, first filled from the URL query parameters ``qp``; returns what they say now."""
    dates, problems = dates_from_query(qp)
    for p in problems:
        st.warning(p, icon=":material/event_busy:")

    def pick(col, label, k, options, anything):
        opts = [""] + with_value(list(options), qp.get(k))
        idx = opts.index(qp.get(k)) if qp.get(k) in opts else 0
        return col.selectbox(label, opts, index=idx, key=KEYS[k], format_func=lambda x: x or anything)

    top = st.columns(5)
    start = top[0].date_input("From", value=dates["from"], key=KEYS["from"], format="YYYY-MM-DD")
    end = top[1].date_input("To (inclusive)", value=dates["to"], key=KEYS["to"], format="YYYY-MM-DD")
    endpoint = pick(top[2], "Endpoint", "endpoint", endpoints, "any endpoint")
    model = top[3].text_input("Model", value=qp.get("model", ""), key=KEYS["model"], placeholder="any model")
    version = top[4].text_input("Version", value=qp.get("version", ""), key=KEYS["version"],
                                placeholder="any version")
    low = st.columns(3)
    actor = pick(low[0], "Actor", "actor", actors, "anyone")
    action = pick(low[1], "Action", "action", ACTIONS, "any action")
    result = pick(low[2], "Result", "result", RESULTS, "any result")
    return Filters(actor=actor or "", action=action or "", result=result or "", endpoint=endpoint or "",
                   model=model or "", version=version or "", start=start, end=end)


# -- verifying the chain without re-reading all of it on every rerun ------------------------------------------
FULL_EVERY_S = 600  # a full check at most this long ago; in between, only what was appended since


@st.cache_resource(show_spinner=False)
def _verified(key: str) -> dict:  # noqa: ARG001 - the settings key selects the entry
    """Per process and configuration: the last OK result and when the chain was last checked in full."""
    return {"result": None, "full_at": 0.0}


def verify_chain(audit, key: str, *, full: bool = False):
    """Verify incrementally from the remembered prefix; in full on request, at first, or every
    ``FULL_EVERY_S`` (an incremental check trusts the prefix it verified before). Returns the result and
    whether this run read the whole chain."""
    import time

    memo = _verified(key)
    now = time.monotonic()
    whole = full or memo["result"] is None or now - memo["full_at"] > FULL_EVERY_S
    res = audit.verify() if whole else audit.verify(start=memo["result"])
    if res.ok:
        memo["result"] = res
        if whole:
            memo["full_at"] = now
    else:
        memo["result"] = None  # never continue from a broken chain
    return res, whole
