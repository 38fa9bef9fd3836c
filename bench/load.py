"""Benchmark: 20 people using the console at once while the demo serves live traffic.

    python bench/load.py [--minutes 2] [--sessions 20] [--actors 6] [--think 2,6] [--apply-share 0.5]
                         [--alone-rounds 3] [--browser-rounds 1] [--no-browser] [--sample-every 5] [--keep DIR]

Seeds a fresh demo (``seed-demo`` + ``seed-history``: 7 days of traffic) in a temp dir, starts the live parts as
``make run`` does — ``python -m services up`` (gateway, ingest, alert evaluator, the demo's traffic stream) — and
the console (``streamlit run dashboard/app.py`` in ``bench/_load_server.py``, which only counts the reads: MLflow
calls, metrics and prediction-log reads, container builds). Then:

1. **warm-up** — one session does every task once (first loads pay imports and first reads; not counted);
2. **alone** — one session does every task ``--alone-rounds`` times with no pause, and Chromium loads each view
   ``--browser-rounds`` times: the baseline, measured in this run;
3. **caches** — for a few pages: the data caches are cleared (the sidebar's *Refresh data*), session 1 loads the
   page, then sessions 2…N load it at once: their time and the reads they cause (0 MLflow calls = the cache
   filled by session 1 served them);
4. **load** — ``--sessions`` sessions (``--actors`` of them act as ``alice``) for ``--minutes``, each doing tasks at
   random with a ``--think`` pause (seconds, uniform) between steps (``bench/_load_sessions.py``), driven over
   Streamlit's own websocket protocol from this one asyncio process (``tests/streamlit_ws.py``; Chromium as the
   load generator does not fit on 2 cores); meanwhile one real Chromium (fresh context per load) measures
   page-ready across the views, and the console's RSS (its process and children, ``/proc``) and CPU are sampled.

Prints the tables: script run per page and per widget change (p50/p95/max under load, p95 alone, ratio), browser
page-ready, errors (exceptions drawn, unexpected error boxes, disconnects) against conflicts shown as a message,
cache sharing, memory and CPU. Targets: p95 script run per page < 1 s, browser p95 page-ready < 3 s, no error,
memory bounded (``--minutes 30``). A benchmark: it prints, and exits 0 whether targets are met or not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT  # noqa: E402  (sets up sys.path and MLflow's environment)
from _load_browser import BROWSER_VIEWS, Browser  # noqa: E402
from _load_report import memory_growth, profile_summary, report  # noqa: E402
from _load_server import SLOTS, Counters, cpu_seconds, rss_mb  # noqa: E402
from _load_sessions import ACT_ENDPOINT, MODEL, Context, Person  # noqa: E402
from pages_browser import (  # noqa: E402
    CHROMIUM,
    CONSOLE_ARGS,
    app_env,
    python,
    start,
    stop,
)

from tests.streamlit_ws import StreamlitSession  # noqa: E402

# the pages whose cache sharing is shown: (name, URL)
CACHED_PAGES = [("model", f"/models?model={MODEL}"), ("compare", f"/models?model={MODEL}&compare=2,4"),
                ("version", f"/models?model={MODEL}&version=4"), ("drift", f"/drift?endpoint={ACT_ENDPOINT}&from=-7d"
                                                                    "&to=now"),
                ("monitoring", f"/monitoring?endpoint={ACT_ENDPOINT}&from=-24h&to=now")]


def seed(data: Path) -> float:
    t0 = time.perf_counter()
    for cmd in (["seed-demo"], ["seed-history"]):
        subprocess.run([python(), "-m", "services", *cmd, "--json"], check=True, cwd=ROOT, env=app_env(data),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Consoles(list):
    """The console processes (``--consoles N``: N Streamlit processes, as replicas behind a sticky ingress): memory
    and CPU summed over them and their children."""

    @property
    def pid(self) -> int:  # the first one's (Chromium measures it)
        return self[0].pid

    def rss(self) -> float:
        return sum(rss_mb(p.pid) for p in self)

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self)


class AllCounters(list):
    """Every console's read counters: ``read`` sums them, ``set`` sets them all."""

    def read(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self:
            for k, v in c.read().items():
                out[k] = out.get(k, 0) + v
        return out

    def set(self, name: str, value: int) -> None:
        for c in self:
            c.set(name, value)


def count_rows(db: Path, sql: str) -> int:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as con:
        return con.execute(sql).fetchone()[0]


async def sampler(stats: list, consoles: Consoles, up_pid: int, every: float, stop: asyncio.Event) -> None:
    t0 = time.monotonic()
    while True:
        stats.append((time.monotonic() - t0, consoles.rss(), consoles.cpu(), rss_mb(up_pid),
                      os.getloadavg()[0]))
        try:
            await asyncio.wait_for(stop.wait(), every)
            return
        except TimeoutError:
            pass


async def cache_sharing(ctx: Context, counters: Counters, n: int) -> list[dict]:
    """Per page: the caches cleared, session 1 loads it, then sessions 2..n at once."""
    sessions = [StreamlitSession(ctx.url, timeout=ctx.run_timeout) for _ in range(n)]
    await asyncio.gather(*(s.connect() for s in sessions))
    out = []
    try:
        await sessions[0].open("/approvals")
        for name, url in CACHED_PAGES:
            await sessions[0].click("refresh")  # st.cache_data.clear(): every session's cached reads
            before = counters.read()
            first = await sessions[1].open(url)
            mid = counters.read()
            rest = await asyncio.gather(*(s.open(url) for s in sessions[1:]))
            after = counters.read()
            out.append({"page": name, "url": url, "first_s": first.seconds, "rest_s": [r.seconds for r in rest],
                        "first_calls": {k: mid[k] - before[k] for k in SLOTS},
                        "rest_calls": {k: after[k] - mid[k] for k in SLOTS},
                        "problems": [p for r in [first, *rest] for p in r.problems]})
    finally:
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    return out


async def scenario(args, urls: list[str], counters: AllCounters, console: Consoles, up, browser: Browser | None,
                   result: dict) -> None:
    url = urls[0]
    ctx = Context(url, think=args.think, apply_share=args.apply_share, run_timeout=args.run_timeout)
    result["ctx"] = ctx
    stop_sampling = asyncio.Event()
    sampling = asyncio.create_task(sampler(result["stats"], console, up.pid, args.sample_every, stop_sampling))
    one = Person(Context(url, think=(0, 0), apply_share=0.5, run_timeout=args.run_timeout, samples=ctx.samples),
                 99, acts=True, seed=args.seed)
    await one.connect()
    one.ctx.phase = "warm-up"
    await one.every_task_once()
    say(f"warm-up done; alone: {args.alone_rounds} rounds of every task")
    result["after_warmup"] = (console.rss(), console.cpu())
    one.ctx.phase = "alone"
    counters.set("profile_phase", 1)
    for _ in range(args.alone_rounds):
        await one.every_task_once()
    counters.set("profile_phase", 0)
    await one.s.close()
    if browser is not None:
        say(f"browser alone: {args.browser_rounds} round(s) of {len(BROWSER_VIEWS)} views")
        await browser.run("alone-first", args.browser_rounds, fresh=True)  # a first visit: nothing cached
        await browser.run("alone", args.browser_rounds)
    say("cache sharing")
    result["caches"] = await cache_sharing(ctx, counters, args.sessions)
    say(f"load: {args.sessions} sessions ({args.actors} acting) for {args.minutes:g} min")
    ctx.phase = "load"
    rng = random.Random(args.seed)
    ctxs = [ctx] + [Context(u, think=args.think, apply_share=args.apply_share, run_timeout=args.run_timeout,
                            samples=ctx.samples, phase="load", stop=ctx.stop) for u in urls[1:]]
    people = [Person(ctxs[i % len(ctxs)], i, acts=i < args.actors, seed=rng.randrange(1 << 30))
              for i in range(args.sessions)]  # round robin over the consoles: a session stays on its console
    result["load_start"] = (time.monotonic(), counters.read(), console.cpu(), cpu_seconds(up.pid),
                            console.rss(), time.process_time())
    counters.set("profile_phase", 2)
    counters.set("trace_phase", 1)  # with --trace-memory: the console traces what the load allocates
    loops = [asyncio.create_task(p.loop()) for p in people]
    if browser is not None:
        browser.stop.clear()
        loops.append(asyncio.create_task(browser.run("load")))
    deadline = time.monotonic() + args.minutes * 60
    while time.monotonic() < deadline:
        await asyncio.sleep(min(60.0, max(0.0, deadline - time.monotonic())))
        done = sum(1 for s in ctx.samples if s.phase == "load")
        say(f"  {(args.minutes * 60 - (deadline - time.monotonic())) / 60:.1f} min: {done} runs, "
            f"RSS {console.rss():.0f} MB")
    ctx.stop.set()
    if browser is not None:
        browser.stop.set()
    await asyncio.gather(*loops, return_exceptions=True)
    counters.set("profile_phase", 0)
    if args.trace_memory:  # what the load allocated and the console still holds, garbage collected
        counters.set("trace_phase", 2)
        deadline = time.monotonic() + 300
        while not counters.read()["trace_written"] and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
    result["load_end"] = (time.monotonic(), counters.read(), console.cpu(), cpu_seconds(up.pid),
                          console.rss(), time.process_time())
    stop_sampling.set()
    await sampling


def dump_profile(counters: Counters, timeout: float = 30.0) -> None:
    """Ask the console's profiler to write its stacks, and wait (bounded) until it has."""
    want = counters.read()["profile_dump"] + 1
    counters.set("profile_dump", want)
    deadline = time.monotonic() + timeout
    while counters.read()["profile_written"] != want and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the other process, bounded


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=2.0, help="length of the load phase")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--actors", type=int, default=6, help="sessions that also act (as alice)")
    ap.add_argument("--think", default="2,6", help="MIN,MAX seconds between a person's steps (0,0: none)")
    ap.add_argument("--apply-share", type=float, default=0.5, help="share of opened dry runs that are confirmed")
    ap.add_argument("--alone-rounds", type=int, default=3)
    ap.add_argument("--browser-rounds", type=int, default=1, help="browser loads per view alone")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--browser-fresh", action="store_true", help="every browser load in a fresh context (a first "
                    "visit each time) instead of one browser session")
    ap.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS/CPU samples")
    ap.add_argument("--run-timeout", type=float, default=60.0, help="seconds a run may take before it is a failure")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--keep", type=Path, help="keep the data and logs in this directory")
    ap.add_argument("--consoles", type=int, default=1, help="console processes (sessions spread round robin)")
    ap.add_argument("--profile", action="store_true", help="sample the console's script threads (alone and load)")
    ap.add_argument("--trace-memory", action="store_true", help="trace the console's allocations during the load "
                    "(tracemalloc: slower) and print where what it still holds at the end was allocated")
    args = ap.parse_args()
    args.think = tuple(float(x) for x in args.think.split(","))
    if args.consoles < 1 or (args.profile and args.consoles > 1):
        raise SystemExit("--consoles: 1 or more, and --profile with one console only")
    if not args.no_browser and not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium (or --no-browser)")
    work = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="bench-load-"))
    if args.keep:
        shutil.rmtree(work, ignore_errors=True)
    data, logs = work / "data", work / "logs"
    logs.mkdir(parents=True)
    say(f"seeding the demo with 7 days of history in {data} …")
    seed_s = seed(data)
    env = app_env(data)
    if args.profile:
        env["LOAD_PROFILE"] = str(work / "profile")
    if args.trace_memory:
        env["LOAD_TRACEMALLOC"] = str(work / "memory.snap")
    ingest_port = free_port()
    env_up = {**env, "MLOPS_INGEST_URL": f"http://127.0.0.1:{ingest_port}/"}
    procs = []
    browser = None
    result: dict = {"stats": [], "seed_s": seed_s, "args": args}
    try:
        up, _ = start([python(), "-m", "services", "up", "--port", "{port}", "--ingest-port", str(ingest_port)],
                      ROOT, env_up, "/v2/health/live", logs / "up.log")
        procs.append(up)
        console, urls, counters = Consoles(), [], AllCounters()
        for k in range(args.consoles):
            proc, url = start([python(), str(ROOT / "bench" / "_load_server.py"), str(work / f"counters{k}"),
                               *CONSOLE_ARGS], ROOT, env, "/_stcore/health", logs / f"console{k}.log")
            procs.append(proc)
            console.append(proc)
            urls.append(url)
            counters.append(Counters(work / f"counters{k}", create=False))
        result["start"] = (console.rss(), console.cpu())
        result["predictions_before"] = count_rows(data / "console.db", "SELECT count(*) FROM predictions")
        browser = None if args.no_browser else Browser(urls[0], fresh=args.browser_fresh)
        asyncio.run(scenario(args, urls, counters, console, up, browser, result))
        result["predictions_after"] = count_rows(data / "console.db", "SELECT count(*) FROM predictions")
        result["weights_applied"] = count_rows(data / "console.db", "SELECT count(*) FROM audit_log WHERE "
                                               "action = 'set_canary_weight' AND result = 'ok'")
        result["browser"] = browser.samples if browser else []
        result["counters"] = counters.read()
        if args.profile:
            dump_profile(counters)
            import json

            shared = work / "profile.shared.json"
            result["gc"] = json.loads(shared.read_text()).get("gc", {}) if shared.exists() else {}
        if browser is not None:
            browser.close()
            browser = None
        for p in procs[::-1]:
            stop(p)
        procs.clear()
        report(result)
        if args.keep:  # every run, for a closer look: (label, kind, seconds, ended at, session, phase, errors)
            import json

            (work / "samples.json").write_text(json.dumps(
                [(x.label, x.kind, x.seconds, x.at, x.session, x.phase, x.errors) for x in result["ctx"].samples]))
        if args.trace_memory and (work / "memory.snap").exists():
            memory_growth(work / "memory.snap")
        for phase, title in ((1, "one session alone"), (2, "under load")):
            if args.profile and (work / f"profile.{phase}.folded").exists():
                profile_summary(work / f"profile.{phase}.folded", title)
    finally:
        if browser is not None:
            browser.close()
        for p in procs[::-1]:
            stop(p)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
