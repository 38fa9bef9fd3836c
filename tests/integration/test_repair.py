"""Nothing half-done, with real processes: a child process applying an action dies (``os._exit(137)``) between
the endpoint write and the registry alias move; a new container finds it (the child is gone on this machine),
every read that matters says "needs repair" with the exact difference (``needs_repair``, ``requests``, the CLI
``endpoints`` and ``requests``), ``repair`` dry-runs and applies through the CLI, the audit chain verifies and
nothing is left applying. SQLite and PostgreSQL, a direct action and an approval."""

from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from services.cli import main
from tests.conftest import ENDPOINT, MODEL, make_container
from tests.integration.crash_worker import KILLED

NO_APPROVAL = {"defaults": {"require_approval": []}}


def crash(c, action: str, *, policy: dict | None = None, request_id: int | None = None) -> None:
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_worker, args=(action, c.settings.mlflow_tracking_uri, c.settings.database_url,
                                          str(c.settings.data_dir), policy, request_id))
    p.start()
    p.join(timeout=120)
    assert p.exitcode == KILLED, f"the child was to die between the endpoint write and the alias move: {p.exitcode}"


def _worker(*args):
    from tests.integration.crash_worker import run

    run(*args)


def cli(c, capsys, *argv) -> tuple[int, str]:
    code = main(list(argv), container=c)
    out, err = capsys.readouterr()
    return code, out + err


def state(c):
    ep = c.serving.get_endpoint(ENDPOINT)
    return ep.stable_version, ep.canary_version, ep.canary_weight, c.registry.aliases(MODEL).get("champion")


def test_an_approval_killed_after_the_endpoint_write_is_found_shown_and_repaired(container, clock, capsys):
    c = container
    alice = c.directory.get("alice")
    rid = c.actions.execute(c.actions.plan(alice, "request_promotion", ENDPOINT, version="2"), alice, "v2").request_id
    crash(c, "approve", request_id=rid)

    new = make_container(c.settings.mlflow_tracking_uri, c.settings.database_url, c.settings.data_dir, clock=clock)
    assert state(new) == ("2", None, 0, "1"), "the endpoint serves v2, the registry's champion is still v1"
    assert new.approvals.get(rid).status == "applying"
    (f,) = new.actions.needs_repair()
    assert f.lines[0] == f"endpoint {ENDPOINT} serves v2 as stable, registry champion is v1"
    assert f.lines[1].startswith(f"request #{rid} (promote version v2, requested by alice) applying since "
                                 "2026-11-26 12:00:00 UTC by bob — the process applying it (pid ")
    assert "stopped; the last step it recorded: endpoint written" in f.lines[1]
    assert "the champion was NOT moved (still v1, should be v2)" in f.lines[1]
    (req,) = new.actions.requests(status="applying")
    assert req["needs_repair"].startswith(f"request #{rid} (promote version v2")
    from services.worker import say_needs_repair  # what `worker` and `up` say when they start

    said: list[str] = []
    assert say_needs_repair(new, said.append) == 1
    assert said[0].startswith(f"NEEDS REPAIR {ENDPOINT}: endpoint {ENDPOINT} serves v2 as stable")
    assert said[0].endswith(f"(python -m services repair --endpoint {ENDPOINT} --dry-run)")

    code, out = cli(new, capsys, "endpoints")
    assert code == 0 and "NEEDS REPAIR" in out.splitlines()[1]
    assert f"! NEEDS REPAIR: endpoint {ENDPOINT} serves v2 as stable, registry champion is v1" in out
    assert f"repair --endpoint {ENDPOINT}" in out
    code, out = cli(new, capsys, "requests", "--json")
    assert code == 0 and json.loads(out)[0]["needs_repair"] == req["needs_repair"]
    code, out = cli(new, capsys, "requests")
    assert "applying (NEEDS REPAIR)" in out

    code, out = cli(new, capsys, "repair", "--endpoint", ENDPOINT, "--dry-run", "--as", "alice")
    assert code == 0 and "(dry run: nothing changed)" in out
    assert f"move {MODEL}@champion from v1 to v2" in out and f"mark request #{rid} approved" in out
    assert state(new) == ("2", None, 0, "1")
    code, out = cli(new, capsys, "repair", "--endpoint", ENDPOINT, "--reason", "the approval process died", "--as",
                    "carol")
    assert code == 7, "a viewer may not repair"
    code, out = cli(new, capsys, "repair", "--endpoint", ENDPOINT, "--reason", "the approval process died", "--as",
                    "alice")
    assert code == 0 and f"{ENDPOINT} repaired: moved {MODEL}@champion from v1 to v2" in out

    assert state(new) == ("2", None, 0, "2")
    req = new.approvals.get(rid)
    assert (req.status, req.decided_by) == ("approved", "bob")
    assert new.actions.needs_repair() == [] and new.actions.requests(status="applying") == []
    assert new.intents.unfinished() == []
    entry = new.audit.entries(limit=1)[0]
    assert (entry.actor, entry.action, entry.result, entry.target) == ("alice", "repair", "ok", ENDPOINT)
    assert entry.details["finished"][0]["request_id"] == rid
    code, out = cli(new, capsys, "verify-audit")
    assert code == 0 and "audit chain OK" in out
    code, out = cli(new, capsys, "repair", "--endpoint", ENDPOINT, "--dry-run", "--as", "alice")
    assert code == 6 and "needs no repair" in out
    new.engine.dispose()


def test_a_direct_action_killed_between_the_endpoint_write_and_the_alias_move(registry_template, database_url,
                                                                              tmp_path, clock, capsys):
    from tests.conftest import fresh_registry

    c = make_container(fresh_registry(registry_template, tmp_path / "reg"), database_url, tmp_path, clock=clock,
                       policy=NO_APPROVAL)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1", canary_version="2", canary_weight=20)
    crash(c, "promote_canary", policy=NO_APPROVAL)
    assert state(c) == ("2", None, 0, "1")
    (f,) = c.actions.needs_repair()
    assert "alice's promote canary v2 started 2026-11-26 12:00:00 UTC" in f.lines[1]
    dana = c.directory.get("dana")
    plan = c.actions.plan(dana, "repair", ENDPOINT)
    assert plan.registry_changes == [{"model": MODEL, "alias": "champion", "from": "1", "to": "2"}]
    out = c.actions.execute(plan, dana, "the promotion's process died")
    assert out.status == "applied" and state(c) == ("2", None, 0, "2")
    assert c.actions.needs_repair() == [] and c.audit.verify().ok
    assert [i.state for i in c.intents.unfinished()] == []
    c.engine.dispose()


def test_two_repairs_at_the_same_moment_one_wins(container, clock, tmp_path):
    import threading

    from services.errors import ConsoleError

    c = container
    alice = c.directory.get("alice")
    rid = c.actions.execute(c.actions.plan(alice, "request_promotion", ENDPOINT, version="2"), alice, "v2").request_id
    crash(c, "approve", request_id=rid)
    other = make_container(c.settings.mlflow_tracking_uri, c.settings.database_url, tmp_path, clock=clock)
    plans = {"alice": c.actions.plan(alice, "repair", ENDPOINT),
             "dana": other.actions.plan(other.directory.get("dana"), "repair", ENDPOINT)}
    barrier, results = threading.Barrier(2), {}

    def repair(cont, name):
        barrier.wait()
        try:
            results[name] = cont.actions.execute(plans[name], cont.directory.get(name), "mine").status
        except ConsoleError as exc:
            results[name] = exc.kind

    threads = [threading.Thread(target=repair, args=(cont, name)) for cont, name in ((c, "alice"), (other, "dana"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results.values()) in (["applied", "conflict"], ["applied", "precondition_failed"]), results
    assert state(c) == ("2", None, 0, "2") and c.approvals.get(rid).status == "approved"
    oks = [e for e in c.audit.entries() if e.action == "repair" and e.result == "ok"]
    assert len(oks) == 1 and c.audit.verify().ok
    other.engine.dispose()


@pytest.mark.parametrize("when", ["within the lease", "after the lease"])
def test_an_action_in_progress_is_not_taken_for_a_stopped_one(container, clock, when):
    """A live owner (this process) within its lease is being applied right now; past its lease it is stuck."""
    c = container
    alice = c.directory.get("alice")
    plan = c.actions.plan(alice, "set_canary_weight", ENDPOINT, weight=40)
    c.actions.executor.begin(plan, "alice")  # the intent of an action that is running right now
    if when == "after the lease":
        clock.advance(minutes=2, seconds=1)
        (f,) = c.actions.needs_repair()
        assert "gave no sign of life since" in f.summary and "the process still runs but hangs" in f.summary
        assert f.outcomes == ("not_applied",)
    else:
        assert c.actions.needs_repair() == [] and len(c.actions.in_progress()) == 1
