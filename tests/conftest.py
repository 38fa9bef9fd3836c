"""Shared fixtures: a real MLflow store (SQLite) with small real models, and containers
over SQLite or the machine's PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
# Tests drive development identities on PostgreSQL, MLflow servers and the Kubernetes double on purpose; the
# app and the CLI refuse that outside tests (services/auth/local.py). Tests of the refusal pass their own env.
os.environ.setdefault("MLOPS_ALLOW_DEV_AUTH", "1")
# The console's keep-warm thread (dashboard/shared_reads.py) would go on re-reading a finished test's stores for
# minutes, beside the next tests; tests/unit/test_shared_reads.py drives it directly.
os.environ.setdefault("MLOPS_KEEP_WARM_SECONDS", "0")

pytest_plugins = ("tests.k8s_double.fixtures",)

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("MLOPS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MODEL = "cls model ü'%_"  # spaces, unicode, a quote, LIKE wildcards: must work everywhere
ENDPOINT = "screening"

TEST_POLICY = {
    "defaults": {"require_approval": ["promote"], "gates": {"offline": []}},
    "endpoints": {
        ENDPOINT: {"gates": {"offline": [{"metric": "accuracy", "direction": "higher", "max_regression": 0.05}]}},
    },
}


def wait_for(what: str, check, *, timeout: float = 60.0, every: float = 0.2):
    """Poll ``check`` (another process's work) until it returns something true, at most ``timeout`` seconds;
    an exception counts as "not yet". Fails naming ``what`` and the last answer seen."""
    import time

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline, then say what was seen
            last = exc
        time.sleep(every)  # bounded polling
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, timeout: float = 2.0) -> int:
    """The HTTP status ``url`` answers a GET with, 0 when it does not answer (not up yet, or gone)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _log_version(client, exp_id: str, name: str, *, C: float, accuracy: float, extra_feature: bool = False,
                 extra_req: str | None = None) -> str:
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(int(C * 100))
    cols = ["mean radius", "mean texture"] + (["ratio"] if extra_feature else [])
    x = pd.DataFrame(rng.normal(size=(40, len(cols))), columns=cols)
    y = (x.iloc[:, 0] > 0).astype(int)
    model = LogisticRegression(C=C).fit(x, y)
    reqs = ["scikit-learn==1.9.1", "pandas==3.1.1"] + ([extra_req] if extra_req else [])
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_params({"C": C, "features": len(cols)})
        mlflow.log_metrics({"accuracy": accuracy, "roc_auc": accuracy + 0.02})
        for step in range(3):
            mlflow.log_metric("val_loss", 1.0 / (step + 1 + C), step=step)
        mlflow.set_tag("mlflow.source.git.commit", f"{int(C * 1000):040x}")
        info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(x, model.predict(x)),
                                        pip_requirements=reqs)
    mv = client.create_model_version(name, info.model_uri, run_id=run.info.run_id,
                                      description=f"LogisticRegression C={C}")
    client.set_model_version_tag(name, mv.version, "validation_status", "passed")
    return mv.version


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory) -> Path:
    """A real MLflow SQLite store with MODEL v1..v3 (v3 has another input schema) and model "other"."""
    import mlflow
    from mlflow import MlflowClient

    d = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    prev = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        client = MlflowClient(uri, uri)
        exp = client.create_experiment("tests", artifact_location=(d / "artifacts").as_uri())
        client.create_registered_model(MODEL, description="test classifier", tags={"team": "qa"})
        _log_version(client, exp, MODEL, C=0.1, accuracy=0.90)
        _log_version(client, exp, MODEL, C=1.0, accuracy=0.93, extra_req="scipy==1.17.1")
        _log_version(client, exp, MODEL, C=10.0, accuracy=0.70, extra_feature=True)
        # v4: registered, but its model files are gone (rollback preflight must refuse it)
        client.create_model_version(MODEL, (d / "artifacts" / "deleted-model").as_uri(),
                                    description="files deleted")
        client.set_registered_model_alias(MODEL, "champion", "1")
        client.set_registered_model_alias(MODEL, "challenger", "2")
        client.create_registered_model("other")
        client.create_model_version("other", "file:///nonexistent/model")
    finally:
        mlflow.set_tracking_uri(prev)
    return d


def fresh_registry(template: Path, dest: Path) -> str:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(template / "mlflow.db", dest / "mlflow.db")
    return f"sqlite:///{dest / 'mlflow.db'}"


def _pg_available() -> bool:
    try:
        import sqlalchemy as sa

        eng = sa.create_engine(PG_URL)
        with eng.connect():
            pass
        eng.dispose()
        return True
    except Exception:  # noqa: BLE001
        return False


def fresh_pg_url() -> str:
    """A new, empty PostgreSQL database for one test (dropped by the caller's finalizer)."""
    import sqlalchemy as sa

    name = f"mlops_t_{uuid.uuid4().hex[:10]}"
    eng = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    eng.dispose()
    return PG_URL.rsplit("/", 1)[0] + "/" + name


def drop_pg(url: str) -> None:
    import sqlalchemy as sa

    name = url.rsplit("/", 1)[1]
    eng = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'console.db'}"
        return
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL} (CI must start it)")
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    url = fresh_pg_url()
    yield url
    drop_pg(url)


class Clock:
    """A clock tests move by hand (no sleeping)."""

    def __init__(self):
        from datetime import UTC, datetime

        self.now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def __call__(self):
        return self.now

    def advance(self, **kw):
        from datetime import timedelta

        self.now += timedelta(**kw)


@pytest.fixture
def clock():
    return Clock()


def make_container(tracking_uri: str, database_url: str, data_dir: Path, clock=None, policy=None, serving=None,
                   **env):
    from services.composition import build
    from services.policy import Policy
    from services.settings import Settings

    settings = Settings.from_env({"MLFLOW_TRACKING_URI": tracking_uri, "MLOPS_DATABASE_URL": database_url,
                                  "MLOPS_DATA_DIR": str(data_dir), **env}, secrets_path=data_dir / "none.toml")
    from services.actions.catalog import VOCABULARY

    kwargs = {"policy": Policy.from_dict(policy or TEST_POLICY, VOCABULARY)}
    if clock is not None:
        kwargs["clock"] = clock
    if serving is not None:
        kwargs["serving"] = serving
    return build(settings, **kwargs)


@pytest.fixture
def container(registry_template, database_url, tmp_path, clock):
    """A container over a fresh copy of the registry and an empty console database, with an endpoint
    serving MODEL v1 (the champion) and a canary v2 at 20 %."""
    uri = fresh_registry(registry_template, tmp_path / "reg")
    c = make_container(uri, database_url, tmp_path, clock=clock)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1", canary_version="2", canary_weight=20)
    yield c
    c.engine.dispose()
