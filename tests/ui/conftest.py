"""AppTest fixtures: a seeded demo in a temporary data folder, and the app pointed at it by environment."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

APP = str(ROOT / "dashboard" / "app.py")


@pytest.fixture(scope="session")
def demo_env(tmp_path_factory):
    from services.composition import build
    from services.demo import seed_demo
    from services.settings import Settings

    d = tmp_path_factory.mktemp("demo")
    env = {"MLOPS_DATA_DIR": str(d), "MLFLOW_TRACKING_URI": f"sqlite:///{d / 'mlflow.db'}",
           "MLOPS_DATABASE_URL": f"sqlite:///{d / 'console.db'}"}
    c = build(Settings.from_env(env, secrets_path=d / "none.toml"))
    seed_demo(c.settings, c.registry, c.serving)
    c.engine.dispose()
    return env


@pytest.fixture
def app(demo_env, monkeypatch):
    """Returns a function: page file name, query params, identity -> an AppTest that has run."""
    from streamlit.testing.v1 import AppTest

    for k, v in demo_env.items():
        monkeypatch.setenv(k, v)
    for k in ("MLOPS_SERVING_BACKEND", "MLOPS_POLICY_FILE", "MLOPS_DEV_IDENTITIES"):
        monkeypatch.delenv(k, raising=False)

    def run(page: str | None = None, identity: str | None = None, **query) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        for k, v in query.items():
            at.query_params[k] = v
        if identity:
            at.session_state["dev-identity"] = identity
        if page:
            at.switch_page(str(ROOT / "pages" / page))
        at.run()
        return at

    return run


@pytest.fixture
def private_demo(demo_env, tmp_path, monkeypatch):
    """A private copy of the seeded demo (its registry and console databases) for a test that changes it;
    the app of the ``app`` fixture reads it. Returns a function building containers over the copy."""
    import shutil
    from pathlib import Path

    from services.composition import build
    from services.settings import Settings

    src = Path(demo_env["MLOPS_DATA_DIR"])
    for name in ("mlflow.db", "console.db"):
        shutil.copy(src / name, tmp_path / name)
    env = {**demo_env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "MLOPS_DATABASE_URL": f"sqlite:///{tmp_path / 'console.db'}"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    built = []

    def container():
        c = build(Settings.from_env(env, secrets_path=tmp_path / "none.toml"))
        built.append(c)
        return c

    yield container
    for c in built:
        c.engine.dispose()


def texts(at) -> str:
    """All text the page shows (markdown, titles, captions, alerts), for 'key content present' checks."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "error", "warning", "info", "success",
                 "metric"):
        for el in getattr(at, kind):
            parts.append(str(getattr(el, "value", "")) + " " + str(getattr(el, "label", "")))
    return "\n".join(parts)


def serve_on_kserve(demo_env, k8s_double, tmp_path, monkeypatch, *, predictor: dict | None = None,
                    annotations: dict | None = None) -> None:
    """The demo's breast-cancer-classifier v2 as InferenceService ``ml/screening`` in the Kubernetes API double,
    and the app pointed at the double by a kubeconfig, as it would point at a cluster."""
    from services.registry.mlflow_registry import MlflowRegistry

    cls, ann = "breast-cancer-classifier", "mlops-console.io/"
    reg = MlflowRegistry(demo_env["MLFLOW_TRACKING_URI"])
    storage = reg.storage_uri(cls, "2")
    k8s_double.put_object({
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "screening", "namespace": "ml", "annotations": {
            ann + "registered-model": cls, ann + "model-version": "2", ann + "run-id": reg.get_version(cls, "2").run_id,
            ann + "storage-uri": storage, **(annotations or {})}},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage},
                               **(predictor or {})}}})
    k8s_double.simulate_controller("ml", "screening")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: double, cluster: {{server: "{k8s_double.url}"}}}}]
users: [{{name: console, user: {{token: test-token}}}}]
contexts: [{{name: double, context: {{cluster: double, user: console, namespace: ml}}}}]
current-context: double
""")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("MLOPS_SERVING_BACKEND", "kserve")
