"""The Audit page: filters restored from and written to the URL, readable details and times, "—" for gaps."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tests.ui.conftest import texts

CLS = "breast-cancer-classifier"
EP = "cancer-screening"
PLAN = "1a2b3c4d5e6f7a8b9c0d"


def _state(stable, canary=None, champion=None):
    return {"stable_version": stable, "canary_version": canary, "canary_weight": 20 if canary else 0,
            "champion": champion, "resource_version": "9"}


@pytest.fixture
def audit_app(app, demo_env, monkeypatch, tmp_path):
    """The seeded demo with its own console database holding five known entries (seq 1..5)."""
    from services.composition import build
    from services.settings import Settings

    env = {**demo_env, "MLOPS_DATABASE_URL": f"sqlite:///{tmp_path / 'console.db'}"}
    monkeypatch.setenv("MLOPS_DATABASE_URL", env["MLOPS_DATABASE_URL"])
    when = iter([datetime(2026, 10, 30, 10, 0, tzinfo=UTC), datetime(2026, 11, 2, 9, 15, 7, tzinfo=UTC),
                 datetime(2026, 11, 3, 8, 0, tzinfo=UTC), datetime(2026, 11, 4, 16, 45, tzinfo=UTC),
                 datetime(2026, 11, 5, 7, 30, tzinfo=UTC)])
    c = build(Settings.from_env(env, secrets_path=tmp_path / "none.toml"), clock=lambda: next(when))
    a = c.audit
    a.append(actor="alice", action="request_promotion", target=EP, result="requested", reason="eval passed",
             before=_state("2", "4", "2"), after=_state("4", None, "4"),
             details={"request_id": 3, "plan_hash": PLAN, "model": CLS, "versions": ["2", "4"]})
    # an older entry: no model/versions in details, versions derived from before/after
    a.append(actor="bob", action="approve", target=EP, result="ok", reason="evidence reviewed",
             before=_state("2", "4", "2"), after=_state("4", None, "4"),
             details={"request_id": 3, "requester": "alice", "plan_hash": PLAN, "request_action": "request_promotion"})
    a.append(actor="bob", action="approve", target="diabetes-risk", result="ok", reason="ok",
             details={"model": "diabetes-regressor", "versions": ["3"], "request_id": 4})
    a.append(actor="bob", action="reject", target=EP, result="ok", reason="not now",
             details={"request_id": 5, "requester": "alice"})
    a.append(actor="carol", action="abort_canary", target=EP, result="refused",
             error="permission_denied: policy: carol (viewer) may not abort canary",
             details={"params": {}, "stage": "plan"})
    c.engine.dispose()
    return app


def shown(at) -> list[int]:
    if not at.dataframe:
        return []
    return [int(s) for s in at.dataframe[0].value["seq"]]


def url(at) -> dict[str, str]:
    """The page's query parameters (AppTest holds a value or a list of values)."""
    return {k: v[-1] if isinstance(v, list) else v for k, v in at.query_params.items()}


def no_errors(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_filters_come_from_the_url(audit_app):
    at = audit_app("audit.py", actor="bob", action="approve", endpoint=EP, **{"from": "2026-11-01"})
    no_errors(at)
    assert "Hash chain verified: 5 entries" in texts(at)
    assert (at.selectbox(key="audit-actor").value, at.selectbox(key="audit-action").value,
            at.selectbox(key="audit-target").value) == ("bob", "approve", EP)
    assert at.date_input(key="audit-from").value == date(2026, 11, 1)
    assert at.date_input(key="audit-to").value is None
    assert shown(at) == [2]
    row = at.dataframe[0].value.iloc[0]
    assert row["time"] == "2026-11-02 09:15:07 UTC"
    assert row["details"] == "request #3 · requester alice · for request_promotion · plan 1a2b3c4d…"
    assert row["change"] == "stable_version: 2 → 4; canary_version: 4 → —; canary_weight: 20 → 0; champion: 2 → 4"
    assert (row["model"], row["versions"], row["error"], row["gates"]) == ("—", "2, 4", "—", "—")
    assert at.get_by_key("audit-json-download").label == "Download JSON (full entries)"
    # the URL keeps exactly the filters
    assert url(at) == {"actor": "bob", "action": "approve", "endpoint": EP, "from": "2026-11-01"}


@pytest.mark.parametrize("query,seqs", [
    ({}, [5, 4, 3, 2, 1]),
    ({"model": CLS}, [1]),  # entry 2 has no model: unknown does not match
    ({"version": "4"}, [2, 1]),
    ({"version": "3", "to": "2026-11-03"}, [3]),  # "to" includes its whole day
    ({"from": "2026-11-02", "to": "2026-11-03"}, [3, 2]),
    ({"endpoint": "diabetes-risk", "result": "ok"}, [3]),
    ({"result": "refused"}, [5]),
])
def test_model_version_and_time_filters(audit_app, query, seqs):
    at = audit_app("audit.py", **query)
    no_errors(at)
    assert shown(at) == seqs


def test_missing_values_and_readable_details(audit_app):
    at = audit_app("audit.py", actor="carol")
    no_errors(at)
    row = at.dataframe[0].value.iloc[0]
    assert (row["time"], row["reason"], row["change"], row["details"], row["versions"]) == (
        "2026-11-05 07:30:00 UTC", "—", "—", "stage plan", "—")
    assert row["error"].startswith("permission_denied")
    assert "None" not in set(at.dataframe[0].value.astype(str).iloc[0]) - {row["change"]}


def test_changing_filters_writes_the_url(audit_app):
    at = audit_app("audit.py", actor="bob")
    assert shown(at) == [4, 3, 2]
    at.date_input(key="audit-to").set_value(date(2026, 11, 3))
    at.text_input(key="audit-version").input("3")
    at.selectbox(key="audit-actor").set_value("")
    at.run()
    no_errors(at)
    assert shown(at) == [3]
    assert url(at) == {"to": "2026-11-03", "version": "3"}


def test_a_bad_date_in_the_url_is_named_and_ignored(audit_app):
    at = audit_app("audit.py", **{"from": "yesterday", "actor": "alice"})
    no_errors(at)
    assert any("from=yesterday" in w.value and "not a date" in w.value for w in at.warning)
    assert shown(at) == [1]
    assert url(at) == {"actor": "alice"}


def test_nothing_matches(audit_app):
    at = audit_app("audit.py", endpoint="no-such-endpoint")
    no_errors(at)
    assert shown(at) == [] and "No audit entry matches. Clear a filter to see more." in texts(at)
    assert at.selectbox(key="audit-target").value == "no-such-endpoint"
