"""CPU per script run, per page of ``bench/load.py`` (issue 11): where the console's one process spends its core.

    python bench/_load_cpu.py DATA_DIR [--rounds 5] [--pages monitoring,drift] [--profile PAGE] [--frozen ISO]

``DATA_DIR`` holds a seeded demo (``python -m services seed-demo`` + ``seed-history``, as ``bench/load.py`` seeds
it). Each page of :data:`_load_sessions.PAGES` runs under Streamlit's AppTest (the real app, ``dashboard/app.py``,
the page switched, its URL's query parameters set), one fresh session per run, on every variant of its URL:

* **cold** — the data caches cleared (the sidebar's *Refresh data*) before the run: what a run pays when its
  cached reads expired (TTLs of 10–30 s: under load many runs do);
* **warm** — the same URL again in ``--rounds`` new sessions: what a run pays when another session filled the
  caches (most runs under load).

The figure is the CPU time of the script thread (``time.thread_time``: what the run takes from the one process,
Streamlit's element and protobuf work included; AppTest's own parsing excluded). ``--profile PAGE[:cold]`` prints a
cProfile of that page's warm (cold) runs (cumulative, the script thread only). ``--frozen`` fixes the app's clock
(default: the newest prediction logged), so runs an hour apart read the same windows.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import random
import sqlite3
import statistics
import sys
import threading
import time
from contextlib import closing
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT  # noqa: E402  (sets up sys.path and MLflow's environment)
from _load_sessions import PAGES  # noqa: E402

PAGE_FILES = {"": "overview.py", "models": "models.py", "deployments": "deployments.py",
              "monitoring": "monitoring.py", "incidents": "incidents.py", "drift": "drift.py",
              "explain": "explain.py", "approvals": "approvals.py", "audit": "audit.py"}
_cpu = threading.local()
_runs: list[float] = []
_profiler: list[cProfile.Profile | None] = [None]


def _instrument() -> None:
    """Time (and optionally profile) AppTest's script thread."""
    from streamlit.testing.v1 import local_script_runner as lsr

    original = lsr.LocalScriptRunner._run_script_thread

    def timed(self):
        prof = _profiler[0]
        t0 = time.thread_time()
        if prof is not None:
            prof.enable()
        try:
            original(self)
        finally:
            if prof is not None:
                prof.disable()
            _runs.append(time.thread_time() - t0)

    lsr.LocalScriptRunner._run_script_thread = timed


def _freeze(at: datetime) -> None:
    from services import composition

    build = composition.build
    composition.build = lambda *a, **kw: build(*a, **{**kw, "clock": lambda: at})


def newest_prediction(data: Path) -> datetime:
    from services.clock import parse_iso

    with closing(sqlite3.connect(f"file:{data / 'console.db'}?mode=ro", uri=True)) as con:
        return parse_iso(con.execute("SELECT max(at) FROM predictions").fetchone()[0])


def variants(page: str) -> list[str]:
    """Every URL the sessions of bench/load.py open for ``page`` (its variants, drawn until no new one shows)."""
    rng, seen = random.Random(11), []
    for _ in range(200):
        url = PAGES[page](rng)
        if url not in seen:
            seen.append(url)
    return sorted(seen)


def run_url(url: str) -> float:
    from streamlit.testing.v1 import AppTest

    parts = urlsplit(url)
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    for k, v in parse_qsl(parts.query):
        at.query_params[k] = v
    at.switch_page(str(ROOT / "pages" / PAGE_FILES[parts.path.strip("/")]))
    n = len(_runs)
    at.run()
    if at.exception or at.error:  # a page that shows an error is not the page measured (e.g. an old schema)
        raise SystemExit(f"{url}: {(at.exception or at.error)[0].value}")
    return sum(_runs[n:])


def _start_profile(on: bool) -> None:
    """Keep the profile of the runs so far (if any), and profile the next runs if ``on``."""
    if _profiler[0] is not None:
        _profiler[0].create_stats()
        _profiler.append(_profiler[0])
    _profiler[0] = cProfile.Profile() if on else None


def measure(page: str, rounds: int, profile: str) -> dict:
    import streamlit as st

    cold, warm = [], []
    for url in variants(page):
        st.cache_data.clear()
        _start_profile(profile == "cold")
        cold.append(run_url(url))
        _start_profile(profile == "warm")
        for _ in range(rounds):
            warm.append(run_url(url))
        _start_profile(False)
    return {"page": page, "urls": len(variants(page)), "cold": cold, "warm": warm}


def ms(xs: list[float], q: float = 0.5) -> str:
    xs = sorted(xs)
    return f"{1000 * xs[min(len(xs) - 1, int(q * len(xs)))]:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pages", default=",".join(PAGES))
    ap.add_argument("--profile", default="", help="PAGE or PAGE:cold: print the cProfile of its warm (cold) runs")
    ap.add_argument("--frozen", default="", help="the app's clock (ISO; default: the newest prediction logged)")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    data = args.data.resolve()
    os.environ.update({"MLOPS_DATA_DIR": str(data), "MLFLOW_TRACKING_URI": f"sqlite:///{data / 'mlflow.db'}",
                       "MLOPS_DATABASE_URL": f"sqlite:///{data / 'console.db'}", "MLOPS_SERVING_BACKEND": "local"})
    for k in ("MLOPS_POLICY_FILE", "MLOPS_DEV_IDENTITIES", "KUBECONFIG"):
        os.environ.pop(k, None)
    _freeze(datetime.fromisoformat(args.frozen) if args.frozen else newest_prediction(data))
    for name in ("streamlit", "streamlit.runtime"):
        logging.getLogger(name).setLevel(logging.ERROR)
    _instrument()
    run_url("/")  # imports, the container: not counted
    print("| page | URLs | cold p50 ms | cold max ms | warm p50 ms | warm p95 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    total_warm = []
    for page in args.pages.split(","):
        r = measure(page, args.rounds, (args.profile.split(":") + ["warm"])[1] if page == args.profile.split(":")[0]
                    else "")
        total_warm += r["warm"]
        print(f"| `{page}` | {r['urls']} | {ms(r['cold'])} | {ms(r['cold'], 1)} | {ms(r['warm'])} | "
              f"{ms(r['warm'], 0.95)} |", flush=True)
    print(f"\nwarm mean over pages' runs: {1000 * statistics.mean(total_warm):.0f} ms")
    if args.profile:
        s = io.StringIO()
        stats = pstats.Stats(_profiler[1], stream=s)
        for p in _profiler[2:]:
            stats.add(p)
        stats.sort_stats("cumulative").print_stats(args.top)
        print(s.getvalue())


if __name__ == "__main__":
    main()
