"""The Kubernetes API calls the KServe backend makes, with timeouts and error translation.

:func:`load_kube_config` builds the ``ApiClient`` from kubeconfig (or the
in-cluster service account); :class:`IsvcClient` reads, lists and JSON-patches
``InferenceService`` objects and asks the API server whether the user may patch
them. Every failure leaves this module as the console's error vocabulary
(:mod:`services.errors`), by :func:`translate`:

404 → NotFound, 403 → PermissionDenied, 401 → Unavailable (credentials),
409 → Conflict, 422 → Invalid (or Conflict when it is a lost ``test`` of the
resourceVersion), 0/429/5xx and connection errors → Unavailable. Nothing is retried.

Every call has a timeout (reads :data:`REQUEST_TIMEOUT`, patches :data:`WRITE_TIMEOUT`, both ``(connect,
read)`` seconds) so a page answers within 10 s while the API server hangs; after a timeout the API server
is not asked again for a while (:class:`~services.breaker.Breaker`, one for reads and one for writes, so a
write that got no answer can still be checked by a read): one page pays one timeout. A patch that timed out
may still have been applied by the server: its error says so (re-read, do not retry blindly).
"""

from __future__ import annotations

import json
from pathlib import Path

from services.breaker import Breaker, is_timeout
from services.errors import (
    Conflict,
    ConsoleError,
    Invalid,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.serving.kserve.mapping import SOURCE
from services.serving.kserve.patches import RV_PATH

GROUP = "serving.kserve.io"
API_VERSION = "v1beta1"
PLURAL = "inferenceservices"
JSON_PATCH = "application/json-patch+json"
REQUEST_TIMEOUT = (3, 5)  # (connect, read) seconds of reads
WRITE_TIMEOUT = (3, 8)  # of patches: admission webhooks may take a few seconds; still inside a page's 10 s
CONFLICT_MESSAGE = "endpoint changed since you read it; re-read and decide again"


def load_kube_config(context: str | None, config_file: str | None):
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


def server_message(exc) -> str:
    """The API server's own words from an ``ApiException`` (its ``Status`` message and causes)."""
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


def translate(exc: Exception, doing: str) -> ConsoleError:
    """Map what the kubernetes client or its transport raised to the vocabulary."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ConsoleError):
        return exc
    if isinstance(exc, ApiException):
        status, msg = exc.status, server_message(exc)
        if status == 404:
            return NotFound(f"{doing}: not found", source=SOURCE, detail=msg)
        if status == 403:
            return PermissionDenied(f"{doing}: Kubernetes refused ({msg})", source=SOURCE, detail=msg)
        if status == 401:
            return Unavailable(f"{doing}: the Kubernetes credentials were rejected", source=SOURCE,
                               detail=msg)
        if status == 409:
            return Conflict(CONFLICT_MESSAGE, source=SOURCE, detail=msg)
        if status == 422:
            return Invalid(f"{doing}: Kubernetes rejected the change: {msg}", source=SOURCE, detail=msg)
        if status in (0, 429) or status >= 500:
            return Unavailable(f"{doing}: Kubernetes API unavailable (HTTP {status})", source=SOURCE,
                               detail=msg)
        return Unavailable(f"{doing}: unexpected answer HTTP {status}: {msg}", source=SOURCE, detail=msg)
    if isinstance(exc, (HTTPError, OSError)):
        if is_timeout(exc):
            return Unavailable(f"{doing}: the Kubernetes API did not answer in time ({type(exc).__name__})",
                               source=SOURCE, detail=str(exc))
        return Unavailable(f"{doing}: cannot reach the Kubernetes API ({type(exc).__name__})",
                           source=SOURCE, detail=str(exc))
    return Unavailable(f"{doing}: {type(exc).__name__}: {exc}", source=SOURCE, detail=str(exc))


def _no_retries(api_client) -> None:
    """Nothing is retried: urllib3's default retries an unanswered GET three more times (a hung API server then
    holds a read for 4 × its timeout), and the ``kubernetes`` client keeps that default unless its configuration
    sets ``retries``. New connection pools of this client get ``retries=False``."""
    pool = getattr(getattr(api_client, "rest_client", None), "pool_manager", None)
    if pool is not None and hasattr(pool, "connection_pool_kw"):
        pool.connection_pool_kw["retries"] = False


class IsvcClient:
    """``InferenceService`` calls through the official client; every call carries ``request_timeout``."""

    def __init__(self, api_client, request_timeout=REQUEST_TIMEOUT, write_timeout=WRITE_TIMEOUT):
        from kubernetes import client

        self.api_client = api_client
        self.request_timeout = request_timeout
        self.write_timeout = write_timeout
        self.breaker = Breaker("Kubernetes API")  # reads
        self.write_breaker = Breaker("Kubernetes API")  # patches
        _no_retries(api_client)
        self._objects = client.CustomObjectsApi(api_client)
        self._authz = client.AuthorizationV1Api(api_client)

    @staticmethod
    def path(ns: str, name: str) -> str:
        return f"/apis/{GROUP}/{API_VERSION}/namespaces/{ns}/{PLURAL}/{name}"

    def _call(self, doing: str, fn, *args, **kwargs):
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        self._check(doing)
        try:
            with self.breaker.guard():
                return fn(*args, _request_timeout=self.request_timeout, **kwargs)
        except (ApiException, HTTPError, OSError) as exc:
            raise translate(exc, doing) from exc

    def _check(self, doing: str, breaker: Breaker | None = None) -> None:
        """Unavailable at once (naming KServe, the adapter's source) while the API server rests after a timeout."""
        try:
            (breaker or self.breaker).check()
        except Unavailable as exc:
            raise Unavailable(f"{doing}: {exc.message}", source=SOURCE) from exc

    def get(self, ns: str, name: str) -> dict:
        return self._call(f"reading InferenceService {ns}/{name}", self._objects.get_namespaced_custom_object,
                          GROUP, API_VERSION, ns, PLURAL, name)

    def list(self, ns: str) -> list[dict]:
        answer = self._call(f"listing InferenceServices in {ns}",
                            self._objects.list_namespaced_custom_object, GROUP, API_VERSION, ns, PLURAL)
        return answer.get("items") or []

    def get_hpa(self, ns: str, name: str) -> dict:
        """An ``autoscaling/v2`` HorizontalPodAutoscaler (Standard mode's autoscaler), as a plain dict."""
        return self._call(f"reading HorizontalPodAutoscaler {ns}/{name}", self._objects.get_namespaced_custom_object,
                          "autoscaling", "v2", ns, "horizontalpodautoscalers", name)

    def may_patch(self, ns: str) -> tuple[bool, str] | None:
        """(allowed, the server's reason) from a SelfSubjectAccessReview; None when it cannot tell."""
        from kubernetes import client

        review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(namespace=ns, verb="patch", group=GROUP,
                                                            resource=PLURAL)))
        try:
            with self.breaker.guard():
                answer = self._authz.create_self_subject_access_review(review,
                                                                       _request_timeout=self.request_timeout)
            return bool(answer.status and answer.status.allowed), (answer.status.reason if answer.status else "") or ""
        except Exception:  # noqa: BLE001 - cannot tell: the caller decides
            return None

    def patch(self, ns: str, name: str, body: list[dict], expected: str, doing: str, *, done: int) -> dict:
        """One JSON patch; ``expected`` is the resourceVersion its ``test`` checks, ``done`` how many
        writes of the same change went through before (named in the error, so nobody retries blindly).

        409, or a 422 from our failed ``test``, is Conflict; 403 is PermissionDenied (``detail`` holds
        the server's message)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        partial = " The earlier write(s) of this change went through: re-read the endpoint." if done else ""
        try:
            self._check(doing, self.write_breaker)
        except Unavailable as exc:
            raise _unsent(exc) from exc
        try:
            with self.write_breaker.guard():
                return self._objects.patch_namespaced_custom_object(
                    GROUP, API_VERSION, ns, PLURAL, name, body, _content_type=JSON_PATCH,
                    _request_timeout=self.write_timeout)
        except ApiException as exc:
            msg = server_message(exc)
            if exc.status == 409 or (exc.status == 422 and self._lost_race(ns, name, expected, msg)):
                raise Conflict(CONFLICT_MESSAGE + partial, source=SOURCE, detail=msg) from exc
            err = translate(exc, doing)
            if partial:
                err = type(err)(err.message + partial, source=SOURCE, detail=err.detail)
            # a 4xx answer: not applied; a 5xx may come from a proxy whose API server did apply it (unknown)
            raise (_unsent(err) if exc.status and exc.status < 500 else err) from exc
        except (HTTPError, OSError) as exc:
            err = translate(exc, doing)
            if _never_connected(exc):
                raise _unsent(type(err)(err.message + partial, source=SOURCE, detail=err.detail)) from exc
            if is_timeout(exc):  # sent, unanswered: the server may have applied it
                partial = (" The API server may have applied this write before it stopped answering: re-read the "
                           "endpoint before deciding again." + partial)
            raise type(err)(err.message + partial, source=SOURCE, detail=err.detail) from exc

    def _lost_race(self, ns: str, name: str, expected: str, msg: str) -> bool:
        """A 422 is a Conflict when our resourceVersion ``test`` failed (re-read to tell; never retried)."""
        if "testing value " + RV_PATH in msg:
            return True
        try:
            now = self.get(ns, name)
        except ConsoleError:
            return False
        return str((now.get("metadata") or {}).get("resourceVersion")) != expected


def _unsent(err: ConsoleError) -> ConsoleError:
    """Mark an error of a write that was never applied (see :class:`~services.errors.Unavailable`)."""
    if isinstance(err, Unavailable):
        err.write_sent = False
    return err


def _never_connected(exc: BaseException) -> bool:
    """The request never reached the server: no connection was made (refused, or connecting timed out)."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (NewConnectionError, ConnectTimeoutError, ConnectionRefusedError)):
            return True
        reason = getattr(exc, "reason", None)  # MaxRetryError carries the real cause here
        exc = reason if isinstance(reason, BaseException) else (exc.__cause__ or exc.__context__)
        seen += 1
    return False
