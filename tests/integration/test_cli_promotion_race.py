"""Ten ``python -m services`` processes promote on one endpoint at the same moment: exactly one wins, the nine
others are refused as conflicts (exit 5), and all ten attempts are audited in a chain that verifies.

"The same moment" is made exact, not hoped for: the test holds the endpoint's row (PostgreSQL: ``SELECT … FOR
UPDATE``; SQLite: the database's write lock) while the ten real CLI processes start, plan (every read they need:
endpoint, registry, gates) and reach the compare-and-set write, where they queue behind the test. Only when all
ten are seen waiting there (PostgreSQL: ``pg_stat_activity``; SQLite: each process's main thread sleeping in
SQLite's busy handler, read from ``/proc/PID/syscall``) does the test let go. Every audit entry then says that
its attempt planned on the same resource version: the race really happened.

Which promotion: **the command that writes**. Where an endpoint's policy lets an operator or a pipeline promote
directly (``require_approval`` without ``promote``), ``promote-canary`` and ``request-promotion --version V`` are
the promotion itself — two pipelines, or a person and a pipeline, promoting the same endpoint at once is the race
the issue describes, and half of them here want the canary (v2) and half want v1 back, so the winner's choice is
checked on the endpoint, the ``champion`` alias and the serving history. Under the demo policy (promotions need a
second person) filing requests changes nothing and cannot conflict; the promotion then happens when a request
is *approved*, through the same compare-and-set — so the second test races ten approvals of ten pending
requests for the same endpoint by ten approvers.

The ten processes start together (~10-20 s to import MLflow on two cores); the race itself is a fraction of a
second.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import ENDPOINT, MODEL, ROOT, TEST_POLICY, fresh_registry, make_container

N = 10
START_TIMEOUT = 180  # ten processes importing MLflow on a small shared machine
# Promotions need no approval on this endpoint: the CLI command is the promotion.
DIRECT = {**TEST_POLICY, "defaults": {**TEST_POLICY["defaults"], "require_approval": []}}
OPERATORS = [f"op{i}" for i in range(N)]
APPROVERS = [f"appr{i}" for i in range(N)]
REQUESTERS = [f"req{i}" for i in range(N)]
IDENTITIES = ",".join([f"{n}=operator+requester" for n in OPERATORS] + [f"{n}=approver" for n in APPROVERS]
                      + [f"{n}=requester" for n in REQUESTERS])
# x86-64 / arm64: nanosleep, clock_nanosleep (SQLite's busy handler sleeps between attempts at the write lock)
SLEEP_SYSCALLS = {"x86_64": {"35", "230"}, "aarch64": {"101", "115"}}.get(platform.machine(), set())


def _setup(registry_template, database_url: str, tmp_path: Path, policy: dict):
    uri = fresh_registry(registry_template, tmp_path / "reg")
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(json.dumps(policy))  # JSON is YAML
    c = make_container(uri, database_url, tmp_path, policy=policy, MLOPS_DEV_IDENTITIES=IDENTITIES,
                       MLOPS_ALLOW_DEV_AUTH="1")
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1", canary_version="2", canary_weight=20)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_TRACKING_URI", "KUBECONFIG"))}
    env.update({"MLFLOW_TRACKING_URI": uri, "MLOPS_DATABASE_URL": database_url, "MLOPS_DATA_DIR": str(tmp_path),
                "MLOPS_POLICY_FILE": str(policy_file), "MLOPS_DEV_IDENTITIES": IDENTITIES,
                "MLOPS_ALLOW_DEV_AUTH": "1",  # development identities on PostgreSQL: a test, nobody else reaches it
                "MLOPS_SERVING_BACKEND": "local", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                "GIT_PYTHON_REFRESH": "quiet"})
    return c, env


@contextmanager
def _holding_endpoint(c):
    """The endpoint's row locked (PostgreSQL) / the database's write lock (SQLite) until the block ends."""
    from services.store.db import writing
    from services.store.tables import endpoints

    with writing(c.engine) as conn:
        conn.execute(sa.select(endpoints.c.resource_version).where(endpoints.c.name == ENDPOINT).with_for_update())
        yield


def _waiting_at_write(c, procs: list[subprocess.Popen]) -> int:
    """How many of ``procs`` are waiting for the endpoint's write now."""
    if c.engine.dialect.name == "postgresql":
        with c.engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query ILIKE 'UPDATE endpoints%'")).scalar_one()
    waiting = 0
    for p in procs:
        try:
            nr = Path(f"/proc/{p.pid}/task/{p.pid}/syscall").read_text().split()[0]
        except (OSError, IndexError):
            continue
        waiting += nr in SLEEP_SYSCALLS
    return waiting


def _race(c, env: dict, commands: list[list[str]]) -> list[tuple[int, dict, str]]:
    """Start ``commands`` (CLI arguments) as processes while the endpoint is held; let go once every one waits at
    the write; return (exit code, JSON output, stderr) per command."""
    if c.engine.dialect.name == "sqlite" and not (SLEEP_SYSCALLS and Path("/proc/self/syscall").exists()):
        pytest.skip("seeing a process wait for SQLite's lock needs Linux /proc/PID/syscall on x86-64 or arm64")
    procs: list[subprocess.Popen] = []
    try:
        with _holding_endpoint(c):
            procs = [subprocess.Popen([sys.executable, "-m", "services", *cmd, "--json"], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cmd in commands]
            deadline, seen_all = time.monotonic() + START_TIMEOUT, 0
            # SQLite: all must be seen sleeping in 3 polls in a row (a process that merely paused is not waiting)
            needed = 1 if c.engine.dialect.name == "postgresql" else 3
            while seen_all < needed:
                done = [p for p in procs if p.poll() is not None]
                if done:
                    out, err = done[0].communicate()
                    pytest.fail(f"a CLI process ended before the race (exit {done[0].returncode}): {out} {err}")
                if time.monotonic() > deadline:
                    pytest.fail(f"only {_waiting_at_write(c, procs)} of {len(procs)} processes reached the endpoint's "
                                f"write within {START_TIMEOUT} s")
                seen_all = seen_all + 1 if _waiting_at_write(c, procs) == len(procs) else 0
                time.sleep(0.1)  # polling interval of a bounded loop
        results = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            results.append((p.returncode, json.loads(out) if out.strip() else {}, err))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def _check_audit(c, action_entries: list, planned_rv: str) -> None:
    assert sorted(e.result for e in action_entries) == ["conflict"] * (N - 1) + ["ok"]
    assert {e.before["resource_version"] for e in action_entries} == {planned_rv}, \
        "every attempt planned on the same state (the race happened)"
    for e in action_entries:
        if e.result == "conflict":
            assert "since the plan was made" in e.error, e.error  # what moved: the endpoint or the champion
    assert c.audit.verify().ok


def test_ten_cli_promotions_at_once_one_wins(registry_template, database_url, tmp_path):
    c, env = _setup(registry_template, database_url, tmp_path, DIRECT)
    start = c.serving.get_endpoint(ENDPOINT)
    # even: promote the canary (v2); odd: make v1 stable again, ending the canary
    commands = [["promote-canary", "--endpoint", ENDPOINT] if i % 2 == 0 else
                ["request-promotion", "--endpoint", ENDPOINT, "--version", "1"] for i in range(N)]
    commands = [cmd + ["--reason", f"pipeline {i}", "--as", OPERATORS[i]] for i, cmd in enumerate(commands)]

    results = _race(c, env, commands)

    codes = sorted(code for code, _, _ in results)
    assert codes == [0] + [5] * (N - 1), [(code, err[-300:]) for code, _, err in results]
    for code, out, err in results:
        if code == 5:
            assert out["error"] == "conflict" and "since the plan was made" in out["message"], out
            assert "Traceback" not in err
    winner = next(i for i, (code, _, _) in enumerate(results) if code == 0)
    want = "2" if winner % 2 == 0 else "1"
    assert results[winner][1]["outcome"]["status"] == "applied"

    ep = c.serving.get_endpoint(ENDPOINT)
    assert int(ep.resource_version) == int(start.resource_version) + 1, "exactly one write"
    assert (ep.stable_version, ep.canary_version) == (want, None)
    assert c.registry.get_model(MODEL).aliases["champion"] == want
    changes = c.history.changes(ENDPOINT)
    assert changes[-1].stable_version == want and changes[-1].actor == OPERATORS[winner]

    entries = c.audit.entries(limit=None)
    assert len(entries) == N
    assert sorted(e.actor for e in entries) == sorted(OPERATORS)
    _check_audit(c, entries, start.resource_version)
    ok = next(e for e in entries if e.result == "ok")
    assert ok.actor == OPERATORS[winner] and ok.after["stable_version"] == want
    c.engine.dispose()


def test_ten_cli_approvals_of_promotions_at_once_one_wins(registry_template, database_url, tmp_path):
    c, env = _setup(registry_template, database_url, tmp_path, TEST_POLICY)  # promotions need approval
    start = c.serving.get_endpoint(ENDPOINT)
    ids = []
    for i, name in enumerate(REQUESTERS):  # ten pending requests for the same endpoint (v2 and v1 alternating)
        actor = c.directory.get(name)
        plan = c.actions.plan(actor, "request_promotion", ENDPOINT, version="2" if i % 2 == 0 else "1")
        ids.append(c.actions.execute(plan, actor, f"pipeline {i}").request_id)
    assert len(set(ids)) == N

    results = _race(c, env, [["approve", str(rid), "--reason", "looks good", "--as", APPROVERS[i]]
                             for i, rid in enumerate(ids)])

    codes = sorted(code for code, _, _ in results)
    assert codes == [0] + [5] * (N - 1), [(code, err[-300:]) for code, _, err in results]
    winner = next(i for i, (code, _, _) in enumerate(results) if code == 0)
    want = "2" if winner % 2 == 0 else "1"
    ep = c.serving.get_endpoint(ENDPOINT)
    assert int(ep.resource_version) == int(start.resource_version) + 1, "exactly one write"
    assert (ep.stable_version, ep.canary_version) == (want, None)
    assert c.registry.get_model(MODEL).aliases["champion"] == want
    statuses = {r["id"]: r["status"] for r in c.actions.requests()}
    assert statuses[ids[winner]] == "approved"
    assert sorted(s for rid, s in statuses.items() if rid != ids[winner]) == ["failed"] * (N - 1)

    entries = c.audit.entries(limit=None)
    assert sorted(e.result for e in entries if e.action == "request_promotion") == ["requested"] * N
    approvals = [e for e in entries if e.action == "approve"]
    assert len(approvals) == N and sorted(e.actor for e in approvals) == sorted(APPROVERS)
    _check_audit(c, approvals, start.resource_version)
    c.engine.dispose()
