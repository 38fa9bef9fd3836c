"""The Deployments page's Capacity block (issue 12) and the Set scaling dialog: a Standard-mode KServe endpoint
whose HorizontalPodAutoscaler sits at its maximum (the API double serves it). The local endpoint:
test_capacity_local.py."""

from __future__ import annotations

import pytest

from tests.k8s_double import samples
from tests.k8s_double.server import HPA_GROUP, HPA_PLURAL
from tests.ui.conftest import serve_on_kserve, texts

CLS = "breast-cancer-classifier"
ANN = "mlops-console.io/"


@pytest.fixture
def standard_env(app, demo_env, k8s_double, tmp_path, monkeypatch):
    serve_on_kserve(demo_env, k8s_double, tmp_path, monkeypatch,
                    predictor={"minReplicas": 1, "maxReplicas": 3, "scaleMetric": "cpu", "scaleTarget": 80},
                    annotations={"serving.kserve.io/deploymentMode": "Standard"})
    k8s_double.put_object(samples.hpa(name="screening", ns="ml", max_replicas=3, current=3, desired=5, limited=True),
                          group=HPA_GROUP, plural=HPA_PLURAL)
    return app


def test_capacity_block_shows_the_hpa_and_set_scaling_applies_the_dry_run(standard_env, k8s_double):
    at = standard_env("deployments.py", endpoint="ml/screening", identity="alice")
    assert not at.exception and not at.error, [e.value for e in at.error]
    m = {x.label: x.value for x in at.metric}
    assert (m["Replicas now"], m["Min / max replicas"], m["Scale target"]) == ("3", "1 / 3", "80 cpu")
    shown = texts(at)
    assert "HorizontalPodAutoscaler ml/screening-predictor" in shown and "desired **5**" in shown
    assert any("TooManyReplicas" in w.value for w in at.warning)
    (conditions,) = [d.value for d in at.dataframe if "condition" in d.value.columns]
    assert list(conditions["condition"]) == ["AbleToScale", "ScalingActive", "ScalingLimited"]

    at.number_input(key="scaling-max").set_value(6)
    at.button(key="action-scaling").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    patch = "\n".join(str(c.value) for c in at.code)
    assert '"/spec/predictor/maxReplicas"' in patch and '"value": 6' in patch and "/metadata/resourceVersion" in patch
    (diff,) = [d.value for d in at.dataframe if "field" in d.value.columns and "after" in d.value.columns]
    row = diff[diff["field"] == "max_replicas"].iloc[0]
    assert (row["before"], row["after"]) == ("3", "6")
    assert k8s_double.get_object("ml", "screening")["spec"]["predictor"]["maxReplicas"] == 3  # a dry run
    at.text_area(key="reason").input("the autoscaler wants 5")
    at.button(key="confirm").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert k8s_double.get_object("ml", "screening")["spec"]["predictor"]["maxReplicas"] == 6
    assert {x.label: x.value for x in at.metric}["Min / max replicas"] == "1 / 6"


def test_a_viewer_sees_capacity_but_may_not_set_scaling(standard_env):
    at = standard_env("deployments.py", endpoint="ml/screening", identity="carol")
    assert not at.exception
    button = at.button(key="action-scaling")
    assert button.disabled and "may not set scaling" in button.help

