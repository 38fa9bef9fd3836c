"""The console for ``bench/load.py``: ``streamlit run dashboard/app.py`` in this process, with read counters.

    python bench/_load_server.py COUNTERS_FILE [streamlit run options…]

Before Streamlit starts, the adapters the pages read through are wrapped so that every call is counted — each
``MlflowClient`` call the registry adapter makes (its ``_Guarded`` client: one registry round trip), each public
method of the SQL metrics source and prediction log, and each build of the service container (the
``st.cache_resource`` of ``dashboard/bootstrap.py``) — in a shared memory-mapped file of int64 slots
(``COUNTERS_FILE``, names in ``COUNTERS_FILE.names``), so the bench reads them at any moment without asking the
server. Nothing else changes: the same app, the same Streamlit server, one process (like ``make run``).
With ``LOAD_PROFILE=PATH`` a thread samples the script threads' stacks (:func:`profiler`; ``--profile``). With
``LOAD_TRACEMALLOC=PATH`` (``--trace-memory``) one traces the allocations of the load phase (:func:`tracer`).

Also the process statistics the bench samples from outside (``/proc``): RSS of a process and its children, CPU
seconds.
"""

from __future__ import annotations

import json
import mmap
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT  # noqa: E402  (sets up sys.path and MLflow's environment)

COUNTED = {  # slot name -> (module, class); every public method of the class counts into the slot
    "metrics": ("services.metrics.sql", "SqlMetricsSource"),
    "predictions": ("services.predictions.sql", "SqlPredictionLog"),
}
SLOTS = ("mlflow_calls", "container_builds", *COUNTED, "profile_phase", "profile_dump", "profile_written",
         "trace_phase", "trace_written")
PROFILED_THREADS = "ScriptRunner"  # Streamlit's script threads: "ScriptRunner.scriptThread"


class Counters:
    """int64 slots in a shared file: the server adds, the bench reads."""

    def __init__(self, path: Path, *, create: bool):
        self.index = {n: i for i, n in enumerate(SLOTS)}
        if create:
            path.write_bytes(b"\0" * 8 * len(SLOTS))
            Path(f"{path}.names").write_text(json.dumps(SLOTS))
        self._file = path.open("r+b")
        self._map = mmap.mmap(self._file.fileno(), 8 * len(SLOTS))
        self._view = memoryview(self._map).cast("q")
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._view[self.index[name]] += n

    def set(self, name: str, value: int) -> None:
        with self._lock:
            self._view[self.index[name]] = value

    def read(self) -> dict[str, int]:
        return {n: int(self._view[i]) for n, i in self.index.items()}


def _instrument(counters: Counters) -> None:
    import importlib
    import inspect

    from services.registry import mlflow_registry

    guarded_getattr = mlflow_registry._Guarded.__getattr__

    def counting_getattr(self, name: str):
        attr = guarded_getattr(self, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            counters.add("mlflow_calls")
            if MLFLOW_CALLERS is not None:  # --profile: who asks (the console's nearest frames), by phase
                MLFLOW_CALLERS[(counters.read()["profile_phase"], _callers(sys._getframe(1)), name)] += 1
            return attr(*args, **kwargs)

        return call

    mlflow_registry._Guarded.__getattr__ = counting_getattr
    for slot, (module, cls_name) in COUNTED.items():
        cls = getattr(importlib.import_module(module), cls_name)
        for name, fn in list(vars(cls).items()):
            if name.startswith("_") or not inspect.isfunction(fn):
                continue

            def counted(*args, _fn=fn, _slot=slot, **kwargs):
                counters.add(_slot)
                return _fn(*args, **kwargs)

            setattr(cls, name, counted)
    from services import composition

    build = composition.build

    def counting_build(*args, **kwargs):
        counters.add("container_builds")
        return build(*args, **kwargs)

    composition.build = counting_build  # dashboard.bootstrap imports it after this


# -- a sampling profiler of the script threads (--profile) ----------------------------------------------------
MLFLOW_CALLERS = None  # Counter of (phase, callers, MLflow method) with --profile
GC_PAUSES: dict[str, float] = {}  # with --profile: collections and their seconds, by generation


def _time_gc() -> None:
    import gc
    import time

    started = [0.0]

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        g = f"gen{info['generation']}"
        GC_PAUSES[g + " count"] = GC_PAUSES.get(g + " count", 0) + 1
        GC_PAUSES[g + " seconds"] = GC_PAUSES.get(g + " seconds", 0.0) + time.perf_counter() - started[0]

    gc.callbacks.append(callback)


def _callers(frame, n: int = 3) -> str:
    out = []
    while frame is not None and len(out) < n:
        path = frame.f_code.co_filename
        if "/dashboard/" in path or "/pages/" in path:
            out.append(_where(frame))
        frame = frame.f_back
    return " <- ".join(out) or "(not a page)"


def _where(frame) -> str:
    path = frame.f_code.co_filename
    for root in (str(ROOT) + "/", "site-packages/"):
        if root in path:
            path = path.split(root, 1)[1]
            break
    return f"{path}:{frame.f_code.co_name}"


def profiler(counters: Counters, out: Path, every: float = 0.005) -> None:
    """Every ``every`` s, the stack of each script thread, by the phase the bench set (``profile_phase``: 0 off);
    written as collapsed stacks (``out.PHASE.folded``: one ``a;b;c COUNT`` line per stack) when the bench bumps
    ``profile_dump``. Wall time: a thread waiting for the GIL counts where it waits to run."""
    import time
    from collections import Counter

    stacks: dict[int, Counter] = {}
    me, written = threading.get_ident(), 0
    while True:
        time.sleep(every)
        c = counters.read()
        if c["profile_phase"]:
            names = {t.ident: t.name for t in threading.enumerate()}
            agg = stacks.setdefault(c["profile_phase"], Counter())
            for tid, frame in sys._current_frames().items():
                if tid == me or not names.get(tid, "").startswith(PROFILED_THREADS):
                    continue
                parts = []
                while frame is not None:
                    parts.append(_where(frame))
                    frame = frame.f_back
                agg[";".join(reversed(parts))] += 1
        if c["profile_dump"] != written:
            for phase, agg in stacks.items():
                Path(f"{out}.{phase}.folded").write_text("".join(f"{k} {n}\n" for k, n in agg.most_common()))
            Path(f"{out}.mlflow.json").write_text(json.dumps([[*k, n] for k, n in MLFLOW_CALLERS.most_common()]))
            from dashboard.shared_reads import stats

            Path(f"{out}.shared.json").write_text(json.dumps({**stats(), "gc": GC_PAUSES}, indent=1))
            written = c["profile_dump"]
            counters.set("profile_written", written)


def tracer(counters: Counters, out: Path, frames: int = 12) -> None:
    """``trace_phase`` 1: start tracing allocations (only those made from now on are seen); 2: collect the
    garbage, write a snapshot of what is still held (``out``, ``tracemalloc.Snapshot.dump``) and stop."""
    import gc
    import time
    import tracemalloc

    while True:
        time.sleep(0.2)
        phase = counters.read()["trace_phase"]
        if phase == 1 and not tracemalloc.is_tracing():
            tracemalloc.start(frames)
        elif phase == 2 and tracemalloc.is_tracing():
            gc.collect()
            tracemalloc.take_snapshot().dump(str(out))
            tracemalloc.stop()
            counters.set("trace_written", 1)
            return


# -- /proc ---------------------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants (VmRSS), MB."""
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (and the reaped ones it waited for)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for i, p in enumerate(tree(pid)):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if i == 0 else 0)
    return total / tick


def main() -> None:
    counters = Counters(Path(sys.argv[1]), create=True)
    _instrument(counters)
    if os.environ.get("LOAD_PROFILE"):
        global MLFLOW_CALLERS
        from collections import Counter

        MLFLOW_CALLERS = Counter()
        _time_gc()
        threading.Thread(target=profiler, args=(counters, Path(os.environ["LOAD_PROFILE"])), daemon=True,
                         name="load-profiler").start()
    if os.environ.get("LOAD_TRACEMALLOC"):
        threading.Thread(target=tracer, args=(counters, Path(os.environ["LOAD_TRACEMALLOC"])), daemon=True,
                         name="load-tracer").start()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(ROOT / "dashboard" / "app.py"), *sys.argv[2:]]
    cli.main()


if __name__ == "__main__":
    main()
