"""The Deployments page with MLOPS_SERVING_BACKEND=kserve: the app loads a kubeconfig that points at the
in-repo Kubernetes API double, as it would point at a cluster."""

from __future__ import annotations

import pytest

from tests.ui.conftest import texts

CLS = "breast-cancer-classifier"
ANN = "mlops-console.io/"


@pytest.fixture
def kserve_env(app, demo_env, k8s_double, tmp_path, monkeypatch):
    from services.registry.mlflow_registry import MlflowRegistry

    reg = MlflowRegistry(demo_env["MLFLOW_TRACKING_URI"])
    v2 = reg.get_version(CLS, "2")
    storage = reg.storage_uri(CLS, "2")
    k8s_double.put_object({
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "screening", "namespace": "ml", "annotations": {
            ANN + "registered-model": CLS, ANN + "model-version": "2", ANN + "run-id": v2.run_id,
            ANN + "storage-uri": storage}},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage},
                               "minReplicas": 2}}})
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
    return app


def test_kserve_endpoint_renders_and_dry_run_shows_the_patch(kserve_env, k8s_double):
    run = kserve_env
    at = run("deployments.py", endpoint="ml/screening", identity="alice")
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Stable"], metrics["Replicas"], metrics["Champion (registry)"]) == ("v2", "2", "v2")
    assert at.dataframe[0].value.iloc[0]["Registry"] == "agrees"
    at.selectbox(key="canary-version").set_value("4")
    at.number_input(key="canary-weight").set_value(15)
    at.button(key="action-canary").click().run()
    assert not at.error, [e.value for e in at.error]
    patch = "\n".join(str(c.value) for c in at.code)
    assert '"op": "test"' in patch and "/metadata/resourceVersion" in patch and "canaryTrafficPercent" in patch
    assert "kserve" in texts(at)
    assert "canaryTrafficPercent" not in k8s_double.get_object("ml", "screening")["spec"]["predictor"]


def test_forbidden_namespace_shows_read_only(kserve_env, k8s_double):
    k8s_double.deny("patch", "ml")
    at = kserve_env("deployments.py", endpoint="ml/screening", identity="alice")
    assert not at.exception
    assert "Read-only" in texts(at)
    assert all(b.disabled for b in at.button if (b.key or "").startswith("action-"))
