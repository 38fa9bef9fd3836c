"""Signing in, in Chromium, against a real OpenID Connect provider (oidc-provider-mock from PyPI, in its own
process): the console (its own Streamlit server, MLOPS_AUTH_MODE=oidc, Streamlit's [auth] section in a
secrets file of its own) shows nothing but a login screen; people sign in through the provider's form with
their groups as claims; the sidebar says who they are; what they may do follows their groups (a viewer sees
every action disabled, the requester cannot approve their own request, an approver can); the CLI shows the
subjects the request and the audit trail recorded; signing out ends at the login screen again.

And the authenticating-proxy mode: the identity headers (sent by Chromium as a proxy would) are taken from a
trusted address only; without them, or from another address, a refusal page and nothing else."""

from __future__ import annotations

import asyncio
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from playwright.sync_api import expect

from tests.conftest import free_port, wait_for
from tests.e2e.conftest import EXPECT_TIMEOUT_MS
from tests.e2e.helpers import (
    ENDPOINT,
    ROOT,
    SCREENSHOTS,
    assert_no_exception,
    cli,
    confirm_dialog,
    endpoints,
    select_option,
    shot,
    wait_idle,
    widget,
)
from tests.oidc_provider import CLIENT_ID, WELL_KNOWN, oidc_provider
from tests.processes import stop_process
from tests.streamlit_ws import StreamlitSession

pytestmark = pytest.mark.e2e

ROLE_MAP = "ml-approvers=approver,ml-ops=operator+requester"
PEOPLE = {  # subject -> claims the provider puts in their ID token
    "00u-olga": {"name": "Olga Ops", "email": "olga@example.com", "groups": ["ml-ops"]},
    "00u-abby": {"name": "Abby Approver", "email": "abby@example.com", "groups": ["ml-approvers"]},
    "00u-vera": {"name": "Vera Viewer", "email": "vera@example.com", "groups": ["marketing"]},
}


@contextmanager
def _process(cmd: list[str], env: dict, log_path, ready, what: str):
    """A process of the test (its log kept), until ``ready()`` says it serves; terminated afterwards."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def up():
            assert proc.poll() is None, f"{what} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
            return ready()

        wait_for(what, up, timeout=90)
        yield proc
    finally:
        stop_process(proc)
        SCREENSHOTS.parent.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS.parent / f"{log_path.stem}.log").write_bytes(log_path.read_bytes())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextmanager
def streamlit(env: dict, log_path, *args: str, port: int | None = None):
    port = port or free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
           "--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--server.runOnSave", "false", *args]
    base = f"http://127.0.0.1:{port}"
    with _process(cmd, env, log_path, lambda: _answers(base + "/_stcore/health"), "streamlit"):
        yield base


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    """oidc-provider-mock in its own process (tests/oidc_provider.py); people are registered with their claims."""
    with oidc_provider(tmp_path_factory.mktemp("oidc-provider") / "oidc-provider.log") as p:
        for sub, claims in PEOPLE.items():
            p.add_user(sub, **claims)
        yield p.base


@pytest.fixture(scope="module")
def oidc_app(e2e_env, provider, tmp_path_factory):
    """The console in oidc mode over the seeded e2e store, with Streamlit's [auth] in a secrets file of its own."""
    d = tmp_path_factory.mktemp("oidc-app")
    port = free_port()
    secrets_file = d / "secrets.toml"
    secrets_file.write_text(f"""[auth]
redirect_uri = "http://127.0.0.1:{port}/oauth2callback"
cookie_secret = "{secrets.token_hex(32)}"
client_id = "{CLIENT_ID}"
client_secret = "e2e-client-secret"
server_metadata_url = "{provider}{WELL_KNOWN}"
""")
    env = {**e2e_env, "MLOPS_AUTH_MODE": "oidc", "MLOPS_OIDC_ROLE_MAP": ROLE_MAP, "MLOPS_OIDC_ISSUER": provider,
           "MLOPS_OIDC_AUDIENCE": CLIENT_ID}
    with streamlit(env, d / "streamlit-oidc.log", "--secrets.files", str(secrets_file), port=port) as base:
        yield base, env


@pytest.fixture
def contexts(request, browser):
    """A factory of fresh browser contexts (one person each) for ``base_url``; FAILED-*.png when the test fails."""
    made = []

    def make(base_url: str, **kw):
        ctx = browser.new_context(base_url=base_url, viewport={"width": 1440, "height": 1000}, **kw)
        ctx.set_default_timeout(EXPECT_TIMEOUT_MS)
        made.append(ctx)
        return ctx.new_page()

    yield make
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for n, pg in enumerate(pg for ctx in made for pg in ctx.pages):
            try:
                pg.screenshot(path=str(SCREENSHOTS / f"FAILED-{request.node.name}-{n}.png"), full_page=True)
            except Exception as exc:  # noqa: BLE001 - best effort, the test already failed
                print(f"could not screenshot page {n}: {exc}")
    for ctx in made:
        ctx.close()


def expect_login_screen(page) -> None:
    main = page.locator('[data-testid="stMain"]')
    expect(main.locator("h1").first).to_contain_text("MLOps Console")
    expect(page.locator(".st-key-sign-in button")).to_be_visible()
    wait_idle(page)
    expect(page.locator('[data-testid="stSidebar"]')).to_have_count(0)  # no navigation, no sidebar
    expect(main.locator('[data-testid="stDataFrame"], [data-testid="stMetric"]')).to_have_count(0)
    expect(main).not_to_contain_text(ENDPOINT)


def sign_in(page, sub: str, path: str = "/") -> None:
    """From the login screen through the provider's form as ``sub``, back into the console."""
    page.goto(path)
    expect_login_screen(page)
    page.locator(".st-key-sign-in button").click()
    page.wait_for_url(re.compile(r".*/oauth2/authorize\?.*"))
    page.get_by_placeholder("sub").fill(sub)
    page.get_by_role("button", name="Authorize").click()
    expect(page.locator(".st-key-signed-in")).to_contain_text(PEOPLE[sub]["name"])
    wait_idle(page)


def sidebar_text(page) -> str:
    return page.locator(".st-key-signed-in").inner_text()


def test_sign_in_roles_follow_groups_and_sign_out(oidc_app, contexts):
    base, env = oidc_app
    before = endpoints(env)[ENDPOINT]
    canary = before["canary"]

    vera = contexts(base)
    vera.goto(f"/deployments?endpoint={ENDPOINT}")
    expect_login_screen(vera)
    expect(vera.locator('[data-testid="stMain"]')).to_contain_text("You will be sent to 127.0.0.1:")
    shot(vera, "60-login-screen")
    sign_in(vera, "00u-vera")
    assert "viewer" in sidebar_text(vera) and "None of your groups has a console role" in sidebar_text(vera)
    vera.goto(f"/deployments?endpoint={ENDPOINT}")
    expect(widget(vera, "action-request")).to_be_disabled()
    for key in ("action-canary", "action-abort", "action-rollback"):
        expect(widget(vera, key)).to_be_disabled()
    assert_no_exception(vera)

    olga = contexts(base)
    sign_in(olga, "00u-olga", f"/deployments?endpoint={ENDPOINT}")
    text = sidebar_text(olga)
    assert "Olga Ops" in text and "olga@example.com" in text and "requester" in text and "operator" in text, text
    olga.goto(f"/deployments?endpoint={ENDPOINT}")
    expect(olga.locator('[data-testid="stMain"]')).to_contain_text("Acting as Olga Ops (requester, operator)")
    shot(olga, "61-signed-in-sidebar")
    select_option(olga, "promote-version", f"v{canary} (canary)")
    widget(olga, "action-request").click()
    confirm_dialog(olga, "e2e: signed-in request", "File request")
    filed = olga.locator('[data-testid="stAlert"]').filter(has_text=re.compile(r"request #\d+ filed"))
    expect(filed).to_be_visible()
    request_id = int(re.search(r"request #(\d+) filed", filed.inner_text()).group(1))
    olga.goto(f"/approvals?request={request_id}")
    expect(widget(olga, f"action-approve-{request_id}")).to_be_disabled()  # neither approver nor another person

    abby = contexts(base)
    sign_in(abby, "00u-abby")
    abby.goto(f"/approvals?request={request_id}")
    expect(widget(abby, f"action-approve-{request_id}")).to_be_enabled()
    widget(abby, f"action-reject-{request_id}").click()  # reject: the shared demo's endpoint stays as it is
    confirm_dialog(abby, "e2e: not now", "Reject")
    expect(abby.locator('[data-testid="stAlert"]').filter(has_text=re.compile(r"reject", re.I)).first).to_be_visible()
    assert_no_exception(abby)

    req = {r["id"]: r for r in cli(env, "requests", "--status", "rejected")}[request_id]
    assert req["requester"] == "00u-olga" and req["decided_by"] == "00u-abby", req
    entries = cli(env, "audit", "--actor", "00u-olga", "--action", "request_promotion")
    assert entries and entries[0]["details"]["actor_name"] == "Olga Ops", entries[:1]
    assert entries[0]["details"]["authenticated_by"] == "oidc"
    assert endpoints(env)[ENDPOINT] == before, "a rejected request changes nothing"

    abby.locator(".st-key-sign-out button").click()
    abby.get_by_role("button", name="End session").click()  # the provider's own sign-out confirmation
    expect_login_screen(abby)
    abby.goto("/approvals")
    expect_login_screen(abby)
    shot(abby, "62-signed-out")


class _ProxiedSession(StreamlitSession):
    """A websocket session as a proxy would open it: its headers, from a source address of our choosing."""

    def __init__(self, base_url: str, headers: dict, source: str):
        super().__init__(base_url)
        self.headers, self.source = headers, source

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        self._ws = await connect(self.url, subprotocols=["streamlit"], max_size=None, open_timeout=self.timeout,
                                 additional_headers=self.headers, local_addr=(self.source, 0))


def test_proxy_headers_count_only_from_the_trusted_proxy(e2e_env, tmp_path, contexts):
    env = {**e2e_env, "MLOPS_AUTH_MODE": "proxy", "MLOPS_OIDC_ROLE_MAP": ROLE_MAP,
           "MLOPS_TRUSTED_PROXIES": "127.0.0.1"}
    headers = {"X-Forwarded-User": "u-olga", "X-Forwarded-Email": "olga@example.com",
               "X-Forwarded-Groups": "ml-ops,staff", "X-Forwarded-Preferred-Username": "olga"}
    with streamlit(env, tmp_path / "streamlit-proxy.log") as base:
        proxied = contexts(base, extra_http_headers=headers)
        proxied.goto(f"/deployments?endpoint={ENDPOINT}")
        expect(proxied.locator(".st-key-signed-in")).to_contain_text("olga")
        text = sidebar_text(proxied)
        assert "requester" in text and "operator" in text and "Signed in through the authenticating proxy" in text
        expect(widget(proxied, "action-request")).to_be_enabled()
        shot(proxied, "63-proxy-signed-in")

        direct = contexts(base)  # the same address, without the proxy's headers
        direct.goto(f"/deployments?endpoint={ENDPOINT}")
        refusal = direct.locator('[data-testid="stAlert"]')
        expect(refusal).to_contain_text("no X-Forwarded-User header")
        wait_idle(direct)
        expect(direct.locator('[data-testid="stSidebar"]')).to_have_count(0)
        expect(direct.locator('[data-testid="stMain"]')).not_to_contain_text(ENDPOINT)

        async def from_elsewhere():
            async with _ProxiedSession(base, headers, "127.0.0.2") as s:
                return await s.open(f"/deployments?endpoint={ENDPOINT}")

        with ThreadPoolExecutor(1) as pool:  # Playwright's sync API runs an event loop in this thread
            run = pool.submit(asyncio.run, from_elsewhere()).result(timeout=120)
        assert "connections from 127.0.0.2 are not accepted" in run.texts(), run.texts()
        assert ENDPOINT not in run.texts() and not run.of("button"), run.texts()
