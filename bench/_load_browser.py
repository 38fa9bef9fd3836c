"""The one real Chromium session of ``bench/load.py``: it measures page-ready while the protocol clients load the
console.

Per view, two ways a person gets to a page:

- **open**: a new tab on the view's URL (a shared link, a bookmark, a reload) — a new page load and a new
  Streamlit session; in the one browser session (its HTTP cache kept) or, with ``fresh``, in a fresh context (a
  first visit: nothing cached). The browser loads and evaluates the frontend's code for the page again, Plotly's
  4.7 MB chunk included on a chart page (~1 s of its main thread on this machine).
- **switch**: in the person's one tab, a click on the page in the sidebar — the same Streamlit session and page
  load, a new script run (the session keeps the endpoint and window the person chose).

Ready is the same for both (``pages_browser.CONSOLE_READY``): the last script run finished, the title and the
view's content visible, nothing spinning, watched 1 s more for a rerun.
"""

from __future__ import annotations

import asyncio
import math
import threading
from concurrent.futures import ThreadPoolExecutor

from _load_sessions import ACT_ENDPOINT, MODEL
from pages_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CONSOLE_READY,
    STATE_WATCH,
    VIEWPORT,
    View,
    _wait,
    load_console,
    settled,
)

TABLE = '[data-testid="stMain"] [data-testid="stDataFrame"]'
CHART = '[data-testid="stMain"] [data-testid="stPlotlyChart"]'
BROWSER_VIEWS = [
    View("overview", "/", "MLOps Console", TABLE),
    View("model", f"/models?model={MODEL}", MODEL, TABLE),
    View("deployments", f"/deployments?endpoint={ACT_ENDPOINT}", "Deployments", '[data-testid="stMain"] '
         '[data-testid="stMetric"]'),
    View("monitoring", f"/monitoring?endpoint={ACT_ENDPOINT}&from=-1h&to=now", "Monitoring", CHART),
    View("incidents", f"/incidents?endpoint={ACT_ENDPOINT}&from=-24h&to=now", "Incidents", CHART),
    View("drift", f"/drift?endpoint={ACT_ENDPOINT}&from=-7d&to=now", "Drift", TABLE),
    View("audit", "/audit", "Audit trail", TABLE),
]
# view -> the sidebar entry a person clicks to switch to it (Models shows the list of models: its title)
NAV_LABELS = {"overview": "Overview", "model": "Models", "deployments": "Deployments", "monitoring": "Monitoring",
              "incidents": "Incidents", "drift": "Drift", "audit": "Audit trail"}
SWITCH_TITLES = {"model": "Models"}
SETTLE_S = 1.0


def switch_console(page, view: View) -> tuple[float, float, float]:
    """Click ``view``'s page in the sidebar of ``page`` (a console tab that is ready); (ready, boot, script) in ms
    from the click: boot is the click to the run's start. Consecutive views have other titles, so the new title
    shown (with the run finished and the content visible) is the switch done. A quick run can start and finish
    within one frame of the browser, with no "running" state ever drawn: then boot and script are NaN."""
    page.evaluate("window.__benchStates = []")
    t0 = page.evaluate("performance.now()")
    page.locator('[data-testid="stSidebarNav"] a', has_text=NAV_LABELS[view.key]).first.click()
    title = SWITCH_TITLES.get(view.key, view.title)
    ready, states = settled(page, [title, view.content], f"switch to {view.key}", SETTLE_S)
    ends = [t for t, s in states if s == "notRunning"]
    runs = [t for t, s in states if s == "running"]
    if not runs:
        return max([ready, *ends]) - t0, math.nan, math.nan
    return max([ready, *ends]) - t0, min(runs) - t0, max(ends, default=ready) - min(runs)


class Browser:
    """One Chromium on its own thread (Playwright's sync API stays on the thread that started it): per view an
    open (a new tab) and a switch (the person's tab). Samples: (phase, view, ms, error, boot ms, script ms, how)
    with ``how`` "open" or "switch"."""

    def __init__(self, url: str, fresh: bool = False):
        self.url, self.fresh, self.pool = url, fresh, ThreadPoolExecutor(1, thread_name_prefix="chromium")
        self._session = self._tab = None
        self.samples: list[tuple[str, str, float, str, float, float, str]] = []
        self.stop = threading.Event()
        self._pw = self._browser = None

    def _start(self) -> None:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self._session = self._browser.new_context(base_url=self.url, viewport=VIEWPORT)

    def _failed(self, phase: str, view: View, how: str, exc: BaseException) -> None:
        nan = math.nan
        self.samples.append((phase, view.key, nan, f"{type(exc).__name__}: {exc}"[:300], nan, nan, how))

    def _load(self, phase: str, view: View, fresh: bool) -> None:
        try:
            got = load_console(self._browser, self.url, view, SETTLE_S, None if fresh else self._session)
            self.samples.append((phase, view.key, got.ms, "", got.boot_ms, got.script_ms, "open"))
        except BaseException as exc:  # noqa: BLE001 - load_console exits on a timeout: a failed load, counted
            self._failed(phase, view, "open", exc)

    def _switch(self, phase: str, view: View) -> None:
        try:
            if self._tab is None:  # the person's tab: opened once, on the overview
                self._tab = self._session.new_page()
                self._tab.add_init_script(STATE_WATCH)
                self._tab.goto("/", wait_until="commit")
                _wait(self._tab, CONSOLE_READY, [BROWSER_VIEWS[0].title, BROWSER_VIEWS[0].content], "the tab")
            ms, boot, script = switch_console(self._tab, view)
            self.samples.append((phase, view.key, ms, "", boot, script, "switch"))
        except BaseException as exc:  # noqa: BLE001 - a timeout exits: a failed switch, counted; a new tab next
            self._failed(phase, view, "switch", exc)
            if self._tab is not None:
                self._tab.close()
            self._tab = None

    def _rounds(self, phase: str, rounds: int | None, fresh: bool) -> None:
        n = 0
        while (rounds is None and not self.stop.is_set()) or (rounds is not None and n < rounds):
            for v in BROWSER_VIEWS:
                if rounds is None and self.stop.is_set():
                    return
                self._load(phase, v, fresh)
                if not fresh:  # a first visit has no tab to switch in
                    self._switch(phase, v)
            n += 1

    async def run(self, phase: str, rounds: int | None = None, fresh: bool | None = None) -> None:
        loop = asyncio.get_running_loop()
        if self._browser is None:
            await loop.run_in_executor(self.pool, self._start)
        await loop.run_in_executor(self.pool, self._rounds, phase, rounds, self.fresh if fresh is None else fresh)

    def close(self) -> None:
        def _close():
            if self._browser is not None:
                self._browser.close()
                self._pw.stop()

        self.pool.submit(_close).result(timeout=60)
        self.pool.shutdown()
