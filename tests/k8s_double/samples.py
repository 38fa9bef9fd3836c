"""InferenceService objects for tests (what a cluster would hold), and registry versions."""

from __future__ import annotations

import copy

from services.serving import VersionRef

NS = "ml"
NAME = "iris"
MODEL = "iris-classifier"
URI = {v: f"s3://models/iris/{v}/model" for v in ("1", "2", "3", "4")}
RUN = {v: f"run{v}" for v in ("1", "2", "3", "4")}
ANN = "mlops-console.io/"


def ref(version: str, model: str = MODEL) -> VersionRef:
    return VersionRef(model, version, RUN[version], URI[version])


def resolver(uri: str) -> VersionRef | None:
    """What the registry answers for a storage URI (only versions 1..4 of MODEL are known)."""
    for v, u in URI.items():
        if u == uri:
            return ref(v)
    return None


def _meta(name: str, ns: str, rv: str | None, annotations: dict | None) -> dict:
    md = {"name": name, "namespace": ns}
    if annotations is not None:
        md["annotations"] = annotations
    if rv is not None:
        md.update(
            {
                "resourceVersion": rv,
                "generation": 3,
                "uid": "0b7c4a8e-0000-4000-8000-000000000001",
                "creationTimestamp": "2026-11-01T10:00:00Z",
            }
        )
    return md


def stable_annotations(v: str = "1") -> dict:
    return {
        ANN + "registered-model": MODEL,
        ANN + "model-version": v,
        ANN + "run-id": RUN[v],
        ANN + "storage-uri": URI[v],
    }


def serverless(
    *,
    version: str = "1",
    annotated: bool = True,
    name: str = NAME,
    ns: str = NS,
    rv: str | None = "7",
    framework: str | None = None,
    extra_annotations: dict | None = None,
) -> dict:
    """A Serverless InferenceService serving ``version`` at 100 %."""
    annotations = stable_annotations(version) if annotated else None
    if extra_annotations:
        annotations = {**(annotations or {}), **extra_annotations}
    if framework:
        predictor = {framework: {"storageUri": URI[version]}}
    else:
        predictor = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": URI[version]}}
    predictor["minReplicas"] = 1
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _meta(name, ns, rv, annotations),
        "spec": {"predictor": predictor},
    }


def serverless_canary(
    *, stable: str = "1", canary: str = "2", weight: int = 20, rv: str | None = "9"
) -> dict:
    """Serverless, canary ``canary`` at ``weight`` % as the console starts it (spec holds the canary)."""
    obj = serverless(version=canary, rv=rv)
    obj["spec"]["predictor"]["canaryTrafficPercent"] = weight
    obj["metadata"]["annotations"].update(
        {
            ANN + "stable-model-version": stable,
            ANN + "stable-run-id": RUN[stable],
            ANN + "stable-storage-uri": URI[stable],
        }
    )
    return obj


def with_serverless_status(obj: dict, *, canary: bool = False) -> dict:
    """A status as KServe writes it (two revisions when a canary runs)."""
    obj = copy.deepcopy(obj)
    name, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]
    weight = obj["spec"]["predictor"].get("canaryTrafficPercent", 0)
    if canary:
        traffic = [
            {
                "latestRevision": True,
                "percent": weight,
                "revisionName": f"{name}-predictor-00002",
                "tag": "latest",
            },
            {
                "latestRevision": False,
                "percent": 100 - weight,
                "revisionName": f"{name}-predictor-00001",
                "tag": "prev",
            },
        ]
        comp = {
            "latestCreatedRevision": f"{name}-predictor-00002",
            "latestReadyRevision": f"{name}-predictor-00002",
            "latestRolledoutRevision": f"{name}-predictor-00001",
            "traffic": traffic,
        }
    else:
        comp = {
            "latestCreatedRevision": f"{name}-predictor-00001",
            "latestReadyRevision": f"{name}-predictor-00001",
            "latestRolledoutRevision": f"{name}-predictor-00001",
            "traffic": [{"latestRevision": True, "percent": 100, "revisionName": f"{name}-predictor-00001"}],
        }
    comp["url"] = f"http://{name}-predictor.{ns}.example.com"
    obj["status"] = {
        "observedGeneration": obj["metadata"].get("generation", 1),
        "deploymentMode": "Serverless",
        "url": f"http://{name}.{ns}.example.com",
        "components": {"predictor": comp},
        "conditions": [
            {"type": "IngressReady", "status": "True", "lastTransitionTime": "2026-11-01T10:01:00Z"},
            {"type": "PredictorReady", "status": "True", "lastTransitionTime": "2026-11-01T10:01:00Z"},
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-01T10:01:00Z"},
        ],
    }
    return obj


def standard(
    *,
    version: str = "1",
    rv: str | None = "7",
    name: str = NAME,
    ns: str = NS,
    predictor_name: str | None = None,
) -> dict:
    """A Standard (raw deployment) InferenceService serving ``version``."""
    obj = serverless(version=version, rv=rv, name=name, ns=ns)
    obj["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] = "Standard"
    obj["spec"]["predictor"]["minReplicas"] = 4
    if predictor_name:
        obj["spec"]["predictor"]["name"] = predictor_name
    return obj


def standard_canary(*, stable: str = "1", canary: str = "2", weight: int = 25, rv: str | None = "9") -> dict:
    """Standard mode with a ``spec.canary`` entry (KServe >= 0.20) as the console starts it."""
    obj = standard(version=stable, rv=rv)
    obj["spec"]["canary"] = [
        {
            "predictor": {
                "name": f"v{canary}",
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "name": "kserve-container",
                    "storageUri": URI[canary],
                },
            },
            "trafficPercent": weight,
        }
    ]
    obj["metadata"]["annotations"].update(
        {
            ANN + "canary-model-version": canary,
            ANN + "canary-run-id": RUN[canary],
            ANN + "canary-storage-uri": URI[canary],
        }
    )
    return obj


def hpa(*, name: str = NAME, ns: str = NS, min_replicas: int = 1, max_replicas: int = 3, current: int = 1,
        desired: int | None = None, limited: bool = False) -> dict:
    """The ``autoscaling/v2`` HorizontalPodAutoscaler KServe keeps for a Standard-mode predictor
    (``{name}-predictor``), with the status the HPA controller writes."""
    desired = current if desired is None else desired
    conditions = [
        {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale",
         "message": "recommended size matches current size", "lastTransitionTime": "2026-11-01T10:01:00Z"},
        {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound",
         "message": "the HPA was able to successfully calculate a replica count from cpu resource utilization",
         "lastTransitionTime": "2026-11-01T10:01:00Z"},
        {"type": "ScalingLimited", "status": "True" if limited else "False",
         "reason": "TooManyReplicas" if limited else "DesiredWithinRange",
         "message": "the desired replica count is more than the maximum replica count" if limited else
         "the desired count is within the acceptable range", "lastTransitionTime": "2026-11-01T10:01:00Z"},
    ]
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": f"{name}-predictor", "namespace": ns},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{name}-predictor"},
                 "minReplicas": min_replicas, "maxReplicas": max_replicas,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 80}}}]},
        "status": {"currentReplicas": current, "desiredReplicas": desired, "conditions": conditions},
    }
