"""The Deployments page with MLOPS_SERVING_BACKEND=kserve: the app loads a kubeconfig that points at the
in-repo Kubernetes API double, as it would point at a cluster."""

from __future__ import annotations

import pytest

from tests.ui.conftest import serve_on_kserve, texts

CLS = "breast-cancer-classifier"
ANN = "mlops-console.io/"


@pytest.fixture
def kserve_env(app, demo_env, k8s_double, tmp_path, monkeypatch):
    serve_on_kserve(demo_env, k8s_double, tmp_path, monkeypatch, predictor={"minReplicas": 2})
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
