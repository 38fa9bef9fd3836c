"""End-to-end fixtures: a seeded demo, the real Streamlit app in a subprocess, and Chromium via Playwright.

* ``e2e_env`` (session): a temp data dir with the demo seeded once into it
  (``python -m services seed-demo``), and the environment the app and the CLI share.
* ``app_url`` (session): ``streamlit run dashboard/app.py`` on a free port, polled on
  ``/_stcore/health`` until it answers; terminated at the end of the session.
* ``browser`` (session) and ``new_context`` / ``page`` (per test): a fresh browser context per
  test, so every test starts a new Streamlit session (identity, widget state).

Helpers for the tests themselves (widgets, tables, screenshots into
``test-artifacts/screenshots/``, the CLI) are in :mod:`tests.e2e.helpers`.

The tests change the seeded demo (promotion, audit entries); they are written so the
order of test files does not matter, but they share one seeded store per session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import ROOT, SCREENSHOTS, python
from tests.processes import stop_process

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SEED_TIMEOUT = 240  # the seed itself takes well under a minute; leave room for a slow machine
START_TIMEOUT = 60
EXPECT_TIMEOUT_MS = 20_000  # the first render of a page reads the MLflow store; give it time

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def e2e_env(tmp_path_factory) -> dict[str, str]:
    """The environment for the app and the CLI, over a freshly seeded demo in a temp dir."""
    data_dir = tmp_path_factory.mktemp("e2e-data")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_TRACKING_URI", "KUBECONFIG"))}
    env.update({
        "MLOPS_DATA_DIR": str(data_dir),
        "MLFLOW_TRACKING_URI": f"sqlite:///{data_dir / 'mlflow.db'}",
        "MLOPS_DATABASE_URL": f"sqlite:///{data_dir / 'console.db'}",
        "MLOPS_SERVING_BACKEND": "local",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
        "GIT_PYTHON_REFRESH": "quiet",
        "PYTHONUNBUFFERED": "1",
    })
    try:
        proc = subprocess.run([python(), "-m", "services", "seed-demo"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=SEED_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"seed-demo did not finish within {SEED_TIMEOUT} s:\n{exc.stdout}\n{exc.stderr}")
    if proc.returncode != 0:
        pytest.fail(f"seed-demo failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return env


@pytest.fixture(scope="session")
def app_url(e2e_env, tmp_path_factory) -> Iterator[str]:
    port = _free_port()
    log_path = tmp_path_factory.mktemp("e2e-app") / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
           "--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--server.runOnSave", "false"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=e2e_env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-4000:]}")
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer /_stcore/health within {START_TIMEOUT} s:\n"
                            f"{log_path.read_text(errors='replace')[-4000:]}")
            time.sleep(0.2)  # polling interval of a bounded loop, not a wait for something to happen
        yield base
    finally:
        stop_process(proc)
        # keep the server log next to the screenshots: it is what explains a failed e2e run
        SCREENSHOTS.parent.mkdir(parents=True, exist_ok=True)
        try:
            (SCREENSHOTS.parent / "streamlit-e2e.log").write_bytes(log_path.read_bytes())
        except OSError:
            pass


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (CI must install Debian's chromium)")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def new_context(request, browser, app_url):
    """A factory for fresh browser contexts (one Streamlit session each); closed after the test.

    When the test fails, every page it opened is saved as FAILED-<test>-<n>.png first."""
    contexts = []

    def make():
        ctx = browser.new_context(base_url=app_url, viewport={"width": 1440, "height": 1000})
        ctx.set_default_timeout(EXPECT_TIMEOUT_MS)
        contexts.append(ctx)
        return ctx

    yield make
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        pages = [pg for ctx in contexts for pg in ctx.pages]
        for n, pg in enumerate(pages):
            try:
                pg.screenshot(path=str(SCREENSHOTS / f"FAILED-{request.node.name}-{n}.png"), full_page=True)
            except Exception as exc:  # noqa: BLE001 - best effort, the test already failed
                print(f"could not screenshot page {n}: {exc}")
    for ctx in contexts:
        ctx.close()


@pytest.fixture
def page(new_context):
    return new_context().new_page()
