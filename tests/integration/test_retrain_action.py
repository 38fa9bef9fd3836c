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


def _approve_and_die(*args):
    from tests.integration.crash_worker import approve_retraining

    approve_retraining(*args)


def test_an_approval_killed_after_its_run_started_is_repaired_to_approved(registry_template, tmp_path, clock, capsys):
    """A real child process approves, the local retraining runs and is recorded, and the process dies before the
    request is marked approved: the request is left applying (never approved with no run, nor failed with one),
    needs repair once the retraining lease has passed, and the repair finds the run and starts nothing."""
    import multiprocessing as mp

    from tests.integration.crash_worker import KILLED

    c = _world(registry_template, tmp_path, clock, APPROVAL)
    alice = c.directory.get("alice")
    rid = c.actions.execute(c.actions.plan(alice, "retrain", "clf-ep"), alice, "labels slip").request_id
    p = mp.get_context("spawn").Process(target=_approve_and_die, args=(
        c.settings.mlflow_tracking_uri, c.settings.database_url, str(tmp_path), APPROVAL, rid))
    p.start()
    p.join(timeout=300)
    assert p.exitcode == KILLED, p.exitcode

    assert c.approvals.get(rid).status == "applying"
    run = c.audit.entries(limit=1, action="retrain", result="ok")[0]
    assert run.details["request_id"] == rid and run.after["state"] == "succeeded"
    assert c.actions.needs_repair() == []  # within the retraining lease: it may still be starting
    clock.advance(minutes=31)
    (f,) = c.actions.needs_repair()
    assert f"its retraining WAS started: run {run.after['run_id']} (succeeded" in f.summary, f.summary
    assert main(["repair", "--endpoint", "clf-ep", "--reason", "the approver's process died", "--as", "alice"],
                container=c) == 0
    assert "repaired" in capsys.readouterr().out
    req = c.approvals.get(rid)
    assert (req.status, req.decided_by) == ("approved", "bob") and run.after["run_id"] in req.decision_reason
    assert sorted(v.version for v in c.registry.list_versions(NAME)) == ["1", "2"]  # nothing retrained twice
    assert c.actions.needs_repair() == [] and c.audit.verify().ok
    c.engine.dispose()
