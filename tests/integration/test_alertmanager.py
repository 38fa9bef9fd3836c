"""Alertmanager's alerts through the read-only adapter, against a REAL Alertmanager (Debian's
``prometheus-alertmanager``, installed by deploy/ensure-system.sh) on a free port: alerts POSTed to its v2 API
come back as console alerts on the endpoint their labels name, a silenced one says so, a resolved one and one
that names no endpoint are left out; a dead or wrong URL is Unavailable naming Alertmanager; the composition
root builds it only with the prometheus metrics source. Outside CI the test skips with a reason when the binary
is missing; under CI it fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import requests

from services.alerts.alertmanager import AlertmanagerAlerts, parse_time
from services.errors import Unavailable
from tests.conftest import free_port, wait_for
from tests.processes import stop_process

CONFIG = """route: {receiver: nowhere, group_wait: 1s}
receivers: [{name: nowhere}]
"""


def _binary() -> str:
    path = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if not path:
        why = "prometheus-alertmanager is not installed (deploy/ensure-system.sh installs Debian's package)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory):
    binary = _binary()
    d = tmp_path_factory.mktemp("alertmanager")
    (d / "alertmanager.yml").write_text(CONFIG)
    port = free_port()
    log = (d / "alertmanager.log").open("wb")
    proc = subprocess.Popen([binary, f"--config.file={d / 'alertmanager.yml'}", f"--storage.path={d / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("Alertmanager", lambda: requests.get(f"{url}/-/ready", timeout=2).ok or proc.poll() is not None,
                 timeout=30)
        assert proc.poll() is None, (d / "alertmanager.log").read_text(errors="replace")[-2000:]
        yield url
    finally:
        stop_process(proc, timeout=10)
        log.close()


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_alertmanager_alerts_read_as_console_alerts(alertmanager):
    now = datetime.now(UTC).replace(microsecond=0)
    started = now - timedelta(minutes=7)
    posted = [
        {"labels": {"alertname": "HighErrorRate", "endpoint": "cancer-screening", "severity": "critical"},
         "annotations": {"summary": "5xx above 10 % for 5 minutes"}, "startsAt": _iso(started)},
        {"labels": {"alertname": "SlowPredictor", "namespace": "models-prod", "inferenceservice": "fraud",
                    "severity": "warning"}, "annotations": {"description": "p95 over 800 ms"},
         "startsAt": _iso(now - timedelta(minutes=2))},
        {"labels": {"alertname": "Noisy", "endpoint": "cancer-screening", "severity": "warning"},
         "annotations": {"summary": "known, silenced"}, "startsAt": _iso(now - timedelta(minutes=1))},
        {"labels": {"alertname": "NodeDiskFull", "instance": "node-3"}, "startsAt": _iso(now)},
        {"labels": {"alertname": "Recovered", "endpoint": "cancer-screening"},
         "startsAt": _iso(now - timedelta(hours=2)), "endsAt": _iso(now - timedelta(hours=1))},
    ]
    assert requests.post(f"{alertmanager}/api/v2/alerts", json=posted, timeout=5).status_code == 200
    silence = {"matchers": [{"name": "alertname", "value": "Noisy", "isRegex": False, "isEqual": True}],
               "startsAt": _iso(now - timedelta(minutes=1)), "endsAt": _iso(now + timedelta(hours=1)),
               "createdBy": "test", "comment": "known issue"}
    assert requests.post(f"{alertmanager}/api/v2/silences", json=silence, timeout=5).status_code == 200

    am = AlertmanagerAlerts(alertmanager, timeout_s=5)

    def silenced_and_listed():
        found = am.alerts()
        noisy = [a for a in found if a.rule == "Noisy"]
        return found if len(found) == 3 and noisy and "silenced" in noisy[0].summary else None

    found = wait_for("the alerts and the silence to show", silenced_and_listed, timeout=30)
    assert [(a.rule, a.endpoint, a.severity, a.state, a.source) for a in found] == [
        ("Noisy", "cancer-screening", "ticket", "firing", "alertmanager"),
        ("SlowPredictor", "models-prod/fraud", "ticket", "firing", "alertmanager"),
        ("HighErrorRate", "cancer-screening", "page", "firing", "alertmanager")], "newest first"
    high = found[2]
    assert high.started_at == started and high.summary == "5xx above 10 % for 5 minutes"
    assert high.id.startswith("am:") and len(high.id) > 3 and high.resolved_at is None
    assert found[1].summary == "p95 over 800 ms"
    assert found[0].summary == "known, silenced (silenced in Alertmanager)"
    # the store's filters
    assert [a.rule for a in am.alerts(endpoint="cancer-screening")] == ["Noisy", "HighErrorRate"]
    assert am.alerts(state="resolved") == []
    assert [a.rule for a in am.alerts(end=now - timedelta(minutes=5))] == ["HighErrorRate"]
    assert [a.rule for a in am.alerts(limit=1)] == ["Noisy"]
    assert am.get(high.id) == high and am.get("12") is None and am.get("am:nope") is None


def test_a_dead_or_wrong_alertmanager_is_unavailable_naming_it(alertmanager):
    dead = AlertmanagerAlerts(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    with pytest.raises(Unavailable, match="cannot read alerts from http://127.0.0.1") as info:
        dead.alerts()
    assert info.value.source == "Alertmanager"
    wrong = AlertmanagerAlerts(f"{alertmanager}/nothing-here", timeout_s=2)  # a real server, a wrong path
    with pytest.raises(Unavailable, match="answered HTTP 404") as info:
        wrong.alerts()
    assert info.value.source == "Alertmanager"


def test_the_container_reads_alertmanager_only_with_prometheus(alertmanager, tmp_path):
    from services.composition import build
    from services.settings import Settings

    base = {"MLOPS_DATA_DIR": str(tmp_path), "MLOPS_ALERTMANAGER_URL": alertmanager + "/"}
    none = tmp_path / "none.toml"
    sql = build(Settings.from_env(base, secrets_path=none))
    assert sql.external_alerts is None, "the sql metrics source: no Alertmanager"
    prom = build(Settings.from_env({**base, "MLOPS_METRICS_SOURCE": "prometheus",
                                    "MLOPS_PROMETHEUS_URL": "http://127.0.0.1:9"}, secrets_path=none))
    assert isinstance(prom.external_alerts, AlertmanagerAlerts) and prom.external_alerts.url == alertmanager
    unset = build(Settings.from_env({"MLOPS_DATA_DIR": str(tmp_path), "MLOPS_METRICS_SOURCE": "prometheus",
                                     "MLOPS_PROMETHEUS_URL": "http://127.0.0.1:9"}, secrets_path=none))
    assert unset.external_alerts is None


def test_go_times_parse():
    assert parse_time("2026-11-26T12:00:00.123456789Z") == datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)
    assert parse_time("2026-11-26T13:00:00+01:00") == datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert parse_time("2026-11-26T12:00:00.5Z") == datetime(2026, 11, 26, 12, 0, 0, 500000, tzinfo=UTC)
