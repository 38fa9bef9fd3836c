"""Benchmark: ``services.drift.stats.dataset_drift`` against Evidently 0.7's DataDriftPreset on the same data.

    python bench/drift.py [--small] [--reference N] [--current N] [--seed S]

20 features (17 numeric of four distribution shapes, one with 1 % NaN and a few ±inf, one with 5 distinct
values; 3 categorical of 2, 5 and 12 categories), 100,000 reference × 1,000,000 current rows (``--small``:
2,000 × 20,000; ``--reference 800`` exercises the p-value tests), six features shifted (mean, scale, category
shares). Both sides read the same Parquet files from a temporary folder.

* Baseline, same run: Evidently 0.7 ``Report([DataDriftPreset()]).run(current, reference)`` with the column
  types given explicitly (``DataDefinition``), in its own virtualenv outside the repository
  (``$MLOPS_BENCH_EVIDENTLY_VENV``, default ``~/.cache/mlops-console/venv-evidently``; Evidently needs
  pandas < 3; created with ``python3 -m venv`` and ``pip install "evidently==0.7.*" "pandas<3" pyarrow`` when
  missing), timed around ``run`` only (not the Parquet read), once.
* Ours: ``dataset_drift`` in this process on the DataFrames read from the same files, best and worst of 3 runs
  with its default threads (one per CPU) and of 3 on one thread; the speed ratio uses the worst (Evidently runs
  on one thread; the one-thread ratio is printed beside it).
* ``--num-method M`` forces one method on the numeric features on both sides (ks, wasserstein or
  jensenshannon: Evidently takes chi-square and Z for categorical columns only; checks e.g. Jensen–Shannon's
  Sturges bins, which the automatic choice does not reach on these data).

Prints both times, the ratio (target >= 10x), and per column both methods and scores (the p-value of a test,
else the distance) with their absolute difference. Exits 1 when a column's method differs from Evidently's or
a score differs by more than 1e-6; the speed target is reported (TARGET MET / MISSED), not enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402, F401  (sets up sys.path)

ROOT = Path(__file__).resolve().parent.parent
# outside the repository: a virtualenv's third-party files are not the project's
EVIDENTLY_VENV = Path(os.environ.get("MLOPS_BENCH_EVIDENTLY_VENV",
                                     Path.home() / ".cache" / "mlops-console" / "venv-evidently")).expanduser()
EVIDENTLY_PACKAGES = ("evidently==0.7.*", "pandas<3", "pyarrow")
SPEED_TARGET = 10.0
TOLERANCE = 1e-6
NUMERIC, CATEGORICAL = 17, 3

EVIDENTLY_SCRIPT = r'''
import json, sys, time
import pandas as pd
from evidently import DataDefinition, Dataset, Report, __version__
from evidently.legacy.calculations.stattests.registry import _registered_stat_tests
from evidently.presets import DataDriftPreset

folder, numeric, categorical = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
num_method = sys.argv[4] if len(sys.argv) > 4 else None
reference = pd.read_parquet(f"{folder}/reference.parquet")
current = pd.read_parquet(f"{folder}/current.parquet")
definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
names = {t.display_name: t.name for tests in _registered_stat_tests.values() for t in tests.values()}
started = time.perf_counter()
report = Report([DataDriftPreset(num_method=num_method)])
snapshot = report.run(Dataset.from_pandas(current, data_definition=definition),
                      Dataset.from_pandas(reference, data_definition=definition))
seconds = time.perf_counter() - started
columns, share = {}, None
for metric in snapshot.dict()["metrics"]:
    config = metric["config"]
    if config["type"].endswith("ValueDrift"):
        columns[config["column"]] = {"method": names.get(config["method"], config["method"]),
                                     "score": metric["value"], "threshold": config["threshold"]}
    elif config["type"].endswith("DriftedColumnsCount"):
        share = metric["value"]["share"]
print(json.dumps({"seconds": seconds, "columns": columns, "share": share, "version": __version__,
                  "pandas": pd.__version__}))
'''


def ensure_evidently() -> Path:
    """The Evidently virtualenv's python, created and installed when missing (PyPI)."""
    python = EVIDENTLY_VENV / "bin" / "python"
    probe = [str(python), "-c", "import evidently, pyarrow"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    base = shutil.which("python3") or sys.executable
    print(f"creating {EVIDENTLY_VENV} (Evidently 0.7 with pandas < 3) ...", flush=True)
    EVIDENTLY_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([base, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *EVIDENTLY_PACKAGES], check=True)
    return python


def make_data(n_ref: int, n_cur: int, seed: int):
    """(reference, current, numeric names, categorical names): the same generators, six features shifted."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    shifts = {1: ("mean", 0.5), 4: ("mean", 0.1), 7: ("scale", 1.5), 10: ("mean", 0.05)}

    def numeric(i: int, n: int, current: bool) -> np.ndarray:
        how, amount = shifts.get(i, (None, 0.0)) if current else (None, 0.0)
        if i == NUMERIC - 1:  # five distinct values
            return rng.choice(np.arange(5.0), n, p=[0.1, 0.2, 0.4, 0.2, 0.1] if not current else
                              [0.1, 0.2, 0.38, 0.22, 0.1])
        shape = i % 4
        x = (rng.normal(0, 1, n) if shape == 0 else rng.lognormal(0, 0.5, n) if shape == 1 else
             rng.uniform(0, 10, n) if shape == 2 else rng.gamma(2.0, 2.0, n))
        sd = float(np.std(x))
        if how == "mean":
            x = x + amount * sd
        elif how == "scale":
            x = (x - x.mean()) * amount + x.mean()
        if i == NUMERIC - 2:  # 1 % NaN and a few ±inf
            x[rng.random(n) < 0.01] = np.nan
            x[rng.integers(0, n, 3)] = np.inf
            x[rng.integers(0, n, 2)] = -np.inf
        return x

    def categorical(j: int, n: int, current: bool) -> np.ndarray:
        k = (2, 5, 12)[j]
        p = np.linspace(1.0, 2.0, k)
        if current and j == 1:
            p = p[::-1]
        return np.array([f"cat{j}_{v}" for v in range(k)], dtype=object)[rng.choice(k, n, p=p / p.sum())]

    num = [f"f{i:02d}" for i in range(NUMERIC)]
    cat = [f"c{j}" for j in range(CATEGORICAL)]
    frames = []
    for n, current in ((n_ref, False), (n_cur, True)):
        data = {name: numeric(i, n, current) for i, name in enumerate(num)}
        data.update({name: pd.array(categorical(j, n, current), dtype="str") for j, name in enumerate(cat)})
        frames.append(pd.DataFrame(data))
    return frames[0], frames[1], num, cat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="2,000 reference × 20,000 current rows")
    ap.add_argument("--reference", type=int, help="reference rows (default 100,000; --small 2,000)")
    ap.add_argument("--current", type=int, help="current rows (default 1,000,000; --small 20,000)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--num-method", choices=["ks", "wasserstein", "jensenshannon"],
                    help="force this method on the numeric features, on both sides (default: automatic)")
    args = ap.parse_args()
    n_ref = args.reference or (2_000 if args.small else 100_000)
    n_cur = args.current or (20_000 if args.small else 1_000_000)

    import pandas as pd

    from services.drift.stats import P_VALUE_METHODS, dataset_drift

    python = ensure_evidently()
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as folder:
        reference, current, num, cat = make_data(n_ref, n_cur, args.seed)
        reference.to_parquet(os.path.join(folder, "reference.parquet"), index=False)
        current.to_parquet(os.path.join(folder, "current.parquet"), index=False)
        del reference, current
        print(f"{len(num) + len(cat)} features ({len(num)} numeric, {len(cat)} categorical), "
              f"{n_ref:,} reference × {n_cur:,} current rows", flush=True)
        script = Path(folder) / "evidently_run.py"
        script.write_text(EVIDENTLY_SCRIPT)
        run = subprocess.run([str(python), str(script), folder, ",".join(num), ",".join(cat),
                              *([args.num_method] if args.num_method else [])],
                             capture_output=True, text=True)
        if run.returncode != 0:
            print(run.stderr[-4000:], file=sys.stderr)
            print("FAILED: the Evidently run failed", file=sys.stderr)
            return 1
        theirs = json.loads(run.stdout.strip().splitlines()[-1])
        reference = pd.read_parquet(os.path.join(folder, "reference.parquet"))
        current = pd.read_parquet(os.path.join(folder, "current.parquet"))
    kinds = {**{c: "numeric" for c in num}, **{c: "categorical" for c in cat}}
    times: dict[int | None, list[float]] = {None: [], 1: []}
    for workers in (None, 1, None, 1, None, 1):
        started = time.perf_counter()
        ours = dataset_drift(reference, current, kinds=kinds, methods=dict.fromkeys(num, args.num_method),
                             workers=workers)
        times[workers].append(time.perf_counter() - started)

    print(f"\n{'column':<8}{'method (ours)':<16}{'method (Evidently)':<20}{'ours':>24}{'Evidently':>24}{'|diff|':>11}")
    worst, mismatched = 0.0, []
    for col in ours.columns:
        other = theirs["columns"].get(col.column, {})
        score = col.p_value if col.method in P_VALUE_METHODS else col.statistic
        same = other.get("method") == col.method
        diff = abs(score - other["score"]) if same and score is not None else None
        if not same:
            mismatched.append(col.column)
        if diff is not None:
            worst = max(worst, diff)
        print(f"{col.column:<8}{col.method:<16}{other.get('method', '—'):<20}{score!s:>24}{other.get('score')!s:>24}"
              f"{'—' if diff is None else f'{diff:.1e}':>11}")
    ratio, ratio_one = theirs["seconds"] / max(times[None]), theirs["seconds"] / max(times[1])
    print(f"\ndataset drift share: ours {ours.share:.3f} ({ours.drifted_columns}/{ours.computable_columns}), "
          f"Evidently {theirs['share']:.3f}")
    print(f"ours:      {min(times[None]):.2f} s best, {max(times[None]):.2f} s worst of 3 (dataset_drift, in process, "
          f"{os.cpu_count()} CPUs: one thread per CPU); one thread: {min(times[1]):.2f} s best, "
          f"{max(times[1]):.2f} s worst of 3")
    print(f"Evidently: {theirs['seconds']:.2f} s (Evidently {theirs['version']}, pandas {theirs['pandas']}, "
          "Report([DataDriftPreset()]).run)")
    print(f"speed:     {ratio:.1f}x faster (worst of ours; one thread: {ratio_one:.1f}x) — target >= "
          f"{SPEED_TARGET:g}x: {'TARGET MET' if ratio >= SPEED_TARGET else 'TARGET MISSED'}")
    print(f"agreement: max |score difference| {worst:.2e} over the columns with the same method "
          f"(target <= {TOLERANCE:g}); methods differ on: {', '.join(mismatched) or 'none'}")
    if mismatched or worst > TOLERANCE:
        print("FAILED: the statistics do not match Evidently's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
