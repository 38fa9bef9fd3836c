"""The command line with MLOPS_AUTH_MODE=oidc against a real OpenID Connect provider (oidc-provider-mock in its
own process): who acts comes from a bearer token (MLOPS_TOKEN) verified against the issuer's published keys;
a missing, expired, forged or misdirected token, and ``--as``, are refused with exit 7 and audited; the
token's subject is who requests, approves and appears in the audit trail; the roles come from its groups."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from services.cli import main
from tests.conftest import ENDPOINT, ROOT, fresh_registry, make_container
from tests.oidc_provider import CLIENT_ID, oidc_provider

ROLE_MAP = "ml-approvers=approver,ml-ops=operator+requester"


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    with oidc_provider(tmp_path_factory.mktemp("oidc") / "provider.log") as p:
        p.add_user("00u-ci", name="CI pipeline", groups=["ml-ops"])
        p.add_user("00u-abby", name="Abby Approver", email="abby@example.com", groups=["ml-approvers"])
        p.add_user("00u-vera", name="Vera Viewer", groups=["marketing"])
        yield p


def oidc_env(provider) -> dict:
    return {"MLOPS_AUTH_MODE": "oidc", "MLOPS_OIDC_ROLE_MAP": ROLE_MAP, "MLOPS_OIDC_ISSUER": provider.base,
            "MLOPS_OIDC_AUDIENCE": CLIENT_ID, "MLOPS_OIDC_TIMEOUT_SECONDS": "5"}


@pytest.fixture
def oidc(registry_template, tmp_path, clock, provider, monkeypatch):
    """A container in oidc mode (SQLite) whose clock is now: the provider's tokens are issued at real time."""
    clock.now = datetime.now(UTC)
    c = make_container(fresh_registry(registry_template, tmp_path / "reg"), f"sqlite:///{tmp_path / 'console.db'}",
                       tmp_path, clock=clock, **oidc_env(provider))
    c.serving.ensure_endpoint(ENDPOINT, "cls model ü'%_", "1", canary_version="2", canary_weight=20)
    for name in ("MLOPS_TOKEN", "MLOPS_TOKEN_FILE", "MLOPS_ACTOR"):
        monkeypatch.delenv(name, raising=False)
    yield c
    c.engine.dispose()


def run(c, capsys, monkeypatch, token: str | None, *argv: str):
    if token is None:
        monkeypatch.delenv("MLOPS_TOKEN", raising=False)
    else:
        monkeypatch.setenv("MLOPS_TOKEN", token)
    code = main(list(argv), container=c)
    out, err = capsys.readouterr()
    return code, out, err


REQUEST = ("request-promotion", "--endpoint", ENDPOINT, "--version", "2", "--reason", "pipeline 9 passed")


def test_a_valid_token_acts_as_its_subject_with_its_groups_roles(oidc, provider, capsys, monkeypatch):
    code, out, err = run(oidc, capsys, monkeypatch, provider.id_token("00u-ci"), *REQUEST, "--json")
    assert code == 0, err
    rid = json.loads(out)["outcome"]["request_id"]
    assert oidc.approvals.get(rid).requester == "00u-ci"
    (entry,) = oidc.audit.entries(action="request_promotion")
    assert (entry.actor, entry.result) == ("00u-ci", "requested")
    assert entry.details["actor_name"] == "CI pipeline" and entry.details["authenticated_by"] == "token"

    code, out, err = run(oidc, capsys, monkeypatch, provider.id_token("00u-ci"), "approve", str(rid))
    assert code == 7 and "approve" in err, "the pipeline may request, not approve"
    code, out, err = run(oidc, capsys, monkeypatch, provider.id_token("00u-abby"), "approve", str(rid), "--reason",
                         "looks good", "--json")
    assert code == 0, err
    assert json.loads(out)["endpoint_after"]["champion"] == "2"
    assert oidc.serving.get_endpoint(ENDPOINT).stable_version == "2"
    assert oidc.approvals.get(rid).decided_by == "00u-abby"


def test_a_viewer_token_is_refused_by_the_use_case_and_audited_under_its_subject(oidc, provider, capsys,
                                                                                  monkeypatch):
    code, _, err = run(oidc, capsys, monkeypatch, provider.id_token("00u-vera"), "abort-canary", "--endpoint",
                       ENDPOINT, "--reason", "x")
    assert code == 7 and "Vera Viewer (viewer) may not abort canary" in err, err
    (entry,) = oidc.audit.entries(action="abort_canary")
    assert (entry.actor, entry.result) == ("00u-vera", "refused")
    assert oidc.serving.get_endpoint(ENDPOINT).canary_version == "2"


def refused(c, capsys, monkeypatch, token, *extra, word: str):
    code, out, err = run(c, capsys, monkeypatch, token, *REQUEST, *extra, "--json")
    assert code == 7, (code, err)
    doc = json.loads(out)
    assert doc["error"] == "permission_denied" and word in doc["message"], doc
    entry = c.audit.entries(action="request_promotion")[0]
    assert entry.result == "refused" and word in entry.error, entry
    assert c.approvals.list(status="pending") == [], "nothing was filed"
    return entry


def test_an_expired_token_is_refused_and_audited(oidc, provider, capsys, monkeypatch, clock):
    token = provider.id_token("00u-ci")
    clock.advance(hours=1, minutes=2)  # the provider's tokens live 1 h; 60 s leeway for clock skew
    entry = refused(oidc, capsys, monkeypatch, token, word="the token expired at")
    assert entry.actor == "(unverified token)" and "subject '00u-ci'" in entry.error


def test_a_forged_token_is_refused_and_audited(oidc, provider, capsys, monkeypatch):
    forged = provider.forge("00u-abby", name="Abby Approver", groups=["ml-approvers", "ml-ops"])
    entry = refused(oidc, capsys, monkeypatch, forged, word="does not verify against")
    assert "claims subject '00u-abby', not verified" in entry.error


def test_a_token_for_another_audience_is_refused(oidc, provider, capsys, monkeypatch):
    refused(oidc, capsys, monkeypatch, provider.id_token("00u-ci", client_id="another-app"),
            word="is for audience ['another-app'], not 'mlops-console'")


def test_no_token_and_as_are_refused(oidc, provider, capsys, monkeypatch):
    entry = refused(oidc, capsys, monkeypatch, None, word="no token: set MLOPS_TOKEN")
    assert entry.actor == "(no token)"
    refused(oidc, capsys, monkeypatch, provider.id_token("00u-ci"), "--as", "alice", word="--as is not accepted")


def test_an_unreachable_issuer_is_unavailable_and_audited(registry_template, tmp_path, provider, capsys,
                                                          monkeypatch):
    from tests.conftest import free_port

    env = {**oidc_env(provider), "MLOPS_OIDC_ISSUER": f"http://127.0.0.1:{free_port()}"}
    c = make_container(fresh_registry(registry_template, tmp_path / "reg"), f"sqlite:///{tmp_path / 'c.db'}",
                       tmp_path, **env)
    c.serving.ensure_endpoint(ENDPOINT, "cls model ü'%_", "1")
    code, _, err = run(c, capsys, monkeypatch, provider.id_token("00u-ci"), *REQUEST)
    assert code == 8 and "cannot fetch the issuer's discovery document" in err, err
    assert c.audit.entries(action="request_promotion")[0].result == "failed"
    c.engine.dispose()


def test_the_cli_process_takes_its_identity_from_the_token(oidc, provider):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}, **oidc_env(provider),
           "MLFLOW_TRACKING_URI": oidc.settings.mlflow_tracking_uri, "MLOPS_DATABASE_URL": oidc.settings.database_url,
           "MLOPS_DATA_DIR": str(oidc.settings.data_dir), "MLOPS_POLICY_FILE": str(ROOT / "deploy" / "policy.yaml")}

    def cli(token: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "services", *args], cwd=ROOT, env={**env, "MLOPS_TOKEN": token},
                              capture_output=True, text=True, timeout=120)

    forged = cli(provider.forge("00u-ci", groups=["ml-ops"]), *REQUEST)
    assert forged.returncode == 7 and "forged" in forged.stderr, forged.stderr
    ok = cli(provider.id_token("00u-ci"), "set-canary", "--endpoint", ENDPOINT, "--version", "2", "--weight", "30",
             "--reason", "pipeline 10", "--json")
    assert ok.returncode == 0, ok.stderr
    assert oidc.serving.get_endpoint(ENDPOINT).canary_weight == 30
    entries = oidc.audit.entries()
    assert [(e.actor, e.result) for e in entries[:2]] == [("00u-ci", "ok"), ("(unverified token)", "refused")]


def test_acknowledging_an_alert_takes_the_token_too(oidc, provider, capsys, monkeypatch):
    code, _, err = run(oidc, capsys, monkeypatch, None, "ack", "12345")
    assert code == 7 and "no token" in err
    code, _, err = run(oidc, capsys, monkeypatch, provider.id_token("00u-vera"), "ack", "12345")
    assert code == 7 and "Vera Viewer is a viewer" in err, err
    code, _, err = run(oidc, capsys, monkeypatch, provider.id_token("00u-ci"), "ack", "12345")
    assert code == 4 and "no alert '12345'" in err, "verified: on to the use case, which finds no such alert"
    assert [(e.actor, e.result) for e in oidc.audit.entries(action="acknowledge_alert")] == [
        ("00u-ci", "refused"), ("00u-vera", "refused"), ("(no token)", "refused")]
