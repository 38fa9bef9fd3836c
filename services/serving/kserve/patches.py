"""Writing an InferenceService (pure): the JSON-patch bodies each :class:`Change` needs.

Every write is a JSON patch (``application/json-patch+json``) whose first
operation is ``test /metadata/resourceVersion`` (:func:`precondition`): the API
server applies it only if nobody wrote since the read. :func:`plan_writes` gives
the operations of each write for Serverless (``canaryTrafficPercent``) and
Standard (``spec.canary[]``, KServe >= 0.20) mode; :func:`build_patches` adds the
preconditions, so ``preview`` shows exactly what ``apply`` sends.
"""

from __future__ import annotations

import copy
import re

from services.errors import Invalid, PreconditionFailed
from services.refs import VersionRef
from services.serving import SCALE_METRICS, Change
from services.serving.kserve.mapping import (
    ANN_CANARY_RUN,
    ANN_CANARY_URI,
    ANN_CANARY_VERSION,
    ANN_MODEL,
    ANN_RUN,
    ANN_STABLE_RUN,
    ANN_STABLE_URI,
    ANN_STABLE_VERSION,
    ANN_URI,
    ANN_VERSION,
    CANARY_ANNOTATIONS,
    MODELMESH,
    SERVERLESS,
    SOURCE,
    STABLE_ANNOTATIONS,
    STANDARD,
    IsvcView,
    Resolver,
    Served,
    dig,
    isvc_annotations,
    uri_path,
    view_isvc,
)

DEFAULT_CONTAINER_NAME = "kserve-container"
RV_PATH = "/metadata/resourceVersion"
RV_FROM_PREVIOUS_WRITE = "<resourceVersion returned by the previous write>"
_CANARY_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _pointer(tokens) -> str:
    return "".join("/" + _escape(str(t)) for t in tokens)


def _check_uri(ref: VersionRef | None, op: str) -> str:
    if ref is None:
        raise Invalid(f"{op} needs a version", source=SOURCE)
    uri = (ref.storage_uri or "").strip()
    if not uri:
        raise Invalid(f"version {ref.model} v{ref.version} has no storage URI to serve from", source=SOURCE)
    if uri.startswith("models:/"):
        raise Invalid(f"{uri} is a registry alias; KServe needs the artifact location "
                      "(s3://, gs://, pvc://, ...)", source=SOURCE)
    return uri


def _check_weight(weight) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise Invalid(f"canary weight must be a whole number from 0 to 100, got {weight!r}", source=SOURCE)
    return weight


def _annotation_ops(obj: dict, values: dict[str, str | None]) -> list[dict]:
    """Set (or with None remove) annotations; no op for values already in place."""
    md = obj.get("metadata") or {}
    current = md.get("annotations")
    if not isinstance(current, dict):
        new = {k: v for k, v in values.items() if v is not None}
        return [{"op": "add", "path": "/metadata/annotations", "value": new}] if new else []
    ops = []
    for key, value in values.items():
        path = "/metadata/annotations/" + _escape(key)
        if value is None:
            if key in current:
                ops.append({"op": "remove", "path": path})
        elif key not in current:
            ops.append({"op": "add", "path": path, "value": str(value)})
        elif current[key] != value:
            ops.append({"op": "replace", "path": path, "value": str(value)})
    return ops


def _set(obj: dict, tokens: tuple[str, ...], value) -> dict:
    op = "replace" if _exists(obj, tokens) else "add"
    return {"op": op, "path": _pointer(tokens), "value": value}


def _exists(obj, tokens) -> bool:
    for t in tokens:
        if isinstance(obj, list) and isinstance(t, int) and 0 <= t < len(obj):
            obj = obj[t]
        elif isinstance(obj, dict) and t in obj:
            obj = obj[t]
        else:
            return False
    return True


def _main_annotations(ref: VersionRef, uri: str, prefix_keys=(ANN_VERSION, ANN_RUN, ANN_URI)) -> dict:
    return {prefix_keys[0]: str(ref.version), prefix_keys[1]: ref.run_id or None, prefix_keys[2]: uri}


def _check_model(view: IsvcView, ref: VersionRef) -> None:
    if view.model and ref.model and ref.model != view.model:
        raise Invalid(f"{view.namespace}/{view.name} serves model {view.model}, not {ref.model}",
                      source=SOURCE)


def _canary_name(version: str, taken: set) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", f"v{version}".lower()).strip("-") or "canary"
    base = base[:40].rstrip("-")
    name = base if _CANARY_NAME.match(base) else f"v-{base}".rstrip("-")
    while name in taken:
        name = f"{name}-canary"
    return name


def canary_entry(obj: dict, ref: VersionRef, uri: str, weight: int) -> dict:
    """A ``spec.canary[]`` entry (KServe >= 0.20, Standard mode) for ``ref``, modelled on the stable one."""
    predictor = (obj.get("spec") or {}).get("predictor") or {}
    path = uri_path(predictor)
    src = predictor.get(path[0]) if path else None
    if not isinstance(src, dict):
        raise PreconditionFailed("spec.predictor has no model to copy the canary from", source=SOURCE)
    if path[0] == "model":
        fmt = src.get("modelFormat")
        if not fmt:
            raise PreconditionFailed("spec.predictor.model has no modelFormat", source=SOURCE)
        model = {"modelFormat": copy.deepcopy(fmt)}
    else:
        model = {"modelFormat": {"name": path[0]}}
    for key in ("runtime", "protocolVersion"):
        if src.get(key):
            model[key] = src[key]
    model["name"] = src.get("name") or DEFAULT_CONTAINER_NAME
    model["storageUri"] = uri
    name = _canary_name(str(ref.version), {predictor.get("name")})
    return {"predictor": {"name": name, "model": model}, "trafficPercent": weight}


def _require_canary(view: IsvcView, op: str) -> None:
    if view.canary is None:
        raise PreconditionFailed(f"{op}: {view.namespace}/{view.name} has no canary", source=SOURCE)


def _plan_serverless(obj: dict, view: IsvcView, change: Change) -> list[list[dict]]:
    ann = isvc_annotations(obj)
    cp_path = ("spec", "predictor", "canaryTrafficPercent")
    uri_now = dig(obj, view.uri_path)
    if change.op == "start_canary":
        ref, weight = change.version, _check_weight(change.weight)
        uri = _check_uri(ref, change.op)
        _check_model(view, ref)
        if view.canary is None and uri == uri_now:
            raise Invalid(f"version {ref.version} is already the stable version", source=SOURCE)
        if view.canary is not None and uri == view.stable.storage_uri:
            raise Invalid(f"version {ref.version} is the stable version", source=SOURCE)
        ops = [_set(obj, view.uri_path, uri), _set(obj, cp_path, weight)]
        values = {ANN_MODEL: ref.model or view.model, **_main_annotations(ref, uri)}
        if view.canary is None:
            stable = view.stable
            if stable.version is None and change.previous_stable is not None and (
                    change.previous_stable.storage_uri in ("", uri_now)):
                stable = Served(uri_now, change.previous_stable.model, change.previous_stable.version,
                                 change.previous_stable.run_id)
            values.update({ANN_STABLE_VERSION: stable.version, ANN_STABLE_RUN: stable.run_id,
                           ANN_STABLE_URI: uri_now})
        return [ops + _annotation_ops(obj, values)]
    if change.op == "set_weight":
        _require_canary(view, change.op)
        return [[_set(obj, cp_path, _check_weight(change.weight))]]
    if change.op == "promote":
        _require_canary(view, change.op)
        values = {k: None for k in STABLE_ANNOTATIONS}
        return [[{"op": "remove", "path": _pointer(cp_path)}] + _annotation_ops(obj, values)]
    if change.op == "abort":
        _require_canary(view, change.op)
        stable = view.stable
        if not stable.storage_uri:
            prev = change.previous_stable
            if prev is None or not prev.storage_uri:
                raise PreconditionFailed(
                    "abort: the stable storageUri is unknown (the canary was not started by the console); "
                    "use set_stable with the version to serve", source=SOURCE)
            stable = Served(_check_uri(prev, "abort"), prev.model, prev.version, prev.run_id)
        writes = []
        if view.canary_percent_field != 0:
            # 1. pin all traffic to the previous rolled-out (stable) revision: the canary gets nothing
            writes.append([_set(obj, cp_path, 0)])
        # 2. restore the stable storageUri; canaryTrafficPercent stays 0, so the new revision (same model
        #    as stable) gets no traffic until the next change and the canary revision never gets 100 %.
        values = {ANN_VERSION: stable.version, ANN_RUN: stable.run_id, ANN_URI: stable.storage_uri,
                  ANN_STABLE_VERSION: stable.version, ANN_STABLE_RUN: stable.run_id,
                  ANN_STABLE_URI: stable.storage_uri}
        if stable.model and not ann.get(ANN_MODEL):
            values = {ANN_MODEL: stable.model, **values}
        writes.append([_set(obj, view.uri_path, stable.storage_uri)] + _annotation_ops(obj, values))
        return writes
    if change.op == "set_stable":
        return _set_stable(obj, view, change, cp_path, STABLE_ANNOTATIONS)
    raise Invalid(f"unknown operation {change.op!r}", source=SOURCE)


def _set_stable(obj: dict, view: IsvcView, change: Change, canary_path: tuple, cleared) -> list[list[dict]]:
    """Both modes: the version becomes the predictor's storageUri; the canary (``canary_path``) and its
    bookkeeping annotations (``cleared``) go."""
    ref = change.version
    uri = _check_uri(ref, change.op)
    _check_model(view, ref)
    ops = [_set(obj, view.uri_path, uri)]
    if _exists(obj, canary_path):
        ops.append({"op": "remove", "path": _pointer(canary_path)})
    values = {ANN_MODEL: ref.model or view.model, **_main_annotations(ref, uri), **{k: None for k in cleared}}
    return [ops + _annotation_ops(obj, values)]


def _plan_standard(obj: dict, view: IsvcView, change: Change) -> list[list[dict]]:
    canary_path = ("spec", "canary")
    if change.op == "start_canary":
        ref, weight = change.version, _check_weight(change.weight)
        uri = _check_uri(ref, change.op)
        _check_model(view, ref)
        if uri == view.stable.storage_uri:
            raise Invalid(f"version {ref.version} is the stable version", source=SOURCE)
        entry = canary_entry(obj, ref, uri, weight)
        if view.canary is None:
            op = {"op": "add", "path": _pointer(canary_path), "value": [entry]}
        else:
            op = {"op": "replace", "path": _pointer((*canary_path, view.canary_index)), "value": entry}
        values = {ANN_MODEL: ref.model or view.model,
                  **_main_annotations(ref, uri, (ANN_CANARY_VERSION, ANN_CANARY_RUN, ANN_CANARY_URI))}
        return [[op] + _annotation_ops(obj, values)]
    if change.op == "set_weight":
        _require_canary(view, change.op)
        path = (*canary_path, view.canary_index, "trafficPercent")
        return [[_set(obj, path, _check_weight(change.weight))]]
    if change.op == "promote":
        _require_canary(view, change.op)
        canary = view.canary
        ops = []
        if view.canary_name:  # KServe >= 0.20: retarget the stable predictor to the canary Deployment
            ops.append(_set(obj, ("spec", "predictor", "name"), view.canary_name))
        ops += [_set(obj, view.uri_path, canary.storage_uri), {"op": "remove", "path": _pointer(canary_path)}]
        values = {ANN_VERSION: canary.version, ANN_RUN: canary.run_id, ANN_URI: canary.storage_uri,
                  **{k: None for k in CANARY_ANNOTATIONS}}
        return [ops + _annotation_ops(obj, values)]
    if change.op == "abort":
        _require_canary(view, change.op)
        return [[{"op": "remove", "path": _pointer(canary_path)}]
                + _annotation_ops(obj, {k: None for k in CANARY_ANNOTATIONS})]
    if change.op == "set_stable":
        return _set_stable(obj, view, change, canary_path, CANARY_ANNOTATIONS)
    raise Invalid(f"unknown operation {change.op!r}", source=SOURCE)


SCALING_FIELDS = (("min_replicas", "minReplicas"), ("max_replicas", "maxReplicas"), ("metric", "scaleMetric"),
                  ("target", "scaleTarget"))


def _scaling_ops(obj: dict, view: IsvcView, change: Change) -> list[dict]:
    """``spec.predictor``'s minReplicas, maxReplicas, scaleMetric, scaleTarget (both modes; a canary keeps its own)."""
    new = change.scaling
    if view.mode == MODELMESH:
        raise PreconditionFailed("ModelMesh deployments are not managed by the console", source=SOURCE)
    if new is None:
        raise Invalid("set_scaling needs the values to set", source=SOURCE)
    if view.mode == STANDARD and new.min_replicas == 0:
        raise PreconditionFailed("Standard mode scales with a HorizontalPodAutoscaler, which cannot scale to zero: "
                                 "the minimum must be at least 1", source=SOURCE)
    ops = []
    for attr, key in SCALING_FIELDS:
        value = getattr(new, attr)
        if value is None:
            continue
        if attr == "metric" and value not in SCALE_METRICS:
            raise Invalid(f"scaleMetric must be one of {', '.join(SCALE_METRICS)}, got {value!r}", source=SOURCE)
        if attr != "metric" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise Invalid(f"{key} must be a whole number >= 0, got {value!r}", source=SOURCE)
        if dig(obj, ("spec", "predictor", key)) != value:
            ops.append(_set(obj, ("spec", "predictor", key), value))
    if not ops:
        raise PreconditionFailed(f"{view.namespace}/{view.name} already has these scaling values", source=SOURCE)
    return ops


def plan_writes(obj: dict, change: Change, resolve: Resolver | None = None) -> list[list[dict]]:
    """The JSON-patch operations of each write ``change`` needs, *without* the precondition (pure)."""
    view = view_isvc(obj, resolve)
    if change.op == "set_scaling":  # what serves is not touched: a custom container scales like any other
        return [_scaling_ops(obj, view, change)]
    if view.unmanaged_reason:
        raise PreconditionFailed(view.unmanaged_reason, source=SOURCE)
    plan = _plan_serverless if view.mode == SERVERLESS else _plan_standard
    return plan(obj, view, change)


def precondition(resource_version: str) -> dict:
    return {"op": "test", "path": RV_PATH, "value": resource_version}


def build_patches(obj: dict, change: Change, resolve: Resolver | None = None) -> list[list[dict]]:
    """The exact JSON-patch bodies ``apply`` sends, in order (pure).

    Each body starts with ``test /metadata/resourceVersion``: the first with
    ``change.expected_resource_version``, a later one with the resourceVersion the
    previous write returned (shown as :data:`RV_FROM_PREVIOUS_WRITE`).
    """
    writes = plan_writes(obj, change, resolve)
    return [[precondition(change.expected_resource_version if i == 0 else RV_FROM_PREVIOUS_WRITE), *ops]
            for i, ops in enumerate(writes)]
