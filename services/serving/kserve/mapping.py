"""Reading an InferenceService (pure): what it serves, its revisions, and the :class:`Endpoint` it maps to.

What is served is read from the spec and from the console's annotations
(documented in ``docs/kserve.md``):

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

An InferenceService without annotations is matched to a registry version by its
``storageUri`` through a :data:`Resolver`, or shown as unknown.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from services.errors import ConsoleError
from services.refs import VersionRef
from services.serving import Condition, Endpoint, Revision, Scaling, ScalingStatus

SOURCE = "KServe"

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

Resolver = Callable[[str], "VersionRef | None"]  # storageUri -> the registry version stored there


@dataclass(frozen=True)
class Served:
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
    stable: Served
    canary: Served | None
    canary_weight: int
    canary_percent_field: int | None  # serverless spec.predictor.canaryTrafficPercent as written
    canary_index: int | None  # standard: index in spec.canary
    canary_name: str | None
    unmanaged_reason: str  # non-empty: the console must not write (mode, several canaries, ...)
    annotations_stale: bool

    @property
    def model(self) -> str | None:
        return self.stable.model or (self.canary.model if self.canary else None)


def isvc_annotations(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("annotations") or {}


def deployment_mode(obj: dict) -> str:
    """Serverless, Standard or ModelMesh (status first: it is what the controller chose)."""
    raw = (obj.get("status") or {}).get("deploymentMode") or isvc_annotations(obj).get(KSERVE_MODE_ANNOTATION)
    if raw == MODELMESH:
        return MODELMESH
    if raw in STANDARD_MODES or (obj.get("spec") or {}).get("canary"):
        return STANDARD
    return SERVERLESS


def uri_path(predictor: dict) -> tuple[str, ...] | None:
    """Where ``storageUri`` lives in a predictor: ``model`` (v0.8+) or an older ``<framework>`` block."""
    if isinstance(predictor.get("model"), dict):
        return ("model", "storageUri")
    for fw in FRAMEWORKS:
        if isinstance(predictor.get(fw), dict):
            return (fw, "storageUri")
    return None


def dig(obj, tokens) -> object:
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
            resolve: Resolver | None) -> tuple[Served, bool]:
    """(what is served at ``uri``, whether the annotations were stale and ignored)."""
    recorded = ann.get(uri_key) if uri_key else None
    stale = recorded is not None and recorded != uri
    if ann.get(version_key) and not stale:
        return Served(uri, ann.get(ANN_MODEL), str(ann[version_key]), ann.get(run_key)), False
    ref = _resolve(uri, resolve)
    if ref is not None:
        return Served(uri, ref.model, ref.version, ref.run_id), stale
    return Served(uri, ann.get(ANN_MODEL) if not stale else None), stale


def view_isvc(obj: dict, resolve: Resolver | None = None) -> IsvcView:
    """Read what an InferenceService serves (pure; ``resolve`` maps a storageUri to a registry version)."""
    md = obj.get("metadata") or {}
    ann = isvc_annotations(obj)
    spec = obj.get("spec") or {}
    predictor = spec.get("predictor") or {}
    mode = deployment_mode(obj)
    path = uri_path(predictor)
    uri = dig(predictor, path) if path else None
    main, stale = _served(ann, uri, ANN_VERSION, ANN_RUN, ANN_URI, resolve)
    unmanaged = ""
    canary: Served | None = None
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
                    stable = Served(stable.storage_uri, main.model, stable.version, stable.run_id)
            else:
                stable = Served(None)  # a canary someone else started: the stable version is unknown
    elif mode == STANDARD:
        entries = spec.get("canary") or []
        if len(entries) > 1:
            unmanaged = f"{len(entries)} canaries in spec.canary; the console manages at most one"
        elif entries:
            entry = entries[0] or {}
            cpred = entry.get("predictor") or {}
            cpath = uri_path(cpred)
            curi = dig(cpred, cpath) if cpath else None
            canary, cstale = _served(ann, curi, ANN_CANARY_VERSION, ANN_CANARY_RUN, ANN_CANARY_URI, resolve)
            if canary.model is None and main.model and not cstale:
                canary = Served(canary.storage_uri, main.model, canary.version, canary.run_id)
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
                   "storage_uri": dig(obj, view.uri_path) if view.uri_path else None}
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
        read_only=bool(reason), read_only_reason=reason, namespace=view.namespace, extra=extra,
        scaling=None if view.mode == MODELMESH else scaling_of(predictor))


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def scaling_of(predictor: dict) -> Scaling:
    """``spec.predictor``'s minReplicas, maxReplicas, scaleMetric, scaleTarget (None: KServe's default)."""
    metric = predictor.get("scaleMetric")
    return Scaling(_int(predictor.get("minReplicas")), _int(predictor.get("maxReplicas")),
                   metric if isinstance(metric, str) else None, _int(predictor.get("scaleTarget")))


def hpa_name(isvc: str) -> str:
    """The HorizontalPodAutoscaler KServe creates in Standard mode: named after the predictor's Deployment."""
    return f"{isvc}-predictor"


def hpa_status(obj: dict) -> ScalingStatus:
    """An ``autoscaling/v2`` HorizontalPodAutoscaler's current/desired replicas and conditions (pure)."""
    md, status = obj.get("metadata") or {}, obj.get("status") or {}
    conditions = tuple(
        Condition(type=str(c.get("type", "")), status=str(c.get("status", "Unknown")), reason=c.get("reason") or "",
                  message=c.get("message") or "", last_transition=_parse_time(c.get("lastTransitionTime")))
        for c in status.get("conditions") or [] if isinstance(c, dict))
    return ScalingStatus(source=f"HorizontalPodAutoscaler {md.get('namespace')}/{md.get('name')}",
                         current_replicas=_int(status.get("currentReplicas")),
                         desired_replicas=_int(status.get("desiredReplicas")), conditions=conditions)


def serverless_status(ep: Endpoint) -> ScalingStatus:
    """Serverless: the revisions and their traffic from the InferenceService status. The CRD's status has no
    replica counts (Knative keeps them on its Revision objects, which the console does not read)."""
    revisions = tuple((str(t.get("revisionName")), _int(t.get("percent")), None)
                      for t in ep.extra.get("traffic") or [] if isinstance(t, dict) and t.get("revisionName"))
    return ScalingStatus(source="InferenceService status", revisions=revisions,
                         note="Serverless: the InferenceService status reports no replica counts (Knative keeps "
                              "them on its Revisions, which the console does not read)")
