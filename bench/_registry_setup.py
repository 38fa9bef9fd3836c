"""The registry the Models-pages benchmark reads: ``--models`` registered models, one of them (``big-model``)
with ``--versions`` versions, each linked to its own run with four metrics (MLflow SQLite).

    python bench/_registry_setup.py STORE [--models 100] [--versions 1000]

``ensure_store`` builds it once per directory (reused when ``meta.json`` matches) in a child process
running this file, so the measuring process starts with a clean MLflow client.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402, F401  (sets up sys.path and MLflow's environment)

BIG = "big-model"
METRICS = ("accuracy", "roc_auc", "f1", "val_loss")


def _fast_sqlite(client) -> None:
    """Build only: no fsync and an in-memory journal on MLflow's engines (8x faster writes)."""
    from sqlalchemy import event

    stores = {id(s): s for s in (client._tracking_client.store, client._get_registry_client().store)}
    for store in stores.values():
        engine = store.engine

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _rec):
            dbapi_conn.execute("PRAGMA synchronous=OFF")
            dbapi_conn.execute("PRAGMA journal_mode=MEMORY")

        engine.dispose()


def build_store(store: Path, n_models: int, n_versions: int) -> dict:
    """Runs in a child process. Writes ``store/mlflow.db`` and ``store/meta.json``."""
    import logging

    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    store.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    t0 = time.perf_counter()
    client = MlflowClient(uri, uri)
    exp = client.create_experiment("bench", artifact_location=(store / "artifacts").as_uri())
    exp2 = client.create_experiment("bench-other", artifact_location=(store / "artifacts2").as_uri())
    t_schema = time.perf_counter() - t0
    _fast_sqlite(client)

    t0 = time.perf_counter()
    runs = []
    now = int(time.time() * 1000)
    for i in range(n_versions):
        run = client.create_run(exp if i % 2 == 0 else exp2, start_time=now, run_name=f"train-{i}")
        rid = run.info.run_id
        acc = 0.80 + 0.15 * ((i * 37) % 100) / 100
        client.log_batch(
            rid,
            metrics=[Metric("accuracy", acc, now, 0), Metric("roc_auc", acc + 0.02, now, 0),
                     Metric("f1", acc - 0.03, now, 0), Metric("val_loss", 1.0 - acc, now, 0)],
            params=[Param("C", str(0.01 * (i + 1))), Param("max_iter", "200")],
        )
        client.set_terminated(rid, end_time=now + 1000)
        runs.append(rid)
    t_runs = time.perf_counter() - t0

    t0 = time.perf_counter()
    src = (store / "artifacts" / "model").as_uri()
    client.create_registered_model(BIG, description="bench: the model with many versions",
                                   tags={"team": "bench"})
    for i, rid in enumerate(runs):
        mv = client.create_model_version(BIG, src, run_id=rid, description=f"version {i + 1}")
        if i % 10 == 0:
            client.set_model_version_tag(BIG, mv.version, "validation_status", "passed")
    client.set_registered_model_alias(BIG, "champion", str(n_versions // 2))
    client.set_registered_model_alias(BIG, "challenger", str(n_versions))
    other_versions = 0
    for m in range(n_models - 1):
        name = f"model-{m:03d}"
        client.create_registered_model(name, description=f"bench model {m}", tags={"team": f"t{m % 5}"})
        for k in range(2):
            client.create_model_version(name, src, run_id=runs[(m * 2 + k) % len(runs)])
            other_versions += 1
        client.set_registered_model_alias(name, "champion", "1")
    t_reg = time.perf_counter() - t0
    meta = {"models": n_models, "versions": n_versions, "total_versions": n_versions + other_versions,
            "runs": len(runs), "build_s": {"schema": t_schema, "runs+metrics": t_runs, "registry": t_reg}}
    (store / "meta.json").write_text(json.dumps(meta))
    return meta


def ensure_store(store: Path, n_models: int, n_versions: int) -> tuple[dict, float | None]:
    meta_file = store / "meta.json"
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if meta.get("models") == n_models and meta.get("versions") == n_versions:
            return meta, None
        shutil.rmtree(store)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, str(store), "--models", str(n_models),
                    "--versions", str(n_versions)], check=True)
    return json.loads(meta_file.read_text()), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", type=Path)
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--versions", type=int, default=1000)
    args = ap.parse_args()
    build_store(args.store, args.models, args.versions)


if __name__ == "__main__":
    main()
