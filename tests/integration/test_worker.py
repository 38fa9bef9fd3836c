"""``python -m services worker`` (deploy/worker.yaml: the one replica that runs what must run once) as a real
process over the test registry and a SQLite console database: it anchors the audit head at start, purges raw
prediction rows past the retention, evaluates the alert rules every MLOPS_ALERT_INTERVAL_SECONDS (failing canary
rows written to the prediction log fire the policy's rule), answers /healthz with its loops, and exits 0 on
SIGTERM (what Kubernetes sends)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import requests

from services.predictions import PredictionRow
from tests.conftest import ENDPOINT, MODEL, ROOT, free_port, fresh_registry, make_container, wait_for

POLICY = """
defaults:
  alerts:
    - {name: canary-errors, metric: error_rate, role: canary, window: 30s, above: 0.1, min_samples: 5, severity: page}
"""


def _row(i: int, at: datetime, *, failed: bool) -> PredictionRow:
    return PredictionRow(request_id=f"w-{i}", row=0, endpoint=ENDPOINT, at=at, version="2", role="canary",
                         model=MODEL, features={"mean radius": 1.0}, prediction=None if failed else 1,
                         latency_ms=5.0, status=503 if failed else 200, error="injected" if failed else "")


def test_worker_anchors_purges_evaluates_alerts_and_stops_on_sigterm(registry_template, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'console.db'}"
    uri = fresh_registry(registry_template, tmp_path / "reg")
    (tmp_path / "policy.yaml").write_text(POLICY)
    c = make_container(uri, database_url, tmp_path)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1")
    alice = c.directory.get("alice")
    c.actions.execute(c.actions.plan(alice, "start_canary", ENDPOINT, version="2", weight=20), alice, "try v2")
    entries = len(c.audit.entries())
    now = datetime.now(UTC)
    c.predictions.write([_row(999, now - timedelta(days=3), failed=False)])  # past a 1-day retention
    anchors = tmp_path / "anchors" / "audit-anchors.jsonl"
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}, "MLFLOW_TRACKING_URI": uri,
           "MLOPS_DATABASE_URL": database_url, "MLOPS_DATA_DIR": str(tmp_path),
           "MLOPS_POLICY_FILE": str(tmp_path / "policy.yaml"), "MLOPS_ALERT_INTERVAL_SECONDS": "1",
           "MLOPS_PREDICTION_RETENTION_DAYS": "1", "MLOPS_AUDIT_ANCHOR_FILE": str(anchors),
           "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services", "worker", "--host", "127.0.0.1", "--port",
                                 str(port)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def alive(what, check, timeout=60.0):
        def step():
            assert proc.poll() is None, f"the worker exited: {log.read_text(errors='replace')[-3000:]}"
            return check()
        return wait_for(what, step, timeout=timeout)

    try:
        health = alive("/healthz", lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2), timeout=90)
        assert health.status_code == 200
        assert health.json() == {"ok": True, "loops": ["alerts", "audit-anchor", "retention"], "dead": []}
        assert requests.get(f"http://127.0.0.1:{port}/other", timeout=2).status_code == 404

        line = alive("the audit anchor", lambda: anchors.exists() and anchors.read_text().strip())
        assert json.loads(line.splitlines()[-1])["entries"] == entries
        alive("the retention purge", lambda: "retention: dropped 1 raw prediction rows" in log.read_text())
        assert not c.predictions.rows(ENDPOINT, request_id="w-999")

        c.predictions.write([_row(i, datetime.now(UTC) - timedelta(seconds=i % 5), failed=bool(i % 2))
                             for i in range(20)])
        alert = alive("the alert to fire", lambda: next(iter(c.alerts.alerts(state="firing")), None))
        assert (alert.endpoint, alert.rule, alert.value) == (ENDPOINT, "canary-errors", 0.5)
        alive("the worker to say so", lambda: f"alert fired: {ENDPOINT} · canary-errors" in log.read_text(),
              timeout=10)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        c.engine.dispose()
