"""The KServe adapter's pure parts: reading an InferenceService, and the exact patches each change sends.

Golden bodies live in ``tests/golden/kserve/*.json`` and are compared exactly.
Each patched object is validated against the KServe v0.19 and v0.20 CRD
schemas plus a check for keys the schemas do not define.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.errors import Invalid, PreconditionFailed
from services.serving import Change, ServingState, VersionRef
from services.serving.kserve import (
    RV_FROM_PREVIOUS_WRITE,
    build_patches,
    endpoint_from_isvc,
    plan_writes,
    view_isvc,
)
from tests.k8s_double import samples as s
from tests.k8s_double.crd import prune, undefined_keys
from tests.k8s_double.server import PatchError, apply_json_patch, merge_patch

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "kserve"
BOTH = ("v0.19.0", "v0.20.0")
V020 = ("v0.20.0",)

CASES = {
    # name: (object factory, change, CRD versions the result must fit)
    "serverless_start_canary": (lambda: s.serverless(), Change("start_canary", "7", s.ref("2"), 10), BOTH),
    "serverless_start_canary_unannotated": (
        lambda: s.serverless(annotated=False),
        Change("start_canary", "7", s.ref("2"), 10, previous_stable=s.ref("1")),
        BOTH,
    ),
    "serverless_start_canary_framework": (
        lambda: s.serverless(framework="sklearn"),
        Change("start_canary", "7", s.ref("2"), 5),
        BOTH,
    ),
    "serverless_replace_canary": (
        lambda: s.serverless_canary(),
        Change("start_canary", "9", s.ref("3"), 15),
        BOTH,
    ),
    "serverless_set_weight": (lambda: s.serverless_canary(), Change("set_weight", "9", weight=50), BOTH),
    "serverless_promote": (lambda: s.serverless_canary(), Change("promote", "9"), BOTH),
    "serverless_abort": (lambda: s.serverless_canary(), Change("abort", "9"), BOTH),
    "serverless_set_stable_with_canary": (
        lambda: s.serverless_canary(),
        Change("set_stable", "9", s.ref("3")),
        BOTH,
    ),
    "serverless_set_stable": (lambda: s.serverless(), Change("set_stable", "7", s.ref("4")), BOTH),
    "standard_start_canary": (lambda: s.standard(), Change("start_canary", "7", s.ref("2"), 25), V020),
    "standard_set_weight": (lambda: s.standard_canary(), Change("set_weight", "9", weight=60), V020),
    "standard_promote": (lambda: s.standard_canary(), Change("promote", "9"), V020),
    "standard_abort": (lambda: s.standard_canary(), Change("abort", "9"), V020),
    "standard_set_stable": (lambda: s.standard_canary(), Change("set_stable", "9", s.ref("3")), V020),
}


def apply_plan(obj: dict, writes: list[list[dict]]) -> dict:
    """Apply the bodies like the API server would, bumping the resourceVersion after each."""
    for body in writes:
        assert body[0]["op"] == "test" and body[0]["path"] == "/metadata/resourceVersion"
        if body[0]["value"] == RV_FROM_PREVIOUS_WRITE:
            body = [{**body[0], "value": obj["metadata"]["resourceVersion"]}, *body[1:]]
        obj = apply_json_patch(obj, body)
        obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
    return obj


# ------------------------------------------------------------------------- golden bodies
@pytest.mark.parametrize("case", sorted(CASES))
def test_patch_bodies_match_golden(case):
    factory, change, _ = CASES[case]
    got = build_patches(factory(), change, s.resolver)
    want = json.loads((GOLDEN / f"{case}.json").read_text())
    assert got == want
    for i, body in enumerate(got):
        expected_rv = change.expected_resource_version if i == 0 else RV_FROM_PREVIOUS_WRITE
        assert body[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": expected_rv}


@pytest.mark.parametrize("case", sorted(CASES))
def test_patched_object_fits_the_crds_and_reaches_the_target(case, check_isvc):
    factory, change, versions = CASES[case]
    before = factory()
    check_isvc(before, versions)
    after = apply_plan(before, build_patches(before, change, s.resolver))
    check_isvc(after, versions)
    want = change.target_state(endpoint_from_isvc(before, s.resolver).state())
    got = endpoint_from_isvc(after, s.resolver).state()
    assert got == want


def test_golden_directory_has_no_orphans():
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == sorted(CASES)


def test_serverless_abort_pins_traffic_before_restoring_the_stable_uri():
    writes = build_patches(s.serverless_canary(), Change("abort", "9"), s.resolver)
    assert writes[0][1:] == [{"op": "replace", "path": "/spec/predictor/canaryTrafficPercent", "value": 0}]
    assert {"op": "replace", "path": "/spec/predictor/model/storageUri", "value": s.URI["1"]} in writes[1]
    assert not any(op["path"].endswith("canaryTrafficPercent") for op in writes[1])


def test_serverless_abort_after_the_first_write_only_restores():
    half_done = s.serverless_canary(weight=0)
    writes = plan_writes(half_done, Change("abort", "9"), s.resolver)
    assert len(writes) == 1
    assert writes[0][0] == {"op": "replace", "path": "/spec/predictor/model/storageUri", "value": s.URI["1"]}


# ------------------------------------------------------------------------- reading
def test_annotated_serverless_stable():
    ep = endpoint_from_isvc(s.with_serverless_status(s.serverless()))
    assert (ep.name, ep.model, ep.stable_version, ep.canary_version, ep.canary_weight) == (
        "ml/iris",
        s.MODEL,
        "1",
        None,
        0,
    )
    assert ep.ready and ep.url == "http://iris.ml.example.com" and ep.replicas == 1
    assert ep.resource_version == "7" and ep.namespace == "ml" and ep.backend == "kserve"
    assert ep.extra["mode"] == "Serverless" and ep.extra["storage_uri"] == s.URI["1"]
    assert [c.type for c in ep.conditions] == ["IngressReady", "PredictorReady", "Ready"]
    assert ep.conditions[-1].last_transition.isoformat() == "2026-11-01T10:01:00+00:00"
    assert [(r.name, r.stable_version) for r in ep.revisions] == [("iris-predictor-00001", "1")]


def test_annotated_serverless_canary_with_status():
    ep = endpoint_from_isvc(s.with_serverless_status(s.serverless_canary(weight=20), canary=True))
    assert ep.state() == ServingState("1", "2", 20)
    assert ep.traffic() == {"1": 80, "2": 20}
    assert ep.extra["stable_storage_uri"] == s.URI["1"] and ep.extra["storage_uri"] == s.URI["2"]
    revs = {r.name: r for r in ep.revisions}
    assert revs["iris-predictor-00002"].canary_version == "2"
    assert revs["iris-predictor-00002"].canary_weight == 20
    assert revs["iris-predictor-00001"].stable_version == "1"
    assert "tag prev" in revs["iris-predictor-00001"].note


def test_unannotated_is_matched_by_storage_uri():
    ep = endpoint_from_isvc(s.serverless(annotated=False, version="3"), s.resolver)
    assert (ep.model, ep.stable_version) == (s.MODEL, "3")


def test_unannotated_and_unresolvable_is_unknown():
    ep = endpoint_from_isvc(s.serverless(annotated=False))
    assert (ep.model, ep.stable_version, ep.canary_version) == (None, None, None)
    assert not ep.read_only


def test_annotations_for_another_uri_are_not_trusted():
    obj = s.serverless(version="1")
    obj["spec"]["predictor"]["model"]["storageUri"] = "s3://elsewhere/model"  # edited by hand
    ep = endpoint_from_isvc(obj, s.resolver)
    assert ep.stable_version is None and ep.extra["annotations_stale"] is True
    obj["spec"]["predictor"]["model"]["storageUri"] = s.URI["3"]
    assert endpoint_from_isvc(obj, s.resolver).stable_version == "3"


def test_resolver_failure_leaves_the_version_unknown():
    from services.errors import Unavailable

    def broken(uri):
        raise Unavailable("registry down", source="MLflow registry")

    ep = endpoint_from_isvc(s.serverless(annotated=False), broken)
    assert ep.stable_version is None and ep.name == "ml/iris"


def test_canary_started_by_someone_else_has_unknown_stable():
    obj = s.serverless(version="2")
    obj["spec"]["predictor"]["canaryTrafficPercent"] = 30
    ep = endpoint_from_isvc(obj)
    assert ep.state() == ServingState(None, "2", 30)
    with pytest.raises(PreconditionFailed, match="stable storageUri is unknown"):
        plan_writes(obj, Change("abort", "7"))
    writes = plan_writes(obj, Change("abort", "7", previous_stable=s.ref("1")))
    assert {"op": "replace", "path": "/spec/predictor/model/storageUri", "value": s.URI["1"]} in writes[-1]


def test_pinned_after_abort_reads_as_stable_only():
    after = apply_plan(s.serverless_canary(), build_patches(s.serverless_canary(), Change("abort", "9")))
    assert after["spec"]["predictor"]["canaryTrafficPercent"] == 0
    ep = endpoint_from_isvc(after)
    assert ep.state() == ServingState("1", None, 0)
    with pytest.raises(PreconditionFailed, match="no canary"):
        plan_writes(after, Change("set_weight", after["metadata"]["resourceVersion"], weight=5))


def test_standard_canary_is_read_from_spec_canary():
    ep = endpoint_from_isvc(s.standard_canary(weight=25))
    assert ep.state() == ServingState("1", "2", 25)
    assert ep.extra["mode"] == "Standard" and ep.extra["canary_name"] == "v2"
    assert ep.replicas == 4


def test_status_deployment_mode_wins_over_the_annotation():
    obj = s.serverless()
    obj["status"] = {"deploymentMode": "RawDeployment"}
    assert view_isvc(obj).mode == "Standard"


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda o: o["status"].update(deploymentMode="ModelMesh"), "ModelMesh"),
        (
            lambda o: o["spec"].update(predictor={"containers": [{"name": "c", "image": "x"}]}),
            "no storageUri",
        ),
        (lambda o: o["spec"]["canary"].append(dict(o["spec"]["canary"][0], trafficPercent=5)), "2 canaries"),
    ],
)
def test_unmanaged_shapes_are_read_only_and_refuse_writes(mutate, reason):
    obj = s.standard_canary()
    obj["status"] = {}
    mutate(obj)
    ep = endpoint_from_isvc(obj)
    assert ep.read_only and reason in ep.read_only_reason
    with pytest.raises(PreconditionFailed, match=reason):
        plan_writes(obj, Change("set_stable", "9", s.ref("3")))


# ------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("uri", ["models:/iris-classifier/2", "models:/iris-classifier@champion", "", "   "])
def test_registry_alias_or_missing_uri_is_invalid(uri):
    bad = VersionRef(s.MODEL, "2", "run2", uri)
    for change in (Change("start_canary", "7", bad, 10), Change("set_stable", "7", bad)):
        with pytest.raises(Invalid):
            build_patches(s.serverless(), change)
        with pytest.raises(Invalid):
            build_patches(s.standard(), change)


@pytest.mark.parametrize("weight", [-1, 101, True, "10", 10.0, None])
def test_weight_must_be_0_to_100(weight):
    with pytest.raises(Invalid, match="0 to 100"):
        build_patches(s.serverless_canary(), Change("set_weight", "9", weight=weight))
    with pytest.raises(Invalid, match="0 to 100"):
        build_patches(s.serverless(), Change("start_canary", "7", s.ref("2"), weight))


@pytest.mark.parametrize("op", ["set_weight", "promote", "abort"])
@pytest.mark.parametrize("factory", [s.serverless, s.standard])
def test_canary_ops_need_a_canary(op, factory):
    with pytest.raises(PreconditionFailed, match="has no canary"):
        build_patches(factory(), Change(op, "7", weight=10))


def test_canary_of_another_model_is_invalid():
    with pytest.raises(Invalid, match="serves model"):
        build_patches(s.serverless(), Change("start_canary", "7", s.ref("2", model="other"), 10))


def test_canary_of_the_stable_version_is_invalid():
    with pytest.raises(Invalid, match="stable"):
        build_patches(s.serverless(), Change("start_canary", "7", s.ref("1"), 10))
    with pytest.raises(Invalid, match="stable"):
        build_patches(s.standard(), Change("start_canary", "7", s.ref("1"), 10))


# ------------------------------------------------------------------------- details of the bodies
def test_annotations_are_added_as_a_whole_when_there_are_none():
    body = build_patches(s.serverless(annotated=False), Change("set_stable", "7", s.ref("2")))[0]
    assert body[-1] == {
        "op": "add",
        "path": "/metadata/annotations",
        "value": {
            "mlops-console.io/registered-model": s.MODEL,
            "mlops-console.io/model-version": "2",
            "mlops-console.io/run-id": "run2",
            "mlops-console.io/storage-uri": s.URI["2"],
        },
    }


def test_annotation_keys_are_escaped_json_pointers():
    body = build_patches(s.serverless(), Change("set_stable", "7", s.ref("2")))[0]
    paths = [op["path"] for op in body]
    assert "/metadata/annotations/mlops-console.io~1model-version" in paths
    assert all("mlops-console.io/" not in p for p in paths)


def test_standard_canary_name_avoids_the_stable_predictor_name():
    obj = s.standard(predictor_name="v2")
    body = build_patches(obj, Change("start_canary", "7", s.ref("2"), 10))[0]
    entry = body[1]["value"][0]
    assert entry["predictor"]["name"] == "v2-canary"


def test_standard_canary_from_framework_spec_gets_a_model_format():
    obj = s.standard()
    obj["spec"]["predictor"] = {"xgboost": {"storageUri": s.URI["1"], "runtime": "kserve-xgbserver"}}
    entry = build_patches(obj, Change("start_canary", "7", s.ref("2"), 10))[0][1]["value"][0]
    assert entry["predictor"]["model"] == {
        "modelFormat": {"name": "xgboost"},
        "runtime": "kserve-xgbserver",
        "name": "kserve-container",
        "storageUri": s.URI["2"],
    }


# ------------------------------------------------------------------------- the double's patch code
def test_json_patch_test_failure_and_missing_remove_raise():
    doc = {"metadata": {"resourceVersion": "5"}, "spec": {"a": [1, 2]}}
    with pytest.raises(PatchError, match="testing value /metadata/resourceVersion failed"):
        apply_json_patch(doc, [{"op": "test", "path": "/metadata/resourceVersion", "value": "4"}])
    with pytest.raises(PatchError, match="nonexistent"):
        apply_json_patch(doc, [{"op": "remove", "path": "/spec/b"}])
    with pytest.raises(PatchError):
        apply_json_patch(doc, [{"op": "replace", "path": "/spec/b", "value": 1}])
    with pytest.raises(PatchError, match="test failed"):
        apply_json_patch({"x": 1}, [{"op": "test", "path": "/x", "value": True}])
    assert doc == {"metadata": {"resourceVersion": "5"}, "spec": {"a": [1, 2]}}, "input untouched"


def test_json_patch_rfc6902_operations():
    doc = {"a/b": {"~c": 1}, "l": [1, 2, 3]}
    out = apply_json_patch(
        doc,
        [
            {"op": "add", "path": "/l/1", "value": 9},
            {"op": "add", "path": "/l/-", "value": 4},
            {"op": "remove", "path": "/l/0"},
            {"op": "replace", "path": "/a~1b/~0c", "value": 2},
            {"op": "copy", "from": "/a~1b", "path": "/copied"},
            {"op": "move", "from": "/copied", "path": "/moved"},
            {"op": "test", "path": "/l", "value": [9, 2, 3, 4]},
        ],
    )
    assert out == {"a/b": {"~c": 2}, "l": [9, 2, 3, 4], "moved": {"~c": 2}}


def test_merge_patch_rfc7386_examples():
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}


# ------------------------------------------------------------------------- the unknown-keys check
def test_undefined_keys_are_found_and_pruned(crd_schemas):
    obj = s.serverless()
    obj["spec"]["predictor"]["canaryTraficPercent"] = 10  # misspelt
    obj["spec"]["predictor"]["model"]["storageURI"] = "s3://x"
    obj["spec"]["predictor"]["nodeSelector"] = {"any-key": "fine"}  # additionalProperties
    obj["status"] = {"anything": {"goes": 1}}  # v0.19 status preserves unknown fields
    obj["metadata"]["whatever"] = 1  # ObjectMeta is the API server's business
    schema = crd_schemas["v0.19.0"]
    assert sorted(undefined_keys(obj, schema)) == [
        "spec.predictor.canaryTraficPercent",
        "spec.predictor.model.storageURI",
    ]
    pruned, dropped = prune(obj, schema)
    assert len(dropped) == 2 and undefined_keys(pruned, schema) == []
    assert "canaryTraficPercent" in obj["spec"]["predictor"], "prune works on a copy"
    assert undefined_keys(s.standard_canary(), crd_schemas["v0.19.0"]) == ["spec.canary"]
    assert undefined_keys(s.standard_canary(), crd_schemas["v0.20.0"]) == []
