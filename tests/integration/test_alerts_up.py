"""``python -m services up`` runs the alert evaluator beside the gateway and the ingest: a real process over the
test registry and a SQLite console database, MLOPS_ALERT_INTERVAL_SECONDS=1; failing canary rows written to its
prediction log fire the policy's rule, which the process says on its output and stores; once the canary's rows
are older than the window the alert resolves. (The wiring, on one database: the store and the evaluator are
tested on SQLite and PostgreSQL in test_alert_store.py and test_alert_evaluation.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import requests

from services.predictions import PredictionRow
from tests.conftest import ENDPOINT, MODEL, ROOT, free_port, fresh_registry, make_container
from tests.processes import stop_process

POLICY = """
defaults:
  alerts:
    - {name: canary-errors, metric: error_rate, role: canary, window: 30s, above: 0.1, min_samples: 5, severity: page}
"""


def _until(what: str, check, proc, log, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        got = check()
        if got:
            return got
        time.sleep(0.2)  # bounded polling of another process
    raise AssertionError(f"timed out waiting for {what}:\n" + log.read_text(errors="replace")[-3000:])


def test_up_evaluates_the_alert_rules(registry_template, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'console.db'}"
    uri = fresh_registry(registry_template, tmp_path / "reg")
    (tmp_path / "policy.yaml").write_text(POLICY)
    c = make_container(uri, database_url, tmp_path)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1", canary_version="2", canary_weight=20)
    gw, ing = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}, "MLFLOW_TRACKING_URI": uri,
           "MLOPS_DATABASE_URL": database_url, "MLOPS_DATA_DIR": str(tmp_path),
           "MLOPS_POLICY_FILE": str(tmp_path / "policy.yaml"), "MLOPS_ALERT_INTERVAL_SECONDS": "1",
           "MLOPS_INGEST_URL": f"http://127.0.0.1:{ing}/", "PYTHONUNBUFFERED": "1",
           "MLOPS_GATEWAY_REPLICAS": "inline"}  # worker processes are tested in test_gateway_replicas.py
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services", "up", "--no-traffic", "--port", str(gw),
                                 "--ingest-port", str(ing)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        def ready():
            try:
                return requests.get(f"http://127.0.0.1:{ing}/healthz", timeout=2).ok
            except requests.RequestException:
                return False

        _until("up to start", ready, proc, log, timeout=90)
        now = datetime.now(UTC)
        rows = [PredictionRow(request_id=f"up-{i}", row=0, endpoint=ENDPOINT, at=now - timedelta(seconds=i % 5),
                              version="2", role="canary", model=MODEL, features={"mean radius": 1.0},
                              prediction=None if i % 2 else 1, latency_ms=5.0, status=503 if i % 2 else 200,
                              error="injected" if i % 2 else "") for i in range(20)]
        c.predictions.write(rows)
        alert = _until("the alert to fire", lambda: next(iter(c.alerts.alerts(state="firing")), None), proc, log)
        assert (alert.endpoint, alert.rule, alert.severity, alert.value) == (ENDPOINT, "canary-errors", "page", 0.5)
        _until("up to say so", lambda: f"alert fired: {ENDPOINT} · canary-errors (page)" in log.read_text(), proc,
               log, timeout=10)
        # no new canary rows: once the 30 s window has passed them (a minute or so), the series is gone
        resolved = _until("the alert to resolve", lambda: c.alerts.get(alert.id).resolved_at, proc, log,
                          timeout=150)
        assert resolved - alert.started_at >= timedelta(seconds=30)
    finally:
        stop_process(proc, timeout=20)
        c.engine.dispose()
