"""The guarded actions as a person meets them: roles on the buttons, inputs that follow the state, warnings
that must be read, gates that block, requests that are void everywhere. Each test works on its own copy of
the seeded demo (the registry and console databases), so none sees another's changes."""

from __future__ import annotations

import pytest

from tests.ui.conftest import texts
from tests.ui.test_pages import no_exception

CANCER, DIABETES = "cancer-screening", "diabetes-risk"


@pytest.fixture
def demo(app, private_demo):
    """``app`` over a private copy of the demo; ``demo.container()`` reaches the same databases."""
    app.container = private_demo
    return app


def ack(at) -> None:
    """Tick the dialog's "I have read the warnings" box when the plan has warnings."""
    for box in at.checkbox:
        if box.key == "ack-warnings":
            box.check().run()


def frame(at, column: str):
    """The (first) table that has ``column``."""
    for df in at.dataframe:
        value = df.value.data if hasattr(df.value, "data") else df.value  # a Styler for styled tables
        if column in value.columns:
            return value
    raise AssertionError(f"no table with a {column!r} column")


def metrics(at) -> dict:
    return {m.label: m.value for m in at.metric}


def test_inputs_start_afresh_after_every_change(demo):
    at = demo("deployments.py", endpoint=DIABETES, identity="alice")
    at.selectbox(key="canary-version").set_value("3")
    at.number_input(key="canary-weight").set_value(25)
    at.button(key="action-canary").click().run()
    at.text_area(key="reason").input("try v3")
    ack(at)
    at.button(key="confirm").click().run()
    no_exception(at)
    assert metrics(at)["Canary"] == "v3"
    assert at.number_input(key="canary-weight").value == 25, "the running canary's weight"
    at.button(key="action-abort").click().run()
    at.text_area(key="reason").input("enough")
    ack(at)
    at.button(key="confirm").click().run()
    no_exception(at)
    assert metrics(at)["Canary"] == "none"
    assert at.number_input(key="canary-weight").value == 10, "not the aborted canary's 25"
    stable = metrics(at)["Stable"].lstrip("v")
    assert stable not in at.selectbox(key="rollback-version").options, "never the current stable"


def test_rollback_offers_only_versions_that_were_stable_here(demo):
    c = demo.container()
    alice, bob = c.directory.get("alice"), c.directory.get("bob")
    out = c.actions.execute(c.actions.plan(alice, "request_promotion", CANCER, version="4"), alice, "v4 wins")
    c.actions.approve(bob, out.request_id, "ok")
    at = demo("deployments.py", endpoint=CANCER, identity="alice")
    no_exception(at)
    box = at.selectbox(key="rollback-version")
    assert box.options == ["v2 (just before)"] and box.value == "2"
    # the serving history names both people of the promotion
    revisions = frame(at, "approved by")
    assert {"by": "alice", "approved by": "bob"}.items() <= revisions.iloc[0].to_dict().items()


def test_requester_cannot_see_an_active_approve_on_their_own_request(demo):
    c = demo.container()
    alice = c.directory.get("alice")
    out = c.actions.execute(c.actions.plan(alice, "request_promotion", DIABETES, version="3"), alice, "mine")
    at = demo("approvals.py", identity="alice")
    no_exception(at)
    approve = at.button(key=f"action-approve-{out.request_id}")
    assert approve.disabled and "another approver" in approve.help
    at = demo("approvals.py", identity="bob")
    assert not at.button(key=f"action-approve-{out.request_id}").disabled
    at = demo("approvals.py", identity="carol")
    assert at.button(key=f"action-approve-{out.request_id}").disabled, "a viewer may not approve"


def test_a_request_that_can_no_longer_apply_is_void_on_every_page(demo):
    c = demo.container()
    alice = c.directory.get("alice")
    out = c.actions.execute(c.actions.plan(alice, "request_promotion", CANCER, version="4"), alice, "promote v4")
    at = demo(identity="bob")
    assert metrics(at)["Pending approvals"] == "1"
    c.actions.execute(c.actions.plan(alice, "set_canary_weight", CANCER, weight=40), alice, "meanwhile")
    at = demo(identity="bob")
    no_exception(at)
    assert metrics(at)["Pending approvals"] == "0"
    at = demo("approvals.py", identity="bob")
    no_exception(at)
    approve = at.button(key=f"action-approve-{out.request_id}")
    assert approve.disabled and "is void" in approve.help
    assert "No longer approvable" in texts(at) and "canary weight 20 → 40" in texts(at)
    at = demo("deployments.py", endpoint=CANCER, identity="bob")
    assert f"Request [#{out.request_id}]" not in texts(at), "a void request is not shown as pending"


def test_filing_a_request_links_to_it_and_the_endpoint_shows_it(demo):
    at = demo("deployments.py", endpoint=CANCER, identity="alice")
    at.button(key="action-request").click().run()  # v4, the canary, is preselected
    at.text_area(key="reason").input("v4 is better")
    at.checkbox(key="ack-warnings").check().run()
    at.button(key="confirm").click().run()
    no_exception(at)
    rid = demo.container().actions.requests(status="pending")[0]["id"]
    assert f"[open request #{rid}](/approvals?request={rid})" in texts(at)
    assert f"Request [#{rid}](/approvals?status=pending&request={rid}) by **alice** waits" in texts(at)
    at = demo("approvals.py", identity="bob", request=str(rid))
    assert f"Request #{rid}" in texts(at) and not at.button(key=f"action-approve-{rid}").disabled


def test_failing_gates_block_filing_for_a_non_admin_and_are_coloured(demo):
    at = demo("deployments.py", endpoint=CANCER, identity="alice")
    at.selectbox(key="promote-version").set_value("3")  # the decision tree fails the accuracy gate
    at.button(key="action-request").click().run()
    no_exception(at)
    df = frame(at, "threshold")
    assert "FAIL" in set(df["result"]) and {"candidate", "champion", "threshold"} <= set(df.columns)
    confirm = at.button(key="confirm")
    assert confirm.disabled and "only an admin" in confirm.help
    assert "ENDS the running canary v4" in texts(at), "promoting another version ends the canary: said first"


def test_a_warning_must_be_acknowledged_before_confirming(demo):
    at = demo("deployments.py", endpoint=CANCER, identity="alice")
    at.selectbox(key="promote-version").set_value("1")
    at.button(key="action-request").click().run()
    assert "ENDS the running canary v4 (20% of the traffic)" in texts(at)
    at.text_area(key="reason").input("back to v1")
    assert at.button(key="confirm").disabled
    at.checkbox(key="ack-warnings").check().run()
    assert not at.button(key="confirm").disabled


def test_a_running_canary_that_lacks_client_inputs_is_shown(demo):
    at = demo("deployments.py", endpoint=CANCER, identity="carol")
    no_exception(at)
    shown = texts(at)
    assert "Canary input mismatch" in shown and "worst to mean radius ratio" in shown
