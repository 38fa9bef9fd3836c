"""The same guarded use cases over the KServe adapter: real MLflow store, real kubernetes client, the
in-repo API double (enforcing the v0.20 CRD), every stored object checked against both CRDs."""

from __future__ import annotations

import pytest

from services.serving.kserve import KServeBackend
from tests.conftest import MODEL, fresh_registry, make_container

NS, NAME = "ml", "screening"
EP = f"{NS}/{NAME}"
ANN = "mlops-console.io/"


@pytest.fixture
def kc(registry_template, tmp_path, k8s_double, clock):
    uri = fresh_registry(registry_template, tmp_path / "reg")
    base = make_container(uri, f"sqlite:///{tmp_path / 'c.db'}", tmp_path, clock=clock)
    v1 = base.registry.get_version(MODEL, "1")
    storage = base.registry.storage_uri(MODEL, "1")
    k8s_double.put_object({
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": NS, "annotations": {
            ANN + "registered-model": MODEL, ANN + "model-version": "1", ANN + "run-id": v1.run_id,
            ANN + "storage-uri": storage}},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage},
                               "minReplicas": 1}},
    })
    k8s_double.simulate_controller(NS, NAME)
    api = k8s_double.api_client()
    serving = KServeBackend((NS,), api_client=api, request_timeout=(2, 5))
    c = make_container(uri, f"sqlite:///{tmp_path / 'c.db'}", tmp_path, clock=clock, serving=serving)
    yield c
    api.close()
    c.engine.dispose()
    base.engine.dispose()


def test_canary_promotion_and_rollback_through_kserve(kc, k8s_double, check_isvc):
    c = kc
    alice, bob = c.directory.get("alice"), c.directory.get("bob")
    ep = c.serving.get_endpoint(EP)
    assert (ep.model, ep.stable_version, ep.canary_version) == (MODEL, "1", None)

    plan = c.actions.plan(alice, "start_canary", EP, version="2", weight=10)
    body = plan.backend_preview["writes"][0]
    assert body[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": ep.resource_version}
    c.actions.execute(plan, alice, "try v2 on 10%")
    obj = k8s_double.get_object(NS, NAME)
    check_isvc(obj)
    pred = obj["spec"]["predictor"]
    assert pred["canaryTrafficPercent"] == 10
    assert pred["model"]["storageUri"] == c.registry.storage_uri(MODEL, "2")
    assert not pred["model"]["storageUri"].startswith("models:/")
    ann = obj["metadata"]["annotations"]
    assert (ann[ANN + "model-version"], ann[ANN + "stable-model-version"]) == ("2", "1")
    assert ann[ANN + "run-id"] == c.registry.get_version(MODEL, "2").run_id
    k8s_double.simulate_controller(NS, NAME)

    out = c.actions.execute(c.actions.plan(alice, "request_promotion", EP, version="2"), alice, "healthy")
    c.actions.approve(bob, out.request_id, "ok")
    obj = k8s_double.get_object(NS, NAME)
    check_isvc(obj)
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]
    assert c.registry.get_model(MODEL).aliases["champion"] == "2"
    k8s_double.simulate_controller(NS, NAME)
    ep = c.serving.get_endpoint(EP)
    assert (ep.stable_version, ep.canary_version) == ("2", None)

    c.actions.execute(c.actions.plan(alice, "rollback", EP, to_version="1"), alice, "incident")
    obj = k8s_double.get_object(NS, NAME)
    check_isvc(obj)
    assert obj["spec"]["predictor"]["model"]["storageUri"] == c.registry.storage_uri(MODEL, "1")
    assert c.registry.get_model(MODEL).aliases["champion"] == "1"
    assert c.audit.verify().ok and len(c.audit.entries()) == 4
    # every write the console sent was a JSON patch led by a resourceVersion test
    patches = k8s_double.patches()
    assert len(patches) == 3 and all(r.content_type == "application/json-patch+json" for r in patches)
    assert all(r.body[0]["op"] == "test" and r.body[0]["path"] == "/metadata/resourceVersion" for r in patches)


def test_stale_plan_is_a_conflict_and_changes_nothing(kc, k8s_double):
    c = kc
    alice = c.directory.get("alice")
    plan = c.actions.plan(alice, "start_canary", EP, version="2", weight=10)
    k8s_double.mutate(NS, NAME, lambda o: o["metadata"].setdefault("labels", {}).update({"touched": "yes"}))
    before = k8s_double.get_object(NS, NAME)["spec"]
    from services.errors import Conflict

    with pytest.raises(Conflict):
        c.actions.execute(plan, alice, "late")
    assert k8s_double.get_object(NS, NAME)["spec"] == before
    assert c.audit.entries(limit=1)[0].result == "conflict"


def test_forbidden_namespace_is_read_only_and_refused(kc, k8s_double):
    c = kc
    k8s_double.deny("patch", NS)
    from services.errors import PermissionDenied

    with pytest.raises(PermissionDenied):
        c.actions.plan(c.directory.get("alice"), "start_canary", EP, version="2", weight=10)
    assert c.serving.get_endpoint(EP).read_only


def test_unannotated_inference_service_is_matched_by_storage_uri(kc, k8s_double):
    c = kc
    storage = c.registry.storage_uri(MODEL, "3")
    k8s_double.put_object({
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "handmade", "namespace": NS},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage}}}})
    k8s_double.put_object({
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "stranger", "namespace": NS},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://x/y"}}}})
    from services.composition import Container

    real = Container(c.settings, clock=c.clock, overrides={"policy": c.policy})
    backend = KServeBackend((NS,), api_client=k8s_double.api_client(),
                            resolve_storage_uri=real.registry.resolve_storage_uri)
    eps = {e.name: e for e in backend.list_endpoints()}
    assert (eps[f"{NS}/handmade"].model, eps[f"{NS}/handmade"].stable_version) == (MODEL, "3")
    assert eps[f"{NS}/stranger"].model is None
    from services.deployments import serving_overview

    views = {v.endpoint.name: v for v in serving_overview(backend, real.registry)}
    assert "does not know" in views[f"{NS}/stranger"].warnings[0]
    assert "champion" in views[f"{NS}/handmade"].warnings[0]


def _promote_v2(c):
    alice = c.directory.get("alice")
    return c.actions.execute(c.actions.plan(alice, "request_promotion", EP, version="2"), alice, "v2").request_id


def _served(c):
    ep = c.serving.get_endpoint(EP)
    return ep.stable_version, ep.canary_version, c.registry.aliases(MODEL).get("champion")


def test_a_dropped_connection_after_the_patch_was_applied_is_re_read_and_finished(kc, k8s_double, check_isvc):
    """Kubernetes applied the patch and the connection dropped before its answer: not "nothing changed"."""
    c = kc
    rid = _promote_v2(c)
    k8s_double.drop_next(method="PATCH")
    out = c.actions.approve(c.directory.get("bob"), rid, "ok")
    assert "The answer to the endpoint write was lost" in out.message and "WAS applied" in out.message
    assert len(k8s_double.patches()) == 1, "sent once, never retried"
    check_isvc(k8s_double.get_object(NS, NAME))
    assert _served(c) == ("2", None, "2") and c.approvals.get(rid).status == "approved"
    entry = c.audit.entries(limit=1)[0]
    assert entry.result == "ok" and "WAS applied" in entry.details["notes"][0]
    assert [s.stable_version for s in c.history.changes(EP)][-1:] == ["2"]
    assert c.intents.unfinished() == [] and c.actions.needs_repair() == []


def test_an_unanswered_patch_that_was_not_applied_says_nothing_changed(kc, k8s_double):
    c = kc
    rid = _promote_v2(c)
    k8s_double.fail_next(503, method="PATCH")
    from services.errors import Unavailable

    with pytest.raises(Unavailable, match=f"re-read {EP}: nothing changed"):
        c.actions.approve(c.directory.get("bob"), rid, "ok")
    assert _served(c) == ("1", None, "1") and c.approvals.get(rid).status == "failed"
    assert c.actions.needs_repair() == []


def test_a_dropped_patch_that_cannot_be_re_read_needs_repair_at_once(kc, k8s_double):
    c = kc
    rid = _promote_v2(c)
    k8s_double.drop_next(method="PATCH")
    k8s_double.after("PATCH", lambda d: d.fail_next(503, method="GET"))  # the re-read fails too
    from services.errors import Unavailable

    with pytest.raises(Unavailable, match="UNKNOWN whether the change was applied") as info:
        c.actions.approve(c.directory.get("bob"), rid, "ok")
    assert info.value.needs_repair and f"repair --endpoint {EP}" in info.value.message
    assert c.approvals.get(rid).status == "applying"
    (f,) = c.actions.needs_repair()
    assert f.lines[0] == f"endpoint {EP} serves v2 as stable, registry champion is v1"
    assert "gave up half-way: the endpoint write got no answer and the endpoint could not be re-read" in f.lines[1]
    plan = c.actions.plan(c.directory.get("alice"), "repair", EP)
    assert plan.steps[:2] == [
        f"move {MODEL}@champion from v1 to v2, to match what the endpoint serves (the change was live; the "
        "endpoint is not touched)",
        f"record in the serving history that {EP} serves v2 as stable (the stopped process did not)"]
    c.actions.execute(plan, c.directory.get("alice"), "the API server came back")
    assert _served(c) == ("2", None, "2") and c.approvals.get(rid).status == "approved"
    assert len(k8s_double.patches()) == 1, "repair never writes the endpoint"
    assert c.history.changes(EP)[-1].stable_version == "2" and c.audit.verify().ok
