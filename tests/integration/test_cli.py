"""The command line: same use cases, JSON output, exit codes a pipeline can branch on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import update

from services.cli import main
from services.store.db import audit_log
from tests.conftest import ENDPOINT, MODEL, ROOT


def run(c, capsys, *argv):
    code = main(list(argv), container=c)
    out, err = capsys.readouterr()
    return code, out, err


def test_endpoints_json(container, capsys):
    code, out, _ = run(container, capsys, "endpoints", "--json")
    assert code == 0
    (ep,) = json.loads(out)
    assert (ep["name"], ep["model"], ep["stable"], ep["canary"], ep["canary_weight"], ep["champion"]) == (
        ENDPOINT, MODEL, "1", "2", 20, "1")


def test_pipeline_requests_and_a_person_approves(container, capsys):
    c = container
    code, out, _ = run(c, capsys, "request-promotion", "--endpoint", ENDPOINT, "--version", "2", "--reason",
                       "pipeline 77: offline eval passed", "--as", "alice", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["outcome"]["status"] == "pending_approval" and doc["plan"]["registry_changes"][0]["to"] == "2"
    rid = str(doc["outcome"]["request_id"])
    code, out, _ = run(c, capsys, "requests", "--status", "pending", "--json")
    assert [r["id"] for r in json.loads(out)] == [int(rid)]
    code, _, err = run(c, capsys, "approve", rid, "--as", "alice")
    assert code == 7 and "cannot approve" in err
    code, out, _ = run(c, capsys, "--as", "bob", "--json", "approve", rid, "--reason", "ok")
    assert code == 0 and json.loads(out)["endpoint_after"]["champion"] == "2"
    assert c.registry.aliases(MODEL)["champion"] == "2"


@pytest.mark.parametrize("argv,code,word", [
    (["set-canary", "--endpoint", ENDPOINT, "--version", "3", "--weight", "150", "--reason", "x", "--as", "alice"],
     2, "whole number"),
    (["set-canary", "--endpoint", ENDPOINT, "--version", "2", "--weight", "2.5", "--reason", "x", "--as", "alice"],
     2, "whole number"),
    (["abort-canary", "--endpoint", "nope", "--reason", "x", "--as", "alice"], 4, "no endpoint"),
    (["abort-canary", "--endpoint", ENDPOINT, "--reason", "x", "--as", "carol"], 7, "may not"),
    (["abort-canary", "--endpoint", ENDPOINT, "--reason", "x", "--as", "mallory"], 7, "unknown identity"),
    (["abort-canary", "--endpoint", ENDPOINT, "--reason", " ", "--as", "alice"], 2, "reason is required"),
    (["abort-canary", "--endpoint", ENDPOINT, "--reason", "x"], 2, "--as"),
    (["rollback", "--endpoint", ENDPOINT, "--to-version", "4", "--reason", "x", "--as", "alice"], 6, "missing"),
    (["approve", "12345", "--as", "bob"], 4, "no approval request"),
])
def test_refusals_exit_non_zero_and_change_nothing(container, capsys, argv, code, word):
    got, out, err = run(container, capsys, *argv)
    assert got == code and word in err
    ep = container.serving.get_endpoint(ENDPOINT)
    assert (ep.stable_version, ep.canary_version, ep.canary_weight) == ("1", "2", 20)


def test_set_canary_reweights_the_running_canary_and_dry_run_changes_nothing(container, capsys):
    c = container
    code, out, _ = run(c, capsys, "set-canary", "--endpoint", ENDPOINT, "--version", "2", "--weight", "60",
                       "--reason", "r", "--as", "alice", "--dry-run")
    assert code == 0 and "dry run" in out and "canary_weight: 20 → 60" in out
    assert c.serving.get_endpoint(ENDPOINT).canary_weight == 20
    code, out, _ = run(c, capsys, "set-canary", "--endpoint", ENDPOINT, "--version", "2", "--weight", "60",
                       "--reason", "r", "--as", "alice")
    assert code == 0 and c.serving.get_endpoint(ENDPOINT).canary_weight == 60


def test_audit_and_verify(container, capsys):
    c = container
    run(c, capsys, "abort-canary", "--endpoint", ENDPOINT, "--reason", "done", "--as", "alice")
    code, out, _ = run(c, capsys, "audit", "--json")
    assert code == 0 and json.loads(out)[0]["action"] == "abort_canary"
    code, out, _ = run(c, capsys, "verify-audit")
    assert code == 0 and "OK: 1 entries" in out
    with c.engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 1).values(actor="mallory"))
    code, out, _ = run(c, capsys, "verify-audit", "--json")
    assert code == 9 and json.loads(out)["first_bad_seq"] == 1


def test_seed_refuses_a_remote_registry(capsys, tmp_path):
    from services.composition import build
    from services.settings import Settings

    c = build(Settings.from_env({"MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "MLOPS_DATA_DIR": str(tmp_path)},
                                secrets_path=tmp_path / "none"))
    code, out, _ = run(c, capsys, "seed-demo", "--if-empty")
    assert code == 0 and "skipped" in out
    code, _, err = run(c, capsys, "seed-demo")
    assert code == 6 and "remote registry" in err


def test_entry_point_runs_as_a_module(container):
    env = {**os.environ, "MLFLOW_TRACKING_URI": container.settings.mlflow_tracking_uri,
           "MLOPS_DATABASE_URL": container.settings.database_url,
           "MLOPS_DATA_DIR": str(container.settings.data_dir)}
    p = subprocess.run([sys.executable, "-m", "services", "endpoints", "--json"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)[0]["name"] == ENDPOINT
