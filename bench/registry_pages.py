"""Benchmark: the Models pages over a large MLflow SQLite registry, against the raw MLflow calls.

    python bench/registry_pages.py [--store DIR] [--reps 11] [--models 100] [--versions 1000] [--no-freeze]

Builds (once; reused with ``--store DIR``) a registry of ``--models`` registered
models, one of them (``big-model``) with ``--versions`` versions, each linked to
its own run with four metrics (``bench/_registry_setup.py``). The build runs in a
child process so the measuring process starts with a clean MLflow client (the
build turns SQLite fsync off to be fast; the reads never see that connection).

Then, in one process, repeated ``--reps`` times, interleaved, each run started
after ``gc.collect()`` (medians reported):

* raw      the MlflowClient calls the adapter makes for each page, mirrored
           one for one (see ``raw_list`` / ``raw_model`` below);
* service  ``history.list_models`` / ``history.model_view`` on ``MlflowRegistry``;
* page     the real page rendered server-side with ``streamlit.testing``'s
           ``AppTest`` (``dashboard/app.py`` -> ``pages/models.py``), with
           ``st.cache_data`` cleared before every run so every run reads the registry;
* page (cached)  the same page with warm ``st.cache_data``: rendering alone.

Ratios are against ``raw`` measured in the same run. Targets: page/raw <= 1.5x
for both pages, and the big model's page < 2 s, judged on the app as is. A
second round repeats everything after ``gc.freeze()`` (the startup heap of
streamlit/mlflow/pandas/plotly leaves the collector's view), because a full
collection of that heap is the largest single cost on the big model page; skip
it with ``--no-freeze``. A missed target gets a cProfile of one page run (all
threads) printed under the summary. AppTest shares one compiled-script cache
across runs, as a real server does.

This is a plain script, not a test: it exits 0 whether targets are met or not.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT  # noqa: E402  (sets up sys.path and MLflow's environment)
from _registry_setup import BIG, METRICS, ensure_store  # noqa: E402

from services.registry.mlflow_support import paged  # noqa: E402  (the adapter's own pager)

RATIO_TARGET = 1.5
BIG_PAGE_TARGET_S = 2.0


# -- the raw baseline: exactly the MlflowClient calls MlflowRegistry makes ---------------
def raw_list(client) -> int:
    """MlflowRegistry.list_models: all registered models + all versions (for counts)."""
    models = paged(client.search_registered_models, max_results=1000)
    versions = paged(client.search_model_versions, max_results=10000)
    return len(models) + len(versions)


def raw_model(client, name: str) -> int:
    """MlflowRegistry.list_versions: the model, its versions, and their runs' metrics (100 ids a query)."""
    client.get_registered_model(name)
    versions = paged(client.search_model_versions, filter_string=f"name = '{name}'", max_results=10000)
    ids = sorted({v.run_id for v in versions if v.run_id})
    experiments = [e.experiment_id for e in paged(client.search_experiments, max_results=1000)]
    n = 0
    for i in range(0, len(ids), 100):
        flt = "attributes.run_id IN (" + ",".join(f"'{r}'" for r in ids[i:i + 100]) + ")"
        n += len(paged(client.search_runs, experiment_ids=experiments, filter_string=flt, max_results=1000))
    return len(versions) + n


# -- the page, server side ----------------------------------------------------------
def _check_page(at, want_rows: int, what: str) -> None:
    if at.exception:
        raise SystemExit(f"{what}: the page raised: {at.exception[0].value}")
    if at.error:
        raise SystemExit(f"{what}: the page shows an error: {at.error[0].value}")
    if not at.dataframe or len(at.dataframe[0].value) != want_rows:
        got = len(at.dataframe[0].value) if at.dataframe else "no table"
        raise SystemExit(f"{what}: expected a table of {want_rows} rows, got {got}")


def _share_script_cache() -> None:
    """A real server compiles each page once (one ScriptCache per runtime); AppTest makes a new cache
    every run, which would add the page's compile time to every sample. Share one, like the server."""
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache
    from streamlit.testing.v1 import app_test

    shared = ScriptCache()
    app_test.ScriptCache = lambda: shared


_FULL_GCS = [0]


def _count_full_gc(phase: str, info: dict) -> None:
    if phase == "start" and info.get("generation") == 2:
        _FULL_GCS[0] += 1


def timed(fn, full_gcs: list[int] | None = None) -> float:
    """Seconds for ``fn()``; appends to ``full_gcs`` how many full (generation-2) collections ran inside."""
    gc.collect()  # so one variant does not pay for another's garbage
    before = _FULL_GCS[0]
    t0 = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t0
    if full_gcs is not None:
        full_gcs.append(_FULL_GCS[0] - before)
    return elapsed


def measure(variants, reps: int) -> dict:
    """Interleaved runs of every variant (drift hits all alike): medians, minimums, full GCs per run."""
    gc_s, gc_objects = full_gc_cost()
    samples: dict[str, list[float]] = {k: [] for k, _fn in variants}
    gcs: dict[str, list[int]] = {k: [] for k, _fn in variants}
    gc.callbacks.append(_count_full_gc)
    try:
        for _ in range(reps):
            for key, fn in variants:
                samples[key].append(timed(fn, gcs[key]))
    finally:
        gc.callbacks.remove(_count_full_gc)
    return {"med": {k: statistics.median(v) for k, v in samples.items()},
            "best": {k: min(v) for k, v in samples.items()}, "gcs": gcs, "gc_s": gc_s, "gc_objects": gc_objects}


def full_gc_cost() -> tuple[float, int]:
    """(median seconds of one full collection of this process's heap, tracked objects)."""
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        gc.collect()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(gc.get_objects())


def profile_page(at, top: int = 22) -> str:
    """cProfile one uncached run of ``at`` including the script thread."""
    import streamlit as st

    prof = cProfile.Profile()

    def start_in_thread(*_a):
        sys.setprofile(None)
        prof.enable()

    st.cache_data.clear()
    threading.setprofile(start_in_thread)
    try:
        at.run()
    finally:
        threading.setprofile(None)
        prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(r"(services|pages|dashboard|mlflow/store|sqlalchemy/orm/query|"
                                               r"plotly/basedatatypes|streamlit/elements)", top)
    return out.getvalue()


def fmt_ms(s: float) -> str:
    return f"{s * 1000:,.0f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, help="registry directory to build once and reuse")
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--versions", type=int, default=1000)
    ap.add_argument("--profile", action="store_true", help="print a profile even when targets are met")
    ap.add_argument("--no-freeze", action="store_true",
                    help="skip the second round, measured after gc.freeze() (what the app could do at startup)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    store = args.store or tmp / "registry"
    try:
        run(args, store, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, store: Path, tmp: Path) -> None:
    meta, build_s = ensure_store(store.resolve(), args.models, args.versions)
    uri = f"sqlite:///{store.resolve() / 'mlflow.db'}"
    if build_s is None:
        print(f"reusing registry {store} ({meta['models']} models, {meta['total_versions']} versions)")
    else:
        b = meta["build_s"]
        print(f"built registry in {build_s:.1f} s (schema {b['schema']:.1f} s, {meta['runs']} runs with "
              f"{len(METRICS)} metrics {b['runs+metrics']:.1f} s, {meta['total_versions']} versions "
              f"{b['registry']:.1f} s)")

    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["MLOPS_DATA_DIR"] = str(tmp / "data")
    os.environ["MLOPS_DATABASE_URL"] = f"sqlite:///{tmp / 'data' / 'console.db'}"
    os.environ.pop("MLOPS_MLFLOW_UI_URL", None)

    import logging

    import streamlit as st
    import streamlit.logger
    from mlflow import MlflowClient
    from streamlit.testing.v1 import AppTest

    from services import history
    from services.registry.mlflow_registry import MlflowRegistry

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    streamlit.logger.set_log_level("error")
    # st.cache_data.clear() outside a script run warns "No runtime found" every time
    logging.getLogger("streamlit.runtime.caching.cache_data_api").disabled = True
    _share_script_cache()
    client = MlflowClient(uri, uri)
    registry = MlflowRegistry(uri)
    n_models, n_big = meta["models"], meta["versions"]

    # warm-up: imports, engines, the container, first render of both pages
    raw_list(client)
    raw_model(client, BIG)
    history.list_models(registry)
    history.model_view(registry, BIG)
    at_list = AppTest.from_file(ROOT / "dashboard" / "app.py", default_timeout=300)
    at_list.run()
    at_list.switch_page("../pages/models.py").run()
    _check_page(at_list, n_models, "/models")
    at_model = AppTest.from_file(ROOT / "dashboard" / "app.py", default_timeout=300)
    at_model.run()
    at_model.switch_page("../pages/models.py")
    at_model.query_params["model"] = BIG
    at_model.query_params["versions"] = "all"  # the whole table, as before the page showed the newest 50 first
    at_model.run()
    _check_page(at_model, n_big, f"/models?model={BIG}")

    def page(at):
        def go():
            st.cache_data.clear()
            at.run()
        return go

    variants = (
        ("raw_list", lambda: raw_list(client)),
        ("svc_list", lambda: history.list_models(registry)),
        ("page_list", page(at_list)),
        ("page_list_cached", at_list.run),
        ("raw_model", lambda: raw_model(client, BIG)),
        ("svc_model", lambda: history.model_view(registry, BIG)),
        ("svc_model_one_pass", lambda: registry.list_versions(BIG)),
        ("page_model", page(at_model)),
        ("page_model_cached", at_model.run),
    )
    load_before = os.getloadavg()[0]
    as_is = measure(variants, args.reps)
    frozen = None
    if not args.no_freeze:
        gc.collect()
        gc.freeze()  # the startup heap (streamlit, mlflow, pandas, plotly, ...) leaves the collector's view
        frozen = measure(variants, args.reps)
    load_after = os.getloadavg()[0]
    _check_page(at_list, n_models, "/models")
    _check_page(at_model, n_big, f"/models?model={BIG}")

    med = as_is["med"]
    list_ratio = med["page_list"] / med["raw_list"]
    model_ratio = med["page_model"] / med["raw_model"]
    results = [
        (f"`/models` ratio page/raw ≤ {RATIO_TARGET}×", f"{list_ratio:.2f}×", list_ratio <= RATIO_TARGET),
        (f"`/models?model=…` ratio page/raw ≤ {RATIO_TARGET}×", f"{model_ratio:.2f}×",
         model_ratio <= RATIO_TARGET),
        (f"`/models?model=…` ({n_big:,} versions) < {BIG_PAGE_TARGET_S:.0f} s", fmt_ms(med["page_model"]),
         med["page_model"] < BIG_PAGE_TARGET_S),
    ]

    print()
    print(f"## Models pages — {n_models} models, {meta['total_versions']:,} versions, `{BIG}` has {n_big:,} "
          f"(MLflow SQLite, median of {args.reps})")
    print()
    print("| page | GC | raw MLflow calls | service use case | page (cache cleared) | page (cached) | page / raw "
          "| page / raw, best of n |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for label, m in (("as is", as_is), ("after `gc.freeze()`", frozen)):
        if m is None:
            continue
        md, bs = m["med"], m["best"]
        for page_label, k in (("`/models`", "list"), (f"`/models?model={BIG}`", "model")):
            print(f"| {page_label} | {label} | {fmt_ms(md['raw_' + k])} | {fmt_ms(md['svc_' + k])} "
                  f"({md['svc_' + k] / md['raw_' + k]:.2f}×) | {fmt_ms(md['page_' + k])} | "
                  f"{fmt_ms(md['page_' + k + '_cached'])} | **{md['page_' + k] / md['raw_' + k]:.2f}×** | "
                  f"{bs['page_' + k] / bs['raw_' + k]:.2f}× |")
    print()
    print("| target (app as is) | measured | |")
    print("|---|---:|---|")
    for label, value, ok in results:
        print(f"| {label} | {value} | {'TARGET MET' if ok else 'TARGET MISSED'} |")
    print(f"\nMedians of {args.reps} interleaved runs, each started after `gc.collect()`; targets are judged on "
          f"the medians of the app as is. 1-min load average {load_before:.1f} → {load_after:.1f} on "
          f"{os.cpu_count()} CPUs (other work on the machine moves the medians; best-of-n is steadier).")
    print(f"\n`history.model_view` makes the same reads as the raw column (one `get_registered_model`, one paged "
          f"version search, batched run searches): {fmt_ms(med['svc_model'])} vs raw {fmt_ms(med['raw_model'])}.")
    rw = {k: sum(1 for g in v if g) for k, v in as_is["gcs"].items()}
    print(f"\nGarbage collection: one full collection of this process's heap ({as_is['gc_objects']:,} tracked "
          f"objects) takes {fmt_ms(as_is['gc_s'])}. Runs (of {args.reps}) with a full collection inside: "
          f"model page: raw {rw['raw_model']}, model_view {rw['svc_model']}, list_versions "
          f"{rw['svc_model_one_pass']}, page {rw['page_model']}; list page: raw {rw['raw_list']}, "
          f"page {rw['page_list']}.")
    if frozen is not None:
        print(f"After `gc.freeze()` ({gc.get_freeze_count():,} objects frozen) a full collection takes "
              f"{fmt_ms(frozen['gc_s'])}.")
    if build_s is not None:
        print(f"\nRegistry build (not part of the figures): {build_s:.1f} s.")

    if args.profile or not all(ok for *_x, ok in results):
        print("\n### Where the time goes (one uncached run, cProfile, cumulative)\n")
        if not results[0][2] or args.profile:
            print("`/models`:\n```")
            print(profile_page(at_list))
            print("```")
        if not (results[1][2] and results[2][2]) or args.profile:
            print(f"`/models?model={BIG}`:\n```")
            print(profile_page(at_model))
            print("```")


if __name__ == "__main__":
    main()
