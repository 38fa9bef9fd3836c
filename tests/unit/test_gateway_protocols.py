"""The gateway's pure parts: V1/V2 parsing against a signature, answers, the draw, faults, events."""

from __future__ import annotations

import json

import pytest

from services.gateway.protocols import ProtocolError, parse_v1, parse_v2, v1_response, v2_response
from services.gateway.routing import Route, faults_as_json, faults_from_json, parse_faults

COLS = (("mean radius", "double"), ("count", "long"), ("flag", "boolean"), ("label", "string"))
ROW = {"mean radius": 1.5, "count": 3, "flag": True, "label": "a"}


def _err(fn, *args, **kw) -> ProtocolError:
    with pytest.raises(ProtocolError) as exc:
        fn(*args, **kw)
    return exc.value


# ------------------------------------------------------------------ V1

def test_v1_lists_and_objects_become_columns_in_signature_order():
    b = parse_v1({"instances": [[1, 2.0, False, "x"], {"label": "a", "flag": True, "count": 3, "mean radius": 1.5}]},
                 COLS, max_batch=10)
    assert b.rows == 2
    assert b.data == {"mean radius": [1.0, 1.5], "count": [2, 3], "flag": [False, True], "label": ["x", "a"]}
    assert isinstance(b.data["mean radius"][0], float) and isinstance(b.data["count"][0], int)
    assert b.records()[1] == ROW


@pytest.mark.parametrize("instance, words", [
    ({**{k: v for k, v in ROW.items() if k != "mean radius"}, "mean radios": 1},
     ["instance 0", "missing feature 'mean radius'", "unknown feature 'mean radios'"]),
    ({k: v for k, v in ROW.items() if k != "count"}, ["missing feature 'count'"]),
    ({**ROW, "mean radius": "1.5"}, ["'mean radius'", "number (double)", "string '1.5'"]),
    ({**ROW, "mean radius": True}, ["'mean radius'", "boolean"]),
    ({**ROW, "mean radius": None}, ["'mean radius'", "null"]),
    ({**ROW, "count": 2.5}, ["'count'", "whole number (long)"]),
    ({**ROW, "flag": 1}, ["'flag'", "true or false"]),
    ({**ROW, "label": 3}, ["'label'", "string"]),
    ([1, 2, True], ["has 3 values", "takes 4"]),
    ("text", ["instance 0 must be a list", "got string"]),
])
def test_v1_bad_instances_are_400_naming_instance_and_feature(instance, words):
    err = _err(parse_v1, {"instances": [instance]}, COLS, max_batch=10)
    assert err.status == 400
    for w in words:
        assert w in err.message, (w, err.message)


def test_v1_whole_floats_are_accepted_for_integer_features():
    assert parse_v1({"instances": [{**ROW, "count": 4.0}]}, COLS, max_batch=1).data["count"] == [4]


@pytest.mark.parametrize("body", [[], {"inputs": []}, {"instances": {"a": 1}}, None])
def test_v1_body_shape_is_checked(body):
    assert _err(parse_v1, body, COLS, max_batch=10).status == 400


def test_v1_empty_and_oversized_batches():
    assert _err(parse_v1, {"instances": []}, COLS, max_batch=10).status == 400
    err = _err(parse_v1, {"instances": [ROW] * 11}, COLS, max_batch=10)
    assert err.status == 413 and "11 instances" in err.message and "MLOPS_GATEWAY_MAX_BATCH" in err.message


def test_v1_without_a_signature_passes_rows_as_given():
    b = parse_v1({"instances": [[1, 2], [3, 4]]}, (), max_batch=10)
    assert b.raw_rows == [[1, 2], [3, 4]] and b.rows == 2


def test_v1_response():
    assert v1_response([1, 0]) == {"predictions": [1, 0]}


# ------------------------------------------------------------------ V2

def _inp(name, data, datatype="FP64", shape=None):
    return {"name": name, "shape": shape or [len(data)], "datatype": datatype, "data": data}


PER_FEATURE = [_inp("mean radius", [1, 2.5]), _inp("count", [1, 2], "INT64"), _inp("flag", [True, False], "BOOL"),
               _inp("label", ["a", "b"], "BYTES")]


def test_v2_one_input_per_feature_as_mlservers_pandas_codec_sends_it():
    b = parse_v2({"inputs": list(reversed(PER_FEATURE))}, COLS, max_batch=10)
    assert b.rows == 2 and b.data["mean radius"] == [1.0, 2.5] and b.data["label"] == ["a", "b"]
    assert [c for c, _ in b.columns] == [c for c, _ in COLS]


def test_v2_a_tensor_in_signature_order_flat_or_nested():
    cols = (("a", "double"), ("b", "double"))
    flat = parse_v2({"inputs": [_inp("input-0", [1, 2, 3, 4], shape=[2, 2])]}, cols, max_batch=10)
    nested = parse_v2({"inputs": [_inp("input-0", [[1, 2], [3, 4]], shape=[2, 2])]}, cols, max_batch=10)
    assert flat.data == nested.data == {"a": [1.0, 3.0], "b": [2.0, 4.0]}


@pytest.mark.parametrize("inputs, words", [
    ([*PER_FEATURE[:3], _inp("labels", ["a", "b"], "BYTES")], ["unknown input 'labels'"]),
    (PER_FEATURE[:3], ["missing input for feature 'label'"]),
    ([*PER_FEATURE, PER_FEATURE[0]], ["sent twice"]),
    ([_inp("mean radius", ["x", "y"], "BYTES"), *PER_FEATURE[1:]], ["datatype BYTES", "'mean radius' (double)"]),
    ([_inp("mean radius", [1, "y"]), *PER_FEATURE[1:]], ["element 1", "'mean radius'", "number"]),
    ([_inp("mean radius", [1.0, 2.0], "FP99"), *PER_FEATURE[1:]], ["unknown datatype 'FP99'"]),
    ([_inp("mean radius", [1.0, 2.0, 3.0], shape=[2]), *PER_FEATURE[1:]], ["shape [2] needs 2 values", "has 3"]),
    ([_inp("mean radius", [1.0]), *PER_FEATURE[1:]], ["rows, the other inputs have 1"]),
    ([{"name": "mean radius", "shape": "2", "datatype": "FP64", "data": [1, 2]}, *PER_FEATURE[1:]], ["shape must"]),
    ([_inp("input-0", [1, 2, 3], shape=[1, 3])], ["3 columns", "takes 4"]),
    ([_inp("input-0", [1, 2, 3], shape=[1, 4])], ["needs 4 values"]),
    ([{"shape": [1]}], ["input 0 must be an object with a name"]),
])
def test_v2_bad_inputs_are_400(inputs, words):
    err = _err(parse_v2, {"inputs": inputs}, COLS, max_batch=10)
    assert err.status == 400
    for w in words:
        assert w in err.message, (w, err.message)


def test_v2_oversized_batches_are_413_in_both_forms():
    cols = (("a", "double"), ("b", "double"))
    assert _err(parse_v2, {"inputs": [_inp("a", [1.0] * 11), _inp("b", [1.0] * 11)]}, cols, max_batch=10).status == 413
    tensor = {"inputs": [_inp("input-0", [1.0] * 22, shape=[11, 2])]}
    assert _err(parse_v2, tensor, cols, max_batch=10).status == 413


@pytest.mark.parametrize("body", [{"inputs": []}, {"instances": [[1]]}, [1], None])
def test_v2_body_shape_is_checked(body):
    assert _err(parse_v2, body, COLS, max_batch=10).status == 400


def test_v2_response_shapes_and_datatypes():
    r = v2_response("ep", "3", "rid-1", [1, 0])
    assert r == {"model_name": "ep", "model_version": "3", "id": "rid-1",
                 "outputs": [{"name": "predict", "shape": [2], "datatype": "INT64", "data": [1, 0]}]}
    assert v2_response("ep", "3", "r", [0.5, 1])["outputs"][0]["datatype"] == "FP64"
    assert v2_response("ep", "3", "r", [True])["outputs"][0]["datatype"] == "BOOL"
    assert v2_response("ep", "3", "r", ["a"])["outputs"][0]["datatype"] == "BYTES"
    proba = v2_response("ep", "3", "r", [[0.1, 0.9], [0.8, 0.2]])["outputs"][0]
    assert proba["shape"] == [2, 2] and proba["data"] == [0.1, 0.9, 0.8, 0.2]


# ------------------------------------------------------------------ routing and faults

def test_the_draw_sends_the_weighted_share_to_the_canary():
    route = Route("ep", "m", "1", "2", 20)
    assert route.choose(0.0) == ("2", "canary") and route.choose(0.1999) == ("2", "canary")
    assert route.choose(0.2) == ("1", "stable") and route.choose(0.99) == ("1", "stable")
    assert Route("ep", "m", "1", None, 0).choose(0.0) == ("1", "stable")
    assert Route("ep", "m", "1", "2", 0).choose(0.0) == ("1", "stable")
    assert Route("ep", "m", "1", "2", 100).choose(0.9999) == ("2", "canary")


def test_faults_from_the_environment_and_from_json():
    faults = parse_faults("4=errors:0.3,4=latency:50, 2=latency:5")
    assert faults["4"].errors == 0.3 and faults["4"].latency_ms == 50 and faults["2"].errors == 0
    assert faults_as_json(faults) == {"faults": {"2": {"errors": 0.0, "latency_ms": 5.0},
                                                 "4": {"errors": 0.3, "latency_ms": 50.0}}}
    assert faults_from_json({"spec": "4=errors:1"})["4"].errors == 1.0
    assert faults_from_json({"faults": {"4": {"errors": 0.5, "latency_ms": 10}}})["4"].latency_ms == 10
    assert faults_from_json({}) == {} and parse_faults("") == {}


@pytest.mark.parametrize("spec", ["4", "4=errors", "4=errors:x", "4=errors:1.5", "4=slow:3", "=errors:0.1",
                                  "4=latency:-1"])
def test_bad_fault_specs_name_the_part(spec):
    with pytest.raises(ValueError) as exc:
        parse_faults(spec)
    assert spec.split(",")[0] in str(exc.value)


def test_gateway_config_reads_its_environment():
    from services.errors import Invalid
    from services.gateway import GatewayConfig

    cfg = GatewayConfig.from_env({"MLOPS_GATEWAY_MAX_BATCH": "5", "MLOPS_INGEST_URL": "off",
                                  "MLOPS_GATEWAY_LOG_QUEUE": "7", "MLOPS_GATEWAY_FAULTS": "4=errors:0.3",
                                  "MLOPS_GATEWAY_SKOPS_TRUSTED": "a.B, c.D"})
    assert (cfg.max_batch, cfg.ingest_url, cfg.log_queue, cfg.faults) == (5, None, 7, "4=errors:0.3")
    assert cfg.skops_trusted == {"a.B", "c.D"}
    default = GatewayConfig.from_env({})
    assert (default.max_batch, default.ingest_url, default.log_queue) == (1000, "http://127.0.0.1:8090/", 10000)
    with pytest.raises(Invalid):
        GatewayConfig.from_env({"MLOPS_GATEWAY_MAX_BATCH": "many"})


def test_the_demos_vetted_skops_types_are_trusted_by_the_gateway():
    from services.demo.training import _SKOPS_ALLOWED
    from services.gateway.models import TRUSTED_SKOPS_TYPES

    assert _SKOPS_ALLOWED <= TRUSTED_SKOPS_TYPES


# ------------------------------------------------------------------ events

def test_inference_events_are_kserve_shaped_binary_cloudevents():
    from datetime import UTC, datetime

    from services.gateway.logger import inference_event

    at = datetime(2026, 11, 27, 10, 0, 0, 123000, tzinfo=UTC)
    msg = inference_event("response", request_id="r-1", at=at, source="http://localhost:8080/", endpoint="ep",
                          role="canary", version="4", body=b'{"predictions": [1]}', status=200, model="m")
    h = {k.lower(): v for k, v in msg.headers.items()}
    assert h == {"ce-specversion": "1.0", "ce-id": "r-1", "ce-source": "http://localhost:8080/",
                 "ce-type": "org.kubeflow.serving.inference.response", "ce-time": "2026-11-27T10:00:00.123000Z",
                 "content-type": "application/json", "ce-namespace": "default", "ce-inferenceservicename": "ep",
                 "ce-component": "predictor", "ce-endpoint": "canary", "ce-modelversion": "4", "ce-role": "canary",
                 "ce-status": "200", "ce-model": "m"}
    assert json.loads(msg.body) == {"predictions": [1]}
    req = inference_event("request", request_id="r-1", at=at, source="s", endpoint="ep", role="stable",
                          version="1", body=b'{"instances": []}')
    assert req.headers["ce-type"] == "org.kubeflow.serving.inference.request" and "ce-status" not in req.headers


def test_frames_carry_the_signatures_dtypes_in_its_order():
    from services.gateway.models import to_frame

    mixed = to_frame(parse_v1({"instances": [ROW, [2, 4, False, "b"]]}, COLS, max_batch=10))
    assert list(mixed.columns) == [c for c, _ in COLS]
    assert [str(t) for t in mixed.dtypes][:3] == ["float64", "int64", "bool"]
    assert str(mixed.dtypes.iloc[3]) in ("object", "str")  # pandas 3 infers its string dtype
    assert mixed["count"].tolist() == [3, 4]
    cols = (("a", "double"), ("b", "double"))
    same = to_frame(parse_v1({"instances": [[1, 2], {"b": 4, "a": 3}]}, cols, max_batch=10))
    assert same.to_dict("list") == {"a": [1.0, 3.0], "b": [2.0, 4.0]} and set(map(str, same.dtypes)) == {"float64"}


def test_features_the_model_does_not_take_are_ignored():
    b = parse_v1({"instances": [{**ROW, "engineered": 9.5}]}, COLS, max_batch=10)
    assert b.records() == [ROW]
    per_feature = parse_v2({"inputs": [*PER_FEATURE, _inp("extra", [1.0, 2.0], "FP64")]}, COLS, max_batch=10)
    assert set(per_feature.data) == {n for n, _ in COLS}
