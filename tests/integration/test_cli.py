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
    (["set-canary", "--endpoint", "nope", "--version", "2", "--weight", "5", "--reason", "x", "--as", "alice"], 4,
     "no endpoint"),
    (["rollback", "--endpoint", ENDPOINT, "--to-version", "3", "--reason", "x", "--as", "alice"], 6,
     "request its promotion"),
    (["abort-canary", "--endpoint", ENDPOINT, "--reason", "x", "--as", "carol"], 7, "may not"),
    (["abort-canary", "--endpoint", ENDPOINT, "--reason", "x", "--as", "mallory"], 7, "unknown identity"),
    (["abort-canary", "--endpoint", ENDPOINT, "--reason", " ", "--as", "alice"], 2, "reason is required"),
    (["abort-canary", "--endpoint", ENDPOINT, "--reason", "x"], 2, "--as"),
    (["rollback", "--endpoint", ENDPOINT, "--to-version", "4", "--reason", "x", "--as", "alice"], 6,
     "never the stable"),
    (["approve", "12345", "--as", "bob"], 4, "no approval request"),
])
def test_refusals_exit_non_zero_and_change_nothing(container, capsys, argv, code, word):
    before = container.audit.count()
    got, out, err = run(container, capsys, *argv)
    assert got == code and word in err
    ep = container.serving.get_endpoint(ENDPOINT)
    assert (ep.stable_version, ep.canary_version, ep.canary_weight) == ("1", "2", 20)
    # every attempt is audited, probes of unknown endpoints, identities and requests included
    assert container.audit.count() == before + 1
    entry = container.audit.entries(limit=1)[0]
    assert entry.result == "refused" and word in entry.error
    assert container.audit.verify().ok


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


# -- human-readable tables ------------------------------------------------------------------------------

def _columns(header: str, line: str, names: list[str]) -> dict[str, str]:
    """Cut a table row at the header's column offsets (the table is aligned, so this is exact)."""
    starts = [header.index(n) for n in names] + [None]
    return {n: line[starts[i]:starts[i + 1]].strip() for i, n in enumerate(names)}


ENDPOINT_COLS = ["ENDPOINT", "MODEL", "STABLE", "CANARY", "CHAMPION", "READY", "REGISTRY"]


def test_endpoints_table_has_a_header_the_champion_and_agreement(container, capsys):
    c = container
    c.serving.ensure_endpoint("other-ep", "other", "1")  # "other" has no champion: disagrees
    code, out, _ = run(c, capsys, "endpoints")
    assert code == 0
    header, *lines = out.rstrip("\n").split("\n")
    assert header.split() == ENDPOINT_COLS
    rows = {r["ENDPOINT"]: r for r in (_columns(header, ln, ENDPOINT_COLS) for ln in lines
                                        if not ln.startswith(" "))}
    assert rows[ENDPOINT] == {"ENDPOINT": ENDPOINT, "MODEL": MODEL, "STABLE": "v1", "CANARY": "v2 @ 20%",
                              "CHAMPION": "v1", "READY": "yes", "REGISTRY": "agrees"}
    assert rows["other-ep"]["CANARY"] == "—" and rows["other-ep"]["CHAMPION"] == "—"
    assert rows["other-ep"]["REGISTRY"] == "DISAGREES"
    # the warning is listed under its endpoint's row
    assert lines[lines.index(next(ln for ln in lines if ln.startswith("other-ep"))) + 1].strip() == (
        "! other has no champion alias; the endpoint serves v1")


def test_endpoints_table_says_disagrees_when_the_champion_moves(container, capsys):
    c = container
    c.registry.set_alias(MODEL, "champion", "2")
    code, out, _ = run(c, capsys, "endpoints")
    assert code == 0
    header, *lines = out.rstrip("\n").split("\n")
    row = _columns(header, lines[0], ENDPOINT_COLS)
    assert (row["ENDPOINT"], row["STABLE"], row["CHAMPION"], row["REGISTRY"]) == (ENDPOINT, "v1", "v2", "DISAGREES")
    assert lines[1].strip() == f"! the registry's champion of {MODEL} is v2, but the endpoint's stable version is v1"


REQUEST_COLS = ["ID", "STATUS", "ENDPOINT", "ACTION", "REQUESTER", "CREATED", "EXPIRES", "REASON"]


def test_requests_table_has_readable_params_and_times(container, capsys):
    c = container
    code, _, _ = run(c, capsys, "request-promotion", "--endpoint", ENDPOINT, "--version", "2", "--reason",
                     "eval passed\nsee run 42", "--as", "alice")
    assert code == 0
    code, out, _ = run(c, capsys, "requests")
    assert code == 0
    header, line = out.rstrip("\n").split("\n")
    assert header.split() == REQUEST_COLS
    assert _columns(header, line, REQUEST_COLS) == {
        "ID": "1", "STATUS": "pending", "ENDPOINT": ENDPOINT, "ACTION": "request_promotion version 2",
        "REQUESTER": "alice", "CREATED": "2026-11-26 12:00 UTC", "EXPIRES": "2026-11-27 12:00 UTC",
        "REASON": "eval passed see run 42"}
    assert "{" not in out and "'version'" not in out
    code, out, _ = run(c, capsys, "requests", "--status", "approved")
    assert (code, out.strip()) == (0, "(no requests)")


# -- audit filters --------------------------------------------------------------------------------------

def _state(stable, canary=None, champion=None):
    return {"stable_version": stable, "canary_version": canary, "canary_weight": 20 if canary else 0,
            "champion": champion}


@pytest.fixture
def trail(container, clock):
    """Four entries over three days: new-style (model + versions in details) and an older one (derived)."""
    a = container.audit
    a.append(actor="alice", action="abort_canary", target=ENDPOINT, result="ok", reason="day one",
             before=_state("1", "2"), after=_state("1"), details={"model": MODEL, "versions": ["2"]})
    clock.advance(hours=21)  # 2026-11-27 09:00
    a.append(actor="bob", action="rollback", target="other-ep", result="ok", reason="older style",
             before=_state("3", champion="3"), after=_state("2", champion="3"), details={"request_id": 1})
    clock.advance(hours=38, minutes=30)  # 2026-11-28 23:30
    a.append(actor="alice", action="start_canary", target=ENDPOINT, result="refused", error="policy: no",
             details={"model": "other", "versions": ["5"]})
    clock.advance(minutes=1)
    a.append(actor="dana", action="rollback", target="ep-q", result="ok", details={"model": 'q"uote\\', "versions": []})
    return container


def _seqs(c, capsys, *argv) -> list[int]:
    code, out, err = run(c, capsys, "audit", "--json", *argv)
    assert code == 0, err
    return [e["seq"] for e in json.loads(out)]


@pytest.mark.parametrize("argv,seqs", [
    ([], [4, 3, 2, 1]),
    (["--from", "2026-11-27"], [4, 3, 2]),
    (["--to", "2026-11-27"], [2, 1]),  # a date includes its whole day
    (["--from", "2026-11-27T09:00", "--to", "2026-11-28T23:30"], [3, 2]),  # datetimes are inclusive, UTC
    (["--from", "2026-11-27T10:00+02:00"], [4, 3, 2]),  # 08:00 UTC
    (["--from", "2026-11-27T09:00:00.000001Z"], [4, 3]),
    (["--endpoint", ENDPOINT], [3, 1]),
    (["--endpoint", "screen"], []),  # exact, not "contains"
    (["--model", MODEL], [1]),
    (["--model", "other"], [3]),
    (["--model", 'q"uote\\'], [4]),
    (["--model", "cls"], []),
    (["--version", "2"], [2, 1]),  # entry 2 has no "versions": derived from before/after
    (["--version", "3"], []),  # the rollback from v3 to v2 (entry 2) is about v2, its main version
    (["--version", "5"], [3]),
    (["--version", "2", "--endpoint", ENDPOINT], [1]),
    (["--version", "2", "--limit", "1"], [2]),
    (["--model", MODEL, "--version", "5"], []),
    (["--actor", "alice", "--from", "2026-11-28"], [3]),
])
def test_audit_filters(trail, capsys, argv, seqs):
    assert _seqs(trail, capsys, *argv) == seqs


def test_audit_model_and_version_filters_scan_in_pages_and_limit_after_filtering(container, capsys, monkeypatch):
    c = container
    monkeypatch.setattr(c.audit, "PAGE", 2)
    for i in range(1, 10):  # odd entries involve v7, even ones v8
        c.audit.append(actor="alice", action="rollback", target=ENDPOINT, result="ok",
                       details={"model": MODEL, "versions": ["7" if i % 2 else "8"]})
    assert _seqs(c, capsys, "--version", "7", "--limit", "3") == [9, 7, 5]
    assert _seqs(c, capsys, "--version", "7", "--limit", "0") == [9, 7, 5, 3, 1]
    assert _seqs(c, capsys, "--model", MODEL, "--version", "8") == [8, 6, 4, 2]


AUDIT_COLS = ["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "VERSIONS", "RESULT", "REASON"]


def test_audit_table_has_a_header_and_readable_times(trail, capsys):
    code, out, _ = run(trail, capsys, "audit", "--endpoint", ENDPOINT)
    assert code == 0
    header, *lines = out.rstrip("\n").split("\n")
    assert header.split() == AUDIT_COLS
    assert _columns(header, lines[0], AUDIT_COLS) == {
        "SEQ": "3", "TIME": "2026-11-28 23:30:00 UTC", "ACTOR": "alice", "ACTION": "start_canary",
        "TARGET": ENDPOINT, "VERSIONS": "5", "RESULT": "refused", "REASON": "—"}
    assert lines[1].strip() == "! policy: no"  # the error, under its entry
    assert _columns(header, lines[2], AUDIT_COLS)["TIME"] == "2026-11-26 12:00:00 UTC"
    code, out, _ = run(trail, capsys, "audit", "--endpoint", "nope")
    assert (code, out.strip()) == (0, "(no audit entry matches)")


@pytest.mark.parametrize("argv,word", [
    (["--from", "yesterday"], "--from 'yesterday' is not an ISO date"),
    (["--to", "2026-02-30"], "--to '2026-02-30' is not an ISO date"),
    (["--from", "2026-11-28", "--to", "2026-11-27"], "--from 2026-11-28 is after --to 2026-11-27"),
])
def test_audit_invalid_time_filters_exit_2(trail, capsys, argv, word):
    code, out, err = run(trail, capsys, "audit", *argv)
    assert code == 2 and word in err and out == ""
    code, out, _ = run(trail, capsys, "audit", "--json", *argv)
    assert code == 2 and word in json.loads(out)["message"]


def test_requests_lists_a_request_that_can_no_longer_apply_as_void(container, capsys):
    c = container
    code, out, _ = run(c, capsys, "request-promotion", "--endpoint", ENDPOINT, "--version", "2", "--reason", "r",
                       "--as", "alice", "--json")
    rid = json.loads(out)["outcome"]["request_id"]
    run(c, capsys, "abort-canary", "--endpoint", ENDPOINT, "--reason", "bad canary", "--as", "alice")
    code, out, _ = run(c, capsys, "requests", "--status", "pending", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = run(c, capsys, "requests", "--status", "void", "--json")
    (req,) = json.loads(out)
    assert req["id"] == rid and req["status"] == "void" and "canary" in req["decision_reason"]
    code, _, err = run(c, capsys, "approve", str(rid), "--as", "bob")
    assert code == 6 and "void" in err


def test_audit_filters_find_what_the_actions_wrote(container, capsys):
    c = container
    run(c, capsys, "abort-canary", "--endpoint", ENDPOINT, "--reason", "bad canary", "--as", "alice")
    run(c, capsys, "abort-canary", "--endpoint", ENDPOINT, "--reason", "again", "--as", "carol")  # refused
    assert _seqs(c, capsys, "--model", MODEL) == [2, 1]
    assert _seqs(c, capsys, "--model", MODEL, "--version", "2", "--result", "ok") == [1]  # the canary it removed
    assert _seqs(c, capsys, "--model", "other") == []
    assert _seqs(c, capsys, "--endpoint", ENDPOINT, "--from", "2026-11-26", "--to", "2026-11-26") == [2, 1]
    assert _seqs(c, capsys, "--from", "2026-11-27") == []
