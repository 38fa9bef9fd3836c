"""The KServe adapter of the serving port: each endpoint is an ``InferenceService``, named ``NAMESPACE/NAME``.

Reads map objects with :mod:`~services.serving.kserve.mapping`; writes send the
bodies :mod:`~services.serving.kserve.patches` builds, through
:class:`~services.serving.kserve.client.IsvcClient`. Conflicts are reported,
never retried. Whether the user may write is asked once per namespace
(SelfSubjectAccessReview, cached ``access_ttl`` seconds); a 403 on a write
makes the namespace read-only until then.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from services.errors import Conflict, ConsoleError, NotFound, PermissionDenied, PreconditionFailed, Unavailable
from services.serving import Change, Endpoint, Scaling, ScalingStatus, ServingBackend, ServingState
from services.serving.kserve.client import (
    CONFLICT_MESSAGE,
    JSON_PATCH,
    REQUEST_TIMEOUT,
    IsvcClient,
    load_kube_config,
)
from services.serving.kserve.mapping import (
    SERVERLESS,
    SOURCE,
    STANDARD,
    Resolver,
    endpoint_from_isvc,
    hpa_name,
    hpa_status,
    serverless_status,
)
from services.serving.kserve.patches import build_patches, plan_writes, precondition

ACCESS_TTL_SECONDS = 300.0
PREVIEW_CACHE_SIZE = 256


def _state_reached(got: ServingState, want: ServingState) -> bool:
    if (got.canary_version is None) != (want.canary_version is None):
        return False
    if want.canary_version is not None and got.canary_weight != want.canary_weight:
        return False
    for g, w in ((got.stable_version, want.stable_version), (got.canary_version, want.canary_version)):
        if w is not None and g != w:
            return False
    return True


class KServeBackend(ServingBackend):
    name = "kserve"
    source = SOURCE
    # Capabilities (see ServingBackend): InferenceServices load from the real artifact location, KServe keeps
    # no history beyond its live revisions, and endpoints are created by whoever deploys, not the console.
    needs_storage_uri = True
    records_history = False
    creates_endpoints = False

    def __init__(self, namespaces: tuple[str, ...] = (), context: str | None = None, api_client=None, *,
                 resolve_storage_uri: Resolver | None = None, config_file: str | None = None,
                 request_timeout=REQUEST_TIMEOUT, access_ttl: float = ACCESS_TTL_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic):
        if api_client is None:
            api_client, default_ns = load_kube_config(context, config_file)
        else:
            default_ns = "default"
        self.api_client = api_client
        self.namespaces: tuple[str, ...] = tuple(n for n in namespaces if n) or (default_ns,)
        self.resolve_storage_uri = resolve_storage_uri
        self.request_timeout = request_timeout
        self.access_ttl = access_ttl
        self._monotonic = monotonic
        self._kube = IsvcClient(api_client, request_timeout)
        self._access: dict[str, tuple[float, bool, str]] = {}
        self._seen: OrderedDict[tuple[str, str], dict] = OrderedDict()
        self._lock = threading.Lock()  # Streamlit serves sessions from several threads

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
        now = self._monotonic()
        cached = self._access.get(namespace)
        if cached and now - cached[0] < self.access_ttl:
            return "" if cached[1] else cached[2]
        answer = self._kube.may_patch(namespace)
        if answer is None:  # cannot tell: assume writable, a 403 on write will say otherwise
            return ""
        allowed, why = answer
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

    # -- reads ---------------------------------------------------------------------
    def list_endpoints(self) -> list[Endpoint]:
        out = []
        for ns in self.namespaces:
            items = sorted(self._kube.list(ns), key=lambda o: (o.get("metadata") or {}).get("name", ""))
            out += [self._endpoint(obj) for obj in items]
        return out

    def get_endpoint(self, name: str) -> Endpoint:
        ns, isvc = self._split(name)
        return self._endpoint(self._kube.get(ns, isvc))

    # -- writes --------------------------------------------------------------------
    def preview(self, endpoint: Endpoint, change: Change) -> dict:
        """The request(s) ``apply`` would send for ``change`` to the endpoint as read."""
        ns, isvc = self._split(endpoint.name)
        with self._lock:
            cached = self._seen.get((endpoint.name, endpoint.resource_version))
        obj = cached or self._kube.get(ns, isvc)
        return {"method": "PATCH", "path": IsvcClient.path(ns, isvc), "content_type": JSON_PATCH,
                "writes": build_patches(obj, change, self.resolve_storage_uri)}

    def apply(self, name: str, change: Change, *, actor: str, note: str = "", approved_by: str | None = None
              ) -> Endpoint:
        ns, isvc = self._split(name)
        try:
            obj = self._kube.get(ns, isvc)
        except Unavailable as exc:
            exc.write_sent = False  # the read before any write: nothing was sent
            raise
        current = self._endpoint(obj)
        if current.resource_version != str(change.expected_resource_version):
            raise Conflict(CONFLICT_MESSAGE, source=SOURCE,
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
            try:
                result = self._kube.patch(ns, isvc, [precondition(expected), *ops], expected, doing, done=i)
            except PermissionDenied as exc:
                self._mark_read_only(ns, f"Kubernetes refused a change in namespace {ns}: {exc.detail}")
                raise
            expected = str(result["metadata"]["resourceVersion"])
        after = self._endpoint(result)
        if change.op == "set_scaling" and change.scaling is not None:
            got = after.scaling or Scaling()
            if got.merged(change.scaling) != got:
                raise Unavailable(f"set_scaling on {name}: Kubernetes accepted the write but the InferenceService "
                                  f"does not show it (now {got.as_dict()}); was a field dropped?", source=SOURCE)
        want = change.target_state(current.state())
        if not _state_reached(after.state(), want):
            raise Unavailable(
                f"{change.op} on {name}: Kubernetes accepted the write but the InferenceService does not "
                f"show it (now {after.state().as_dict()}, wanted {want.as_dict()}); was a field dropped? "
                "spec.canary needs KServe >= 0.20", source=SOURCE)
        return after

    def scaling_status(self, endpoint: Endpoint) -> ScalingStatus:
        """Standard mode: the HorizontalPodAutoscaler's current/desired replicas and conditions; Serverless: the
        revisions and their traffic (the status has no replica counts). Never raises."""
        mode = endpoint.extra.get("mode")
        if mode == SERVERLESS:
            return serverless_status(endpoint)
        if mode != STANDARD:
            return ScalingStatus(note=f"{mode} deployments are not managed by the console")
        try:
            ns, isvc = self._split(endpoint.name)
        except NotFound as exc:
            return ScalingStatus(note=exc.message)
        name = hpa_name(isvc)
        try:
            return hpa_status(self._kube.get_hpa(ns, name))
        except NotFound:
            return ScalingStatus(note=f"no HorizontalPodAutoscaler {ns}/{name}: KServe creates one only when the "
                                      "minimum and maximum replicas differ (and the autoscaler class is hpa)")
        except ConsoleError as exc:
            return ScalingStatus(note=f"cannot read HorizontalPodAutoscaler {ns}/{name}: {exc.message}")
