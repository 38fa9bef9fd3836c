"""``retrain`` as a guarded action on a real MLflow store and a real console database (SQLite), with the local
retrainer, through the command line: the dry run starts nothing; where the policy requires approval for
``retrain`` the command files a request and another person's approval runs the retraining; a second retraining
while the first is recorded open is refused."""

from __future__ import annotations

import json

from services.cli import main
from services.errors import PermissionDenied, PreconditionFailed
from tests.conftest import TEST_POLICY, fresh_registry, make_container
from tests.integration.test_retraining_local import NAME, _register_with_data

APPROVAL = {**TEST_POLICY, "defaults": {**TEST_POLICY["defaults"], "require_approval": ["promote", "retrain"]}}


def _world(registry_template, tmp_path, clock, policy=None):
    uri = fresh_registry(registry_template, tmp_path / "reg")
    _register_with_data(uri, tmp_path)
    c = make_container(uri, f"sqlite:///{tmp_path / 'console.db'}", tmp_path, clock=clock, policy=policy)
    c.serving.ensure_endpoint("clf-ep", NAME, "1")
    return c


def test_the_dry_run_starts_nothing_and_approval_runs_the_local_retraining(registry_template, tmp_path, clock,
                                                                           capsys):
    c = _world(registry_template, tmp_path, clock, APPROVAL)
    assert main(["retrain", "--endpoint", "clf-ep", "--from=-2d", "--dry-run", "--as", "alice", "--json"],
                container=c) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    r = plan["retraining"]
    assert (r["parent_version"], r["model"], r["retrainer"], plan["needs_approval"]) == ("1", NAME, "local", True)
    assert plan["backend_preview"]["request"]["version"] == "1" and "challenger" in plan["backend_preview"]["registers"]
    assert c.audit.entries(limit=5) == [] and [v.version for v in c.registry.list_versions(NAME)] == ["1"]

    assert main(["retrain", "--endpoint", "clf-ep", "--reason", "labels slip", "--as", "alice", "--json"],
                container=c) == 0
    filed = json.loads(capsys.readouterr().out)
    assert filed["status"] == "pending_approval" and [v.version for v in c.registry.list_versions(NAME)] == ["1"]
    assert main(["approve", str(filed["request_id"]), "--as", "alice"], container=c) == PermissionDenied.exit_code
    assert main(["approve", str(filed["request_id"]), "--reason", "go", "--as", "bob", "--json"], container=c) == 0
    capsys.readouterr()
    assert c.registry.aliases(NAME) == {"champion": "1", "challenger": "2"}
    assert c.approvals.get(filed["request_id"]).status == "approved"
    trail = [(e.actor, e.action, e.result) for e in reversed(c.audit.entries(limit=None))]
    assert trail == [("alice", "retrain", "requested"), ("alice", "approve", "refused"), ("alice", "retrain", "ok"),
                     ("bob", "approve", "ok")]
    run = c.audit.entries(limit=1, action="retrain", result="ok")[0]
    assert run.after["new_version"] == "2" and run.details["approved_by"] == "bob"
    assert run.details["request"]["version"] == "1" and run.after["state"] == "succeeded"
    c.engine.dispose()


def test_directly_without_approval_and_never_while_one_is_open(registry_template, tmp_path, clock, capsys):
    c = _world(registry_template, tmp_path, clock)
    assert main(["retrain", "--endpoint", "clf-ep", "--reason", "try", "--as", "alice", "--json"], container=c) == 0
    assert json.loads(capsys.readouterr().out)["new_version"] == "2"
    # a pipeline's run that is still open, as the audit trail records it (webhook/airflow hand runs over)
    c.audit.append(actor="alice", action="retrain", target="clf-ep", result="ok", reason="by a pipeline",
                   before={"model": NAME, "version": "1"}, after={"run_id": "ext-1", "state": "queued"},
                   details={"model": NAME, "versions": ["1"]})
    assert main(["retrain", "--endpoint", "clf-ep", "--reason", "again", "--as", "alice"], container=c) == \
        PreconditionFailed.exit_code
    assert "retraining run ext-1 of clf-ep is still" in capsys.readouterr().err
    assert c.audit.entries(limit=1)[0].result == "refused"
    assert {v.version for v in c.registry.list_versions(NAME)} == {"1", "2"}
    c.engine.dispose()
