"""The loop from evidence back to a new version, on one machine (issue 12): the gateway and ingest (``python -m
services up``) take traffic whose ``bmi`` is shifted by 4 reference SDs, with its labels arriving late; the
policy's drift rule (``python -m services retrain-check``, what the worker runs on its schedule) fires; the local
job retrains on the training data plus the labelled window and registers a challenger with its lineage; the
compare page in Chromium shows it beside the champion; the promotion request the rule filed waits on the
Approvals page for a person."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from playwright.sync_api import expect

from tests.conftest import free_port, http_status, wait_for
from tests.e2e.helpers import (
    REGRESSOR,
    ROOT,
    SCREENSHOTS,
    assert_no_exception,
    cli,
    open_app,
    python,
    shot,
    wait_idle,
)
from tests.processes import stop_process

pytestmark = pytest.mark.e2e
ENDPOINT = "diabetes-risk"  # the promotion flow changes cancer-screening; this loop leaves diabetes-risk's stable
RULE = {"name": "drifted", "metric": "drift_share", "above": 0.05, "window_minutes": 10, "cooldown_minutes": 60,
        "request_promotion": True}



@pytest.fixture(scope="module")
def serving(e2e_env, tmp_path_factory):
    """``up`` (gateway + ingest) over the e2e store, and a policy with the drift rule for this endpoint alone."""
    d = tmp_path_factory.mktemp("loop")
    policy = yaml.safe_load((ROOT / "deploy" / "policy.yaml").read_text())
    policy["retraining"] = {"defaults": [], "endpoints": {ENDPOINT: [RULE]}}
    (d / "policy.yaml").write_text(yaml.safe_dump(policy))
    gw, ing = free_port(), free_port()
    env = {**e2e_env, "MLOPS_INGEST_URL": f"http://127.0.0.1:{ing}/", "MLOPS_POLICY_FILE": str(d / "policy.yaml")}
    log = d / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([python(), "-m", "services", "up", "--no-traffic", "--port", str(gw),
                                 "--ingest-port", str(ing)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            return (http_status(f"http://127.0.0.1:{gw}/v2/models/{ENDPOINT}/ready") == 200
                    and http_status(f"http://127.0.0.1:{ing}/healthz") == 200)

        wait_for("up to serve the endpoint", up, timeout=120)
        yield env, gw, ing
    finally:
        stop_process(proc, timeout=20)
        SCREENSHOTS.parent.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS.parent / "retraining-loop-up.log").write_bytes(log.read_bytes())


def test_shifted_traffic_fires_the_rule_and_the_challenger_waits_for_a_person(serving, page):
    from datetime import timedelta

    from services.composition import build
    from services.settings import Settings

    env, gw, ing = serving
    c = build(Settings.from_env(env))
    try:
        stable = c.serving.get_endpoint(ENDPOINT).stable_version
        before = {v.version for v in c.registry.list_versions(REGRESSOR)}
        dry = cli(env, "retrain-check", "--endpoint", ENDPOINT, "--dry-run")
        assert all(x["outcome"] != "would fire" for x in dry), dry  # the demo's own traffic does not trip it

        sent = subprocess.run(
            [python(), "-m", "services", "traffic", "--endpoint", ENDPOINT, "--rps", "20", "--duration", "15",
             "--shift", "bmi=4", "--labels-delay", "1", "--gateway", f"http://127.0.0.1:{gw}", "--ingest",
             f"http://127.0.0.1:{ing}/", "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        report = json.loads(sent.stdout)
        assert report["requests"] >= 200 and report["statuses"] == {"200": report["requests"]}, report

        def labelled() -> bool:  # the late labels reached the log through ingest
            now = c.clock()
            served = c.predictions.served(ENDPOINT, now - timedelta(minutes=10), now)
            return sum(t.labelled for t in served if t.version == stable) >= report["requests"]

        wait_for("the late labels to land", labelled, timeout=60)

        (fired,) = cli(env, "retrain-check", "--endpoint", ENDPOINT)
        assert fired["outcome"] == "fired" and fired["rule"] == "drifted", fired
        assert fired["value"] > RULE["above"] and "pending_approval" in fired["note"], fired
        (new,) = {v.version for v in c.registry.list_versions(REGRESSOR)} - before
        tags = c.registry.get_version(REGRESSOR, new).tags
        assert tags["mlops.parent_version"] == stable and tags["mlops.retrain.trigger"] == "rule:drifted", tags
        assert tags["mlops.candidate"] == "retraining" and c.registry.aliases(REGRESSOR)["challenger"] == new
        (request,) = [r for r in c.approvals.list(status="pending", endpoint=ENDPOINT)
                      if r.params.get("version") == new]
        assert (request.requester, request.action) == ("rule:drifted", "request_promotion")
        (held,) = cli(env, "retrain-check", "--endpoint", ENDPOINT)  # once: the cool-down holds the next check
        assert held["outcome"] == "skipped", held
    finally:
        c.engine.dispose()

    # the compare page: the challenger beside the champion it came from, on the same holdout
    open_app(page, f"/models?model={REGRESSOR}&compare={stable},{new}", "Compare")
    main = page.locator('[data-testid="stMain"]')
    expect(main).to_contain_text(f"v{new} @challenger · retrained from v{stable} by rule:drifted")
    expect(main).to_contain_text(f"v{stable} @champion")
    assert_no_exception(page)
    shot(page, "60-retrained-compare")
    # the request waits for a person on the Approvals page
    open_app(page, "/approvals", "Approvals")
    wait_idle(page)
    expect(main).to_contain_text("rule:drifted")
    expect(main).to_contain_text(ENDPOINT)
    assert_no_exception(page)
    shot(page, "61-retrained-approval")
    cli(env, "reject", str(request.id), "--reason", "e2e: leave the endpoint as the other tests found it",
        "--as", "bob")
