"""KServe serving backend: each endpoint is an ``InferenceService`` (``serving.kserve.io/v1beta1``).

Endpoint names are ``NAMESPACE/NAME``. What is served is read from the spec and
from the console's annotations (documented in ``docs/kserve.md``):

* ``mlops-console.io/registered-model``, ``mlops-console.io/model-version``,
  ``mlops-console.io/run-id`` describe the model in ``spec.predictor``'s
  ``storageUri``; ``mlops-console.io/storage-uri`` records that URI when the
  console wrote them, so an edit of the URI by someone else is noticed (the
  version then comes from ``resolve_storage_uri`` or is unknown).
* Serverless mode, canary running (``spec.predictor.canaryTrafficPercent`` set):
  ``spec.predictor`` holds the *canary*; ``mlops-console.io/stable-model-version``,
  ``mlops-console.io/stable-run-id`` and ``mlops-console.io/stable-storage-uri``
  describe the stable version served by KServe's previous rolled-out revision.
* Standard mode (KServe >= 0.20 ``spec.canary[]``): ``spec.predictor`` is stable;
  ``mlops-console.io/canary-model-version``, ``mlops-console.io/canary-run-id``,
  ``mlops-console.io/canary-storage-uri`` describe the ``spec.canary`` entry.

Every write is a JSON patch (``application/json-patch+json``) whose first
operation is ``test /metadata/resourceVersion``: the API server applies it only
if nobody wrote since the read. The bodies come from the pure
:func:`build_patches`, so ``preview`` shows exactly what ``apply`` sends.
Conflicts are reported, never retried.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from services.errors import (
    Conflict,
    ConsoleError,
    Invalid,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    Unavailable,
)
from services.serving import Change, Condition, Endpoint, Revision, ServingBackend, ServingState, VersionRef

SOURCE = "KServe"
GROUP = "serving.kserve.io"
API_VERSION = "v1beta1"
PLURAL = "inferenceservices"
JSON_PATCH = "application/json-patch+json"
REQUEST_TIMEOUT = (5, 30)  # (connect, read) seconds
ACCESS_TTL_SECONDS = 300.0
PREVIEW_CACHE_SIZE = 256

ANN = "mlops-console.io/"
ANN_MODEL = ANN + "registered-model"
ANN_VERSION = ANN + "model-version"
ANN_RUN = ANN + "run-id"
ANN_URI = ANN + "storage-uri"
ANN_STABLE_VERSION = ANN + "stable-model-version"
ANN_STABLE_RUN = ANN + "stable-run-id"
ANN_STABLE_URI = ANN + "stable-storage-uri"
ANN_CANARY_VERSION = ANN + "canary-model-version"
ANN_CANARY_RUN = ANN + "canary-run-id"
ANN_CANARY_URI = ANN + "canary-storage-uri"
STABLE_ANNOTATIONS = (ANN_STABLE_VERSION, ANN_STABLE_RUN, ANN_STABLE_URI)
CANARY_ANNOTATIONS = (ANN_CANARY_VERSION, ANN_CANARY_RUN, ANN_CANARY_URI)
KSERVE_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"

SERVERLESS = "Serverless"
STANDARD = "Standard"
MODELMESH = "ModelMesh"
STANDARD_MODES = ("Standard", "RawDeployment", "LegacyRawDeployment")
FRAMEWORKS = ("sklearn", "xgboost", "lightgbm", "tensorflow", "pytorch", "onnx", "triton", "pmml", "paddle",
              "huggingface")
DEFAULT_CONTAINER_NAME = "kserve-container"
RV_PATH = "/metadata/resourceVersion"
RV_FROM_PREVIOUS_WRITE = "<resourceVersion returned by the previous write>"
_CANARY_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

Resolver = Callable[[str], "VersionRef | None"]


# =========================================================================== reading (pure)
@dataclass(frozen=True)
class _Served:
    """One side of an endpoint: where it loads from and what registry version that is."""

    storage_uri: str | None
    model: str | None = None
    version: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class IsvcView:
    """What an InferenceService serves, as the console sees it (pure function of the object)."""

    namespace: str
    name: str
    resource_version: str
    mode: str
    uri_path: tuple[str, ...] | None  # JSON-pointer tokens of spec.predictor's storageUri
    stable: _Served
    canary: _Served | None
    canary_weight: int
    canary_percent_field: int | None  # serverless spec.predictor.canaryTrafficPercent as written
    canary_index: int | None  # standard: index in spec.canary
    canary_name: str | None
    unmanaged_reason: str  # non-empty: the console must not write (mode, several canaries, ...)
    annotations_stale: bool

    @property
    def model(self) -> str | None:
        return self.stable.model or (self.canary.model if self.canary else None)


def _annotations(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("annotations") or {}


def deployment_mode(obj: dict) -> str:
    """Serverless, Standard or ModelMesh (status first: it is what the controller chose)."""
    raw = (obj.get("status") or {}).get("deploymentMode") or _annotations(obj).get(KSERVE_MODE_ANNOTATION)
    if raw == MODELMESH:
        return MODELMESH
    if raw in STANDARD_MODES or (obj.get("spec") or {}).get("canary"):
        return STANDARD
    return SERVERLESS


def _uri_path(predictor: dict) -> tuple[str, ...] | None:
    """Where ``storageUri`` lives in a predictor: ``model`` (v0.8+) or an older ``<framework>`` block."""
    if isinstance(predictor.get("model"), dict):
        return ("model", "storageUri")
    for fw in FRAMEWORKS:
        if isinstance(predictor.get(fw), dict):
            return (fw, "storageUri")
    return None


def _dig(obj, tokens) -> object:
    for t in tokens:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(t)
    return obj


def _resolve(uri: str | None, resolve: Resolver | None) -> VersionRef | None:
    if not uri or resolve is None:
        return None
    try:
        return resolve(uri)
    except ConsoleError:
        return None  # the registry being down must not hide the endpoint


def _served(ann: dict, uri: str | None, version_key: str, run_key: str, uri_key: str | None,
            resolve: Resolver | None) -> tuple[_Served, bool]:
    """(what is served at ``uri``, whether the annotations were stale and ignored)."""
    recorded = ann.get(uri_key) if uri_key else None
    stale = recorded is not None and recorded != uri
    if ann.get(version_key) and not stale:
        return _Served(uri, ann.get(ANN_MODEL), str(ann[version_key]), ann.get(run_key)), False
    ref = _resolve(uri, resolve)
    if ref is not None:
        return _Served(uri, ref.model, ref.version, ref.run_id), stale
    return _Served(uri, ann.get(ANN_MODEL) if not stale else None), stale


def view_isvc(obj: dict, resolve: Resolver | None = None) -> IsvcView:
    """Read what an InferenceService serves (pure; ``resolve`` maps a storageUri to a registry version)."""
    md = obj.get("metadata") or {}
    ann = _annotations(obj)
    spec = obj.get("spec") or {}
    predictor = spec.get("predictor") or {}
    mode = deployment_mode(obj)
    path = _uri_path(predictor)
    uri = _dig(predictor, path) if path else None
    main, stale = _served(ann, uri, ANN_VERSION, ANN_RUN, ANN_URI, resolve)
    unmanaged = ""
    canary: _Served | None = None
    weight = 0
    cp = predictor.get("canaryTrafficPercent")
    canary_index = canary_name = None
    stable = main
    if mode == MODELMESH:
        unmanaged = "ModelMesh deployments are not managed by the console"
    elif path is None or not uri:
        unmanaged = "spec.predictor has no storageUri (custom container?); the console cannot change it"
    if mode == SERVERLESS:
        stable_uri = ann.get(ANN_STABLE_URI)
        if cp is not None and uri != stable_uri:
            canary, weight = main, int(cp)
            if stable_uri:
                stable, _ = _served(ann, stable_uri, ANN_STABLE_VERSION, ANN_STABLE_RUN, None, resolve)
                if stable.model is None and main.model:
                    stable = _Served(stable.storage_uri, main.model, stable.version, stable.run_id)
            else:
                stable = _Served(None)  # a canary someone else started: the stable version is unknown
    elif mode == STANDARD:
        entries = spec.get("canary") or []
        if len(entries) > 1:
            unmanaged = f"{len(entries)} canaries in spec.canary; the console manages at most one"
        elif entries:
            entry = entries[0] or {}
            cpred = entry.get("predictor") or {}
            cpath = _uri_path(cpred)
            curi = _dig(cpred, cpath) if cpath else None
            canary, cstale = _served(ann, curi, ANN_CANARY_VERSION, ANN_CANARY_RUN, ANN_CANARY_URI, resolve)
            if canary.model is None and main.model and not cstale:
                canary = _Served(canary.storage_uri, main.model, canary.version, canary.run_id)
            stale = stale or cstale
            weight = int(entry.get("trafficPercent") or 0)
            canary_index, canary_name = 0, cpred.get("name")
    return IsvcView(
        namespace=md.get("namespace", ""), name=md.get("name", ""),
        resource_version=str(md.get("resourceVersion", "")), mode=mode,
        uri_path=("spec", "predictor", *path) if path else None, stable=stable, canary=canary,
        canary_weight=weight, canary_percent_field=cp if mode == SERVERLESS else None,
        canary_index=canary_index, canary_name=canary_name, unmanaged_reason=unmanaged,
        annotations_stale=stale)


def _parse_time(value) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _revisions(obj: dict, view: IsvcView) -> tuple[Revision, ...]:
    """What status says about revisions (Knative revisions in Serverless, canaries in Standard)."""
    status = obj.get("status") or {}
    comp = (status.get("components") or {}).get("predictor") or {}
    stable_v = view.stable.version
    canary_v = view.canary.version if view.canary else None
    reconciled = status.get("observedGeneration") == (obj.get("metadata") or {}).get("generation")
    out: list[Revision] = []
    if view.mode == SERVERLESS:
        percent = {t.get("revisionName"): t for t in comp.get("traffic") or [] if t.get("revisionName")}
        names = [comp.get(k) for k in ("latestCreatedRevision", "latestReadyRevision",
                                       "latestRolledoutRevision", "previousRolledoutRevision")]
        names += list(percent)
        seen: set[str] = set()
        for rev in names:
            if not rev or rev in seen:
                continue
            seen.add(rev)
            roles = [label for key, label in (("latestCreatedRevision", "latest created"),
                                              ("latestReadyRevision", "latest ready"),
                                              ("latestRolledoutRevision", "latest rolled out"),
                                              ("previousRolledoutRevision", "previous rolled out"))
                     if comp.get(key) == rev]
            t = percent.get(rev)
            if t is not None:
                tag = f" (tag {t['tag']})" if t.get("tag") else ""
                roles.append(f"{t.get('percent', 0)}% traffic{tag}")
            is_latest = bool(t and t.get("latestRevision")) and reconciled
            is_prev = bool(t and not t.get("latestRevision")) or (
                view.canary is None and rev == comp.get("latestRolledoutRevision") and reconciled)
            if is_latest and view.canary is not None:
                out.append(Revision(rev, None, canary_v, view.canary_weight, note=", ".join(roles)))
            elif (is_latest and view.canary is None) or (is_prev and view.canary is not None):
                out.append(Revision(rev, stable_v, None, 0, note=", ".join(roles)))
            else:
                out.append(Revision(rev, None, None, 0, note=", ".join(roles)))
    else:
        for c in status.get("canaryStatuses") or []:
            ready = "ready" if c.get("ready") else "not ready"
            version = canary_v if c.get("name") == view.canary_name else None
            out.append(Revision(str(c.get("name")), None, version, int(c.get("trafficPercent") or 0),
                                note=f"canary deployment, {ready}"))
    return tuple(out)


def endpoint_from_isvc(obj: dict, resolve: Resolver | None = None, *, read_only_reason: str = "") -> Endpoint:
    """Map an InferenceService to an :class:`Endpoint` (pure)."""
    view = view_isvc(obj, resolve)
    status = obj.get("status") or {}
    md = obj.get("metadata") or {}
    predictor = (obj.get("spec") or {}).get("predictor") or {}
    conditions = tuple(
        Condition(type=str(c.get("type", "")), status=str(c.get("status", "Unknown")),
                  reason=c.get("reason") or "", message=c.get("message") or "",
                  last_transition=_parse_time(c.get("lastTransitionTime")))
        for c in status.get("conditions") or [])
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    comp = (status.get("components") or {}).get("predictor") or {}
    replicas = predictor.get("minReplicas")
    extra: dict = {"mode": view.mode, "namespace": view.namespace,
                   "storage_uri": _dig(obj, view.uri_path) if view.uri_path else None}
    if view.mode == SERVERLESS and view.canary is not None:
        extra["stable_storage_uri"] = view.stable.storage_uri
    if view.mode == STANDARD and view.canary is not None:
        extra["canary_storage_uri"] = view.canary.storage_uri
        extra["canary_name"] = view.canary_name
    if view.canary_percent_field is not None:
        extra["canary_traffic_percent"] = view.canary_percent_field
    for key, label in (("traffic", "traffic"), ("latestReadyRevision", "latest_ready_revision"),
                       ("latestRolledoutRevision", "latest_rolledout_revision"),
                       ("previousRolledoutRevision", "previous_rolledout_revision")):
        if comp.get(key):
            extra[label] = copy.deepcopy(comp[key])
    extra["generation"] = md.get("generation")
    extra["observed_generation"] = status.get("observedGeneration")
    extra["reconciled"] = status.get("observedGeneration") == md.get("generation")
    if view.annotations_stale:
        extra["annotations_stale"] = True
    reason = read_only_reason or view.unmanaged_reason
    return Endpoint(
        name=f"{view.namespace}/{view.name}", model=view.model, stable_version=view.stable.version,
        canary_version=view.canary.version if view.canary else None,
        canary_weight=view.canary_weight if view.canary else 0, ready=ready, conditions=conditions,
        url=status.get("url"), replicas=int(replicas) if isinstance(replicas, int) else None,
        revisions=_revisions(obj, view), resource_version=view.resource_version, backend="kserve",
        read_only=bool(reason), read_only_reason=reason, namespace=view.namespace, extra=extra)


# =========================================================================== writing (pure)
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
    path = _uri_path(predictor)
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
    ann = _annotations(obj)
    cp_path = ("spec", "predictor", "canaryTrafficPercent")
    uri_now = _dig(obj, view.uri_path)
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
                stable = _Served(uri_now, change.previous_stable.model, change.previous_stable.version,
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
            stable = _Served(_check_uri(prev, "abort"), prev.model, prev.version, prev.run_id)
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


def plan_writes(obj: dict, change: Change, resolve: Resolver | None = None) -> list[list[dict]]:
    """The JSON-patch operations of each write ``change`` needs, *without* the precondition (pure)."""
    view = view_isvc(obj, resolve)
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


def _state_reached(got: ServingState, want: ServingState) -> bool:
    if (got.canary_version is None) != (want.canary_version is None):
        return False
    if want.canary_version is not None and got.canary_weight != want.canary_weight:
        return False
    for g, w in ((got.stable_version, want.stable_version), (got.canary_version, want.canary_version)):
        if w is not None and g != w:
            return False
    return True


# =========================================================================== the adapter
def _kube_config(context: str | None, config_file: str | None):
    """(ApiClient, default namespace) from kubeconfig, else from the in-cluster service account."""
    from kubernetes import client, config

    cfg = client.Configuration()
    try:
        config.load_kube_config(config_file=config_file, context=context, client_configuration=cfg)
        contexts, active = config.list_kube_config_contexts(config_file=config_file)
        chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
        namespace = ((chosen or {}).get("context") or {}).get("namespace") or "default"
        return client.ApiClient(cfg), namespace
    except Exception as exc:  # noqa: BLE001 - the loader raises many kinds; all mean "no usable kubeconfig"
        if context or config_file:
            raise Unavailable(f"cannot load kubeconfig context {context or '(current)'}: {exc}",
                              source=SOURCE) from exc
        kube_error = exc
    try:
        config.load_incluster_config(client_configuration=cfg)
    except Exception as exc:  # noqa: BLE001
        raise Unavailable(f"no usable kubeconfig ({kube_error}) and not running in a cluster ({exc})",
                          source=SOURCE) from exc
    sa_ns = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    namespace = sa_ns.read_text().strip() if sa_ns.is_file() else "default"
    return client.ApiClient(cfg), namespace or "default"


def _server_message(exc) -> str:
    body = getattr(exc, "body", None)
    try:
        data = json.loads(body) if body else {}
    except (TypeError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    msg = data.get("message") or getattr(exc, "reason", None) or str(exc)
    causes = [c.get("message") for c in (data.get("details") or {}).get("causes") or []
              if isinstance(c, dict)]
    return "; ".join([str(msg), *[str(c) for c in causes if c]])


class KServeBackend(ServingBackend):
    name = "kserve"
    source = SOURCE

    def __init__(self, namespaces: tuple[str, ...] = (), context: str | None = None, api_client=None, *,
                 resolve_storage_uri: Resolver | None = None, config_file: str | None = None,
                 request_timeout=REQUEST_TIMEOUT, access_ttl: float = ACCESS_TTL_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic):
        from kubernetes import client

        if api_client is None:
            api_client, default_ns = _kube_config(context, config_file)
        else:
            default_ns = "default"
        self.api_client = api_client
        self.namespaces: tuple[str, ...] = tuple(n for n in namespaces if n) or (default_ns,)
        self.resolve_storage_uri = resolve_storage_uri
        self.request_timeout = request_timeout
        self.access_ttl = access_ttl
        self._monotonic = monotonic
        self._objects = client.CustomObjectsApi(api_client)
        self._authz = client.AuthorizationV1Api(api_client)
        self._access: dict[str, tuple[float, bool, str]] = {}
        self._seen: OrderedDict[tuple[str, str], dict] = OrderedDict()
        self._lock = threading.Lock()  # Streamlit serves sessions from several threads

    # -- errors ----------------------------------------------------------------
    def _error(self, exc: Exception, doing: str) -> ConsoleError:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        if isinstance(exc, ConsoleError):
            return exc
        if isinstance(exc, ApiException):
            status, msg = exc.status, _server_message(exc)
            if status == 404:
                return NotFound(f"{doing}: not found", source=SOURCE, detail=msg)
            if status == 403:
                return PermissionDenied(f"{doing}: Kubernetes refused ({msg})", source=SOURCE, detail=msg)
            if status == 401:
                return Unavailable(f"{doing}: the Kubernetes credentials were rejected", source=SOURCE,
                                   detail=msg)
            if status == 409:
                return Conflict("endpoint changed since you read it; re-read and decide again", source=SOURCE,
                                detail=msg)
            if status == 422:
                return Invalid(f"{doing}: Kubernetes rejected the change: {msg}", source=SOURCE, detail=msg)
            if status in (0, 429) or status >= 500:
                return Unavailable(f"{doing}: Kubernetes API unavailable (HTTP {status})", source=SOURCE,
                                   detail=msg)
            return Unavailable(f"{doing}: unexpected answer HTTP {status}: {msg}", source=SOURCE, detail=msg)
        if isinstance(exc, (HTTPError, OSError)):
            return Unavailable(f"{doing}: cannot reach the Kubernetes API ({type(exc).__name__})",
                               source=SOURCE, detail=str(exc))
        return Unavailable(f"{doing}: {type(exc).__name__}: {exc}", source=SOURCE, detail=str(exc))

    def _call(self, doing: str, fn, *args, **kwargs):
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, _request_timeout=self.request_timeout, **kwargs)
        except (ApiException, HTTPError, OSError) as exc:
            raise self._error(exc, doing) from exc

    # -- names, access -----------------------------------------------------------
    def _split(self, name: str) -> tuple[str, str]:
        ns, sep, isvc = (name or "").partition("/")
        if not sep:
            if len(self.namespaces) == 1 and ns:
                return self.namespaces[0], ns
            raise NotFound(f"no endpoint {name!r}: KServe endpoint names are NAMESPACE/NAME", source=SOURCE)
        if ns not in self.namespaces or not isvc or "/" in isvc:
            raise NotFound(f"no endpoint {name!r} in the namespaces the console watches "
                           f"({', '.join(self.namespaces)})", source=SOURCE)
        return ns, isvc

    def _read_only_reason(self, namespace: str) -> str:
        """Non-empty when the user may not patch InferenceServices in ``namespace`` (cached)."""
        from kubernetes import client

        now = self._monotonic()
        cached = self._access.get(namespace)
        if cached and now - cached[0] < self.access_ttl:
            return "" if cached[1] else cached[2]
        review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(namespace=namespace, verb="patch", group=GROUP,
                                                            resource=PLURAL)))
        try:
            answer = self._authz.create_self_subject_access_review(
                review, _request_timeout=self.request_timeout)
            allowed = bool(answer.status and answer.status.allowed)
            why = (answer.status.reason if answer.status else "") or ""
        except Exception:  # noqa: BLE001 - cannot tell: assume writable, a 403 on write will say otherwise
            return ""
        reason = "" if allowed else f"you may not change InferenceServices in namespace {namespace}" + (
            f" ({why})" if why else "")
        self._access[namespace] = (now, allowed, reason)
        return reason

    def _mark_read_only(self, namespace: str, reason: str) -> None:
        self._access[namespace] = (self._monotonic(), False, reason)

    def _endpoint(self, obj: dict) -> Endpoint:
        md = obj.get("metadata") or {}
        key = (f"{md.get('namespace')}/{md.get('name')}", str(md.get("resourceVersion", "")))
        with self._lock:
            self._seen[key] = copy.deepcopy(obj)
            self._seen.move_to_end(key)
            while len(self._seen) > PREVIEW_CACHE_SIZE:
                self._seen.popitem(last=False)
        return endpoint_from_isvc(obj, self.resolve_storage_uri,
                                  read_only_reason=self._read_only_reason(md.get("namespace", "")))

    def _get(self, ns: str, name: str) -> dict:
        return self._call(f"reading InferenceService {ns}/{name}", self._objects.get_namespaced_custom_object,
                          GROUP, API_VERSION, ns, PLURAL, name)

    # -- reads ---------------------------------------------------------------------
    def list_endpoints(self) -> list[Endpoint]:
        out = []
        for ns in self.namespaces:
            answer = self._call(f"listing InferenceServices in {ns}",
                                self._objects.list_namespaced_custom_object, GROUP, API_VERSION, ns, PLURAL)
            items = sorted(answer.get("items") or [], key=lambda o: (o.get("metadata") or {}).get("name", ""))
            out += [self._endpoint(obj) for obj in items]
        return out

    def get_endpoint(self, name: str) -> Endpoint:
        ns, isvc = self._split(name)
        return self._endpoint(self._get(ns, isvc))

    # -- writes --------------------------------------------------------------------
    def preview(self, endpoint: Endpoint, change: Change) -> dict:
        """The request(s) ``apply`` would send for ``change`` to the endpoint as read."""
        ns, isvc = self._split(endpoint.name)
        with self._lock:
            cached = self._seen.get((endpoint.name, endpoint.resource_version))
        obj = cached or self._get(ns, isvc)
        return {"method": "PATCH",
                "path": f"/apis/{GROUP}/{API_VERSION}/namespaces/{ns}/{PLURAL}/{isvc}",
                "content_type": JSON_PATCH,
                "writes": build_patches(obj, change, self.resolve_storage_uri)}

    def apply(self, name: str, change: Change, *, actor: str, note: str = "", approved_by: str | None = None
              ) -> Endpoint:
        ns, isvc = self._split(name)
        obj = self._get(ns, isvc)
        current = self._endpoint(obj)
        if current.resource_version != str(change.expected_resource_version):
            raise Conflict("endpoint changed since you read it; re-read and decide again", source=SOURCE,
                           detail=f"read {change.expected_resource_version}, now {current.resource_version}")
        if current.read_only:
            denied = self._access.get(ns)
            cls = PermissionDenied if denied and not denied[1] else PreconditionFailed
            raise cls(f"{name} is read-only: {current.read_only_reason}", source=SOURCE)
        writes = plan_writes(obj, change, self.resolve_storage_uri)
        expected = current.resource_version
        result = obj
        for i, ops in enumerate(writes):
            step = f" (write {i + 1} of {len(writes)})" if len(writes) > 1 else ""
            doing = f"{change.op} on {name}{step}"
            result = self._patch(ns, isvc, [precondition(expected), *ops], expected, doing, done=i)
            expected = str(result["metadata"]["resourceVersion"])
        after = self._endpoint(result)
        want = change.target_state(current.state())
        if not _state_reached(after.state(), want):
            raise Unavailable(
                f"{change.op} on {name}: Kubernetes accepted the write but the InferenceService does not "
                f"show it (now {after.state().as_dict()}, wanted {want.as_dict()}); was a field dropped? "
                "spec.canary needs KServe >= 0.20", source=SOURCE)
        return after

    def _patch(self, ns: str, isvc: str, body: list[dict], expected: str, doing: str, *, done: int) -> dict:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        partial = " The earlier write(s) of this change went through: re-read the endpoint." if done else ""
        try:
            return self._objects.patch_namespaced_custom_object(
                GROUP, API_VERSION, ns, PLURAL, isvc, body, _content_type=JSON_PATCH,
                _request_timeout=self.request_timeout)
        except ApiException as exc:
            msg = _server_message(exc)
            if exc.status == 409 or (exc.status == 422 and self._lost_race(ns, isvc, expected, msg)):
                raise Conflict("endpoint changed since you read it; re-read and decide again" + partial,
                               source=SOURCE, detail=msg) from exc
            if exc.status == 403:
                self._mark_read_only(ns, f"Kubernetes refused a change in namespace {ns}: {msg}")
            err = self._error(exc, doing)
            if partial:
                err = type(err)(err.message + partial, source=SOURCE, detail=err.detail)
            raise err from exc
        except (HTTPError, OSError) as exc:
            err = self._error(exc, doing)
            raise type(err)(err.message + partial, source=SOURCE, detail=err.detail) from exc

    def _lost_race(self, ns: str, isvc: str, expected: str, msg: str) -> bool:
        """A 422 is a Conflict when our resourceVersion ``test`` failed (re-read to tell; never retried)."""
        if "testing value " + RV_PATH in msg:
            return True
        try:
            now = self._get(ns, isvc)
        except ConsoleError:
            return False
        return str((now.get("metadata") or {}).get("resourceVersion")) != expected
