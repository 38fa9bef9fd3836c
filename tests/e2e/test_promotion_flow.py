"""A promotion through the browser by two people: alice requests, bob approves; the endpoint, the
registry's champion and the audit trail change, checked in the UI and through the CLI. A viewer
is refused. Identities are per browser session (one context per person)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import (
    CLASSIFIER,
    ENDPOINT,
    act_as,
    assert_no_exception,
    cli_many,
    confirm_dialog,
    dataframe,
    endpoints,
    grid_records,
    metric,
    open_app,
    select_option,
    shot,
    wait_idle,
    widget,
)

pytestmark = pytest.mark.e2e


def _acting_as(page, name: str) -> None:
    expect(page.locator('[data-testid="stMain"]')).to_contain_text(f"Acting as {name} (")


def _flash(page, pattern: str):
    alert = page.locator('[data-testid="stAlert"]').filter(has_text=re.compile(pattern))
    expect(alert).to_be_visible()
    return alert


def test_request_then_approve_promotes_the_canary(new_context, e2e_env):
    before = endpoints(e2e_env)[ENDPOINT]
    canary, old_stable = before["canary"], before["stable"]
    assert canary and before["canary_weight"] > 0, f"the demo should serve a canary on {ENDPOINT}: {before}"
    assert before["champion"] == old_stable != canary, before

    # alice, in her own browser session, asks for the canary to be promoted
    alice = new_context().new_page()
    open_app(alice, f"/deployments?endpoint={ENDPOINT}", "Deployments")
    act_as(alice, "alice")
    _acting_as(alice, "alice")
    expect(metric(alice, "Stable")).to_contain_text(f"v{old_stable}")
    expect(metric(alice, "Canary")).to_contain_text(f"v{canary}")
    select_option(alice, "promote-version", f"v{canary} (canary)")
    shot(alice, "20-deployments-before")
    widget(alice, "action-request").click()
    dialog = alice.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"Promote version on {ENDPOINT}")
    expect(dialog).to_contain_text(f"@champion: v{old_stable} → v{canary}")
    expect(dialog).to_contain_text("requires another person's approval")
    expect(dialog).to_contain_text("needs input columns that clients of")  # the demo's canary needs a new feature
    diff = {r["field"]: r for r in grid_records(dataframe(dialog, 0))}
    assert diff["stable_version"]["before"] == old_stable and diff["stable_version"]["after"] == canary, diff
    shot(alice, "21-request-dialog")
    confirm_dialog(alice, "canary has been healthy for a week (e2e)", "File request")
    expect(dialog).to_be_hidden()
    filed = _flash(alice, r"request #\d+ filed")
    request_id = int(re.search(r"request #(\d+) filed", filed.inner_text()).group(1))
    shot(alice, "22-request-filed")
    now, pending = cli_many(e2e_env, ("endpoints",), ("requests", "--status", "pending"))
    assert {e["name"]: e for e in now}[ENDPOINT] == before, "a request must not change the endpoint"
    assert [r["id"] for r in pending if r["requester"] == "alice"] == [request_id], pending

    # bob, in another browser session, approves it
    bob = new_context().new_page()
    open_app(bob, "/approvals", "Approvals")
    act_as(bob, "bob")
    card = bob.locator(f".st-key-request-{request_id}")
    expect(card).to_contain_text(f"#{request_id}")
    expect(card).to_contain_text(ENDPOINT)
    expect(card).to_contain_text("by alice")
    expect(card).to_contain_text("canary has been healthy for a week (e2e)")
    shot(bob, "23-approvals-pending")
    widget(bob, f"action-approve-{request_id}").click()
    dialog = bob.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Approve request #{request_id} by alice on {ENDPOINT}")
    shot(bob, "24-approve-dialog")
    confirm_dialog(bob, "evidence reviewed (e2e)", "Approve")
    expect(dialog).to_be_hidden()
    _flash(bob, rf"request #{request_id} approved and applied on {ENDPOINT}")
    expect(bob.locator('[data-testid="stMain"]')).to_contain_text("No pending requests.")
    assert_no_exception(bob)
    shot(bob, "25-approved")

    # the deployments page shows the new stable version and champion
    bob.get_by_role("link", name="Deployments", exact=True).click()  # in-app navigation keeps bob's session
    expect(bob.locator('[data-testid="stMain"] h1').first).to_have_text("Deployments")
    select_option(bob, "endpoint-picker", ENDPOINT)
    _acting_as(bob, "bob")
    expect(metric(bob, "Stable")).to_contain_text(f"v{canary}")
    expect(metric(bob, "Canary")).to_contain_text("none")
    expect(metric(bob, "Champion (registry)")).to_contain_text(f"v{canary}")
    assert_no_exception(bob)
    # the serving history names both people
    revisions = grid_records(dataframe(bob.locator('[data-testid="stMain"]'), 1))
    assert (revisions[0]["stable"], revisions[0]["by"], revisions[0]["approved by"]) == (
        f"v{canary}", "alice", "bob"), revisions[0]
    shot(bob, "26-deployments-after")

    # alice's session still shows what it read; Refresh data shows the change there too
    widget(alice, "refresh").click()
    expect(metric(alice, "Stable")).to_contain_text(f"v{canary}")
    expect(metric(alice, "Champion (registry)")).to_contain_text(f"v{canary}")

    # the audit trail has both steps
    bob.get_by_role("link", name="Audit trail", exact=True).click()
    expect(bob.locator('[data-testid="stMain"] h1').first).to_have_text("Audit trail")
    expect(bob.locator('[data-testid="stAlert"]').filter(has_text="Hash chain verified")).to_be_visible()
    entries = grid_records(dataframe(bob.locator('[data-testid="stMain"]')))
    mine = [e for e in entries if e["target"] == ENDPOINT and e["action"] in ("request_promotion", "approve")]
    assert [(e["action"], e["actor"], e["result"]) for e in mine[:2]] == [
        ("approve", "bob", "ok"), ("request_promotion", "alice", "requested")], entries
    assert f"stable_version: {old_stable} → {canary}" in mine[0]["change"], mine[0]
    assert f"champion: {old_stable} → {canary}" in mine[0]["change"], mine[0]
    shot(bob, "27-audit")

    # and the service layer agrees: the endpoint serves the canary at 100 %, @champion moved
    eps, models, trail, chain = cli_many(e2e_env, ("endpoints",), ("models",), ("audit", "--limit", "20"),
                                         ("verify-audit",))
    after = {e["name"]: e for e in eps}[ENDPOINT]
    assert (after["stable"], after["canary"], after["canary_weight"], after["champion"]) == (canary, None, 0, canary)
    assert after["resource_version"] != before["resource_version"]
    assert not after["warnings"], after
    model = next(m for m in models if m["name"] == CLASSIFIER)
    assert model["aliases"]["champion"] == canary, model
    steps = [(e["actor"], e["action"], e["result"], e["reason"]) for e in trail if e["target"] == ENDPOINT]
    assert ("alice", "request_promotion", "requested", "canary has been healthy for a week (e2e)") in steps, steps
    assert ("bob", "approve", "ok", "evidence reviewed (e2e)") in steps, steps
    assert chain["ok"] is True, chain


def test_viewer_sees_actions_disabled_and_nothing_changes(page, e2e_env):
    before = endpoints(e2e_env)[ENDPOINT]
    open_app(page, f"/deployments?endpoint={ENDPOINT}", "Deployments")
    _acting_as(page, "carol")  # a new session starts as the least-privileged identity
    keys = ["action-request", "action-canary", "action-rollback"] + (
        ["action-promote", "action-abort"] if before["canary"] else [])
    for key in keys:
        expect(widget(page, key)).to_be_disabled()
    expect(page.locator('[data-testid="stMain"]')).to_contain_text("carol may only look here")
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert_no_exception(page)
    shot(page, "28-viewer-disabled")
    eps = cli_many(e2e_env, ("endpoints",))[0]
    assert {e["name"]: e for e in eps}[ENDPOINT] == before, "a viewer's visit changes nothing"


def test_identity_is_per_browser_session_and_survives_a_reload(new_context):
    bob = new_context().new_page()
    open_app(bob, "/approvals", "Approvals")
    expect(bob.locator(".st-key-dev-identity input")).to_have_value(re.compile(r"^carol ·"))
    act_as(bob, "bob")
    other = new_context().new_page()
    open_app(other, "/approvals", "Approvals")
    expect(other.locator(".st-key-dev-identity input")).to_have_value(re.compile(r"^carol ·"))
    # in-app navigation keeps the session (and so the identity) ...
    bob.get_by_role("link", name="Deployments", exact=True).click()
    _acting_as(bob, "bob")
    # ... and a reload of the same browser session keeps it too, never silently someone else
    open_app(bob, f"/deployments?endpoint={ENDPOINT}", "Deployments")
    wait_idle(bob)
    _acting_as(bob, "bob")
    open_app(other, f"/deployments?endpoint={ENDPOINT}", "Deployments")
    _acting_as(other, "carol")
