"""The webhook retrainer against a real HTTP receiver that checks the signature, and the Airflow retrainer
against a local server implementing exactly the Airflow 2 stable REST API calls it uses (POST/GET dagRuns, basic
auth, the documented DAGRun fields and problem answers). Down, hung and refusing receivers included."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.errors import Conflict, NotFound, PermissionDenied, Unavailable
from services.retraining import SIGNATURE_HEADER, TIMESTAMP_HEADER, RetrainRequest, verify_signature
from services.retraining.http import AirflowRetrainer, WebhookRetrainer, follow
from tests.conftest import free_port

SECRET = "a-real-secret-of-32-characters!!"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
REQUEST = RetrainRequest(endpoint="screening", model="clf", version="2", reason="accuracy fell", trigger="alice",
                         evidence={"accuracy": 0.81}, window_start=T0 - timedelta(days=1), window_end=T0)


class _Server:
    def __init__(self, handler):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.state = {"received": [], "runs": {}, "gets": {}}
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def state(self):
        return self.httpd.state


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def _answer(self, status: int, body: dict):
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))


class Receiver(_Handler):
    """A pipeline's webhook: verifies X-MLOps-Signature over (timestamp, raw body) with the shared secret."""

    def do_POST(self):
        body = self._body()
        ok = verify_signature(SECRET, self.headers.get(TIMESTAMP_HEADER, ""), body,
                              self.headers.get(SIGNATURE_HEADER, ""), now=time.time())
        if not ok:
            self._answer(401, {"error": "bad signature"})
            return
        self.server.state["received"].append(json.loads(body))
        self._answer(202, {"accepted": True})


def test_the_webhook_posts_a_signed_payload_the_receiver_verifies():
    with _Server(Receiver) as srv:
        run = WebhookRetrainer(srv.url + "/hooks/retrain", SECRET, timeout_s=5).trigger(REQUEST)
        got = srv.state["received"]
    assert run.state == "queued" and run.backend == "webhook" and "HTTP 202" in run.detail
    assert len(got) == 1
    assert got[0]["run_id"] == run.run_id
    assert {k: got[0][k] for k in ("endpoint", "model", "version", "reason", "trigger", "evidence")} == {
        "endpoint": "screening", "model": "clf", "version": "2", "reason": "accuracy fell", "trigger": "alice",
        "evidence": {"accuracy": 0.81}}
    assert got[0]["window"] == {"start": "2026-11-25T12:00:00+00:00", "end": "2026-11-26T12:00:00+00:00"}


def test_a_wrong_secret_is_refused_by_the_receiver_and_named():
    with _Server(Receiver) as srv:
        with pytest.raises(PermissionDenied) as exc:
            WebhookRetrainer(srv.url + "/hooks/retrain", "another-secret-of-some-length", timeout_s=5).trigger(REQUEST)
        assert srv.state["received"] == []
    assert exc.value.source == f"retraining webhook {srv.url}/hooks/retrain" and "HTTP 401" in exc.value.message


def test_a_replayed_old_request_is_refused():
    """The timestamp is signed: a body signed 10 minutes ago (a captured request) is refused."""
    with _Server(Receiver) as srv:
        old = WebhookRetrainer(srv.url, SECRET, timeout_s=5, clock=lambda: time.time() - 600)
        with pytest.raises(PermissionDenied):
            old.trigger(REQUEST)
        assert srv.state["received"] == []


def test_a_receiver_that_is_down_or_hung_is_unavailable_within_the_timeout():
    down = f"http://127.0.0.1:{free_port()}/hook"
    t0 = time.monotonic()
    with pytest.raises(Unavailable) as exc:
        WebhookRetrainer(down, SECRET, timeout_s=2).trigger(REQUEST)
    assert exc.value.source == f"retraining webhook {down}" and "cannot connect" in exc.value.message
    assert exc.value.write_sent is False and time.monotonic() - t0 < 2
    with socket.socket() as hung:  # accepts connections (the backlog), never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        url = f"http://127.0.0.1:{hung.getsockname()[1]}/hook"
        t0 = time.monotonic()
        with pytest.raises(Unavailable) as exc:
            WebhookRetrainer(url, SECRET, timeout_s=1).trigger(REQUEST)
        took = time.monotonic() - t0
    assert "no answer within 1 s" in exc.value.message and exc.value.write_sent is None
    assert 0.9 <= took < 3


# -- Airflow 2 stable REST API (https://airflow.apache.org/docs/apache-airflow/stable/stable-rest-api-ref.html) --
DAG = "retrain_model"
USER, PASSWORD = "console", "s3cret"


class FakeAirflow(_Handler):
    """POST /api/v1/dags/{dag_id}/dagRuns and GET …/dagRuns/{dag_run_id}, basic auth; a run is queued when
    created, running at the first read and success (or failed, for reason "fail") at the second."""

    def _problem(self, status: int, title: str, detail: str):
        self._answer(status, {"detail": detail, "status": status, "title": title,
                              "type": f"https://airflow.apache.org/docs/apache-airflow/2.10.5/stable-rest-api-ref.html"
                                      f"#section/Errors/{title.replace(' ', '')}"})

    def _authorised(self) -> bool:
        want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != want:
            self._problem(401, "Unauthorized", "Incorrect username or password")
            return False
        return True

    def _route(self) -> tuple[str | None, str | None]:
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:3] != ["api", "v1", "dags"] or len(parts) < 5 or parts[4] != "dagRuns":
            return None, None
        return parts[3], (parts[5] if len(parts) > 5 else None)

    def _run(self, run: dict) -> dict:
        return {"dag_run_id": run["dag_run_id"], "dag_id": DAG, "logical_date": run["logical_date"],
                "execution_date": run["logical_date"], "start_date": None, "end_date": None,
                "data_interval_start": run["logical_date"], "data_interval_end": run["logical_date"],
                "last_scheduling_decision": None, "run_type": "manual", "state": run["state"],
                "external_trigger": True, "conf": run["conf"], "note": None}

    def do_POST(self):
        if not self._authorised():
            return
        dag, run_id = self._route()
        if dag != DAG or run_id is not None:
            self._problem(404, "DAG not found", f"DAG with dag_id: '{dag}' not found")
            return
        body = json.loads(self._body())
        runs = self.server.state["runs"]
        if body["dag_run_id"] in runs:
            self._problem(409, "Conflict", f"DAGRun with DAG ID: '{DAG}' and DAGRun ID: '{body['dag_run_id']}' "
                                           "already exists")
            return
        runs[body["dag_run_id"]] = {"dag_run_id": body["dag_run_id"], "conf": body.get("conf") or {},
                                    "state": "queued", "logical_date": "2026-11-26T12:00:00+00:00"}
        self._answer(200, self._run(runs[body["dag_run_id"]]))

    def do_GET(self):
        if not self._authorised():
            return
        dag, run_id = self._route()
        run = self.server.state["runs"].get(run_id) if dag == DAG else None
        if run is None:
            self._problem(404, "DAGRun not found", f"DAGRun with DAG ID: '{dag}' and DagRun ID: '{run_id}' not found")
            return
        n = self.server.state["gets"][run_id] = self.server.state["gets"].get(run_id, 0) + 1
        if n >= 2:
            run["state"] = "failed" if run["conf"].get("reason") == "fail" else "success"
        elif n == 1:
            run["state"] = "running"
        self._answer(200, self._run(run))


def test_airflow_dag_run_is_triggered_with_the_payload_as_conf_and_followed_to_success():
    with _Server(FakeAirflow) as af:
        flow = AirflowRetrainer(af.url + "/", DAG, username=USER, password=PASSWORD, timeout_s=5)
        run = flow.trigger(REQUEST)
        assert run.state == "queued" and run.run_id in af.state["runs"]
        assert af.state["runs"][run.run_id]["conf"]["endpoint"] == "screening"
        assert af.state["runs"][run.run_id]["conf"]["window"]["end"] == "2026-11-26T12:00:00+00:00"
        slept = []
        done = follow(flow, run.run_id, timeout_s=30, every_s=1, sleep=slept.append)
        assert done.state == "succeeded" and len(slept) == 1
        assert done.request.model == "clf" and done.request.version == "2" and done.request.trigger == "alice"
        assert "logical date 2026-11-26T12:00:00+00:00" in done.detail
        failing = flow.trigger(RetrainRequest(**{**REQUEST.__dict__, "reason": "fail"}))
        assert follow(flow, failing.run_id, timeout_s=30, every_s=1, sleep=slept.append).state == "failed"


def test_airflow_refusals_are_named(monkeypatch):
    with _Server(FakeAirflow) as af:
        with pytest.raises(PermissionDenied) as exc:
            AirflowRetrainer(af.url, DAG, username=USER, password="wrong", timeout_s=5).trigger(REQUEST)
        assert exc.value.source == f"Airflow {af.url}" and "HTTP 401" in exc.value.message
        assert "Incorrect username or password" in exc.value.message and af.state["runs"] == {}
        with pytest.raises(NotFound, match="DAG with dag_id: 'nope' not found"):
            AirflowRetrainer(af.url, "nope", username=USER, password=PASSWORD, timeout_s=5).trigger(REQUEST)
        flow = AirflowRetrainer(af.url, DAG, username=USER, password=PASSWORD, timeout_s=5)
        with pytest.raises(NotFound, match="DAGRun"):
            flow.status("retrain__unknown")
        run = flow.trigger(REQUEST)
        monkeypatch.setattr("services.retraining.http.new_run_id", lambda request, now: run.run_id)
        with pytest.raises(Conflict, match="already exists"):  # the same dag_run_id twice: Airflow's 409
            flow.trigger(REQUEST)
    with pytest.raises(Unavailable, match="cannot connect"):
        AirflowRetrainer(af.url, DAG, username=USER, password=PASSWORD, timeout_s=2).status(run.run_id)
