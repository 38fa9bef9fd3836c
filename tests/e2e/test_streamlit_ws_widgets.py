"""Widgets over Streamlit's own protocol (:mod:`tests.streamlit_ws`), against the real app: what the load bench
(``bench/load.py``) does to the console, checked.

Two sessions act on the same endpoint at once, the way two people would in two browsers: a new session is the
viewer ``carol`` and cannot click the action (the button is disabled, the client refuses like a browser); both
switch the sidebar identity to ``alice``, change the canary weight, open the dry run (the confirmation dialog, a
fragment: its reruns keep the rest of the page), tick the warning and give a reason. The first Confirm applies;
the second is refused as a conflict shown as a clear message in the dialog ("Changed meanwhile"), never as an
exception, and "Re-read and close" closes it. A dry run can also be dismissed. A time-range change on Monitoring
rewrites the URL's query string.

The endpoint is this test's own (``ws-widgets``), so the demo's endpoints that other tests read are untouched.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.streamlit_ws import StreamlitProtocolError, StreamlitSession

pytestmark = pytest.mark.e2e

ENDPOINT = "ws-widgets"
MODEL = "breast-cancer-classifier"
TIMEOUT = 120


@pytest.fixture(scope="module")
def container(e2e_env):
    from services.composition import build
    from services.settings import Settings

    c = build(Settings.from_env(e2e_env))
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "2", canary_version="4", canary_weight=20)
    yield c
    c.engine.dispose()


def _run(coro):
    # Its own thread: Playwright's sync API (other e2e tests' browser) keeps an event loop in the main thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _dry_run(s: StreamlitSession, weight: int):
    await s.set("canary-weight", weight)
    run = await s.click("action-canary")
    assert run.problems == [], run.problems
    assert run.open_dialog is not None and run.open_dialog.title == "Confirm", run.texts()
    dialog_widgets = {k: w for k, w in run.widgets.items() if k in ("reason", "confirm", "ack-warnings")}
    assert set(dialog_widgets) == {"reason", "confirm", "ack-warnings"}, sorted(run.widgets)
    assert all(w.fragment_id for w in dialog_widgets.values()), "the dialog's widgets belong to its fragment"
    assert run.widgets["confirm"].disabled, "Confirm waits for the warning to be ticked"
    return run


async def _tick_and_reason(s: StreamlitSession, reason: str) -> None:
    run = await s.set("ack-warnings", True)
    assert run.status == "FINISHED_FRAGMENT_RUN_SUCCESSFULLY", run.status
    assert "Deployments" in run.headings, "a fragment's rerun keeps the rest of the page"
    assert not s.widget("confirm").disabled
    await s.set("reason", reason)
    assert s.value("reason") == reason


async def _two_people_confirm(url: str) -> dict:
    path = f"/deployments?endpoint={ENDPOINT}"
    async with StreamlitSession(url, timeout=TIMEOUT) as a, StreamlitSession(url, timeout=TIMEOUT) as b:
        out = {}
        for s in (a, b):
            run = await s.open(path)
            assert run.problems == [], run.problems
            assert str(s.value("dev-identity")).startswith("carol"), "a new session is the viewer"
        with pytest.raises(StreamlitProtocolError, match="disabled"):
            await a.click("action-canary")
        for s in (a, b):
            await s.set("dev-identity", "alice")
            assert str(s.value("dev-identity")).startswith("alice")
            assert not s.widget("action-canary").disabled
        await _dry_run(a, 30)
        await _dry_run(b, 40)  # both planned on the same state
        await _tick_and_reason(a, "ws test: a")
        await _tick_and_reason(b, "ws test: b")
        won = await a.click("confirm")
        out["won"] = (won.open_dialog, won.of("alert"), won.exceptions, won.reruns)
        lost = await b.click("confirm")
        out["lost"] = (lost.open_dialog, lost.error_alerts, lost.exceptions, lost.texts())
        closed = await b.click("reread")
        out["closed"] = (closed.open_dialog, closed.problems)
        # a dry run dismissed changes nothing
        await _dry_run(a, 20)
        dismissed = await a.dismiss()
        out["dismissed"] = (dismissed.open_dialog, dismissed.problems)
        return out


def test_two_sessions_act_at_once_one_applies_the_other_sees_a_conflict(app_url, container):
    out = _run(_two_people_confirm(app_url))

    dialog, alerts, exceptions, reruns = out["won"]
    assert dialog is None and exceptions == [] and reruns == 1, out["won"]
    assert any(e.detail == "SUCCESS" and f"Set canary weight on {ENDPOINT}: done" in e.text for e in alerts), alerts
    dialog, errors, exceptions, texts = out["lost"]
    assert dialog is not None and exceptions == [], texts
    assert len(errors) == 1 and errors[0].startswith("**Changed meanwhile**") and ENDPOINT in errors[0], errors
    assert "Nothing was changed" in texts
    assert out["closed"] == (None, []), out["closed"]
    assert out["dismissed"] == (None, []), out["dismissed"]
    ep = container.serving.get_endpoint(ENDPOINT)
    assert ep.canary_weight == 30, "the first confirmation applied, the second and the dismissed one did not"
    entries = [e for e in container.audit.entries(limit=20) if e.target == ENDPOINT]
    assert sorted(e.result for e in entries) == ["conflict", "ok"], [(e.actor, e.result) for e in entries]


async def _time_range(url: str) -> list[tuple[str, str, list[str]]]:
    async with StreamlitSession(url, timeout=TIMEOUT) as s:
        run = await s.open("/monitoring?endpoint=diabetes-risk&from=-1h&to=now")
        steps = [("open", run.query_string, run.problems)]
        assert s.widget("mon-range").options[:5] == ["15 minutes", "1 hour", "6 hours", "24 hours", "7 days"]
        assert s.value("mon-range") == ["1 hour"]
        run = await s.set("mon-range", "24 hours")
        steps.append(("24 hours", run.query_string, run.problems))
        assert s.value("mon-range") == ["24 hours"]
        return steps


def test_a_time_range_change_reruns_the_page_and_rewrites_the_url(app_url):
    (_, first, p1), (_, second, p2) = _run(_time_range(app_url))
    assert p1 == [] and p2 == [], (p1, p2)
    assert "from=-1h" in first and "from=-24h" in second and "to=now" in second, (first, second)
