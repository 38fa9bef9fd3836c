"""Needs repair as a person meets it: an approval whose process died between the endpoint write and the alias
move (a real child process, ``os._exit(137)``) shows on the Deployments page (with the exact difference and the
Repair button, disabled for a viewer), the endpoints table, the Approvals page and the Overview; the repair's
dry run in the dialog says what happened and what confirming does; confirming repairs it everywhere."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from tests.integration.crash_worker import KILLED
from tests.ui.conftest import texts
from tests.ui.test_guarded_actions import frame, metrics
from tests.ui.test_pages import no_exception

CANCER = "cancer-screening"
LINE = f"endpoint {CANCER} serves v4 as stable, registry champion is v2"


@pytest.fixture
def demo(app, private_demo):
    """``app`` over a private copy of the demo; ``demo.container()`` reaches the same databases."""
    app.container = private_demo
    return app


def _approve(env, rid):
    from tests.integration.crash_worker import approve_in

    approve_in(env, rid)


def crashed_promotion(demo) -> tuple:
    """alice asks v4 (the running canary) to be promoted; bob's approval dies after the endpoint write."""
    c = demo.container()
    alice = c.directory.get("alice")
    rid = c.actions.execute(c.actions.plan(alice, "request_promotion", CANCER, version="4"), alice, "v4").request_id
    env = {"MLOPS_DATA_DIR": str(c.settings.data_dir), "MLFLOW_TRACKING_URI": c.settings.mlflow_tracking_uri,
           "MLOPS_DATABASE_URL": c.settings.database_url}
    p = mp.get_context("spawn").Process(target=_approve, args=(env, rid))
    p.start()
    p.join(timeout=120)
    assert p.exitcode == KILLED
    return c, rid


def test_an_endpoint_that_needs_repair_is_shown_everywhere_and_repaired_from_the_page(demo):
    c, rid = crashed_promotion(demo)
    at = demo("deployments.py", endpoint=CANCER, identity="carol")
    no_exception(at)
    shown = texts(at)
    assert f"**Needs repair** — {LINE}" in shown
    assert f"request #{rid} (promote version v4, requested by alice) applying since" in shown
    assert "the champion was NOT moved (still v2, should be v4)" in shown
    assert (metrics(at)["Stable"], metrics(at)["Champion (registry)"]) == ("v4", "v2")
    assert at.button(key="action-repair").disabled and "may not repair" in at.button(key="action-repair").help
    registry = frame(at, "Registry").set_index("Endpoint")["Registry"]
    assert registry[CANCER] == f"NEEDS REPAIR: request #{rid} stopped half-way"
    assert "the registry's champion of breast-cancer-classifier is v2" not in shown, "said once, in the repair box"

    at = demo("approvals.py", identity="bob")
    no_exception(at)
    assert "Needs repair: a request left applying" in texts(at) and LINE in texts(at)
    at = demo("approvals.py", identity="bob", status="applying")
    listed = frame(at, "decision reason")
    assert list(listed["id"]) == [rid] and list(listed["status"]) == ["applying"]
    at = demo(identity="bob")
    no_exception(at)
    assert "Needs repair" in texts(at) and LINE in texts(at)

    at = demo("deployments.py", endpoint=CANCER, identity="alice")
    at.button(key="action-repair").click().run()
    no_exception(at)
    shown = texts(at)
    assert "What happened" in shown and "Confirming will" in shown
    assert "**Endpoint** — not changed (traffic v4: 100%)" in shown
    assert "move breast-cancer-classifier@champion from v2 to v4" in shown
    at.text_area(key="reason").input("bob's approval process died")
    at.button(key="confirm").click().run()
    no_exception(at)
    assert f"{CANCER} repaired: moved breast-cancer-classifier@champion from v2 to v4" in texts(at)
    assert "Needs repair" not in texts(at) and metrics(at)["Champion (registry)"] == "v4"
    assert c.approvals.get(rid).status == "approved" and c.actions.requests(status="applying") == []
    entry = c.audit.entries(limit=1)[0]
    assert (entry.actor, entry.action, entry.result) == ("alice", "repair", "ok") and c.audit.verify().ok
