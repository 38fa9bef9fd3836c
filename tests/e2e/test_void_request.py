"""A request whose endpoint moved after it was filed is void everywhere: the approver sees it under "No
longer approvable" with Approve disabled and the reason, the Overview no longer counts it, and the CLI
lists it as void."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import act_as, assert_no_exception, cli, cli_many, endpoints, metric, open_app, shot, widget

pytestmark = pytest.mark.e2e
ENDPOINT = "diabetes-risk"


def test_a_request_made_void_by_a_change_cannot_be_approved(new_context, e2e_env):
    before = endpoints(e2e_env)[ENDPOINT]
    version = "3" if before["stable"] != "3" else "1"
    filed = cli(e2e_env, "request-promotion", "--endpoint", ENDPOINT, "--version", version, "--reason",
                "pipeline: offline eval passed (e2e)", "--as", "alice")
    rid = filed["outcome"]["request_id"]
    canary = next(v for v in ("1", "2", "3") if v not in (before["stable"], version))
    try:
        bob = new_context().new_page()
        open_app(bob, "/approvals", "Approvals")
        act_as(bob, "bob")
        expect(widget(bob, f"action-approve-{rid}")).to_be_enabled()
        # meanwhile an operator starts a canary on the endpoint: the request no longer applies
        cli(e2e_env, "set-canary", "--endpoint", ENDPOINT, "--version", canary, "--weight", "10", "--reason",
            "meanwhile (e2e)", "--as", "alice")
        widget(bob, "refresh").click()
        card = bob.locator(f".st-key-request-{rid}")
        expect(bob.locator('[data-testid="stMain"]')).to_contain_text("No longer approvable")
        expect(card).to_contain_text("Void")
        expect(card).to_contain_text(re.compile(r"canary (version|weight)"))
        expect(widget(bob, f"action-approve-{rid}")).to_be_disabled()
        assert_no_exception(bob)
        card.scroll_into_view_if_needed()
        shot(bob, "30-request-void")
        open_app(bob, "/", None)
        expect(metric(bob, "Pending approvals")).to_contain_text(
            str(len(cli(e2e_env, "requests", "--status", "pending"))))
        pending, void = cli_many(e2e_env, ("requests", "--status", "pending"), ("requests", "--status", "void"))
        assert rid not in [r["id"] for r in pending] and rid in [r["id"] for r in void]
    finally:
        if endpoints(e2e_env)[ENDPOINT]["canary"]:
            cli(e2e_env, "abort-canary", "--endpoint", ENDPOINT, "--reason", "e2e cleanup", "--as", "alice")
