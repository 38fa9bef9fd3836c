"""Pure mapping of KServe inference-logger CloudEvents to prediction rows (no I/O).

An event is one half of a prediction: ``org.kubeflow.serving.inference.request`` or ``.response``, sharing
``ce-id``. :func:`parse_half` checks the headers and the body's shape and normalises the payload:

* request, V1 ``{"instances": [...]}`` (each a list in signature order, an object keyed by feature name, or a
  scalar); MLflow's ``{"dataframe_split": {...}}`` / ``{"dataframe_records": [...]}`` too;
* request, Open Inference Protocol V2 ``{"inputs": [{"name", "shape", "datatype", "data"}]}``: one input per
  feature with shape ``[n]`` (or ``[n, 1]``), or a single ``[n, k]`` tensor whose columns are in signature order;
* response, V1 ``{"predictions": [...]}``, V2 ``{"outputs": [...], "model_version": ...}``, or an error body
  ``{"error": "..."}``.

:func:`pair_rows` joins the two halves into one :class:`PredictionRow` per instance once the version that
answered and the signature's column names are known (the app resolves those).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.errors import Invalid
from services.predictions import ROLES, PredictionRow

SOURCE = "prediction ingest"
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
TYPES = {REQUEST_TYPE: "request", RESPONSE_TYPE: "response"}
MAX_ROWS = 10_000  # instances in one request


def bad(message: str) -> Invalid:
    return Invalid(message, source=SOURCE)


@dataclass
class Half:
    """One parsed event. ``instances``: per row a dict (named features) or a list (positional);
    ``predictions``: per row the output (response halves)."""

    kind: str  # request | response
    id: str
    endpoint: str
    time: datetime | None
    version: str | None = None  # ce-modelversion (the gateway's), else V2 model_version of a response
    role: str | None = None  # ce-role
    model: str | None = None  # ce-model, when a sender knows it
    status: int = 200
    error: str = ""
    instances: list[Any] = field(default_factory=list)
    predictions: list[Any] | None = None  # None: an error response (no per-row output)


def endpoint_name(namespace: str | None, name: str | None, backend: str) -> str:
    if not name:
        raise bad("missing CloudEvent extension ce-inferenceservicename (the InferenceService's name)")
    if backend == "kserve":
        if not namespace:
            raise bad("missing CloudEvent extension ce-namespace (needed on the kserve backend: NAMESPACE/NAME)")
        return f"{namespace}/{name}"
    return name  # the local backend: endpoint names have no namespace


def parse_half(attrs: dict[str, Any], data: Any, *, backend: str) -> Half:
    """``attrs``: the CloudEvent's attributes and extensions; ``data``: its parsed JSON body."""
    kind = TYPES.get(str(attrs.get("type") or ""))
    if kind is None:
        raise bad(f"ce-type {attrs.get('type')!r} is not {REQUEST_TYPE} or {RESPONSE_TYPE}")
    if not attrs.get("id"):
        raise bad("missing ce-id (the request id that pairs request and response)")
    t = attrs.get("time")
    if t is not None and not isinstance(t, datetime):
        try:
            t = datetime.fromisoformat(str(t).replace("Z", "+00:00"))
        except ValueError:
            raise bad(f"ce-time {t!r} is not an RFC 3339 time") from None
    if t is not None and t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    if not isinstance(data, dict):
        raise bad(f"the {kind} body is not a JSON object (KServe V1 or V2 inference payload)")
    role = str(attrs.get("role") or "").strip().lower() or None
    half = Half(kind=kind, id=str(attrs["id"]), time=t,
                endpoint=endpoint_name(attrs.get("namespace"), attrs.get("inferenceservicename"), backend),
                version=str(attrs.get("modelversion") or "").strip() or None,
                role=role if role in ROLES else None, model=str(attrs.get("model") or "").strip() or None)
    if kind == "request":
        half.instances = request_instances(data)
    else:
        _parse_response(half, data, attrs.get("status"))
    return half


# -- requests ----------------------------------------------------------------------------------------------
def request_instances(body: dict) -> list[Any]:
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise bad("request 'instances' must be a non-empty list")
    elif _is_v2(body.get("inputs")):
        rows = _v2_rows(body["inputs"])
    elif isinstance(body.get("inputs"), list) and body["inputs"]:  # V1's alternative key (TF row format)
        rows = body["inputs"]
    elif isinstance(body.get("dataframe_split"), dict):
        split = body["dataframe_split"]
        cols, data = split.get("columns"), split.get("data")
        if not isinstance(data, list) or not data:
            raise bad("request 'dataframe_split.data' must be a non-empty list of rows")
        rows = [dict(zip(cols, r, strict=True)) if isinstance(cols, list) and isinstance(r, list)
                and len(r) == len(cols) else _fail_split(r, cols) for r in data]
    elif isinstance(body.get("dataframe_records"), list) and body["dataframe_records"]:
        rows = body["dataframe_records"]
    else:
        raise bad("the request body has no 'instances' (V1) or 'inputs' (V2) to log")
    if len(rows) > MAX_ROWS:
        raise bad(f"a request of {len(rows)} instances is more than {MAX_ROWS}")
    return [r if isinstance(r, dict | list) else [r] for r in rows]


def _fail_split(row: Any, cols: Any) -> dict:
    raise bad(f"dataframe_split row {row!r} does not match its columns {cols!r}")


def _is_v2(inputs: Any) -> bool:
    return isinstance(inputs, list) and bool(inputs) and all(
        isinstance(t, dict) and "data" in t and "name" in t for t in inputs)


def _tensor(t: dict, what: str) -> tuple[list[int], list[Any]]:
    """The shape and the row-major flat data of one V2 tensor, checked against each other."""
    shape = t.get("shape")
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise bad(f"{what} {t.get('name')!r} has no valid 'shape' (a list of sizes)")
    flat = _flatten(t["data"])
    if len(flat) != math.prod(shape):
        raise bad(f"{what} {t.get('name')!r} has shape {shape} but {len(flat)} values")
    return shape, flat


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    for x in data:
        out.extend(_flatten(x) if isinstance(x, list) else [x])
    return out


def _v2_rows(inputs: list[dict]) -> list[Any]:
    tensors = [(t["name"], *_tensor(t, "input")) for t in inputs]
    if len(tensors) == 1 and len(tensors[0][1]) == 2 and tensors[0][1][1] != 1:  # one [n, k] tensor
        _, (n, k), flat = tensors[0]
        return [flat[i * k:(i + 1) * k] for i in range(n)]
    n = tensors[0][1][0]
    for name, shape, _ in tensors:
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise bad(f"input {name!r} has shape {shape}: send one input per feature with shape [n], or a "
                      "single [n, k] tensor")
        if shape[0] != n:
            raise bad(f"inputs disagree on the batch size: {tensors[0][0]!r} has {n} rows, {name!r} {shape[0]}")
    if not n:
        raise bad("the request has no instances (batch size 0)")
    return [{name: flat[i] for name, _, flat in tensors} for i in range(n)]


# -- responses ---------------------------------------------------------------------------------------------
def _parse_response(half: Half, body: dict, status: Any) -> None:
    if status not in (None, ""):
        try:
            half.status = int(str(status))
        except ValueError:
            raise bad(f"ce-status {status!r} is not an HTTP status code") from None
    if "error" in body and "predictions" not in body and "outputs" not in body:
        half.error = str(body["error"])[:2000]
        half.status = half.status if half.status >= 400 else 500
        half.predictions = None
        return
    if "predictions" in body:
        if not isinstance(body["predictions"], list):
            raise bad("response 'predictions' must be a list (one per instance)")
        half.predictions = body["predictions"]
    elif isinstance(body.get("outputs"), list) and body["outputs"]:
        half.predictions = _v2_outputs(body["outputs"])
        if body.get("model_version") not in (None, "") and half.version is None:
            half.version = str(body["model_version"])
    else:
        raise bad("the response body has no 'predictions' (V1), 'outputs' (V2) or 'error'")


def _v2_outputs(outputs: list) -> list[Any]:
    if not all(isinstance(t, dict) and "data" in t and "name" in t for t in outputs):
        raise bad("response 'outputs' must be V2 tensors ({name, shape, datatype, data})")
    per_output = []
    for t in outputs:
        shape, flat = _tensor(t, "output")
        n = shape[0]
        width = math.prod(shape[1:]) if len(shape) > 1 else 1
        rows = flat if len(shape) == 1 or width == 1 else [flat[i * width:(i + 1) * width] for i in range(n)]
        per_output.append((t["name"], rows))
    n = len(per_output[0][1])
    if any(len(rows) != n for _, rows in per_output):
        raise bad("response outputs disagree on the batch size")
    if len(per_output) == 1:
        return per_output[0][1]
    return [{name: rows[i] for name, rows in per_output} for i in range(n)]


# -- pairs ---------------------------------------------------------------------------------------------------
def check_pair(request: Half, response: Half) -> None:
    if response.predictions is not None and len(response.predictions) != len(request.instances):
        raise bad(f"request {request.id!r} has {len(request.instances)} instances but its response "
                  f"{len(response.predictions)} predictions")


def features(instance: Any, columns: list[str] | None) -> dict[str, Any]:
    if isinstance(instance, dict):
        return dict(instance)
    names = columns if columns and len(columns) == len(instance) else [f"f{i}" for i in range(len(instance))]
    return dict(zip(names, instance, strict=True))


def pair_rows(request: Half, response: Half, *, at: datetime, version: str | None, role: str,
              model: str | None, columns: list[str] | None) -> list[PredictionRow]:
    """One row per instance. ``at``: when the request arrived; latency from the two ``ce-time``s — unknown
    (None, left out of the latency histogram) when the response is stamped before its request: the two pods'
    clocks disagree, and a clamped 0 ms would pull every quantile and latency test down."""
    latency = None
    if request.time is not None and response.time is not None:
        ms = (response.time - request.time).total_seconds() * 1000.0
        latency = ms if ms >= 0 else None
    return [PredictionRow(request_id=request.id, row=i, endpoint=request.endpoint, at=at, version=version,
                          role=role, model=model, features=features(inst, columns),
                          prediction=None if response.predictions is None else response.predictions[i],
                          latency_ms=latency, status=response.status, error=response.error)
            for i, inst in enumerate(request.instances)]
