"""The app with people signing in (MLOPS_AUTH_MODE oidc, proxy) as AppTest meets it: before sign-in nothing but
the login screen, on every page; signed in, the sidebar says who and with which roles, and the buttons follow
them; a sign-in that is too old, a person without a role, a refused proxy connection and development identities
on data that is not local each show only what is wrong. (The real provider, Chromium and the proxy's headers:
tests/e2e/test_login.py.)"""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from services.identity import Actor
from tests.conftest import ROOT
from tests.ui.conftest import APP, texts
from tests.ui.test_pages import no_exception

ROLE_MAP = "ml-approvers=approver,ml-ops=operator+requester"
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "c" * 40, "client_id": "console",
        "client_secret": "s", "server_metadata_url": "https://id.example/.well-known/openid-configuration"}
OLGA = {"sub": "olga-sub", "name": "Olga Ops", "email": "olga@example.com", "groups": ["ml-ops"]}
ABBY = {"sub": "abby-sub", "name": "Abby Approver", "email": "abby@example.com", "groups": ["ml-approvers"]}
VERA = {"sub": "vera-sub", "name": "Vera Viewer", "email": "vera@example.com", "groups": ["marketing"]}


@pytest.fixture
def signin(demo_env, monkeypatch):
    """Returns run(page, user=claims or None, secrets=[auth] or None, **query) in oidc mode."""
    for k, v in demo_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MLOPS_AUTH_MODE", "oidc")
    monkeypatch.setenv("MLOPS_OIDC_ROLE_MAP", ROLE_MAP)

    def run(page: str | None = None, user: dict | None = None, secrets: dict | None = AUTH, **query) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        if secrets:
            at.secrets["auth"] = secrets
        at.user = {"is_logged_in": True, "iat": int(time.time()), **user} if user else {"is_logged_in": False}
        for k, v in query.items():
            at.query_params[k] = v
        if page:
            at.switch_page(str(ROOT / "pages" / page))
        at.run()
        return at

    return run


def only_the_login_screen(at) -> None:
    no_exception(at)
    assert [t.value for t in at.title] == [":material/monitoring: MLOps Console"]
    assert [b.key for b in at.button] == ["sign-in"]
    assert not at.sidebar.children.get(0), "nothing in the sidebar"
    assert not at.dataframe and not at.metric and not at.selectbox, "no data before sign-in"


@pytest.mark.parametrize("page,query", [(None, {}), ("deployments.py", {"endpoint": "cancer-screening"}),
                                        ("audit.py", {}), ("approvals.py", {})])
def test_before_sign_in_every_page_is_the_login_screen(signin, page, query):
    at = signin(page, **query)
    only_the_login_screen(at)
    assert "You will be sent to id.example and back." in texts(at)
    assert "cancer-screening" not in texts(at) and "breast-cancer" not in texts(at)


def test_a_missing_auth_section_is_named_before_anyone_presses_sign_in(signin):
    at = signin(secrets={**AUTH, "client_secret": "", "redirect_uri": "http://localhost:8501/"})
    no_exception(at)
    shown = " ".join(str(e.value) for e in at.error)
    assert "[auth] client_secret is missing" in shown and "/oauth2callback" in shown
    assert not at.button, "no Sign in button that cannot work"


def test_signed_in_sidebar_shows_who_and_their_roles(signin):
    at = signin("deployments.py", user=OLGA, endpoint="cancer-screening")
    no_exception(at)
    side = " ".join(str(getattr(e, "value", "")) for e in at.sidebar.markdown) + " " + " ".join(
        str(c.value) for c in at.sidebar.caption)
    assert "Olga Ops" in side and "olga@example.com" in side
    assert ":blue-badge[requester] :blue-badge[operator]" in side
    assert at.sidebar.button(key="sign-out").label == "Sign out"
    assert not at.sidebar.selectbox, "no development identity picker"
    assert "Development mode" not in texts(at)
    assert "Acting as **Olga Ops** (requester, operator)" in texts(at)
    buttons = {b.key: b.disabled for b in at.button if (b.key or "").startswith("action-")}
    assert buttons["action-request"] is False and buttons["action-abort"] is False, buttons


def test_a_person_no_group_maps_is_a_viewer_whose_actions_are_disabled(signin):
    at = signin("deployments.py", user=VERA, endpoint="cancer-screening")
    no_exception(at)
    assert "None of your groups has a console role" in texts(at)
    actions = [b for b in at.button if (b.key or "").startswith("action-")]
    assert actions and all(b.disabled for b in actions), [(b.key, b.disabled) for b in actions]


def test_approve_follows_the_approvers_group_and_the_requester_cannot_approve(signin, private_demo):
    c = private_demo()
    olga = Actor("Olga Ops", ("requester", "operator"), authenticated_by="oidc", subject_id="olga-sub")
    filed = c.actions.execute(c.actions.plan(olga, "request_promotion", "diabetes-risk", version="3"), olga, "ui")
    key = f"action-approve-{filed.request_id}"
    assert c.approvals.get(filed.request_id).requester == "olga-sub", "the subject, not the name"
    abby = signin("approvals.py", user=ABBY)
    no_exception(abby)
    assert abby.button(key=key).disabled is False
    olga_sees = signin("approvals.py", user={**OLGA, "groups": ["ml-ops", "ml-approvers"]})
    assert olga_sees.button(key=key).disabled is True, "the requester may not approve, even as an approver"
    assert signin("approvals.py", user=VERA).button(key=key).disabled is True


def test_sign_out_returns_to_the_login_screen(signin):
    at = signin(user=ABBY)
    no_exception(at)
    assert at.sidebar.button(key="sign-out")
    at.sidebar.button(key="sign-out").click().run()
    only_the_login_screen(at.run())


def test_a_sign_in_older_than_the_session_hours_must_be_renewed(signin, monkeypatch):
    monkeypatch.setenv("MLOPS_OIDC_SESSION_HOURS", "2")
    at = signin(user={**ABBY, "iat": int(time.time()) - 3 * 3600})
    only_the_login_screen(at)
    assert "more than 2 h ago" in " ".join(str(i.value) for i in at.info)


def test_without_a_default_role_the_unmapped_see_only_why(signin, monkeypatch):
    monkeypatch.setenv("MLOPS_OIDC_DEFAULT_ROLE", "none")
    at = signin("models.py", user=VERA)
    no_exception(at)
    warning = " ".join(str(w.value) for w in at.warning)
    assert "none of their groups (`marketing`)" in warning and "`ml-approvers`, `ml-ops`" in warning
    assert not at.dataframe and [b.key for b in at.button] == ["sign-out"]


def test_proxy_mode_refuses_a_connection_it_cannot_place(demo_env, monkeypatch):
    for k, v in demo_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MLOPS_AUTH_MODE", "proxy")
    monkeypatch.setenv("MLOPS_OIDC_ROLE_MAP", ROLE_MAP)
    monkeypatch.setenv("MLOPS_TRUSTED_PROXIES", "10.0.0.0/8")
    at = AppTest.from_file(APP, default_timeout=120).run()
    no_exception(at)
    assert "Not signed in." in at.error[0].value and "cannot tell which address" in at.error[0].value
    assert not at.button and not at.dataframe and not at.sidebar.children.get(0)


def test_dev_identities_on_a_cluster_refuse_to_start(demo_env, monkeypatch):
    for k, v in demo_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MLOPS_ALLOW_DEV_AUTH", raising=False)
    monkeypatch.setenv("MLOPS_SERVING_BACKEND", "kserve")
    at = AppTest.from_file(APP, default_timeout=120).run()
    no_exception(at)
    assert "MLOPS_SERVING_BACKEND is kserve" in at.error[0].value and "MLOPS_ALLOW_DEV_AUTH=1" in at.error[0].value
    assert not at.button and not at.selectbox and not at.dataframe
