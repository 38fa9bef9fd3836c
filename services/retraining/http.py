"""Retraining in someone else's pipeline: a signed webhook, or an Airflow DAG run.

``WebhookRetrainer`` POSTs :func:`services.retraining.payload` (plus a ``run_id``) as JSON to
``MLOPS_RETRAIN_WEBHOOK_URL`` with ``X-MLOps-Timestamp: <unix seconds>`` and ``X-MLOps-Signature:
sha256=<hex>`` — HMAC-SHA256 with ``MLOPS_RETRAIN_WEBHOOK_SECRET`` over ``timestamp + "." + body``, so a receiver
can refuse a replay by its age. A 2xx answer means the pipeline took it (state ``queued``, or the ``state`` the
receiver answers); the pipeline reports progress itself, so :meth:`WebhookRetrainer.status` knows only what
this process sent.

``AirflowRetrainer`` uses Airflow 2's stable REST API: ``POST {base}/api/v1/dags/{dag_id}/dagRuns`` with
``{"dag_run_id": …, "conf": payload}`` (basic auth, or a bearer token), then ``GET …/dagRuns/{dag_run_id}`` for
its ``state`` (queued, running, success, failed → queued, running, succeeded, failed).

Every call has a timeout (``MLOPS_RETRAIN_TIMEOUT_SECONDS``); failures are the console's error vocabulary
naming the source: no connection or no answer → Unavailable (``write_sent`` False / None), 401/403 →
PermissionDenied, 404 → NotFound, 409 → Conflict, 4xx → Invalid, 5xx → Unavailable.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from urllib.parse import quote

from services.breaker import is_timeout
from services.errors import Conflict, ConsoleError, Invalid, NotFound, PermissionDenied, PreconditionFailed, Unavailable
from services.retraining import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Retrainer,
    RetrainRequest,
    RetrainRun,
    body_bytes,
    payload,
    signature,
)

AIRFLOW_STATES = {"queued": "queued", "running": "running", "success": "succeeded", "failed": "failed"}


def new_run_id(request: RetrainRequest, now: float) -> str:
    """``retrain__<endpoint>__<UTC time>__<8 hex>``: unique, readable, and a valid Airflow dag_run_id."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in request.endpoint)
    return f"retrain__{safe}__{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}__{uuid.uuid4().hex[:8]}"


def _short(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def _answer_error(source: str, what: str, status: int, text: str) -> ConsoleError:
    detail = _short(text)
    kind = {401: PermissionDenied, 403: PermissionDenied, 404: NotFound, 409: Conflict}.get(status)
    if kind is None:
        kind = Invalid if 400 <= status < 500 else Unavailable
    exc = kind(f"{what}: HTTP {status}" + (f" ({detail})" if detail else ""), source=source, detail=detail or None)
    if isinstance(exc, Unavailable):
        exc.write_sent = None if status >= 500 else False
    return exc


def _send(source: str, what: str, call: Callable[[], object], timeout_s: float):
    import requests

    try:
        return call()
    except requests.RequestException as exc:
        timed_out = is_timeout(exc)
        why = f"no answer within {timeout_s:g} s" if timed_out else "cannot connect"
        err = Unavailable(f"{what}: {why}", source=source, detail=_short(exc))
        err.write_sent = None if timed_out and not isinstance(exc, requests.ConnectTimeout) else False
        raise err from exc


class WebhookRetrainer(Retrainer):
    backend = "webhook"

    def __init__(self, url: str, secret: str, *, timeout_s: float = 10.0, clock: Callable[[], float] = time.time,
                 session=None):
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self.clock = clock
        self.session = session
        self.source = f"retraining webhook {url}"
        self._sent: dict[str, RetrainRun] = {}

    def request_for(self, request: RetrainRequest, run_id: str) -> tuple[bytes, dict[str, str]]:
        """The exact body and headers of the POST (what the receiver verifies)."""
        body = body_bytes({**payload(request), "run_id": run_id})
        ts = str(int(self.clock()))
        return body, {"Content-Type": "application/json", TIMESTAMP_HEADER: ts,
                      SIGNATURE_HEADER: signature(self.secret, ts, body)}

    def preview(self, request: RetrainRequest) -> dict:
        return {"method": "POST", "url": self.url,
                "headers": {"Content-Type": "application/json", TIMESTAMP_HEADER: "<unix seconds, when sent>",
                            SIGNATURE_HEADER: "sha256=<HMAC-SHA256 of timestamp.body, when sent>"},
                "body": {**payload(request), "run_id": "<assigned when sent>"}}

    def trigger(self, request: RetrainRequest) -> RetrainRun:
        import requests

        http = self.session or requests
        run_id = new_run_id(request, self.clock())
        body, headers = self.request_for(request, run_id)
        what = f"POST {self.url}"
        resp = _send(self.source, what, lambda: http.post(self.url, data=body, headers=headers,
                                                            timeout=self.timeout_s), self.timeout_s)
        if not 200 <= resp.status_code < 300:
            raise _answer_error(self.source, what, resp.status_code, resp.text)
        state, detail = "queued", f"delivered to {self.url} (HTTP {resp.status_code})"
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            state = str(answer.get("state") or state) if answer.get("state") in ("queued", "running") else state
            run_id = str(answer.get("run_id") or run_id)
        run = RetrainRun(run_id, state, request, detail=detail, backend=self.backend)
        self._sent[run_id] = run
        return run

    def status(self, run_id: str) -> RetrainRun:
        if run_id in self._sent:
            return self._sent[run_id]
        raise PreconditionFailed(f"run {run_id!r} was handed to the webhook's pipeline, which reports its own "
                                 "progress; this console cannot ask it", source=self.source)


class AirflowRetrainer(Retrainer):
    backend = "airflow"

    def __init__(self, base_url: str, dag_id: str, *, username: str | None = None, password: str | None = None,
                 token: str | None = None, timeout_s: float = 10.0, clock: Callable[[], float] = time.time,
                 session=None):
        self.base_url = base_url.rstrip("/")
        self.dag_id = dag_id
        self.auth = (username, password or "") if username else None
        self.token = token
        self.timeout_s = timeout_s
        self.clock = clock
        self.session = session
        self.source = f"Airflow {self.base_url}"

    def _runs_url(self) -> str:
        return f"{self.base_url}/api/v1/dags/{quote(self.dag_id, safe='')}/dagRuns"

    def _kw(self) -> dict:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return {"headers": headers, "auth": None if self.token else self.auth, "timeout": self.timeout_s}

    def _run(self, data: dict, request: RetrainRequest | None) -> RetrainRun:
        if not isinstance(data, dict) or "dag_run_id" not in data:
            raise Unavailable("Airflow's answer is not a DAG run (no dag_run_id)", source=self.source)
        raw = str(data.get("state") or "queued")
        state = AIRFLOW_STATES.get(raw, "running" if raw in ("up_for_retry", "restarting", "scheduled") else "failed")
        when = data.get("logical_date") or data.get("execution_date")
        return RetrainRun(str(data["dag_run_id"]), state, request, backend=self.backend,
                          detail=f"DAG {self.dag_id} run {data['dag_run_id']}: {raw}" + (f" (logical date {when})"
                                                                                           if when else ""),
                          url=f"{self.base_url}/dags/{quote(self.dag_id, safe='')}/grid?dag_run_id="
                              f"{quote(str(data['dag_run_id']), safe='')}")

    def preview(self, request: RetrainRequest) -> dict:
        return {"method": "POST", "url": self._runs_url(),
                "json": {"dag_run_id": "retrain__<endpoint>__<time>__<id>, when sent", "conf": payload(request)}}

    def trigger(self, request: RetrainRequest) -> RetrainRun:
        import requests

        http = self.session or requests
        run_id = new_run_id(request, self.clock())
        url = self._runs_url()
        what = f"triggering DAG {self.dag_id!r} (POST {url})"
        resp = _send(self.source, what, lambda: http.post(url, json={"dag_run_id": run_id, "conf": payload(request)},
                                                          **self._kw()), self.timeout_s)
        if resp.status_code != 200:
            raise _answer_error(self.source, what, resp.status_code, resp.text)
        return self._run(self._json(resp, what), request)

    def status(self, run_id: str) -> RetrainRun:
        import requests

        http = self.session or requests
        url = f"{self._runs_url()}/{quote(run_id, safe='')}"
        what = f"reading DAG run {run_id!r} (GET {url})"
        resp = _send(self.source, what, lambda: http.get(url, **self._kw()), self.timeout_s)
        if resp.status_code != 200:
            raise _answer_error(self.source, what, resp.status_code, resp.text)
        data = self._json(resp, what)
        conf = data.get("conf") if isinstance(data, dict) else None
        request = None
        if isinstance(conf, dict) and {"endpoint", "model", "version"} <= conf.keys():
            request = RetrainRequest(endpoint=str(conf["endpoint"]), model=str(conf["model"]),
                                     version=str(conf["version"]), reason=str(conf.get("reason", "")),
                                     trigger=str(conf.get("trigger", "")), evidence=conf.get("evidence") or {})
        return self._run(data, request)

    def _json(self, resp, what: str) -> dict:
        try:
            return resp.json()
        except ValueError as exc:
            raise Unavailable(f"{what}: the answer is not JSON", source=self.source,
                              detail=_short(resp.text)) from exc


def follow(retrainer: Retrainer, run_id: str, *, timeout_s: float, every_s: float = 2.0,
           sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic) -> RetrainRun:
    """Ask for the run's state until it is no longer open or ``timeout_s`` has passed; the last state seen."""
    deadline = monotonic() + timeout_s
    run = retrainer.status(run_id)
    while run.open and monotonic() < deadline:
        sleep(min(every_s, max(0.0, deadline - monotonic())))
        run = retrainer.status(run_id)
    return run
