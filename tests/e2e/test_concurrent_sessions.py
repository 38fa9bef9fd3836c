"""Many sessions loading pages at the same time must not see each other's state.

20 websocket sessions (Streamlit's own protocol, :mod:`tests.streamlit_ws`) load the console's
views concurrently against the real app, several rounds each, every session in a different order
so that different sessions hit the same page at the same moment. Every run must end normally,
show no exception element and no error box, resolve the page it asked for and show that page's
title. (Regression: one module-level ``st.Page`` dict shared by every session made
``st.navigation``'s per-run "may be called" mark race between sessions — "This page cannot be
called directly" — and, on a fresh process, let a session navigate with a half-built dict and
land on "page not found".)

Takes about 30-45 s for its 540 page runs on a 2-core machine (plus the seeded app's start).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from streamlit.util import calc_hash

from tests.streamlit_ws import Run, StreamlitSession

pytestmark = pytest.mark.e2e

SESSIONS = 20
ROUNDS = 3
RUN_TIMEOUT = 120  # one page run while 19 other sessions run too, on a small shared machine
TOTAL_TIMEOUT = 600

MODEL = "breast-cancer-classifier"
# path -> (url_path of the page st.navigation must resolve, title the page shows)
VIEWS = {
    "/": ("overview", "MLOps Console"),
    "/models": ("models", "Models"),
    f"/models?model={MODEL}": ("models", MODEL),
    f"/models?model={MODEL}&version=2": ("models", f"{MODEL} · v2"),
    f"/models?model={MODEL}&compare=2,4": ("models", f"Compare {MODEL}"),
    "/deployments?endpoint=cancer-screening": ("deployments", "Deployments"),
    "/approvals": ("approvals", "Approvals"),
    "/audit": ("audit", "Audit trail"),
}


def _check(run: Run) -> list[str]:
    url_path, title = VIEWS[run.path]
    problems = list(run.problems)
    if run.page_script_hash != calc_hash(url_path):
        problems.append(f"navigation resolved another page (hash {run.page_script_hash or 'none'})")
    if title not in run.headings:
        problems.append(f"title {title!r} not shown (headings: {run.headings})")
    return problems


async def _session(app_url: str, index: int, ready: asyncio.Barrier, results: list) -> None:
    paths = list(VIEWS)
    async with StreamlitSession(app_url, timeout=RUN_TIMEOUT) as s:
        await ready.wait()  # every session is connected before any loads a page
        for rnd in range(ROUNDS):
            for i in range(len(paths)):
                path = paths[(i + index + rnd) % len(paths)]
                run = await s.open(path)
                results.append((index, rnd, run, _check(run)))
            # and a plain rerun of the page shown now, as the Rerun menu (or a widget change) does
            run = await s.rerun()
            results.append((index, rnd, run, _check(run)))


async def _load(app_url: str) -> list:
    results: list = []
    ready = asyncio.Barrier(SESSIONS)
    async with asyncio.timeout(TOTAL_TIMEOUT):
        await asyncio.gather(*(_session(app_url, i, ready, results) for i in range(SESSIONS)))
    return results


def test_concurrent_sessions_load_every_view_cleanly(app_url):
    t0 = time.perf_counter()
    # Its own thread: Playwright's sync API (the browser fixture of other e2e tests in this session) keeps an
    # event loop running in the main thread, where asyncio.run() refuses to start another.
    with ThreadPoolExecutor(1) as pool:
        results = pool.submit(asyncio.run, _load(app_url)).result()
    elapsed = time.perf_counter() - t0

    expected = SESSIONS * ROUNDS * (len(VIEWS) + 1)
    assert len(results) == expected
    failed = [(i, rnd, run, problems) for i, rnd, run, problems in results if problems]
    times = sorted(run.seconds for _, _, run, _ in results)
    print(f"\n{len(results)} page runs by {SESSIONS} concurrent sessions in {elapsed:.1f} s; "
          f"run time median {times[len(times) // 2]:.2f} s, p95 {times[int(len(times) * 0.95)]:.2f} s, "
          f"max {times[-1]:.2f} s; {len(failed)} failed")
    if failed:
        kinds = Counter(p for *_, problems in failed for p in problems)
        by_path = Counter(run.path for _, _, run, _ in failed)
        summary = "\n".join(f"  {n} × {p[:300]}" for p, n in kinds.most_common(8))
        pytest.fail(f"{len(failed)} of {len(results)} page runs failed (by page: {dict(by_path)}):\n{summary}\n"
                    "(the app redacts exception texts: see test-artifacts/streamlit-e2e.log)")
