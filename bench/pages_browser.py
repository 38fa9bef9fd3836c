"""Benchmark: page-ready time in a real browser, the console against MLflow's own UI on the same registry.

    python bench/pages_browser.py [--rounds 5] [--versions 300] [--views overview,model,compare,deployments]
                                  [--store DIR] [--rebuild] [--mlflow-workers 1] [--settle 1.5] [--no-mlflow]

Builds once (reused while ``meta.json`` matches the code) an MLflow SQLite store with ``big-model`` of ``--versions``
versions, each linked to a run with four metrics (``bench/_registry_setup.py``), plus the console's demo
(``python -m services seed-demo``). Starts the console (``streamlit run dashboard/app.py``, headless, no file watcher)
and MLflow's UI (``mlflow server --workers 1``: one process, like the console) over it, and loads each view in a FRESH
browser context (no cache, no cookie, a new Streamlit session), console and MLflow alternating, ``--rounds`` times
after a warm-up round that is not counted. Views (console | MLflow): overview ``/`` | ``/#/models``; model
``/models?model=big-model`` | ``/#/models/big-model``; compare ``…&compare=A,B`` | ``/#/compare-runs?runs=[…]`` of the
two versions' runs; deployments ``/deployments?endpoint=cancer-screening`` | none.

Page-ready (``performance.now()``, from navigation start) — console: ``[data-testid="stApp"]`` has
``data-test-script-state="notRunning"`` and ``data-test-connection-state="CONNECTED"``, the title and main content are
visible and nothing spins; watched ``--settle`` s more, and if another script run starts (a rerun) ready is when the
last run has finished. MLflow: its table shows the rows. Also per console load: script runs and websocket bytes; and
one kept-alive HTTP request to each server (what each of a page's ~60 script chunks costs).

Prints a markdown table with the ratio console/MLflow of medians from the same run. Exits 0 either way.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT  # noqa: E402  (sets up sys.path and MLflow's environment)

BIG = "big-model"  # the name bench/_registry_setup.py gives the model with many versions
ENDPOINT = "cancer-screening"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
CONSOLE_ARGS = ["--server.port", "{port}", "--server.address", "127.0.0.1", "--server.headless", "true",
                "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]
LOAD_TIMEOUT_S = 60
VIEWPORT = {"width": 1440, "height": 1000}

# Every change of the app root's script state, with its time (ms since navigation start).
STATE_WATCH = """window.__benchStates = [];
new MutationObserver((records) => { for (const r of records) {
  if (r.target.getAttribute && r.target.getAttribute('data-testid') === 'stApp')
    window.__benchStates.push([performance.now(), r.target.getAttribute('data-test-script-state')]);
} }).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-test-script-state']});"""
CONSOLE_READY = """([title, content]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning'
      || app.getAttribute('data-test-connection-state') !== 'CONNECTED') return false;
  const live = (el) => el && el.offsetParent !== null && !el.closest('[data-stale="true"]');
  const h1 = [...document.querySelectorAll('[data-testid="stMain"] h1')].find(live);
  if (!h1 || !h1.textContent.includes(title)) return false;
  if (content && ![...document.querySelectorAll(content)].some(live)) return false;
  if ([...document.querySelectorAll('[data-testid="stSpinner"]')].some(live)) return false;
  return performance.now();
}"""
# Every check holds: a CSS selector matches a visible element, or ``text=…`` is shown.
MLFLOW_READY = """(checks) => {
  const vis = (el) => el && el.offsetParent !== null;
  let text = null;
  for (const c of checks) {
    if (c.startsWith('text=')) { text = text ?? document.body.innerText; if (!text.includes(c.slice(5))) return false; }
    else if (![...document.querySelectorAll(c)].some(vis)) return false;
  }
  return performance.now();
}"""
ASSET_BYTES = """(api) => performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))
  .reduce(([a, o], e) => api && e.name.includes(api) ? [a + e.decodedBodySize, o] : [a, o + e.decodedBodySize],
          [0, 0])"""


@dataclass
class View:
    key: str
    console: str  # path
    title: str  # the console's h1 contains this
    content: str  # CSS selector of the console's main content
    mlflow: str | None = None  # path (with #) or None
    mlflow_ready: list[str] = field(default_factory=list)  # CSS selectors to be visible, or "text=…" to be shown


@dataclass
class Sample:
    ms: float  # page-ready, ms from navigation start
    runs: int = 0  # console: script_finished messages
    ws_bytes: int = 0  # console: websocket payload bytes received
    api_bytes: int = 0  # MLflow: decoded bytes of /ajax-api/ responses
    asset_bytes: int = 0  # decoded bytes of everything else (HTML, JS, CSS, fonts)
    boot_ms: float = 0.0  # console: navigation start -> the first script run starts (HTML, JS, websocket)
    script_ms: float = 0.0  # console: the first run starts -> the last run ends (as the page sees it)


def python() -> str:
    return str(venv) if (venv := ROOT / ".venv" / "bin" / "python").exists() else sys.executable


def app_env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_TRACKING_URI", "KUBECONFIG"))}
    return {**env, "MLOPS_DATA_DIR": str(data), "MLFLOW_TRACKING_URI": f"sqlite:///{data / 'mlflow.db'}",
            "MLOPS_DATABASE_URL": f"sqlite:///{data / 'console.db'}", "MLOPS_SERVING_BACKEND": "local",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "GIT_PYTHON_REFRESH": "quiet", "PYTHONUNBUFFERED": "1"}


def code_fingerprint() -> str:
    """Of the code that writes the store: a change (e.g. a new schema of the console's database) rebuilds it."""
    h = hashlib.sha256()
    for f in sorted([*(ROOT / "services").rglob("*.py"), ROOT / "bench" / "_registry_setup.py"]):
        h.update(f.relative_to(ROOT).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def ensure_store(store: Path, versions: int, rebuild: bool) -> tuple[dict, float | None]:
    """``store/data``: the registry with ``big-model`` and the seeded demo; built once, then reused."""
    meta_file = store / "meta.json"
    want = {"versions": versions, "demo": True, "code": code_fingerprint()}
    if meta_file.is_file() and not rebuild:
        meta = json.loads(meta_file.read_text())
        if all(meta.get(k) == v for k, v in want.items()):
            return meta, None
    shutil.rmtree(store, ignore_errors=True)
    data = store / "data"
    t0 = time.perf_counter()
    subprocess.run([python(), str(ROOT / "bench" / "_registry_setup.py"), str(data), "--models", "1",
                    "--versions", str(versions)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    subprocess.run([python(), "-m", "services", "seed-demo", "--json"], check=True, cwd=ROOT, env=app_env(data),
                   stdout=subprocess.DEVNULL)
    meta_file.write_text(json.dumps(want))
    return want, time.perf_counter() - t0


def compare_targets(db: Path, versions: int) -> tuple[str, str, list[str], list[str], list[str]]:
    """The versions to compare (the champion and the newest: what the console preselects), their runs, the runs'
    experiments and names."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        champ = con.execute("SELECT version FROM registered_model_aliases WHERE name = ? AND alias = 'champion'",
                            (BIG,)).fetchone()
        a, b = str(champ[0] if champ else versions // 2), str(versions)
        rows = [con.execute("SELECT r.run_uuid, r.experiment_id, r.name FROM model_versions v JOIN runs r "
                            "ON r.run_uuid = v.run_id WHERE v.name = ? AND v.version = ?", (BIG, int(v))).fetchone()
                for v in (a, b)]
    return a, b, [r[0] for r in rows], sorted({str(r[1]) for r in rows}), [r[2] for r in rows]


def views(a: str, b: str, runs: list[str], exps: list[str], names: list[str]) -> list[View]:
    js = lambda xs: quote(json.dumps(xs, separators=(",", ":")))  # noqa: E731
    table = '[data-testid="stMain"] [data-testid="stDataFrame"]'
    return [
        View("overview", "/", "MLOps Console", table, "/#/models", [f'a[href$="/models/{BIG}"]']),
        View("model", f"/models?{urlencode({'model': BIG})}", BIG, table, f"/#/models/{BIG}",
             [f'a[href$="/models/{BIG}/versions/{b}"]']),
        View("compare", f"/models?{urlencode({'model': BIG, 'compare': f'{a},{b}'})}", f"Compare {BIG}", table,
             f"/#/compare-runs?runs={js(runs)}&experiments={js(exps)}",
             [f"text={names[0]}", f"text={names[1]}", "text=max_iter", "text=val_loss"]),
        View("deployments", f"/deployments?{urlencode({'endpoint': ENDPOINT})}", "Deployments",
             '[data-testid="stMain"] [data-testid="stMetric"]'),
    ]


# -- the servers -------------------------------------------------------------------------------------------------
def start(cmd: list[str], cwd: Path, env: dict, health: str, log: Path) -> tuple[subprocess.Popen, str]:
    """Start a server on a free port (``{port}`` in ``cmd``) and wait until ``health`` answers 200."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with log.open("wb") as f:
        proc = subprocess.Popen([c.format(port=port) for c in cmd], cwd=cwd, env=env, stdout=f,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise SystemExit(f"{cmd[2]} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url + health, timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)  # polling a server that is starting


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def keepalive_ms(url: str, path: str, n: int = 12) -> float:
    """Median ms of a GET on a kept-alive connection (not the first request, on a new connection)."""
    con, times = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=10), []
    for _ in range(n + 1):
        t0 = time.perf_counter()
        con.request("GET", path)
        _ = con.getresponse().read(), times.append((time.perf_counter() - t0) * 1000)
    con.close()
    return statistics.median(times[1:])


# -- one load ----------------------------------------------------------------------------------------------------
def _wait(page, fn: str, arg, what: str) -> float:
    """Poll ``fn(arg)`` every animation frame until it returns the ready time; on a timeout, say what shows."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        return page.wait_for_function(fn, arg=arg, polling="raf", timeout=LOAD_TIMEOUT_S * 1000).json_value()
    except PlaywrightTimeout:
        shot = Path(tempfile.gettempdir()) / "bench-pages-browser-timeout.png"
        page.screenshot(path=str(shot), full_page=True)
        text = page.evaluate("document.body ? document.body.innerText.slice(0, 1500) : ''")
        raise SystemExit(f"{what}: not ready in {LOAD_TIMEOUT_S} s (screenshot {shot}); it shows:\n{text}") from None


def settled(page, check: list[str], what: str, settle_s: float) -> tuple[float, list]:
    while True:  # (ready ms, states): ready (check: title, content) and no rerun starting within settle_s after
        ready = _wait(page, CONSOLE_READY, check, what)
        page.wait_for_timeout(settle_s * 1000)
        states = page.evaluate("window.__benchStates")
        if max((t for t, s in states if s == "running"), default=0) <= ready:
            return ready, states


def load_console(browser, base: str, view: View, settle_s: float, context=None) -> Sample:
    """A new page load (and Streamlit session) of ``view``: in a fresh context (a first visit), or in a new tab of
    ``context`` (its HTTP cache kept)."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    page = (ctx := context or browser.new_context(base_url=base, viewport=VIEWPORT)).new_page()
    try:
        page.add_init_script(STATE_WATCH)
        seen = {"finished": 0, "bytes": 0}

        def on_frame(payload) -> None:
            if not isinstance(payload, str):
                seen["bytes"] += len(payload)
                seen["finished"] += ForwardMsg.FromString(payload).WhichOneof("type") == "script_finished"

        page.on("websocket", lambda ws: ws.on("framereceived", on_frame))
        page.goto(view.console, wait_until="commit")
        ready, states = settled(page, [view.title, view.content], view.console, settle_s)
        ends = [t for t, s in states if s == "notRunning"]
        start_ms = min((t for t, s in states if s == "running"), default=ready)
        return Sample(max([ready, *ends]), seen["finished"], seen["bytes"], 0, page.evaluate(ASSET_BYTES, None)[1],
                      start_ms, max(ends, default=ready) - start_ms)
    finally:
        ctx.close() if context is None else page.close()


def load_mlflow(browser, base: str, view: View) -> Sample:
    ctx = browser.new_context(base_url=base, viewport=VIEWPORT)
    try:
        page = ctx.new_page()
        page.goto(view.mlflow, wait_until="commit")
        ready = _wait(page, MLFLOW_READY, view.mlflow_ready, view.mlflow)
        api, assets = page.evaluate(ASSET_BYTES, "/ajax-api/")
        return Sample(ready, api_bytes=api, asset_bytes=assets)
    finally:
        ctx.close()


# -- report ------------------------------------------------------------------------------------------------------
def p90(xs: list[float]) -> float:
    return sorted(xs)[min(len(xs) - 1, round(0.9 * (len(xs) - 1)))]


def med(xs) -> float:
    return statistics.median(xs) if (xs := list(xs)) else 0.0


fmt_s, fmt_kb = (lambda ms: f"{ms / 1000:.2f} s"), (lambda n: f"{n / 1024:,.0f} KB")


def report(results: dict, vs: list[View], args, extra: dict) -> None:
    print(f"\n### Page-ready in a fresh Chromium context: console vs MLflow UI ({args.rounds} rounds, alternating; "
          f"`{BIG}` has {args.versions} versions)\n\n| view | console median | console p90 | MLflow UI median "
          "| MLflow UI p90 | console / MLflow | script runs per load | console: boot + script | websocket per load "
          "| MLflow API per load |\n"
          "|---|---:|---:|---:|---:|---:|---|---|---:|---:|")
    for v in vs:
        c, m = results[v.key]["console"], results[v.key].get("mlflow", [])
        cms, mms = [s.ms for s in c], [s.ms for s in m]
        runs = sorted({s.runs for s in c})
        runs_txt = ", ".join(f"{r}×{sum(1 for s in c if s.runs == r)}" for r in runs) if len(runs) > 1 else runs[0]
        row = [f"`{v.key}`", fmt_s(med(cms)), fmt_s(p90(cms))]
        row += [fmt_s(med(mms)), fmt_s(p90(mms)), f"**{med(cms) / med(mms):.2f}×**"] if m else \
            ["—", "—", "— (no counterpart)"]
        row += [runs_txt, f"{fmt_s(med(s.boot_ms for s in c))} + {fmt_s(med(s.script_ms for s in c))}",
                fmt_kb(med(s.ws_bytes for s in c)), fmt_kb(med(s.api_bytes for s in m)) if m else "—"]
        print("| " + " | ".join(map(str, row)) + " |")
    every, every_m = ([s for r in results.values() for s in r.get(k, [])] for k in ("console", "mlflow"))
    print(f"\nMedians and p90 of {args.rounds} loads each, every load in a new browser context, console and MLflow "
          f"alternating; ready = the last script run finished, content visible, nothing spinning (watched "
          f"{args.settle:.1f} s for a rerun) / MLflow's table shows the rows. `mlflow server --workers "
          f"{args.mlflow_workers}`. Script runs: `script_finished` messages per load (R×n: n loads had R). Boot: "
          f"navigation start to the first run's start; script: from there to the last run's end, as the page "
          f"sees it. Static assets per load (decoded): console {fmt_kb(med(s.asset_bytes for s in every))}"
          + (f", MLflow {fmt_kb(med(s.asset_bytes for s in every_m))}" if every_m else "") + ". One request on a "
          f"kept-alive connection: console {extra['keepalive_console']:.1f} ms"
          + (f", MLflow {extra['keepalive_mlflow']:.1f} ms" if "keepalive_mlflow" in extra else "") + ". "
          f"1-min load average {extra['load'][0]:.1f} → {extra['load'][1]:.1f} on {os.cpu_count()} CPUs.")
    print("\nwarm-up (first loads after the start, not counted): " + ", ".join(
        f"{k} {s.ms / 1000:.2f} s ({s.runs} run{'s' if s.runs != 1 else ''})" for k, s in extra["first"].items()))
    for v in vs:
        c, m = results[v.key]["console"], results[v.key].get("mlflow", [])
        print(f"- `{v.key}` console: " + " ".join(f"{s.ms / 1000:.2f}" for s in c)
              + ("  · MLflow: " + " ".join(f"{s.ms / 1000:.2f}" for s in m) if m else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--versions", type=int, default=300)
    ap.add_argument("--views", default="overview,model,compare,deployments", help="comma-separated")
    ap.add_argument("--store", type=Path, help="where the registry is built once and reused (default: temp dir)")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--mlflow-workers", type=int, default=1)
    ap.add_argument("--settle", type=float, default=1.5, help="seconds a ready console page is watched for a rerun")
    ap.add_argument("--no-mlflow", action="store_true", help="measure the console alone")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium")
    store = (args.store or Path(tempfile.gettempdir()) / f"mlops-bench-pages-browser-{args.versions}").resolve()
    _meta, build_s = ensure_store(store, args.versions, args.rebuild)
    data = store / "data"
    print(f"registry {data / 'mlflow.db'}: " + (f"built in {build_s:.1f} s" if build_s else "reused"))
    vs = [v for v in views(*compare_targets(data / "mlflow.db", args.versions)) if v.key in args.views.split(",")]
    logs = Path(tempfile.mkdtemp(prefix="bench-pages-browser-"))
    procs: list[subprocess.Popen] = []
    try:
        console, curl = start([python(), "-m", "streamlit", "run", "dashboard/app.py", *CONSOLE_ARGS], ROOT,
                              app_env(data), "/_stcore/health", logs / "console.log")
        procs.append(console)
        murl = None
        if not args.no_mlflow:
            mlflow, murl = start([python(), "-m", "mlflow", "server", "--backend-store-uri",
                                  f"sqlite:///{data / 'mlflow.db'}", "--default-artifact-root",
                                  (data / "mlflow-served").as_uri(), "--host", "127.0.0.1", "--port", "{port}",
                                  "--workers", str(args.mlflow_workers)], data, app_env(data), "/health",
                                 logs / "mlflow.log")
            procs.append(mlflow)
        run_rounds(args, vs, curl, murl)
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(logs, ignore_errors=True)


def run_rounds(args, vs: list[View], curl: str, murl: str | None) -> None:
    from playwright.sync_api import sync_playwright

    results: dict[str, dict[str, list[Sample]]] = {v.key: {"console": []} for v in vs}
    extra: dict = {"first": {}}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for v in vs:  # warm-up: a process's first load of a view pays imports and first reads
                extra["first"][v.key] = load_console(browser, curl, v, args.settle)
                _ = murl and v.mlflow and load_mlflow(browser, murl, v)
            extra["keepalive_console"] = keepalive_ms(curl, "/_stcore/health")
            extra.update({"keepalive_mlflow": keepalive_ms(murl, "/health")} if murl else {})
            load_before = os.getloadavg()[0]
            for rnd in range(args.rounds):
                for v in vs:
                    both = [("console", lambda v=v: load_console(browser, curl, v, args.settle))]
                    if murl and v.mlflow:
                        both.append(("mlflow", lambda v=v: load_mlflow(browser, murl, v)))
                    for side, fn in both[::-1] if rnd % 2 else both:
                        results[v.key].setdefault(side, []).append(fn())
                print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)
            extra["load"] = (load_before, os.getloadavg()[0])
        finally:
            browser.close()
    report(results, vs, args, extra)


if __name__ == "__main__":
    main()
