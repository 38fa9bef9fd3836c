"""The RBAC in ``deploy/rbac.yaml`` is exactly what the KServe adapter needs: every request it sends is allowed,
and every verb granted is used (least privilege).

The guarded actions run over the real KServe adapter, the real ``kubernetes`` client, a real MLflow store and the
in-repo API double (:mod:`tests.k8s_double`, which records every request; :func:`attributes` reads each as
RBAC does): listing,
reading, and every action — start canary, set its weight, promote it (requested and approved), start and abort
another, roll back, set scaling — on a Serverless and on a Standard (``spec.canary``) InferenceService, one in each
namespace the base serves, and the Capacity block's read of a Standard endpoint's HorizontalPodAutoscaler in each.
The double also *enforces* the Roles (403 for any other verb on InferenceServices and HorizontalPodAutoscalers, and
for the InferenceServices' status subresource), so the run proves the Roles suffice as well as that every grant
(namespace, group, resource, verb) is used. The worker's alert
evaluation is recorded the same way against its read-only Role.
"""

from __future__ import annotations

import re

import pytest

from services.serving.kserve import KServeBackend
from tests.conftest import MODEL, fresh_registry, make_container
from tests.k8s_double import ISVC_PLURAL, KSERVE_GROUP, KubeDouble
from tests.k8s_double import samples as k8s_samples
from tests.k8s_double.server import HPA_GROUP, HPA_PLURAL
from tests.kustomize import render

ANN = "mlops-console.io/"
CONSOLE_NS = "mlops"
ALL_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
SSAR_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
_NAMESPACED = re.compile(r"^/apis/(?P<group>[^/]+)/[^/]+/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
                         r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")
_CLUSTER = re.compile(r"^/apis/(?P<group>[^/]+)/[^/]+/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$")
_VERBS = {"PATCH": "patch", "PUT": "update", "POST": "create", "DELETE": "delete"}
# Granted to every authenticated user by Kubernetes' default system:basic-user ClusterRole (not ours to grant).
BASIC_USER = {("create", "authorization.k8s.io", "selfsubjectaccessreviews", None)}


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    return render()


def served_namespaces(objects) -> tuple[str, ...]:
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap" and "MLOPS_KSERVE_NAMESPACES" in o.get("data", {})]
    return tuple(cm["data"]["MLOPS_KSERVE_NAMESPACES"].split(","))


def role_rules(objects, sa: str) -> dict[str, list[dict]]:
    """namespace -> the rules of the Roles bound to ServiceAccount ``sa`` of the console namespace there."""
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects if o["kind"] == "Role"}
    out: dict[str, list[dict]] = {}
    for rb in (o for o in objects if o["kind"] == "RoleBinding"):
        if {"kind": "ServiceAccount", "name": sa, "namespace": CONSOLE_NS} in rb["subjects"]:
            ns = rb["metadata"]["namespace"]
            assert rb["roleRef"]["kind"] == "Role", "a binding to a ClusterRole"
            out.setdefault(ns, []).extend(roles[(ns, rb["roleRef"]["name"])]["rules"])
    return out


def allows(rules: list[dict], verb: str, group: str, resource: str) -> bool:
    return any(group in r.get("apiGroups", []) and resource in r.get("resources", []) and verb in r["verbs"]
               for r in rules)


def attributes(req) -> tuple[str, str, str, str | None]:
    """``(verb, API group, resource, namespace)`` of a recorded request as Kubernetes RBAC sees it (resource with
    ``/subresource``; namespace None at the cluster scope)."""
    if req.path == SSAR_PATH:
        return _VERBS.get(req.method, req.method.lower()), "authorization.k8s.io", "selfsubjectaccessreviews", None
    m = _NAMESPACED.match(req.path) or _CLUSTER.match(req.path)
    assert m, f"a request to an unexpected path: {req.method} {req.path}"
    parts = m.groupdict()
    verb = ("get" if parts["name"] else "list") if req.method == "GET" else _VERBS[req.method]
    resource = parts["plural"] + (f"/{parts['sub']}" if parts.get("sub") else "")
    return verb, parts["group"], resource, parts.get("ns")


def verbs_granted(rules_by_ns: dict[str, list[dict]]) -> set[tuple[str, str, str, str]]:
    """(namespace, API group, resource, verb) of every grant."""
    return {(ns, g, res, v) for ns, rules in rules_by_ns.items() for r in rules for g in r["apiGroups"]
            for res in r["resources"] for v in r["verbs"]}


def enforce(double: KubeDouble, rules_by_ns: dict[str, list[dict]]) -> None:
    """Make the double answer 403 to what the Roles do not allow on InferenceServices (identical in every
    namespace, which the static test checks)."""
    (rules,) = {repr(r): r for r in rules_by_ns.values()}.values()
    for verb in ALL_VERBS:
        for group, resource in ((KSERVE_GROUP, ISVC_PLURAL), (HPA_GROUP, HPA_PLURAL)):
            if not allows(rules, verb, group, resource):
                double.deny(verb, None, group=group, resource=resource)
    double.deny(None, None, group=KSERVE_GROUP, resource=f"{ISVC_PLURAL}/status")


def check_calls(calls: list[tuple], rules_by_ns: dict[str, list[dict]], who: str) -> None:
    for call in calls:
        if call in BASIC_USER:
            continue
        verb, group, resource, ns = call
        assert ns is not None, f"{who} made a cluster-wide call {call}"
        assert allows(rules_by_ns.get(ns, []), verb, group, resource), f"{who}: {call} is not allowed by its Role"
    used = {(ns, g, r, verb) for verb, g, r, ns in calls if ns is not None}
    assert used == verbs_granted(rules_by_ns), (
        f"{who}: granted but never used: {sorted(verbs_granted(rules_by_ns) - used)}; "
        f"used but not granted: {sorted(used - verbs_granted(rules_by_ns))}")


# ------------------------------------------------------------------------------------------- static
def test_rbac_is_namespaced_without_wildcards_and_bound_per_served_namespace(objects):
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}, "nothing cluster-wide"
    namespaces = served_namespaces(objects)
    for o in objects:
        if o["kind"] == "Role":
            assert o["metadata"]["namespace"] in namespaces, f"a Role outside the served namespaces: {o['metadata']}"
            for rule in o["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule.get(field, []), f"wildcard {field} in {o['metadata']['name']}"
                assert (rule["apiGroups"], rule["resources"]) in (([KSERVE_GROUP], [ISVC_PLURAL]),
                                                                  ([HPA_GROUP], [HPA_PLURAL]))
                if rule["apiGroups"] == [HPA_GROUP]:  # the Capacity block reads autoscalers, never changes them
                    assert rule["verbs"] == ["get"]
                assert "nonResourceURLs" not in rule
    sas = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    for sa in ("mlops-console", "mlops-worker"):
        assert sa in sas and sas[sa]["metadata"]["namespace"] == CONSOLE_NS
        assert deployments[sa]["spec"]["template"]["spec"]["serviceAccountName"] == sa
        assert set(role_rules(objects, sa)) == set(namespaces), f"{sa} is not bound in exactly {namespaces}"
    ingest = deployments["mlops-ingest"]["spec"]["template"]["spec"]
    assert ingest["serviceAccountName"] == "mlops-ingest" and ingest["automountServiceAccountToken"] is False
    assert role_rules(objects, "mlops-ingest") == {}
    for rb in (o for o in objects if o["kind"] == "RoleBinding"):
        assert all(s["kind"] == "ServiceAccount" and s["name"] in sas for s in rb["subjects"])


# ------------------------------------------------------------------------------------------- dynamic
def _isvc(ns: str, storage: str, run_id: str, *, standard: bool) -> dict:
    annotations = {ANN + "registered-model": MODEL, ANN + "model-version": "1", ANN + "run-id": run_id,
                   ANN + "storage-uri": storage}
    if standard:
        annotations["serving.kserve.io/deploymentMode"] = "Standard"
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "screening", "namespace": ns, "annotations": annotations},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage},
                                   "minReplicas": 1}}}


def _every_action(c, double: KubeDouble, ep: str) -> list[str]:
    """List, read, and every action on ``ep``; the controller (simulated) reconciles after each write."""
    ns, name = ep.split("/")
    alice, bob = c.directory.get("alice"), c.directory.get("bob")
    done = []

    def act(action: str, **params) -> None:
        out = c.actions.execute(c.actions.plan(alice, action, ep, **params), alice, f"rbac test: {action}")
        if out.request_id is not None:  # the policy wants a second person: bob approves, which applies it
            c.actions.approve(bob, out.request_id, "ok")
        double.simulate_controller(ns, name)
        done.append(action)

    assert ep in {e.name for e in c.serving.list_endpoints()}
    assert c.serving.get_endpoint(ep).stable_version == "1"
    act("start_canary", version="2", weight=10)
    act("set_canary_weight", weight=30)
    act("promote_canary")
    act("start_canary", version="1", weight=20)
    act("abort_canary")
    act("rollback", to_version="1")
    act("set_scaling", max=4)
    final = c.serving.get_endpoint(ep)
    assert (final.stable_version, final.canary_version) == ("1", None)
    return done


def test_console_and_worker_make_exactly_the_calls_their_roles_allow(objects, registry_template, tmp_path,
                                                                     k8s_double, clock, check_isvc):
    double = k8s_double
    namespaces = served_namespaces(objects)
    console_rules, worker_rules = role_rules(objects, "mlops-console"), role_rules(objects, "mlops-worker")
    enforce(double, console_rules)
    uri = fresh_registry(registry_template, tmp_path / "reg")
    db = f"sqlite:///{tmp_path / 'c.db'}"
    base = make_container(uri, db, tmp_path, clock=clock)
    storage, run_id = base.registry.storage_uri(MODEL, "1"), base.registry.get_version(MODEL, "1").run_id
    for i, ns in enumerate(namespaces):  # Serverless in the first, Standard (spec.canary) in the others
        double.put_object(_isvc(ns, storage, run_id, standard=i > 0))
        double.simulate_controller(ns, "screening")
    clients = [double.api_client(), double.api_client()]
    try:
        console = make_container(uri, db, tmp_path, clock=clock,
                                 serving=KServeBackend(namespaces, api_client=clients[0], request_timeout=(2, 5)))
        for i, ns in enumerate(namespaces):
            assert len(_every_action(console, double, f"{ns}/screening")) == 7
            # the Capacity block of a Standard-mode endpoint reads its HorizontalPodAutoscaler (in every namespace)
            double.put_object({**_isvc(ns, storage, run_id, standard=True),
                               "metadata": {"name": "scaler", "namespace": ns, "annotations": {
                                   "serving.kserve.io/deploymentMode": "Standard"}}})
            double.simulate_controller(ns, "scaler")
            double.put_object(k8s_samples.hpa(name="scaler", ns=ns), group=HPA_GROUP, plural=HPA_PLURAL)
            assert console.serving.scaling_status(console.serving.get_endpoint(f"{ns}/scaler")).current_replicas == 1
            # what the console wrote fits the CRDs (spec.canary, Standard mode, exists from KServe 0.20 on)
            check_isvc(double.get_object(ns, "screening"), ("v0.19.0", "v0.20.0") if i == 0 else ("v0.20.0",))
        console_calls = [attributes(r) for r in double.requests]
        assert not [r for r in double.requests if r.status == 403], "a call the Role does not allow"

        from services.alerts.runner import run_container

        n = len(double.requests)
        worker = make_container(uri, db, tmp_path, clock=clock,
                                serving=KServeBackend(namespaces, api_client=clients[1], request_timeout=(2, 5)))
        run_container(worker)
        worker_calls = [attributes(r) for r in double.requests[n:]]
    finally:
        for api in clients:
            api.close()
        base.engine.dispose()

    patches = {(v, ns) for v, _g, _r, ns in console_calls if v == "patch"}
    assert patches == {("patch", ns) for ns in namespaces}  # the actions really wrote in every namespace
    assert console.audit.verify().ok
    check_calls(console_calls, console_rules, "console")
    check_calls(worker_calls, worker_rules, "worker")
    assert {v for v, *_ in worker_calls} <= {"list", "create"}  # read-only (create: the access review)


def test_the_check_fails_for_a_role_missing_a_verb_or_granting_an_unused_one(objects):
    """check_calls can fail: a Role without patch does not cover the actions; one with watch is too wide."""
    calls = [("list", KSERVE_GROUP, ISVC_PLURAL, "models-prod"), ("patch", KSERVE_GROUP, ISVC_PLURAL, "models-prod")]
    hpa = {"models-prod": [{"apiGroups": [KSERVE_GROUP], "resources": [ISVC_PLURAL], "verbs": ["list", "patch"]},
                           {"apiGroups": [HPA_GROUP], "resources": [HPA_PLURAL], "verbs": ["list"]}]}
    with pytest.raises(AssertionError, match="never used"):  # a verb used on one resource, granted on another
        check_calls(calls, hpa, "test")
    narrow = {"models-prod": [{"apiGroups": [KSERVE_GROUP], "resources": [ISVC_PLURAL], "verbs": ["list"]}]}
    with pytest.raises(AssertionError, match="not allowed"):
        check_calls(calls, narrow, "test")
    wide = {"models-prod": [{"apiGroups": [KSERVE_GROUP], "resources": [ISVC_PLURAL],
                             "verbs": ["list", "patch", "watch"]}]}
    with pytest.raises(AssertionError, match="never used"):
        check_calls(calls, wide, "test")


def test_requests_are_read_as_rbac_reads_them():
    from tests.k8s_double import RecordedRequest

    def req(method: str, path: str) -> tuple:
        return attributes(RecordedRequest(method, path, {}, None, None, 200))

    base = f"/apis/{KSERVE_GROUP}/v1beta1"
    assert req("GET", f"{base}/namespaces/ml/{ISVC_PLURAL}") == ("list", KSERVE_GROUP, ISVC_PLURAL, "ml")
    assert req("GET", f"{base}/namespaces/ml/{ISVC_PLURAL}/x") == ("get", KSERVE_GROUP, ISVC_PLURAL, "ml")
    assert req("PATCH", f"{base}/namespaces/ml/{ISVC_PLURAL}/x/status") == (
        "patch", KSERVE_GROUP, f"{ISVC_PLURAL}/status", "ml")
    everywhere = req("GET", f"{base}/{ISVC_PLURAL}")
    assert everywhere == ("list", KSERVE_GROUP, ISVC_PLURAL, None)
    with pytest.raises(AssertionError, match="cluster-wide"):
        check_calls([everywhere], {}, "test")
