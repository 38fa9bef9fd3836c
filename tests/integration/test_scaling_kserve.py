"""Capacity over the KServe adapter (issue 12): set_scaling through the real kubernetes client against the API
double enforcing the v0.20 CRD (every stored object checked against the vendored CRDs), the HPA read in
Standard mode, the Serverless revisions, refusals that send nothing, and the CLI command."""

from __future__ import annotations

import json

import pytest

from services.capacity import capacity
from services.errors import Conflict, Invalid, PreconditionFailed
from services.serving import Scaling
from services.serving.kserve import KServeBackend
from tests.conftest import MODEL, fresh_registry, make_container
from tests.k8s_double import samples as s
from tests.k8s_double.server import HPA_GROUP, HPA_PLURAL

NS, NAME = "ml", "screening"
EP = f"{NS}/{NAME}"
ANN = "mlops-console.io/"


def _isvc(storage: str, run_id: str, *, standard: bool) -> dict:
    annotations = {ANN + "registered-model": MODEL, ANN + "model-version": "1", ANN + "run-id": run_id,
                   ANN + "storage-uri": storage}
    if standard:
        annotations["serving.kserve.io/deploymentMode"] = "Standard"
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": NAME, "namespace": NS, "annotations": annotations},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage},
                                   "minReplicas": 1, "maxReplicas": 3}}}


@pytest.fixture(params=["serverless", "standard"])
def kc(request, registry_template, tmp_path, k8s_double, clock):
    for c in kserve_container(registry_template, tmp_path, k8s_double, clock, standard=request.param == "standard"):
        c.mode = request.param
        yield c


def kserve_container(registry_template, tmp_path, k8s_double, clock, *, standard: bool, predictor: dict | None = None,
                     policy: dict | None = None):
    """A container over the API double serving v1 as ``ml/screening`` (``predictor``: more of its spec), torn down
    after the one value it yields."""
    uri = fresh_registry(registry_template, tmp_path / "reg")
    db = f"sqlite:///{tmp_path / 'c.db'}"
    base = make_container(uri, db, tmp_path, clock=clock)
    v1 = base.registry.get_version(MODEL, "1")
    isvc = _isvc(base.registry.storage_uri(MODEL, "1"), v1.run_id, standard=standard)
    isvc["spec"]["predictor"].update(predictor or {})
    k8s_double.put_object(isvc)
    k8s_double.simulate_controller(NS, NAME)
    api = k8s_double.api_client()
    c = make_container(uri, db, tmp_path, clock=clock, policy=policy,
                       serving=KServeBackend((NS,), api_client=api, request_timeout=(2, 5)))
    try:
        yield c
    finally:
        api.close()
        c.engine.dispose()
        base.engine.dispose()


def test_set_scaling_sends_the_exact_patch_the_dry_run_showed_and_it_fits_the_crds(kc, k8s_double, check_isvc):
    c, alice = kc, kc.directory.get("alice")
    ep = c.serving.get_endpoint(EP)
    assert ep.scaling == Scaling(1, 3, None, None)
    plan = c.actions.plan(alice, "set_scaling", EP, min="2", max="6", target="40")
    (body,) = plan.backend_preview["writes"]
    assert body == [{"op": "test", "path": "/metadata/resourceVersion", "value": ep.resource_version},
                    {"op": "replace", "path": "/spec/predictor/minReplicas", "value": 2},
                    {"op": "replace", "path": "/spec/predictor/maxReplicas", "value": 6},
                    {"op": "add", "path": "/spec/predictor/scaleTarget", "value": 40}]
    out = c.actions.execute(plan, alice, "black friday")
    assert out.status == "applied"
    (sent,) = k8s_double.patches()
    assert sent.body == body and sent.content_type == "application/json-patch+json" and sent.status == 200
    obj = k8s_double.get_object(NS, NAME)
    check_isvc(obj)
    pred = obj["spec"]["predictor"]
    assert (pred["minReplicas"], pred["maxReplicas"], pred["scaleTarget"]) == (2, 6, 40)
    assert c.serving.get_endpoint(EP).stable_version == "1"  # what serves did not change
    (entry,) = [e for e in c.audit.entries() if e.action == "set_scaling"]
    assert entry.result == "ok" and entry.reason == "black friday"
    before = json.loads(entry.before) if isinstance(entry.before, str) else entry.before
    assert before["scaling"] == {"min_replicas": 1, "max_replicas": 3, "metric": None, "target": None}
    after = json.loads(entry.after) if isinstance(entry.after, str) else entry.after
    assert after["scaling"] == {"min_replicas": 2, "max_replicas": 6, "metric": None, "target": 40}
    assert c.audit.verify().ok


def test_a_stale_scaling_plan_conflicts_and_refusals_send_nothing(kc, k8s_double):
    c, alice = kc, kc.directory.get("alice")
    plan = c.actions.plan(alice, "set_scaling", EP, max=5)
    k8s_double.mutate(NS, NAME, lambda o: o["spec"]["predictor"].update({"maxReplicas": 4}))
    with pytest.raises(Conflict, match="changed since"):
        c.actions.execute(plan, alice, "late")
    assert k8s_double.get_object(NS, NAME)["spec"]["predictor"]["maxReplicas"] == 4
    for params, error in (({"min": 5}, Invalid), ({"max": 4}, PreconditionFailed), ({"max": -2}, Invalid)):
        with pytest.raises(error):
            c.actions.plan(alice, "set_scaling", EP, **params)
    if c.mode == "standard":  # an HPA cannot scale to zero
        with pytest.raises(PreconditionFailed, match="cannot scale to zero"):
            c.actions.plan(alice, "set_scaling", EP, min=0)
    assert [r for r in k8s_double.patches() if r.status == 200] == []
    results = [e.result for e in c.audit.entries() if e.action == "set_scaling"]
    assert results.count("refused") >= 3 and "conflict" in results


def test_capacity_reads_the_hpa_in_standard_mode_and_the_revisions_in_serverless(kc, k8s_double):
    c = kc
    ep = c.serving.get_endpoint(EP)
    if c.mode == "standard":
        status = c.serving.scaling_status(ep)
        assert status.current_replicas is None and "no HorizontalPodAutoscaler ml/screening-predictor" in status.note
        k8s_double.put_object(s.hpa(name=NAME, ns=NS, max_replicas=3, current=3, desired=5, limited=True),
                              group=HPA_GROUP, plural=HPA_PLURAL)
        cap = capacity(c.serving, c.metrics, c.policy, ep, c.clock())
        assert cap.status.source == "HorizontalPodAutoscaler ml/screening-predictor"
        assert (cap.replicas, cap.status.desired_replicas) == (3, 5)
        assert any("TooManyReplicas" in w for w in cap.warnings)
        reads = [r for r in k8s_double.requests if HPA_PLURAL in r.path]
        assert [(r.method, r.status) for r in reads] == [("GET", 404), ("GET", 200)]  # before and after it existed
        assert {r.path for r in reads} == {f"/apis/autoscaling/v2/namespaces/{NS}/{HPA_PLURAL}/{NAME}-predictor"}
    else:
        cap = capacity(c.serving, c.metrics, c.policy, ep, c.clock())
        assert cap.replicas is None and cap.status.revisions == ((f"{NAME}-predictor-00001", 100, None),)
        assert any("reports no replica counts" in n for n in cap.notes)
        assert not [r for r in k8s_double.requests if HPA_PLURAL in r.path]


def test_a_forbidden_hpa_read_is_said_not_raised(kc, k8s_double):
    k8s_double.deny("get", NS, group=HPA_GROUP, resource=HPA_PLURAL)
    status = kc.serving.scaling_status(kc.serving.get_endpoint(EP))
    assert status.current_replicas is None
    if kc.mode == "standard":
        assert "cannot read HorizontalPodAutoscaler ml/screening-predictor" in status.note
        assert [r.status for r in k8s_double.requests if HPA_PLURAL in r.path] == [403]
    else:  # Serverless has no HPA to read
        assert "reports no replica counts" in status.note
        assert not [r for r in k8s_double.requests if HPA_PLURAL in r.path]


def test_the_cli_dry_runs_and_sets_scaling(kc, k8s_double, capsys):
    from services.cli import main

    assert main(["set-scaling", "--endpoint", EP, "--max", "5", "--dry-run", "--json", "--as", "alice"],
                container=kc) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert plan["change"]["scaling"] == {"min_replicas": None, "max_replicas": 5, "metric": None, "target": None}
    assert plan["backend_preview"]["writes"][0][1] == {"op": "replace", "path": "/spec/predictor/maxReplicas",
                                                       "value": 5}
    assert not k8s_double.patches()
    assert main(["set-scaling", "--endpoint", EP, "--min", "3", "--max", "2", "--reason", "r", "--as", "alice"],
                container=kc) == 2
    assert "would be above the maximum" in capsys.readouterr().err
    assert main(["set-scaling", "--endpoint", EP, "--max", "3", "--reason", "r", "--as", "alice"], container=kc) == 6
    assert main(["set-scaling", "--endpoint", EP, "--max", "5", "--reason", "r", "--as", "carol"], container=kc) == 7
    assert main(["set-scaling", "--endpoint", EP, "--max", "5", "--reason", "more", "--as", "alice"],
                container=kc) == 0
    assert "Set scaling on ml/screening" in capsys.readouterr().out
    assert k8s_double.get_object(NS, NAME)["spec"]["predictor"]["maxReplicas"] == 5


def test_a_lost_answer_is_re_read_by_the_scaling_values_not_by_what_serves(kc, k8s_double):
    """What serves is the same before and after set_scaling, so only the bounds can tell whether it landed."""
    from services.errors import Unavailable

    c, alice = kc, kc.directory.get("alice")
    k8s_double.drop_next(method="PATCH")  # applied, then the connection drops unanswered
    out = c.actions.execute(c.actions.plan(alice, "set_scaling", EP, max=5), alice, "lost answer")
    assert out.status == "applied" and "WAS applied" in out.message
    assert k8s_double.get_object(NS, NAME)["spec"]["predictor"]["maxReplicas"] == 5
    k8s_double.fail_next(500, method="PATCH")  # answered 500 without applying: its fate is read back
    with pytest.raises(Unavailable, match="nothing changed"):
        c.actions.execute(c.actions.plan(alice, "set_scaling", EP, max=6), alice, "server error")
    assert k8s_double.get_object(NS, NAME)["spec"]["predictor"]["maxReplicas"] == 5
    assert [e.result for e in c.audit.entries() if e.action == "set_scaling"][:2] == ["failed", "ok"]
