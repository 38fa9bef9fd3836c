"""What every benchmark script needs before importing the project: the repo on sys.path, quiet MLflow."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


def local_registry(tmp: Path):
    """A fresh MLflow store (SQLite) under ``tmp/registry`` set as the tracking and registry URI: (client, uri,
    experiment id of "bench")."""
    import mlflow
    from mlflow import MlflowClient

    reg = tmp / "registry"
    reg.mkdir()
    uri = f"sqlite:///{reg / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    return client, uri, client.create_experiment("bench", artifact_location=(reg / "artifacts").as_uri())
