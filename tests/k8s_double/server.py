"""An in-repo Kubernetes API double for namespaced custom resources.

A real HTTP server (``ThreadingHTTPServer`` on 127.0.0.1, a free port) that the
real ``kubernetes`` Python client talks to. It keeps the API-server semantics
that matter for *safe writes*, nothing more:

* objects stored per group/plural, namespace and name; a global, increasing
  integer ``metadata.resourceVersion`` (a string on the wire); ``generation``
  bumped when anything but metadata/status changes; no-op writes change nothing;
* GET, LIST (per namespace and across namespaces), POST (create, 409 when it
  exists), PUT (replace; 422 without and 409 with a stale resourceVersion),
  DELETE;
* PATCH with ``application/merge-patch+json`` (RFC 7386; a
  ``metadata.resourceVersion`` in the patch is a precondition: 409 on mismatch)
  and ``application/json-patch+json`` (RFC 6902 incl. ``test``; a failed
  ``test`` or a ``remove``/``replace`` of a missing path is 422, as the API
  server answers); ``application/strategic-merge-patch+json`` is 415 for custom
  resources, as is server-side apply (not implemented here);
* the ``/status`` subresource: writes to it only change ``status``, writes to the
  main resource ignore ``status``;
* 403 from a rules table (:meth:`KubeDouble.deny`) and a
  ``SelfSubjectAccessReview`` endpoint that answers from the same table;
* HorizontalPodAutoscalers (``autoscaling/v2``) are stored and read like any other namespaced object
  (seed them with ``put_object(obj, group=HPA_GROUP, plural=HPA_PLURAL)``; :func:`tests.k8s_double.samples.hpa`);
* optional CRD schema per resource: unknown fields are pruned and the rest is
  validated (422 ``Invalid``), like a structural CRD schema on a real server;
* errors as ``kind: Status`` bodies (code, reason, message, details);
* every request recorded (method, path, query, content type, parsed body,
  answered status) in :attr:`KubeDouble.requests`;
* :meth:`KubeDouble.simulate_controller`: a clearly labelled SIMULATION of the
  KServe controller's status updates.

Not covered: watches, label/field selectors, admission webhooks (KServe's
validating/mutating webhooks), defaulting from the schema, ``x-kubernetes-validations``,
server-side apply, authentication, API discovery, finalizers, real controller timing.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.k8s_double.crd import prune, schema_errors, validator

KSERVE_GROUP = "serving.kserve.io"
KSERVE_VERSION = "v1beta1"
ISVC_PLURAL = "inferenceservices"

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

HPA_GROUP = "autoscaling"  # autoscaling/v2 HorizontalPodAutoscaler: stored and served like any namespaced object
HPA_PLURAL = "horizontalpodautoscalers"

DEFAULT_KINDS = {(KSERVE_GROUP, ISVC_PLURAL): "InferenceService", (HPA_GROUP, HPA_PLURAL): "HorizontalPodAutoscaler"}

_NAMESPACED = re.compile(
    r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$"
)
_CLUSTER_LIST = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/(?P<plural>[^/]+)$")
_SSAR_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


# --------------------------------------------------------------------------- patches
class PatchError(Exception):
    """A JSON patch that cannot be applied (the API server answers 422)."""


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not isinstance(path, str) or not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _index(container: list, token: str, *, allow_end: bool) -> int:
    if allow_end and token == "-":
        return len(container)
    if not re.fullmatch(r"0|[1-9][0-9]*", token):
        raise PatchError(f"invalid array index {token!r}")
    i = int(token)
    if i > len(container) or (i == len(container) and not allow_end):
        raise PatchError(f"array index {i} out of bounds")
    return i


def _get(doc, tokens: list[str], path: str):
    cur = doc
    for t in tokens:
        if isinstance(cur, dict):
            if t not in cur:
                raise PatchError(f"path {path} does not exist")
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_index(cur, t, allow_end=False)]
        else:
            raise PatchError(f"path {path} does not exist")
    return cur


def _json_equal(a, b) -> bool:
    """JSON equality (``True`` is not ``1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _add(doc, tokens: list[str], value, path: str):
    if not tokens:
        return value
    parent = _get(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise PatchError(f"path {path} does not exist")
    return doc


def _remove(doc, tokens: list[str], path: str):
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _get(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"unable to remove nonexistent key: {last}: missing value")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, allow_end=False))
    raise PatchError(f"path {path} does not exist")


def apply_json_patch(doc, ops) -> object:
    """RFC 6902 on a copy of ``doc``. Raises :class:`PatchError` like the API server's 422."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch is a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid operation {op!r}")
        kind, path = op["op"], op["path"]
        tokens = _pointer(path)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"{kind} operation at {path} has no value")
        if kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op["value"]), path)
        elif kind == "remove":
            _remove(doc, tokens, path)
        elif kind == "replace":
            if tokens:
                _get(doc, tokens, path)  # must exist
                _remove(doc, tokens, path)
            doc = _add(doc, tokens, copy.deepcopy(op["value"]), path)
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            if kind == "move" and tokens[: len(src)] == src and len(tokens) > len(src):
                raise PatchError(f"cannot move {op.get('from')} into its own child {path}")
            value = copy.deepcopy(_get(doc, src, op.get("from", "")))
            if kind == "move":
                _remove(doc, src, op.get("from", ""))
            doc = _add(doc, tokens, value, path)
        elif kind == "test":
            try:
                current = _get(doc, tokens, path)
            except PatchError as exc:
                raise PatchError(f"testing value {path} failed: {exc}") from exc
            if not _json_equal(current, op["value"]):
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f"unexpected kind of operation: {kind!r}")
    return doc


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch (returns a new value)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --------------------------------------------------------------------------- recording
@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict
    content_type: str | None
    body: object  # parsed JSON, or the raw text when it is not JSON, or None
    status: int
    authorization: str | None = None


@dataclass
class _Rule:
    verb: str | None
    namespace: str | None
    group: str | None
    resource: str | None

    def matches(self, verb: str, namespace: str | None, group: str, resource: str) -> bool:
        return ((self.verb is None or self.verb == verb)
                and (self.namespace is None or self.namespace == namespace)
                and (self.group is None or self.group == group)
                and (self.resource is None or self.resource == resource))


@dataclass
class _Hook:
    method: str | None
    path_contains: str | None
    fn: Callable
    remaining: int

    def matches(self, method: str, path: str) -> bool:
        return (self.remaining > 0 and (self.method is None or self.method == method)
                and (self.path_contains is None or self.path_contains in path))


@dataclass
class _Fault:
    status: int
    method: str | None
    path_contains: str | None
    remaining: int
    message: str = "injected failure"


@dataclass
class _Hang:
    method: str | None
    path_contains: str | None
    remaining: int
    release: threading.Event


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status_body(self) -> dict:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- the double
@dataclass
class KubeDouble:
    """A fake API server. ``schemas`` maps (group, plural) to a CRD ``openAPIV3Schema``."""

    schemas: dict[tuple[str, str], dict] = field(default_factory=dict)
    kinds: dict[tuple[str, str], str] = field(default_factory=lambda: dict(DEFAULT_KINDS))
    user: str = "system:serviceaccount:mlops:console"

    def __post_init__(self):
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str], dict[tuple[str, str], dict]] = {}
        self._rv = 100
        self._rules: list[_Rule] = []
        self._hooks: list[_Hook] = []
        self._faults: list[_Fault] = []
        self._drops: list[_Fault] = []  # processed, then the connection closes unanswered (drop_next)
        self._hangs: list[_Hang] = []
        self._controller: dict[tuple[str, str], dict] = {}
        self._validators = {k: validator(v) for k, v in self.schemas.items()}
        self.requests: list[RecordedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> KubeDouble:
        double = self

        class Handler(_Handler):
            pass

        Handler.double = double
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="k8s-double", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for h in self._hangs:  # held requests end (504) so their threads do not outlive the double
            h.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None, "double not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api_client(self, *, token: str | None = None):
        """A real ``kubernetes.client.ApiClient`` pointed at this double (no proxy)."""
        from kubernetes import client

        cfg = client.Configuration(host=self.url)
        cfg.proxy = None
        if token:
            cfg.api_key = {"BearerToken": token}
            cfg.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(cfg)

    # -- direct access (not over HTTP, not recorded) --------------------------------
    def put_object(self, obj: dict, *, group: str | None = None, plural: str = ISVC_PLURAL) -> dict:
        """Create or replace an object directly, status included (seeding). Returns the stored copy."""
        group = group or obj.get("apiVersion", f"{KSERVE_GROUP}/").split("/")[0]
        md = obj["metadata"]
        with self._lock:
            old = self._objects.get((group, plural), {}).get((md["namespace"], md["name"]))
            new = copy.deepcopy(obj)
            new.setdefault("kind", self.kinds.get((group, plural), "Object"))
            if old is None:
                new = self._initial_metadata(new)
            else:
                new = self._carry_metadata(old, new, keep_status=False)
            return copy.deepcopy(self._store(group, plural, old, new))

    def get_object(self, namespace: str, name: str, *, group: str = KSERVE_GROUP,
                   plural: str = ISVC_PLURAL) -> dict | None:
        with self._lock:
            obj = self._objects.get((group, plural), {}).get((namespace, name))
            return copy.deepcopy(obj)

    def mutate(self, namespace: str, name: str, fn: Callable[[dict], None], *, group: str = KSERVE_GROUP,
               plural: str = ISVC_PLURAL) -> dict:
        """An out-of-band write by another client: ``fn`` edits a copy (spec/metadata), rv is bumped."""
        with self._lock:
            old = self._objects[(group, plural)][(namespace, name)]
            new = copy.deepcopy(old)
            fn(new)
            new = self._carry_metadata(old, new, keep_status=True)
            return copy.deepcopy(self._store(group, plural, old, new))

    def delete_object(self, namespace: str, name: str, *, group: str = KSERVE_GROUP,
                      plural: str = ISVC_PLURAL) -> None:
        """An out-of-band delete by another client."""
        with self._lock:
            del self._objects[(group, plural)][(namespace, name)]
            self._controller.pop((namespace, name), None)

    @property
    def resource_version(self) -> int:
        """The last resourceVersion handed out."""
        return self._rv

    # -- rules, faults, hooks ------------------------------------------------------
    def deny(self, verb: str | None = None, namespace: str | None = None, *, group: str | None = None,
             resource: str | None = None) -> None:
        """Answer 403 to matching requests (None matches anything). ``resource`` may be ``x/status``."""
        with self._lock:
            self._rules.append(_Rule(verb, namespace, group, resource))

    def allow_all(self) -> None:
        with self._lock:
            self._rules.clear()

    def is_allowed(self, verb: str, namespace: str | None, group: str, resource: str) -> bool:
        with self._lock:
            return not any(r.matches(verb, namespace, group, resource) for r in self._rules)

    def drop_next(self, *, method: str | None = None, path_contains: str | None = None, times: int = 1) -> None:
        """Process the next ``times`` matching requests (a write lands, ``resourceVersion`` moves) and then close
        the connection without answering, as when the connection to the API server drops after the server applied
        the change: the client gets no status at all (a protocol error) and only a re-read can tell."""
        with self._lock:
            self._drops.append(_Fault(0, method, path_contains, times, "dropped after processing"))

    def fail_next(self, status: int, *, method: str | None = None, path_contains: str | None = None,
                  times: int = 1, message: str = "injected failure") -> None:
        """Answer the next ``times`` matching requests with ``status`` (e.g. 500, 503)."""
        with self._lock:
            self._faults.append(_Fault(status, method, path_contains, times, message))

    def hang_next(self, *, method: str | None = None, path_contains: str | None = None,
                  times: int = 1) -> threading.Event:
        """Hold the next ``times`` matching requests without an answer, like a hung API server: nothing is
        processed, and once the returned event is set (or the double stops) they are answered 504 Timeout,
        as an API server answers a request that outlived its own timeout (the client gave up long before)."""
        hang = _Hang(method, path_contains, times, threading.Event())
        with self._lock:
            self._hangs.append(hang)
        return hang.release

    def after(self, method: str | None, fn: Callable[[KubeDouble], None], *, times: int = 1,
              path_contains: str | None = None) -> None:
        """Run ``fn(double)`` after a matching request is processed and *before* its answer is sent.

        Deterministic way to make "someone else wrote in between" happen: the
        client only gets its answer once ``fn`` has changed the store.
        """
        with self._lock:
            self._hooks.append(_Hook(method, path_contains, fn, times))

    def writes(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method not in ("GET", "HEAD")]

    def patches(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "PATCH"]

    # -- HTTP entry point ------------------------------------------------------------
    def handle(self, method: str, raw_path: str, content_type: str | None, raw_body: bytes,
               authorization: str | None = None) -> tuple[int, dict]:
        parts = urlsplit(raw_path)
        path, query = parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}
        ctype = (content_type or "").split(";")[0].strip().lower() or None
        body: object = None
        text = raw_body.decode("utf-8", "replace") if raw_body else ""
        parse_error = None
        if text:
            try:
                body = json.loads(text)
            except ValueError as exc:
                body, parse_error = text, str(exc)
        try:
            hang = self._take_hang(method, path)
            if hang is not None:
                hang.release.wait()
                raise ApiError(504, "Timeout", "injected hang: the request was held and never processed")
            fault = self._take_fault(method, path)
            if fault is not None:
                raise ApiError(fault.status, _reason_for(fault.status), fault.message)
            if parse_error is not None and ctype != APPLY_PATCH:
                raise ApiError(400, "BadRequest", f"the body of the request is not valid JSON: {parse_error}")
            status, answer = self._route(method, path, query, ctype, body)
        except ApiError as exc:
            status, answer = exc.code, exc.status_body()
        with self._lock:
            self.requests.append(RecordedRequest(method, path, query, ctype, body, status, authorization))
            hooks = [h for h in self._hooks if h.matches(method, path)]
            for h in hooks:
                h.remaining -= 1
        for h in hooks:
            h.fn(self)
        return status, answer

    def _take_hang(self, method: str, path: str) -> _Hang | None:
        with self._lock:
            for h in self._hangs:
                if h.remaining > 0 and (h.method is None or h.method == method) and (
                        h.path_contains is None or h.path_contains in path):
                    h.remaining -= 1
                    return h
        return None

    def take_drop(self, method: str, raw_path: str) -> bool:
        """Whether the answer to this (already processed) request is to be dropped (see :meth:`drop_next`)."""
        path = urlsplit(raw_path).path
        with self._lock:
            for f in self._drops:
                if f.remaining > 0 and (f.method is None or f.method == method) and (
                        f.path_contains is None or f.path_contains in path):
                    f.remaining -= 1
                    return True
        return False

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if f.remaining > 0 and (f.method is None or f.method == method) and (
                        f.path_contains is None or f.path_contains in path):
                    f.remaining -= 1
                    return f
        return None

    def _route(self, method: str, path: str, query: dict, ctype: str | None, body) -> tuple[int, dict]:
        if path == _SSAR_PATH:
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method: {method}")
            return self._access_review(body)
        m = _NAMESPACED.match(path)
        if m:
            g, ns, plural, name, sub = m["group"], m["ns"], m["plural"], m["name"], m["sub"]
            if sub not in (None, "status"):
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            resource = plural + ("/status" if sub else "")
            verb = _verb(method, name)
            self._authorize(verb, ns, g, resource, plural, name)
            dry_run = query.get("dryRun") == "All"
            if name is None:
                if method == "GET":
                    return 200, self._list(g, m["version"], plural, ns)
                if method == "POST":
                    return 201, self._create(g, plural, ns, body, dry_run)
                raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method: {method}")
            if method == "GET":
                return 200, self._read(g, plural, ns, name)
            if method == "PUT":
                return 200, self._replace(g, plural, ns, name, body, status_only=bool(sub), dry_run=dry_run)
            if method == "PATCH":
                return 200, self._patch(g, plural, ns, name, ctype, body, status_only=bool(sub),
                                        dry_run=dry_run)
            if method == "DELETE" and not sub:
                return 200, self._delete(g, plural, ns, name, dry_run)
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method: {method}")
        m = _CLUSTER_LIST.match(path)
        if m and method == "GET":
            self._authorize("list", None, m["group"], m["plural"], m["plural"], None)
            return 200, self._list(m["group"], m["version"], m["plural"], None)
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    # -- auth -----------------------------------------------------------------------
    def _authorize(self, verb: str, ns: str | None, group: str, resource: str, plural: str,
                   name: str | None) -> None:
        if self.is_allowed(verb, ns, group, resource):
            return
        target = f'{plural}.{group} "{name}"' if name else f"{plural}.{group}"
        where = f' in the namespace "{ns}"' if ns else " at the cluster scope"
        raise ApiError(403, "Forbidden",
                       f'{target} is forbidden: User "{self.user}" cannot {verb} resource "{resource}" '
                       f'in API group "{group}"{where}',
                       {"name": name or "", "group": group, "kind": plural})

    def _access_review(self, body) -> tuple[int, dict]:
        self._authorize("create", None, "authorization.k8s.io", "selfsubjectaccessreviews",
                        "selfsubjectaccessreviews", None)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "SelfSubjectAccessReview body must be an object")
        attrs = (body.get("spec") or {}).get("resourceAttributes")
        if not isinstance(attrs, dict):
            raise ApiError(422, "Invalid", "spec.resourceAttributes: Required value")
        sub = f"/{attrs['subresource']}" if attrs.get("subresource") else ""
        resource = attrs.get("resource", "") + sub
        allowed = self.is_allowed(attrs.get("verb", ""), attrs.get("namespace"), attrs.get("group", ""),
                                  resource)
        answer = copy.deepcopy(body)
        answer.setdefault("apiVersion", "authorization.k8s.io/v1")
        answer.setdefault("kind", "SelfSubjectAccessReview")
        answer.setdefault("metadata", {})
        answer["metadata"]["creationTimestamp"] = None
        answer["status"] = {"allowed": allowed}
        if not allowed:
            answer["status"]["reason"] = "denied by the k8s double's rules table"
        return 201, answer

    # -- storage ----------------------------------------------------------------------
    def _coll(self, group: str, plural: str) -> dict:
        return self._objects.setdefault((group, plural), {})

    def _not_found(self, group: str, plural: str, name: str) -> ApiError:
        return ApiError(404, "NotFound", f'{plural}.{group} "{name}" not found',
                        {"name": name, "group": group, "kind": plural})

    def _conflict(self, group: str, plural: str, name: str) -> ApiError:
        return ApiError(409, "Conflict",
                        f'Operation cannot be fulfilled on {plural}.{group} "{name}": the object has been '
                        "modified; please apply your changes to the latest version and try again",
                        {"name": name, "group": group, "kind": plural})

    def _invalid(self, group: str, plural: str, name: str, causes: list[str]) -> ApiError:
        kind = self.kinds.get((group, plural), plural)
        return ApiError(422, "Invalid", f'{kind}.{group} "{name}" is invalid: ' + "; ".join(causes),
                        {"name": name, "group": group, "kind": kind,
                         "causes": [{"reason": "FieldValueInvalid", "message": c} for c in causes]})

    def _list(self, group: str, version: str, plural: str, ns: str | None) -> dict:
        with self._lock:
            items = [copy.deepcopy(o) for (ons, _), o in sorted(self._coll(group, plural).items())
                     if ns is None or ons == ns]
            kind = self.kinds.get((group, plural), "Object")
            return {"apiVersion": f"{group}/{version}", "kind": f"{kind}List",
                    "metadata": {"resourceVersion": str(self._rv)}, "items": items}

    def _read(self, group: str, plural: str, ns: str, name: str) -> dict:
        with self._lock:
            obj = self._coll(group, plural).get((ns, name))
            if obj is None:
                raise self._not_found(group, plural, name)
            return copy.deepcopy(obj)

    def _initial_metadata(self, obj: dict) -> dict:
        md = obj.setdefault("metadata", {})
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = _now()
        md["generation"] = 1
        md.pop("resourceVersion", None)
        return obj

    def _carry_metadata(self, old: dict, new: dict, *, keep_status: bool) -> dict:
        """Server-owned fields come from ``old``; ``generation`` follows spec changes."""
        md = new.setdefault("metadata", {})
        omd = old["metadata"]
        for key in ("uid", "creationTimestamp", "name", "namespace"):
            if key in omd:
                md[key] = omd[key]
        md["resourceVersion"] = omd["resourceVersion"]
        if keep_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        strip = lambda o: {k: v for k, v in o.items() if k not in ("metadata", "status")}
        md["generation"] = omd.get("generation", 1) + (0 if strip(old) == strip(new) else 1)
        return new

    def _check_schema(self, group: str, plural: str, obj: dict) -> dict:
        val = self._validators.get((group, plural))
        if val is None:
            return obj
        pruned, _dropped = prune(obj, self.schemas[(group, plural)])
        errors = schema_errors(pruned, val)
        if errors:
            raise self._invalid(group, plural, obj["metadata"].get("name", ""), errors)
        return pruned

    def _store(self, group: str, plural: str, old: dict | None, new: dict, *, dry_run: bool = False) -> dict:
        new = self._check_schema(group, plural, new)
        if old is not None and new == old:
            return old  # a no-op write changes nothing, not even the resourceVersion
        if dry_run:
            return new
        self._rv += 1
        new["metadata"]["resourceVersion"] = str(self._rv)
        md = new["metadata"]
        self._coll(group, plural)[(md["namespace"], md["name"])] = new
        return new

    def _create(self, group: str, plural: str, ns: str, body, dry_run: bool) -> dict:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be an object")
        md = body.get("metadata") or {}
        name = md.get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value: name is required")
        if md.get("namespace") not in (None, ns):
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the "
                                              "namespace sent on the request")
        with self._lock:
            if (ns, name) in self._coll(group, plural):
                raise ApiError(409, "AlreadyExists", f'{plural}.{group} "{name}" already exists',
                               {"name": name, "group": group, "kind": plural})
            obj = copy.deepcopy(body)
            obj["metadata"]["namespace"] = ns
            obj.pop("status", None)  # the status subresource owns status
            obj.setdefault("kind", self.kinds.get((group, plural), "Object"))
            obj = self._initial_metadata(obj)
            return copy.deepcopy(self._store(group, plural, None, obj, dry_run=dry_run))

    def _delete(self, group: str, plural: str, ns: str, name: str, dry_run: bool) -> dict:
        with self._lock:
            coll = self._coll(group, plural)
            if (ns, name) not in coll:
                raise self._not_found(group, plural, name)
            obj = coll[(ns, name)] if dry_run else coll.pop((ns, name))
            self._controller.pop((ns, name), None)
            return copy.deepcopy(obj)

    def _finish_write(self, group: str, plural: str, ns: str, name: str, old: dict, candidate: dict, *,
                      status_only: bool, dry_run: bool) -> dict:
        """Shared tail of PUT and PATCH: precondition, subresource split, metadata, store."""
        sent_rv = (candidate.get("metadata") or {}).get("resourceVersion")
        if sent_rv not in (None, "") and str(sent_rv) != old["metadata"]["resourceVersion"]:
            raise self._conflict(group, plural, name)
        cmd = candidate.get("metadata") or {}
        if cmd.get("name") not in (None, name) or cmd.get("namespace") not in (None, ns):
            raise ApiError(400, "BadRequest", "metadata.name and metadata.namespace cannot be changed")
        if status_only:
            new = copy.deepcopy(old)
            if "status" in candidate:
                new["status"] = copy.deepcopy(candidate["status"])
            else:
                new.pop("status", None)
        else:
            new = self._carry_metadata(old, copy.deepcopy(candidate), keep_status=True)
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        return copy.deepcopy(self._store(group, plural, old, new, dry_run=dry_run))

    def _replace(self, group: str, plural: str, ns: str, name: str, body, *, status_only: bool,
                 dry_run: bool) -> dict:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be an object")
        with self._lock:
            old = self._coll(group, plural).get((ns, name))
            if old is None:
                raise self._not_found(group, plural, name)
            if not (body.get("metadata") or {}).get("resourceVersion"):
                raise self._invalid(group, plural, name, [
                    "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"])
            return self._finish_write(group, plural, ns, name, old, body, status_only=status_only,
                                      dry_run=dry_run)

    def _patch(self, group: str, plural: str, ns: str, name: str, ctype: str | None, body, *,
               status_only: bool, dry_run: bool) -> dict:
        if ctype not in (MERGE_PATCH, JSON_PATCH):
            raise ApiError(415, "UnsupportedMediaType",
                           "the body of the request was in an unknown format - accepted media types "
                           f"include: {JSON_PATCH}, {MERGE_PATCH}")
        with self._lock:
            old = self._coll(group, plural).get((ns, name))
            if old is None:
                raise self._not_found(group, plural, name)
            if ctype == MERGE_PATCH:
                if not isinstance(body, dict):
                    raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
                candidate = merge_patch(old, body)
            else:
                try:
                    candidate = apply_json_patch(old, body)
                except PatchError as exc:
                    raise ApiError(422, "Invalid", "the server rejected our request due to an error in our "
                                   "request", {"causes": [{"reason": "UnexpectedServerResponse",
                                                           "message": str(exc)}]}) from exc
                if not isinstance(candidate, dict):
                    raise ApiError(422, "Invalid", "the patched object is not an object")
            return self._finish_write(group, plural, ns, name, old, candidate, status_only=status_only,
                                      dry_run=dry_run)

    # -- the controller SIMULATION -------------------------------------------------
    def simulate_controller(self, namespace: str, name: str, *, ready: bool = True) -> dict:
        """SIMULATION of the KServe controller, not KServe.

        Moves ``status`` of one InferenceService the way KServe would once its
        reconcile finished (no timing, no Knative, no pods):

        * Serverless: a changed predictor (anything but ``canaryTrafficPercent``)
          makes a new revision ``<name>-predictor-0000N``; with ``ready`` it
          becomes ``latestReadyRevision``. Traffic: 100 % to the latest ready
          revision without ``canaryTrafficPercent`` (or when nothing rolled out
          yet); otherwise ``canaryTrafficPercent`` to it (tag ``latest``) and the
          rest to ``latestRolledoutRevision`` (tag ``prev``). A latest revision
          at 100 % becomes ``latestRolledoutRevision`` and the old one
          ``previousRolledoutRevision``.
        * Standard (``status.deploymentMode``/annotation Standard or RawDeployment,
          or a ``spec.canary``): no revisions; ``canaryStatuses`` per canary.

        Sets ``observedGeneration``, ``url`` and the Ready conditions. Returns the stored object.
        """
        with self._lock:
            key = (KSERVE_GROUP, ISVC_PLURAL)
            old = self._coll(*key).get((namespace, name))
            if old is None:
                raise KeyError(f"{namespace}/{name}")
            spec = old.get("spec") or {}
            status = copy.deepcopy(old.get("status") or {})
            mode = status.get("deploymentMode") or (old["metadata"].get("annotations") or {}).get(
                "serving.kserve.io/deploymentMode") or "Serverless"
            if spec.get("canary") or mode in ("Standard", "RawDeployment"):
                status = self._sim_standard(namespace, name, old, status, ready)
            else:
                status = self._sim_serverless(namespace, name, old, status, ready)
            new = copy.deepcopy(old)
            new["status"] = status
            return copy.deepcopy(self._store(*key, old, new))

    @staticmethod
    def _conditions(ready: bool, extra: list[tuple[str, bool, str]] = ()) -> list[dict]:
        now = _now()
        rows = [("IngressReady", True, ""), ("PredictorReady", ready, "" if ready else "RevisionFailed"),
                *extra, ("Ready", ready, "" if ready else "RevisionFailed")]
        out = []
        for ctype, ok, reason in rows:
            c = {"type": ctype, "status": "True" if ok else "False", "lastTransitionTime": now}
            if reason:
                c["reason"] = reason
                c["message"] = f"{ctype} is False (simulated)"
            out.append(c)
        return out

    def _sim_serverless(self, ns: str, name: str, obj: dict, status: dict, ready: bool) -> dict:
        pred = copy.deepcopy((obj.get("spec") or {}).get("predictor") or {})
        cp = pred.pop("canaryTrafficPercent", None)
        template = json.dumps(pred, sort_keys=True)
        mem = self._controller.setdefault((ns, name), {"count": 0, "template": None, "created": None,
                                                       "ready": None})
        if template != mem["template"]:
            mem["count"] += 1
            mem["template"] = template
            mem["created"] = f"{name}-predictor-{mem['count']:05d}"
            if ready:
                mem["ready"] = mem["created"]
        latest_ready = mem["ready"]
        comp = copy.deepcopy((status.get("components") or {}).get("predictor") or {})
        rolled, prev = comp.get("latestRolledoutRevision"), comp.get("previousRolledoutRevision")
        traffic: list[dict] = []
        if latest_ready:
            if cp is None or rolled is None or rolled == latest_ready:
                traffic = [{"latestRevision": True, "percent": 100, "revisionName": latest_ready}]
                if cp is not None:
                    traffic[0]["tag"] = "latest"
            else:
                traffic = [{"latestRevision": True, "percent": int(cp), "revisionName": latest_ready,
                            "tag": "latest"},
                           {"latestRevision": False, "percent": 100 - int(cp), "revisionName": rolled,
                            "tag": "prev"}]
            if traffic[0]["percent"] == 100 and rolled != latest_ready:
                prev, rolled = rolled, latest_ready
        comp.update({"latestCreatedRevision": mem["created"], "traffic": traffic,
                     "url": f"http://{name}-predictor.{ns}.example.com",
                     "address": {"url": f"http://{name}-predictor.{ns}.svc.cluster.local"}})
        for k, v in (("latestReadyRevision", latest_ready), ("latestRolledoutRevision", rolled),
                     ("previousRolledoutRevision", prev)):
            if v:
                comp[k] = v
        all_ready = ready and latest_ready is not None
        return {"observedGeneration": obj["metadata"]["generation"], "deploymentMode": "Serverless",
                "url": f"http://{name}.{ns}.example.com",
                "address": {"url": f"http://{name}.{ns}.svc.cluster.local"},
                "components": {"predictor": comp}, "conditions": self._conditions(all_ready)}

    def _sim_standard(self, ns: str, name: str, obj: dict, status: dict, ready: bool) -> dict:
        canaries = (obj.get("spec") or {}).get("canary") or []
        extra = []
        out = {"observedGeneration": obj["metadata"]["generation"], "deploymentMode": "Standard",
               "url": f"http://{name}-{ns}.example.com",
               "address": {"url": f"http://{name}-predictor.{ns}.svc.cluster.local"},
               "components": {"predictor": {"url": f"http://{name}-predictor-{ns}.example.com"}}}
        if canaries:
            out["canaryStatuses"] = [{"name": (c.get("predictor") or {}).get("name", f"canary-{i}"),
                                      "ready": ready, "trafficPercent": int(c.get("trafficPercent", 0))}
                                     for i, c in enumerate(canaries)]
            extra = [("CanaryPredictorReady", ready, "" if ready else "CanaryNotReady")]
        out["conditions"] = self._conditions(ready, extra)
        return out


def _verb(method: str, name: str | None) -> str:
    if method == "GET":
        return "get" if name else "list"
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    return verbs.get(method, method.lower())


def _reason_for(code: int) -> str:
    return {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            422: "Invalid", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
            504: "Timeout"}.get(code, "Unknown")


class _Handler(BaseHTTPRequestHandler):
    double: KubeDouble
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls on keep-alive connections
    wbufsize = -1  # headers and body leave in one write

    def log_message(self, format, *args):  # noqa: A002 - quiet test output
        pass

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, answer = self.double.handle(self.command, self.path, self.headers.get("Content-Type"), raw,
                                            self.headers.get("Authorization"))
        if self.double.take_drop(self.command, self.path):
            self.close_connection = True  # processed, never answered: the client reads EOF
            return
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve
