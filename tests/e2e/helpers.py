"""Helpers for the end-to-end tests: driving Streamlit widgets with Playwright, reading its
canvas-drawn tables, screenshots for humans, and the CLI for checking what really changed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

CLASSIFIER = "breast-cancer-classifier"
REGRESSOR = "diabetes-regressor"
ENDPOINT = "cancer-screening"
LIVE = '[data-testid="stElementContainer"]:not([data-stale="true"])'  # an element of the current run


def python() -> str:
    return str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable


def cli(env: dict[str, str], *args: str) -> object:
    """Run ``python -m services ARGS --json`` against the e2e store and return the parsed JSON."""
    proc = subprocess.run([python(), "-m", "services", *args, "--json"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"services {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def cli_many(env: dict[str, str], *commands: tuple[str, ...]) -> list[object]:
    """Run several ``python -m services ... --json`` at once (each pays ~3 s of imports); results in order."""
    procs = [subprocess.Popen([python(), "-m", "services", *args, "--json"], cwd=ROOT, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args in commands]
    out = []
    for args, proc in zip(commands, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"services {' '.join(args)} failed ({proc.returncode}):\n{stdout}\n{stderr}"
        out.append(json.loads(stdout))
    return out


def endpoints(env: dict[str, str]) -> dict[str, dict]:
    """``python -m services endpoints`` by endpoint name."""
    return {d["name"]: d for d in cli(env, "endpoints")}


# --------------------------------------------------------------------------- helpers for tests
#
# Streamlit specifics these helpers encode (Streamlit 1.67):
# * ``stApp`` carries ``data-test-script-state`` (initial / running / notRunning) and
#   ``data-test-connection-state``; "notRunning" alone is not proof the new content is there, so
#   tests always follow up with a content expectation (auto-waiting).
# * select boxes are react-aria comboboxes: click ``input[role=combobox]``, then ``[role=option]``.
# * ``st.dataframe`` draws on a canvas; its text is in a hidden, virtualised ARIA grid (only the
#   rows and columns in view), so assertions read ``[role=gridcell]`` text, never visibility.
#   Only dataframes with ``on_select`` are widgets and get the ``st-key-<key>`` class.
# * ``st.tabs`` renders only the selected panel; find it through the tab's ``aria-labelledby``.
# * during a rerun the previous run's elements stay in the DOM marked ``data-stale="true"`` until
#   the run ends, so one element can briefly appear twice; locators that must be unique skip those.


def wait_idle(page) -> None:
    """Wait until the session is connected and Streamlit is not running the script."""
    from playwright.sync_api import expect

    app = page.locator('[data-testid="stApp"]')
    expect(app).to_have_attribute("data-test-connection-state", "CONNECTED")
    expect(app).to_have_attribute("data-test-script-state", "notRunning")


def open_app(page, path: str, heading: str | re.Pattern | None = None) -> None:
    """Load a URL of the app (a full load is a NEW Streamlit session) and wait for its title (or, without
    ``heading``, for anything to render; tests then wait for what they look for)."""
    from playwright.sync_api import expect

    page.goto(path)
    if heading is None:
        expect(page.locator('[data-testid="stMain"] [data-testid="stElementContainer"]').first).to_be_visible()
    else:
        expect(page.locator('[data-testid="stMain"] h1').first).to_contain_text(heading)
    wait_idle(page)


def shot(page, name: str) -> Path:
    """Screenshot the whole app as it is now into test-artifacts/screenshots/NAME.png.

    The app scrolls inside its main container, so a "full page" screenshot would stop at the
    viewport: grow the viewport to the content's height for the shot, then restore it.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    wait_idle(page)
    path = SCREENSHOTS / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".png")
    size = page.viewport_size or {"width": 1440, "height": 1000}
    height = page.evaluate("""() => Math.max(document.documentElement.scrollHeight,
        ...[...document.querySelectorAll('[data-testid=stMain], [data-testid=stAppViewContainer], section')]
            .map(e => e.scrollHeight))""")
    tall = max(size["height"], min(int(height) + 40, 5000))
    try:
        if tall != size["height"]:
            page.set_viewport_size({"width": size["width"], "height": tall})
        page.screenshot(path=str(path), animations="disabled")
    finally:
        if tall != size["height"]:
            page.set_viewport_size(size)
    return path


def _open_combobox(page, combobox) -> None:
    """Open a react-aria combobox's list. Its popover closes when the page scrolls, so scroll first,
    and if a click did not open it (a scroll raced it), open it from the keyboard."""
    from playwright.sync_api import expect

    combobox.scroll_into_view_if_needed()
    combobox.click()
    if combobox.get_attribute("aria-expanded") != "true":
        combobox.press("ArrowDown")
    expect(combobox).to_have_attribute("aria-expanded", "true")


def select_option(page, key: str, option: str | re.Pattern) -> None:
    """Pick ``option`` (its visible text) in the st.selectbox with ``key=``."""
    from playwright.sync_api import expect

    wait_idle(page)
    _open_combobox(page, page.locator(f".st-key-{key} input[role='combobox']"))
    choice = page.get_by_role("option").filter(has_text=option)
    expect(choice).to_have_count(1)
    choice.click()
    expect(page.get_by_role("listbox")).to_have_count(0)
    expect(page.locator(f".st-key-{key} input[role='combobox']")).to_have_value(option)
    wait_idle(page)


def multiselect(page, key: str, options: list[str]) -> None:
    """Make the st.multiselect with ``key=`` hold exactly ``options`` (visible texts), in this order."""
    from playwright.sync_api import expect

    box = page.locator(f".st-key-{key}")
    tags = box.locator("[data-tag]")
    expect(box.locator("input[role='combobox']")).to_be_visible()  # rendered, tags included
    wait_idle(page)
    while tags.count():
        n = tags.count()
        wait_idle(page)
        box.locator("button[aria-label^='Remove ']").first.click()
        expect(tags).to_have_count(n - 1)
    for i, text in enumerate(options):
        wait_idle(page)
        _open_combobox(page, box.locator("input[role='combobox']"))
        page.get_by_role("option").filter(has_text=re.compile(rf"^{re.escape(text)}$")).click()
        expect(tags).to_have_count(i + 1)
        page.keyboard.press("Escape")
        expect(page.get_by_role("listbox")).to_have_count(0)
    expect(tags).to_have_text(options)
    wait_idle(page)


def act_as(page, name: str) -> None:
    """Switch the sidebar's development identity in this session and check that it took."""
    select_option(page, "dev-identity", re.compile(rf"^{re.escape(name)} ·"))


def open_tab(page, name: str):
    """Select the tab called ``name`` and return its panel."""
    from playwright.sync_api import expect

    tab = page.get_by_role("tab", name=name, exact=True)
    wait_idle(page)
    for attempt in range(3):  # on a loaded machine the first click can land before the tab list is live
        tab.click()
        try:
            expect(tab).to_have_attribute("aria-selected", "true", timeout=4000)
            break
        except AssertionError:
            if attempt == 2:
                raise
            wait_idle(page)
    panel = page.locator(f'[role="tabpanel"][aria-labelledby="{tab.get_attribute("id")}"]')
    expect(panel).to_be_visible()
    return panel


def grid_records(frame) -> list[dict[str, str]]:
    """The rows of an st.dataframe (``frame`` = a locator of its stDataFrame) as dicts, from its ARIA grid.

    Waits for the grid to have rows; only rows and columns the grid has in view are present.
    """
    from playwright.sync_api import expect

    expect(frame.locator('[role="gridcell"]').first).to_be_attached()
    return frame.locator('table[role="grid"]').first.evaluate("""t => {
        const names = {};
        t.querySelectorAll('[role=columnheader]').forEach(h => names[h.getAttribute('aria-colindex')] = h.textContent);
        return [...t.querySelectorAll('tbody [role=row]')].map(r => Object.fromEntries(
            [...r.querySelectorAll('[role=gridcell]')].map(c => [names[c.getAttribute('aria-colindex')] ?? '',
                                                                c.textContent])));
    }""")


def dataframe(scope, index: int = 0):
    """The ``index``-th st.dataframe inside ``scope`` (a page or locator), not counting stale ones."""
    return scope.locator(f'{LIVE} [data-testid="stDataFrame"]').nth(index)


def widget(page, key: str, inner: str = "button"):
    """The ``inner`` element of the widget with ``key=``, skipping a stale copy left from a rerun and the
    hidden copy Streamlit renders to measure a button that has ``help=``."""
    return page.locator(f'.st-key-{key}:not([data-stale="true"]) {inner}').filter(visible=True)


def metric(page, label: str):
    """The st.metric whose label is exactly ``label`` (not a stale copy from the previous run)."""
    return page.locator(f'{LIVE} [data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(rf"^{re.escape(label)}$")))


def confirm_dialog(page, reason: str, button: str | re.Pattern | None = None):
    """Fill the open confirmation dialog's reason and press its confirm button; return the dialog."""
    from playwright.sync_api import expect

    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    wait_idle(page)
    text = dialog.locator(".st-key-reason textarea")
    text.fill(reason)
    expect(text).to_have_value(reason)
    ack = dialog.locator(".st-key-ack-warnings")
    if ack.count():  # the plan has warnings: the person says they read them, then Confirm is enabled
        ack.locator("label").click()
        expect(ack.locator("input")).to_be_checked()
        wait_idle(page)
    confirm = dialog.locator(".st-key-confirm button").filter(visible=True)  # skip the hidden copy of help=
    expect(confirm).to_be_enabled()
    if button is not None:
        expect(confirm).to_have_text(button)
    confirm.click()
    return dialog


def assert_no_exception(page) -> None:
    from playwright.sync_api import expect

    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    expect(page.locator('[data-testid="stMain"]')).not_to_contain_text("Traceback")
