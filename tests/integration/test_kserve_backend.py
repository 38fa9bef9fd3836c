"""The KServe adapter through the real ``kubernetes`` client against the in-repo API double.

Every stored object is checked against the KServe CRD schemas (v0.19 and
v0.20; ``spec.canary`` only v0.20) plus the unknown-keys check. The double
enforces the v0.20 schema (pruning + validation) unless a test asks otherwise.
"""

from __future__ import annotations

import json
import socket

import pytest
from kubernetes import client as k8s

from services.errors import Conflict, Invalid, NotFound, PermissionDenied, Unavailable
from services.serving import Change, ServingState, VersionRef
from services.serving.kserve import RV_FROM_PREVIOUS_WRITE, KServeBackend
from tests.k8s_double import JSON_PATCH, STRATEGIC_MERGE_PATCH, KubeDouble
from tests.k8s_double import samples as s

BOTH = ("v0.19.0", "v0.20.0")
ISVC_PATH = "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/iris"
SSAR_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


@pytest.fixture
def double(k8s_double) -> KubeDouble:
    return k8s_double


@pytest.fixture
def make_backend(double):
    clients = []

    def make(*namespaces: str, resolve=s.resolver, target: KubeDouble | None = None, **kw) -> KServeBackend:
        api = (target or double).api_client()
        clients.append(api)
        return KServeBackend(
            namespaces or ("ml",), api_client=api, resolve_storage_uri=resolve, request_timeout=(2, 5), **kw
        )

    yield make
    for api in clients:
        api.close()


@pytest.fixture
def backend(make_backend) -> KServeBackend:
    return make_backend()


def seed(double: KubeDouble, obj: dict, *, reconcile: bool = True) -> dict:
    double.put_object(obj)
    md = obj["metadata"]
    if reconcile:
        double.simulate_controller(md["namespace"], md["name"])
    return double.get_object(md["namespace"], md["name"])


def stored(double: KubeDouble, name: str = s.NAME) -> dict:
    return double.get_object(s.NS, name)


def patches(double: KubeDouble) -> list:
    return [r for r in double.patches() if "/inferenceservices/" in r.path]


# ============================================================================ reading
def test_list_maps_annotated_resolved_and_unknown_endpoints(double, backend):
    seed(double, s.serverless(name="annotated", version="1"))
    seed(double, s.serverless(name="by-uri", version="3", annotated=False))
    unknown = s.serverless(name="unknown", annotated=False)
    unknown["spec"]["predictor"]["model"]["storageUri"] = "gs://somewhere/else"
    seed(double, unknown)
    seed(double, s.serverless(name="elsewhere", ns="other"))  # not a watched namespace
    got = {ep.name: (ep.model, ep.stable_version, ep.ready) for ep in backend.list_endpoints()}
    assert got == {
        "ml/annotated": (s.MODEL, "1", True),
        "ml/by-uri": (s.MODEL, "3", True),
        "ml/unknown": (None, None, True),
    }
    assert [r.path for r in double.requests if r.method == "GET"] == [
        "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices"
    ]


def test_list_spans_the_configured_namespaces(double, make_backend):
    seed(double, s.serverless(ns="ml"))
    seed(double, s.serverless(ns="team-b", version="2"))
    eps = make_backend("ml", "team-b").list_endpoints()
    assert [(e.name, e.namespace, e.stable_version) for e in eps] == [
        ("ml/iris", "ml", "1"),
        ("team-b/iris", "team-b", "2"),
    ]


def test_get_maps_status_conditions_and_revisions(double, backend, check_isvc):
    obj = seed(double, s.serverless())
    check_isvc(obj, BOTH)
    ep = backend.get_endpoint("ml/iris")
    assert ep.resource_version == obj["metadata"]["resourceVersion"]
    assert (ep.url, ep.ready, ep.replicas, ep.backend) == ("http://iris.ml.example.com", True, 1, "kserve")
    assert {c.type: c.status for c in ep.conditions}["Ready"] == "True"
    assert [(r.name, r.stable_version) for r in ep.revisions] == [("iris-predictor-00001", "1")]
    assert ep.extra["mode"] == "Serverless" and ep.extra["reconciled"] is True
    assert ep.extra["traffic"] == [
        {"latestRevision": True, "percent": 100, "revisionName": "iris-predictor-00001"}
    ]


def test_unknown_endpoint_is_not_found(double, backend):
    with pytest.raises(NotFound):
        backend.get_endpoint("ml/missing")
    assert double.requests[-1].status == 404
    n = len(double.requests)
    with pytest.raises(NotFound, match="namespaces the console watches"):
        backend.get_endpoint("kube-system/iris")
    with pytest.raises(NotFound):
        backend.get_endpoint("no-slash-and-two-namespaces/x/y")
    assert len(double.requests) == n, "names outside the watched namespaces are not even asked for"


def test_bare_name_works_with_a_single_namespace(double, backend):
    seed(double, s.serverless())
    assert backend.get_endpoint("iris").name == "ml/iris"


# ============================================================================ serverless lifecycle
def test_serverless_canary_lifecycle(double, backend, check_isvc):
    seed(double, s.serverless(version="1"))
    ep = ep_before = backend.get_endpoint("ml/iris")

    # start_canary: ONE patch with the precondition, storageUri + canaryTrafficPercent + annotations
    ep = backend.apply(ep.name, Change("start_canary", ep.resource_version, s.ref("2"), 10), actor="alice")
    [p] = patches(double)
    assert (p.path, p.content_type, p.status) == (ISVC_PATH, JSON_PATCH, 200)
    assert p.body[0] == {
        "op": "test",
        "path": "/metadata/resourceVersion",
        "value": ep_before.resource_version,
    }
    obj = stored(double)
    check_isvc(obj, BOTH)
    assert obj["spec"]["predictor"]["model"]["storageUri"] == s.URI["2"]
    assert obj["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert (
        ep.state() == ServingState("1", "2", 10) and ep.resource_version == obj["metadata"]["resourceVersion"]
    )
    obj = double.simulate_controller("ml", "iris")
    check_isvc(obj, BOTH)
    assert [
        (t["revisionName"], t["percent"]) for t in obj["status"]["components"]["predictor"]["traffic"]
    ] == [("iris-predictor-00002", 10), ("iris-predictor-00001", 90)]
    ep = backend.get_endpoint("ml/iris")
    assert {r.name: (r.stable_version, r.canary_version) for r in ep.revisions} == {
        "iris-predictor-00002": (None, "2"),
        "iris-predictor-00001": ("1", None),
    }

    # set_weight
    ep = backend.apply(ep.name, Change("set_weight", ep.resource_version, weight=50), actor="alice")
    assert patches(double)[-1].body[1:] == [
        {"op": "replace", "path": "/spec/predictor/canaryTrafficPercent", "value": 50}
    ]
    obj = double.simulate_controller("ml", "iris")
    check_isvc(obj, BOTH)
    assert [t["percent"] for t in obj["status"]["components"]["predictor"]["traffic"]] == [50, 50]
    assert obj["status"]["components"]["predictor"]["latestCreatedRevision"] == "iris-predictor-00002", (
        "a weight change makes no new revision"
    )

    # promote: canaryTrafficPercent removed, the canary is stable at 100 %
    ep = backend.apply(
        ep.name, Change("promote", backend.get_endpoint(ep.name).resource_version), actor="bob"
    )
    obj = double.simulate_controller("ml", "iris")
    check_isvc(obj, BOTH)
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]
    assert not any("stable-" in k for k in obj["metadata"]["annotations"])
    comp = obj["status"]["components"]["predictor"]
    assert comp["traffic"] == [
        {"latestRevision": True, "percent": 100, "revisionName": "iris-predictor-00002"}
    ]
    assert (comp["latestRolledoutRevision"], comp["previousRolledoutRevision"]) == (
        "iris-predictor-00002",
        "iris-predictor-00001",
    )
    ep = backend.get_endpoint(ep.name)
    assert ep.state() == ServingState("2", None, 0) and ep.ready

    # set_stable (rollback to 1): storageUri + annotations, one patch
    n = len(patches(double))
    ep = backend.apply(ep.name, Change("set_stable", ep.resource_version, s.ref("1")), actor="bob")
    assert len(patches(double)) == n + 1
    obj = double.simulate_controller("ml", "iris")
    check_isvc(obj, BOTH)
    assert obj["spec"]["predictor"]["model"]["storageUri"] == s.URI["1"]
    assert backend.get_endpoint(ep.name).state() == ServingState("1", None, 0)


def test_serverless_abort_is_two_guarded_writes_and_canary_never_gets_traffic(double, backend, check_isvc):
    seed(double, s.serverless(version="1"))
    ep = backend.get_endpoint("ml/iris")
    ep = backend.apply(ep.name, Change("start_canary", ep.resource_version, s.ref("2"), 30), actor="alice")
    double.simulate_controller("ml", "iris")
    ep = backend.get_endpoint(ep.name)
    before = len(patches(double))
    preview = backend.preview(ep, Change("abort", ep.resource_version))

    ep = backend.apply(ep.name, Change("abort", ep.resource_version), actor="alice")
    first, second = patches(double)[before:]
    assert first.body == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": preview["writes"][0][0]["value"]},
        {"op": "replace", "path": "/spec/predictor/canaryTrafficPercent", "value": 0},
    ]
    rv_after_first = str(int(preview["writes"][0][0]["value"]) + 1)
    assert second.body[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": rv_after_first}
    assert preview["writes"][1][0]["value"] == RV_FROM_PREVIOUS_WRITE
    assert second.body[1:] == preview["writes"][1][1:], "preview shows exactly what is sent"
    obj = double.simulate_controller("ml", "iris")
    check_isvc(obj, BOTH)
    assert obj["spec"]["predictor"]["model"]["storageUri"] == s.URI["1"]
    traffic = {t["revisionName"]: t["percent"] for t in obj["status"]["components"]["predictor"]["traffic"]}
    assert traffic == {"iris-predictor-00003": 0, "iris-predictor-00001": 100}, "stable revision keeps it all"
    assert ep.state() == ServingState("1", None, 0)
    assert backend.get_endpoint(ep.name).state() == ServingState("1", None, 0)


def test_preview_is_exactly_what_apply_sends(double, backend):
    seed(double, s.serverless(version="1"))
    ep = backend.get_endpoint("ml/iris")
    change = Change("start_canary", ep.resource_version, s.ref("2"), 10)
    preview = backend.preview(ep, change)
    assert len(double.requests) == 2, "preview uses the object read with the endpoint (GET + access review)"
    assert preview["method"] == "PATCH" and preview["path"] == ISVC_PATH
    assert preview["content_type"] == JSON_PATCH
    backend.apply(ep.name, change, actor="alice")
    assert [p.body for p in patches(double)] == preview["writes"]


def test_old_framework_spec_is_read_and_written(double, backend, check_isvc):
    seed(double, s.serverless(framework="sklearn", annotated=False))
    ep = backend.get_endpoint("ml/iris")
    assert ep.stable_version == "1"
    backend.apply(ep.name, Change("start_canary", ep.resource_version, s.ref("2"), 5), actor="alice")
    obj = stored(double)
    check_isvc(obj, BOTH)
    assert obj["spec"]["predictor"]["sklearn"]["storageUri"] == s.URI["2"]
    assert obj["metadata"]["annotations"]["mlops-console.io/stable-model-version"] == "1"


# ================================================================ standard mode (v0.20 spec.canary)
def test_standard_canary_lifecycle(double, backend, check_isvc):
    seed(double, s.standard(version="1"))
    ep = backend.get_endpoint("ml/iris")
    assert ep.extra["mode"] == "Standard"

    ep = backend.apply(ep.name, Change("start_canary", ep.resource_version, s.ref("2"), 25), actor="alice")
    obj = double.simulate_controller("ml", "iris")
    check_isvc(obj, ("v0.20.0",))
    assert obj["spec"]["canary"] == [
        {
            "predictor": {
                "name": "v2",
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "name": "kserve-container",
                    "storageUri": s.URI["2"],
                },
            },
            "trafficPercent": 25,
        }
    ]
    assert obj["spec"]["predictor"]["model"]["storageUri"] == s.URI["1"], "stable untouched"
    assert obj["status"]["canaryStatuses"] == [{"name": "v2", "ready": True, "trafficPercent": 25}]
    ep = backend.get_endpoint(ep.name)
    assert ep.state() == ServingState("1", "2", 25)
    assert [(r.name, r.canary_version, r.canary_weight) for r in ep.revisions] == [("v2", "2", 25)]

    ep = backend.apply(ep.name, Change("set_weight", ep.resource_version, weight=100), actor="alice")
    assert stored(double)["spec"]["canary"][0]["trafficPercent"] == 100

    ep = backend.apply(ep.name, Change("promote", ep.resource_version), actor="bob")
    obj = double.simulate_controller("ml", "iris")
    check_isvc(obj, ("v0.20.0",))  # spec.predictor.name (the retarget) is v0.20 only
    assert "canary" not in obj["spec"]
    assert obj["spec"]["predictor"]["name"] == "v2", "stable retargeted to the canary deployment"
    assert obj["spec"]["predictor"]["model"]["storageUri"] == s.URI["2"]
    assert ep.state() == ServingState("2", None, 0)

    ep = backend.get_endpoint(ep.name)  # the controller wrote status since
    ep = backend.apply(ep.name, Change("start_canary", ep.resource_version, s.ref("3"), 10), actor="alice")
    assert stored(double)["spec"]["canary"][0]["predictor"]["name"] == "v3"
    ep = backend.apply(ep.name, Change("abort", ep.resource_version), actor="alice")
    obj = stored(double)
    check_isvc(obj, ("v0.20.0",))
    assert "canary" not in obj["spec"] and ep.state() == ServingState("2", None, 0)

    ep = backend.apply(ep.name, Change("set_stable", ep.resource_version, s.ref("1")), actor="bob")
    assert stored(double)["spec"]["predictor"]["model"]["storageUri"] == s.URI["1"]
    assert ep.state() == ServingState("1", None, 0)
    assert all(p.body[0]["op"] == "test" for p in patches(double))


def test_standard_canary_on_a_v019_cluster_is_pruned_and_reported(k8s_double_factory, make_backend):
    old = k8s_double_factory("v0.19.0")
    seed(old, s.standard(version="1"))
    backend = make_backend(target=old)
    ep = backend.get_endpoint("ml/iris")
    with pytest.raises(Unavailable, match="does not show it"):
        backend.apply(ep.name, Change("start_canary", ep.resource_version, s.ref("2"), 25), actor="alice")
    assert "canary" not in old.get_object("ml", "iris")["spec"], "the API server dropped the unknown field"
    assert len(patches(old)) == 1, "no second attempt"


def test_double_validates_against_the_crd_schema(double):
    seed(double, s.standard_canary(weight=25))
    api = k8s.CustomObjectsApi(double.api_client())
    with pytest.raises(k8s.exceptions.UnprocessableEntityException) as err:
        api.patch_namespaced_custom_object(
            "serving.kserve.io",
            "v1beta1",
            "ml",
            "inferenceservices",
            "iris",
            [{"op": "replace", "path": "/spec/canary/0/trafficPercent", "value": 150}],
            _content_type=JSON_PATCH,
        )
    body = json.loads(err.value.body)
    assert body["reason"] == "Invalid" and "spec.canary.0.trafficPercent" in body["message"]
    assert stored(double)["spec"]["canary"][0]["trafficPercent"] == 25


# ============================================================================ compare-and-set
def test_stale_resource_version_is_a_conflict_and_nothing_is_sent(double, backend):
    seed(double, s.serverless(version="1"))
    ep = backend.get_endpoint("ml/iris")
    double.mutate("ml", "iris", lambda o: o["metadata"]["annotations"].update({"someone": "else"}))
    before = stored(double)
    with pytest.raises(Conflict, match="re-read and decide again"):
        backend.apply(ep.name, Change("start_canary", ep.resource_version, s.ref("2"), 10), actor="alice")
    assert patches(double) == []
    assert stored(double) == before


def test_write_between_read_and_patch_loses_on_the_precondition(double, backend):
    seed(double, s.serverless(version="1"))
    ep = backend.get_endpoint("ml/iris")

    def other_writer(d: KubeDouble):
        d.mutate("ml", "iris", lambda o: o["spec"]["predictor"].update(minReplicas=3))

    double.after("GET", other_writer, path_contains="/inferenceservices/iris")
    with pytest.raises(Conflict, match="re-read and decide again"):
        backend.apply(ep.name, Change("start_canary", ep.resource_version, s.ref("2"), 10), actor="alice")
    [p] = patches(double)
    assert p.status == 422, "the API server refused the patch: the resourceVersion test failed"
    obj = stored(double)
    assert obj["spec"]["predictor"]["minReplicas"] == 3, "the other writer's change stays"
    assert obj["spec"]["predictor"]["model"]["storageUri"] == s.URI["1"]
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]


def test_race_on_the_second_abort_write_is_a_conflict_and_leaves_the_canary_at_zero(double, backend):
    seed(double, s.serverless_canary(weight=40))
    ep = backend.get_endpoint("ml/iris")
    double.after(
        "PATCH", lambda d: d.mutate("ml", "iris", lambda o: o["metadata"]["annotations"].update(x="y"))
    )
    with pytest.raises(Conflict, match="earlier write"):
        backend.apply(ep.name, Change("abort", ep.resource_version), actor="alice")
    assert [p.status for p in patches(double)] == [200, 422]
    obj = stored(double)
    assert obj["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert backend.get_endpoint(ep.name).state() == ServingState("1", "2", 0), "safe: canary without traffic"


def test_422_without_the_test_message_is_told_apart_by_re_reading(double, backend):
    """Whatever the API server's wording, a 422 after someone else wrote is a Conflict."""
    seed(double, s.serverless(version="1"))
    ep = backend.get_endpoint("ml/iris")
    double.after(
        "GET",
        lambda d: d.mutate("ml", "iris", lambda o: o["metadata"]["annotations"].update(x="y")),
        path_contains="/inferenceservices/iris",
    )
    double.fail_next(
        422, method="PATCH", message="the server rejected our request due to an error in our request"
    )
    with pytest.raises(Conflict):
        backend.apply(ep.name, Change("set_stable", ep.resource_version, s.ref("2")), actor="alice")
    assert [p.status for p in patches(double)] == [422]
    assert stored(double)["spec"]["predictor"]["model"]["storageUri"] == s.URI["1"]


def test_409_from_the_server_is_a_conflict_and_is_not_retried(double, backend):
    seed(double, s.serverless(version="1"))
    ep = backend.get_endpoint("ml/iris")
    double.fail_next(409, method="PATCH", message="the object has been modified")
    with pytest.raises(Conflict):
        backend.apply(ep.name, Change("set_stable", ep.resource_version, s.ref("2")), actor="alice")
    assert [p.status for p in patches(double)] == [409]
    assert stored(double)["spec"]["predictor"]["model"]["storageUri"] == s.URI["1"]


def test_422_that_is_not_a_failed_test_is_invalid(double, backend):
    seed(double, s.serverless(version="1"))
    ep = backend.get_endpoint("ml/iris")
    double.fail_next(422, method="PATCH", message='InferenceService "iris" is invalid: spec: something')
    with pytest.raises(Invalid, match="rejected the change"):
        backend.apply(ep.name, Change("set_stable", ep.resource_version, s.ref("2")), actor="alice")


# ============================================================================ permissions
def test_read_only_namespace_shows_read_only_and_refuses_without_writing(double, backend):
    seed(double, s.serverless(version="1"))
    double.deny("patch", "ml")
    ep = backend.get_endpoint("ml/iris")
    assert ep.read_only and "may not change InferenceServices in namespace ml" in ep.read_only_reason
    with pytest.raises(PermissionDenied):
        backend.apply(ep.name, Change("set_stable", ep.resource_version, s.ref("2")), actor="carol")
    assert patches(double) == []
    backend.list_endpoints()
    assert len([r for r in double.requests if r.path == SSAR_PATH]) == 1, "access review cached per namespace"
    review = next(r for r in double.requests if r.path == SSAR_PATH).body
    assert review["spec"]["resourceAttributes"] == {
        "group": "serving.kserve.io",
        "namespace": "ml",
        "resource": "inferenceservices",
        "verb": "patch",
    }


def test_access_review_failure_assumes_writable_until_a_403(double, backend):
    seed(double, s.serverless(version="1"))
    double.deny("create", resource="selfsubjectaccessreviews")
    double.deny("patch", "ml")
    ep = backend.get_endpoint("ml/iris")
    assert not ep.read_only
    with pytest.raises(PermissionDenied, match="refused"):
        backend.apply(ep.name, Change("set_stable", ep.resource_version, s.ref("2")), actor="carol")
    assert [p.status for p in patches(double)] == [403]
    ep = backend.get_endpoint("ml/iris")
    assert ep.read_only and "refused a change" in ep.read_only_reason


def test_access_is_decided_per_namespace(double, make_backend):
    seed(double, s.serverless(ns="ml"))
    seed(double, s.serverless(ns="prod"))
    double.deny("patch", "prod")
    got = {e.name: e.read_only for e in make_backend("ml", "prod").list_endpoints()}
    assert got == {"ml/iris": False, "prod/iris": True}


def test_forbidden_list_is_permission_denied(double, backend):
    double.deny("list", "ml")
    with pytest.raises(PermissionDenied):
        backend.list_endpoints()


# ============================================================================ failures
def test_deleted_endpoint_is_not_found_on_apply(double, backend):
    seed(double, s.serverless(version="1"))
    ep = backend.get_endpoint("ml/iris")
    k8s.CustomObjectsApi(backend.api_client).delete_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", "ml", "inferenceservices", "iris"
    )
    with pytest.raises(NotFound):
        backend.apply(ep.name, Change("set_stable", ep.resource_version, s.ref("2")), actor="alice")
    assert patches(double) == []


def test_deleted_between_read_and_patch_is_not_found(double, backend):
    seed(double, s.serverless(version="1"))
    ep = backend.get_endpoint("ml/iris")
    double.after("GET", lambda d: d.delete_object("ml", "iris"), path_contains="/inferenceservices/iris")
    with pytest.raises(NotFound):
        backend.apply(ep.name, Change("set_stable", ep.resource_version, s.ref("2")), actor="alice")
    assert [p.status for p in patches(double)] == [404]


def test_api_down_is_unavailable(k8s_double_factory, make_backend):
    gone = k8s_double_factory(None)
    backend = make_backend(target=gone)
    gone.stop()
    with socket.socket() as probe:
        assert (
            probe.connect_ex(("127.0.0.1", int(backend.api_client.configuration.host.rsplit(":", 1)[1]))) != 0
        )
    with pytest.raises(Unavailable, match="cannot reach"):
        backend.list_endpoints()
    with pytest.raises(Unavailable):
        backend.get_endpoint("ml/iris")
    with pytest.raises(Unavailable):
        backend.apply("ml/iris", Change("set_weight", "1", weight=1), actor="alice")


@pytest.mark.parametrize("code", [500, 503, 429])
def test_server_errors_are_unavailable(double, backend, code):
    seed(double, s.serverless(version="1"))
    double.fail_next(code, method="GET")
    with pytest.raises(Unavailable, match=f"HTTP {code}"):
        backend.get_endpoint("ml/iris")


def test_models_uri_is_invalid_and_nothing_is_sent(double, backend):
    seed(double, s.serverless(version="1"))
    ep = backend.get_endpoint("ml/iris")
    bad = VersionRef(s.MODEL, "2", "run2", "models:/iris-classifier/2")
    for change in (
        Change("start_canary", ep.resource_version, bad, 10),
        Change("set_stable", ep.resource_version, bad),
    ):
        with pytest.raises(Invalid, match="registry alias"):
            backend.apply(ep.name, change, actor="alice")
    assert patches(double) == []


def test_kubeconfig_context_gives_the_namespace_and_credentials(double, tmp_path):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "a",
                "clusters": [{"name": "c", "cluster": {"server": double.url}}],
                "users": [{"name": "u", "user": {"token": "secret-token"}}],
                "contexts": [
                    {"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}},
                    {"name": "b", "context": {"cluster": "c", "user": "u", "namespace": "ml"}},
                ],
            }
        )
    )
    seed(double, s.serverless())
    assert KServeBackend(config_file=str(kubeconfig)).namespaces == ("team-a",)
    backend = KServeBackend(context="b", config_file=str(kubeconfig))
    assert backend.namespaces == ("ml",)
    assert [e.name for e in backend.list_endpoints()] == ["ml/iris"]
    assert double.requests[-2].authorization == "Bearer secret-token"
    with pytest.raises(Unavailable, match="kubeconfig"):
        KServeBackend(context="nope", config_file=str(kubeconfig))


# ============================================================================ the double itself
def api_of(double: KubeDouble):
    return k8s.CustomObjectsApi(double.api_client())


def test_double_refuses_strategic_merge_patch_with_415(double):
    seed(double, s.serverless())
    with pytest.raises(k8s.exceptions.ApiException) as err:
        api_of(double).patch_namespaced_custom_object(
            "serving.kserve.io",
            "v1beta1",
            "ml",
            "inferenceservices",
            "iris",
            {"spec": {}},
            _content_type=STRATEGIC_MERGE_PATCH,
        )
    assert err.value.status == 415
    body = json.loads(err.value.body)
    assert (body["kind"], body["code"], body["reason"]) == ("Status", 415, "UnsupportedMediaType")


def test_double_merge_patch_precondition_and_put_semantics(double):
    obj = seed(double, s.serverless())
    api, rv = api_of(double), obj["metadata"]["resourceVersion"]
    args = ("serving.kserve.io", "v1beta1", "ml", "inferenceservices", "iris")
    with pytest.raises(k8s.exceptions.ConflictException):
        api.patch_namespaced_custom_object(
            *args,
            {"metadata": {"resourceVersion": "1"}, "spec": {"x": 1}},
            _content_type="application/merge-patch+json",
        )
    out = api.patch_namespaced_custom_object(
        *args,
        {"metadata": {"resourceVersion": rv}, "spec": {"predictor": {"minReplicas": 2}}},
        _content_type="application/merge-patch+json",
    )
    assert int(out["metadata"]["resourceVersion"]) > int(rv)
    assert out["metadata"]["generation"] == obj["metadata"]["generation"] + 1
    assert out["spec"]["predictor"]["model"]["storageUri"] == s.URI["1"], "merge keeps siblings"
    stale = dict(out, metadata=dict(out["metadata"], resourceVersion=rv))
    with pytest.raises(k8s.exceptions.ConflictException):
        api.replace_namespaced_custom_object(*args, stale)
    no_rv = dict(out, metadata={k: v for k, v in out["metadata"].items() if k != "resourceVersion"})
    with pytest.raises(k8s.exceptions.UnprocessableEntityException):
        api.replace_namespaced_custom_object(*args, no_rv)
    same = api.replace_namespaced_custom_object(*args, out)
    assert same["metadata"]["resourceVersion"] == out["metadata"]["resourceVersion"], "no-op write, no new rv"


def test_double_status_subresource_is_separate(double):
    obj = seed(double, s.serverless())
    api = api_of(double)
    args = ("serving.kserve.io", "v1beta1", "ml", "inferenceservices", "iris")
    out = api.patch_namespaced_custom_object(
        *args,
        {"status": {"url": "http://hacked"}, "spec": {"predictor": {"minReplicas": 5}}},
        _content_type="application/merge-patch+json",
    )
    assert out["status"]["url"] == obj["status"]["url"] and out["spec"]["predictor"]["minReplicas"] == 5
    out = api.patch_namespaced_custom_object_status(
        *args,
        {"status": {"url": "http://new"}, "spec": {"predictor": {"minReplicas": 9}}},
        _content_type="application/merge-patch+json",
    )
    assert out["status"]["url"] == "http://new" and out["spec"]["predictor"]["minReplicas"] == 5
    assert out["metadata"]["generation"] == obj["metadata"]["generation"] + 1, "status writes keep generation"
    double.deny("patch", "ml", resource="inferenceservices/status")
    with pytest.raises(k8s.exceptions.ForbiddenException):
        api.patch_namespaced_custom_object_status(
            *args, {"status": {}}, _content_type="application/merge-patch+json"
        )


def test_double_create_get_404_and_access_review(double):
    api = api_of(double)
    created = api.create_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", "ml", "inferenceservices", s.serverless(rv=None)
    )
    assert created["metadata"]["generation"] == 1 and created["metadata"]["uid"]
    with pytest.raises(k8s.exceptions.ConflictException):
        api.create_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", "ml", "inferenceservices", s.serverless(rv=None)
        )
    with pytest.raises(k8s.exceptions.NotFoundException) as err:
        api.get_namespaced_custom_object("serving.kserve.io", "v1beta1", "ml", "inferenceservices", "nope")
    assert json.loads(err.value.body)["message"] == 'inferenceservices.serving.kserve.io "nope" not found'
    double.deny("patch", "prod")
    authz = k8s.AuthorizationV1Api(double.api_client())

    def allowed(ns):
        review = k8s.V1SelfSubjectAccessReview(
            spec=k8s.V1SelfSubjectAccessReviewSpec(
                resource_attributes=k8s.V1ResourceAttributes(
                    namespace=ns, verb="patch", group="serving.kserve.io", resource="inferenceservices"
                )
            )
        )
        return authz.create_self_subject_access_review(review).status.allowed

    assert (allowed("ml"), allowed("prod")) == (True, False)


def test_controller_simulation_keeps_the_revision_when_not_ready(double):
    seed(double, s.serverless(version="1"))
    double.mutate("ml", "iris", lambda o: o["spec"]["predictor"]["model"].update(storageUri=s.URI["2"]))
    obj = double.simulate_controller("ml", "iris", ready=False)
    comp = obj["status"]["components"]["predictor"]
    assert comp["latestCreatedRevision"] == "iris-predictor-00002"
    assert comp["latestReadyRevision"] == "iris-predictor-00001"
    assert comp["traffic"] == [
        {"latestRevision": True, "percent": 100, "revisionName": "iris-predictor-00001"}
    ]
    assert {c["type"]: c["status"] for c in obj["status"]["conditions"]}["Ready"] == "False"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
