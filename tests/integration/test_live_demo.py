"""The live demo end to end with real processes: the seeded demo, ``python -m services up`` (gateway and
ingest in one process), ``python -m services traffic`` with a canary that starts failing and labels that
come late; the prediction log then holds every request attributed to the version that answered, the
failures on the canary only, and the labels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, free_port, http_status, wait_for
from tests.processes import stop_process

ENDPOINT = "cancer-screening"
START_TIMEOUT_S = 90  # the gateway preloads the demo's models


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("live-demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_TRACKING_URI", "KUBECONFIG"))}
    env.update({"MLOPS_DATA_DIR": str(d), "MLFLOW_TRACKING_URI": f"sqlite:///{d / 'mlflow.db'}",
                "MLOPS_DATABASE_URL": f"sqlite:///{d / 'console.db'}", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                "GIT_PYTHON_REFRESH": "quiet", "PYTHONUNBUFFERED": "1"})
    subprocess.run([sys.executable, "-m", "services", "seed-demo"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)
    return env



@pytest.fixture(scope="module")
def running(demo, tmp_path_factory):
    gw, ing = free_port(), free_port()
    env = {**demo, "MLOPS_INGEST_URL": f"http://127.0.0.1:{ing}/", "MLOPS_ALERT_INTERVAL_SECONDS": "1",
           "MLOPS_GATEWAY_REPLICAS": "inline"}  # worker processes are tested in test_gateway_replicas.py
    log = tmp_path_factory.mktemp("up") / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services", "up", "--no-traffic", "--port", str(gw),
                                 "--ingest-port", str(ing)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (http_status(f"http://127.0.0.1:{gw}/v2/models/{ENDPOINT}/ready") == 200
                   and http_status(f"http://127.0.0.1:{ing}/healthz") == 200):
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "up did not get ready:\n" + log.read_text(errors="replace")[-3000:]
            time.sleep(0.2)  # polling a bounded start
        yield env, gw, ing
    finally:
        stop_process(proc, timeout=20)


def test_a_scripted_incident_through_the_gateway(running):
    """The issue's incident: a canary (re)started by alice, traffic through the gateway, the canary failing 60 %
    from a known second; up's evaluator fires canary-errors; the timeline lists the canary start before the
    alert; what served at the alert names the canary; the abort (with the alert in its audit entry); the alert
    resolves once the canary's failures leave its window."""
    from datetime import timedelta

    from services.composition import build
    from services.settings import Settings

    env, gw, ing = running
    c = build(Settings.from_env(env))
    try:
        alice = c.directory.get("alice")
        if c.serving.get_endpoint(ENDPOINT).canary_version:
            c.actions.execute(c.actions.plan(alice, "abort_canary", ENDPOINT), alice, "a clean start")
        assert not [a for a in c.alerts.alerts(endpoint=ENDPOINT, state="firing") if a.rule == "canary-errors"]
        c.actions.execute(c.actions.plan(alice, "start_canary", ENDPOINT, version="4", weight=50), alice,
                          "v4 again, at half the traffic")
        started = c.clock()
        proc = subprocess.run(
            [sys.executable, "-m", "services", "traffic", "--endpoint", ENDPOINT, "--rps", "20", "--duration",
             "10", "--from", "2", "--errors", "4=0.6", "--gateway", f"http://127.0.0.1:{gw}", "--ingest",
             f"http://127.0.0.1:{ing}/", "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        alert = wait_for("canary-errors to fire", timeout=90, check=lambda: next(
            (a for a in c.alerts.alerts(endpoint=ENDPOINT, state="firing", start=started) if a.rule ==
             "canary-errors"), None))
        assert started < alert.started_at < started + timedelta(seconds=60) and alert.value > 0.1
        events = c.incidents.timeline(ENDPOINT, started - timedelta(minutes=1), c.clock() + timedelta(seconds=1))
        titles = [(e.kind, e.title) for e in events]
        start_at = next(i for i, (k, t) in enumerate(titles) if k == "serving_change" and "canary v4 started" in t)
        fired_at = next(i for i, (k, t) in enumerate(titles) if k == "alert_fired" and "canary-errors" in t)
        assert start_at < fired_at, titles
        served = c.incidents.served_at(ENDPOINT, alert.started_at)
        assert (served["stable_version"], served["canary_version"], served["canary_weight"]) == ("2", "4", 50)
        assert any(t["version"] == "4" and t["errors"] > 0 for t in served["traffic"])
        top = c.incidents.suspects(events, alert)[0]
        assert "canary v4 started" in top["event"]["title"] and top["test"]["worse"], top
        plan = c.actions.plan(alice, "abort_canary", ENDPOINT)
        c.actions.execute(plan, alice, "canary failing", context={"alert": {"id": alert.id, "rule": alert.rule}})
        entry = next(e for e in c.audit.entries(limit=5) if e.action == "abort_canary" and e.result == "ok")
        assert entry.details["context"]["alert"]["id"] == alert.id
        # the rule's window is a minute, counted in whole minutes: the failures leave it within two
        resolved = wait_for("the alert to resolve", lambda: c.alerts.get(alert.id).resolved_at, timeout=180,
                            every=0.5)
        assert resolved > alert.started_at
    finally:
        if not c.serving.get_endpoint(ENDPOINT).canary_version:  # as the demo serves it, for the next test
            c.actions.execute(c.actions.plan(alice, "start_canary", ENDPOINT, version="4", weight=20), alice,
                              "back to the demo's canary")
        c.engine.dispose()


def test_traffic_through_the_gateway_lands_in_the_prediction_log(running):
    from datetime import UTC, datetime

    env, gw, ing = running
    since = datetime.now(UTC)  # the incident test before this one sent traffic too
    proc = subprocess.run(
        [sys.executable, "-m", "services", "traffic", "--endpoint", ENDPOINT, "--rps", "25", "--duration", "6",
         "--from", "3", "--errors", "4=0.5", "--labels-delay", "1", "--gateway", f"http://127.0.0.1:{gw}",
         "--ingest", f"http://127.0.0.1:{ing}/", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["requests"] == 150 and set(summary["by_version"]) == {"2", "4"}, summary
    assert summary["statuses"].get("503", 0) > 0, "half of v4's answers fail from second 3 on"

    from services.composition import build
    from services.settings import Settings

    c = build(Settings.from_env(env))
    try:
        deadline = time.monotonic() + 30
        while len(rows := c.predictions.rows(ENDPOINT, start=since, limit=1000)) < 150:  # sent asynchronously
            assert time.monotonic() < deadline, f"{len(rows)} of 150 rows logged"
            time.sleep(0.2)
        by_version = {}
        for r in rows:
            by_version.setdefault(r.version, []).append(r)
        assert {v: len(rs) for v, rs in by_version.items()} == summary["by_version"]
        assert all(r.role == "stable" for r in by_version["2"]) and all(r.role == "canary" for r in by_version["4"])
        assert not any(r.status >= 500 for r in by_version["2"]), "only the canary was made to fail"
        failed = [r for r in by_version["4"] if r.status == 503]
        assert len(failed) == summary["statuses"]["503"]
        assert all(r.features.get("worst to mean radius ratio") for r in rows), "clients send the canary's feature"
        deadline = time.monotonic() + 30
        while sum(1 for r in c.predictions.rows(ENDPOINT, start=since, limit=1000) if r.label is not None) < 150:
            assert time.monotonic() < deadline, "labels did not all arrive"
            time.sleep(0.2)
    finally:
        c.engine.dispose()
