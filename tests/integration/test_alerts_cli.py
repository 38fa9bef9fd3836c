"""``python -m services alerts`` and ``ack`` on SQLite and PostgreSQL: the aligned table (firing first), JSON,
the filters, exit codes; acknowledging is recorded in the audit trail, refusals included (unknown alert,
unknown or missing identity, Alertmanager's alerts), and a second acknowledgement keeps the first. An
Alertmanager that cannot be read is a warning beside the console's own alerts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest

from services.alerts import AlertRule
from services.alerts.alertmanager import AlertmanagerAlerts
from services.cli import main
from tests.conftest import ROOT, free_port, make_container

RULE = AlertRule("canary-errors", "error_rate", timedelta(minutes=1), above=0.1, role="canary", severity="page")
LAT = AlertRule("p95-latency-slo", "p95_latency_ms", timedelta(minutes=5), above=500, severity="ticket")


@pytest.fixture
def c(database_url, tmp_path, clock):
    container = make_container("http://127.0.0.1:9", database_url, tmp_path, clock=clock)  # no registry needed
    yield container
    container.engine.dispose()


def cli(capsys, c, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv), container=c)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def three(c, clock):
    """An old resolved alert, an older firing one on another endpoint, the newest firing one."""
    t0 = clock()
    old = c.alerts.fire("screening", LAT, t0 - timedelta(hours=3), 812.0, "p95_latency_ms 812 ms > 500 ms over 5m")
    c.alerts.resolve("screening", LAT.name, t0 - timedelta(hours=2))
    other = c.alerts.fire("fraud", LAT, t0 - timedelta(hours=1), 640.0, "p95_latency_ms 640 ms > 500 ms over 5m")
    new = c.alerts.fire("screening", RULE, t0 - timedelta(minutes=2), 0.3, "canary error_rate 30.0% > 10.0% over 1m")
    return old, other, new


def test_alerts_table_lists_firing_first_aligned(c, capsys, three):
    old, other, new = three
    code, out, err = cli(capsys, c, "alerts")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATE", "SEVERITY", "ENDPOINT", "RULE", "STARTED", "RESOLVED", "VALUE",
                                "ACK", "SUMMARY"]
    assert [ln.split()[0] for ln in lines[1:]] == [new.id, other.id, old.id], "firing (newest first), then resolved"
    assert lines[1].split()[1:5] == ["FIRING", "page", "screening", "canary-errors"]
    assert lines[3].split()[1] == "resolved" and "2026-11-26 10:00:00 UTC" in lines[3]
    col = lines[0].index("ENDPOINT")
    assert all(ln[col:].startswith(("screening", "fraud", "ENDPOINT")) for ln in lines), "aligned columns"
    assert lines[1].endswith("canary error_rate 30.0% > 10.0% over 1m")


def test_alerts_json_and_filters(c, capsys, three, clock):
    old, other, new = three
    code, out, _ = cli(capsys, c, "alerts", "--json")
    data = json.loads(out)
    assert code == 0 and [d["id"] for d in data] == [new.id, other.id, old.id]
    expected = {"endpoint": "screening", "rule": "canary-errors", "state": "firing", "value": 0.3, "severity": "page",
                "source": "console", "acknowledged_by": None, "started_at": "2026-11-26T11:58:00.000000Z",
                "resolved_at": None}
    assert {k: data[0][k] for k in expected} == expected

    def ids(*argv):
        code, out, err = cli(capsys, c, "alerts", "--json", *argv)
        assert code == 0, err
        return [d["id"] for d in json.loads(out)]

    assert ids("--state", "resolved") == [old.id]
    assert ids("--state", "firing", "--endpoint", "screening") == [new.id]
    assert ids("--endpoint", "nowhere") == []
    assert ids("--from=-150m", "--to=-90m") == [old.id], "active in [09:30, 10:30): only the old one"
    assert ids("--from", "2026-11-26T10:30", "--to", "2026-11-26T11:30") == [other.id], "old ended at 10:00"
    assert ids("--from=-30m") == [new.id, other.id]
    assert ids("--limit", "1") == [new.id]
    code, out, _ = cli(capsys, c, "alerts", "--endpoint", "nowhere")
    assert (code, out.strip()) == (0, "(no alerts)")


def test_alerts_refuses_bad_input(c, capsys):
    code, _, err = cli(capsys, c, "alerts", "--from", "yesterday-ish")
    assert code == 2 and "is not now, -30m/-24h/-7d" in err
    code, _, err = cli(capsys, c, "alerts", "--from=-1h", "--to=-2h")
    assert code == 2 and "after it ends" in err
    with pytest.raises(SystemExit) as info:
        main(["alerts", "--state", "open"], container=c)
    assert info.value.code == 2


def test_ack_is_recorded_in_the_audit_trail_and_the_first_stays(c, capsys, three, clock):
    _, _, new = three
    clock.advance(minutes=1)
    code, out, err = cli(capsys, c, "ack", new.id, "--as", "alice", "--note", "looking at the canary")
    assert code == 0, err
    assert out.strip() == (f"alert {new.id} (screening · canary-errors) acknowledged by alice at "
                           "2026-11-26 12:01:00 UTC")
    entry = c.audit.entries(limit=1)[0]
    assert (entry.actor, entry.action, entry.target, entry.result, entry.reason) == (
        "alice", "acknowledge_alert", "screening", "ok", "looking at the canary")
    assert entry.details["alert_id"] == new.id and entry.details["rule"] == "canary-errors"
    assert (entry.before, entry.after) == ({"acknowledged_by": None}, {"acknowledged_by": "alice"})
    assert [e.seq for e in c.audit.entries(endpoint="screening", action="acknowledge_alert")] == [entry.seq]

    clock.advance(minutes=1)
    code, out, _ = cli(capsys, c, "ack", new.id, "--as", "bob", "--json")
    data = json.loads(out)
    assert code == 0 and (data["acknowledged_by"], data["acknowledged_at"]) == ("alice", "2026-11-26T12:01:00.000000Z")
    second = c.audit.entries(limit=1)[0]
    assert (second.actor, second.result, second.details["already_acknowledged_by"]) == ("bob", "ok", "alice")
    code, out, _ = cli(capsys, c, "alerts", "--state", "firing", "--endpoint", "screening")
    header, row = out.splitlines()[:2]
    assert row[header.index("ACK"):].startswith("alice "), "the ACK column"
    assert c.audit.verify().ok


@pytest.mark.parametrize("argv,code,error", [
    (["ack", "999", "--as", "alice"], 4, "not_found: alert store: no alert '999'"),
    (["ack", "am:3f2a", "--as", "alice"], 6, "is Alertmanager's: acknowledge (silence) it in Alertmanager"),
    (["ack", "1", "--as", "mallory"], 7, "unknown identity 'mallory'"),
    (["ack", "1"], 2, "say who acknowledges: --as NAME"),
])
def test_refused_acks_exit_non_zero_and_are_audited(c, capsys, three, argv, code, error, monkeypatch):
    monkeypatch.delenv("MLOPS_ACTOR", raising=False)
    before = c.audit.count()
    got, out, err = cli(capsys, c, *argv)
    assert got == code and error.split(": ")[-1] in err
    entry = c.audit.entries(limit=1)[0]
    assert c.audit.count() == before + 1
    assert (entry.action, entry.target, entry.result) == ("acknowledge_alert", f"alert #{argv[1]}", "refused")
    assert error in entry.error
    assert all(a.acknowledged_by is None for a in c.alerts.alerts()), "nothing was acknowledged"


def test_an_unreadable_alertmanager_is_a_warning_beside_the_console_alerts(database_url, tmp_path, clock, capsys,
                                                                              three):
    dead = AlertmanagerAlerts(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    c2 = make_container("http://127.0.0.1:9", database_url, tmp_path, clock=clock)
    c2.overrides["external_alerts"] = dead
    try:
        code, out, err = cli(capsys, c2, "alerts", "--json")
        assert code == 0 and len(json.loads(out)) == 3
        assert err.startswith("warning: Alertmanager: cannot read alerts from http://127.0.0.1:")
        assert "showing the console's own alerts only" in err
    finally:
        c2.engine.dispose()


def test_the_commands_are_registered_with_python_m_services(database_url, tmp_path, three):
    env = {**os.environ, "MLOPS_DATABASE_URL": database_url, "MLOPS_DATA_DIR": str(tmp_path),
           "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "MLOPS_METRICS_SOURCE": "sql"}
    proc = subprocess.run([sys.executable, "-m", "services", "alerts", "--state", "firing", "--json"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [d["rule"] for d in json.loads(proc.stdout)] == ["canary-errors", "p95-latency-slo"]
    proc = subprocess.run([sys.executable, "-m", "services", "ack", "12345", "--as", "alice"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4 and "no alert '12345'" in proc.stderr
