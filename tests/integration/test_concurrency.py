"""Two OS processes race conflicting actions on the same endpoint, round after round:
exactly one wins each round, the other gets a conflict, and every attempt is audited."""

from __future__ import annotations

import multiprocessing as mp
from collections import defaultdict

from tests.conftest import ENDPOINT, MODEL, fresh_registry, make_container

ROUNDS = 25


def test_exactly_one_winner_per_round(registry_template, database_url, tmp_path):
    uri = fresh_registry(registry_template, tmp_path / "reg")
    c = make_container(uri, database_url, tmp_path)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1", canary_version="2", canary_weight=20)
    start_rv = int(c.serving.get_endpoint(ENDPOINT).resource_version)

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(role, uri, database_url, str(tmp_path), ROUNDS, barrier, out))
             for role in ("A", "B")]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in range(2 * ROUNDS)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0

    by_round = defaultdict(list)
    for r, role, outcome, msg, rv in results:
        by_round[r].append((role, outcome, msg, rv))
    assert len(by_round) == ROUNDS
    for r, entries in by_round.items():
        outcomes = sorted(o for _, o, _, _ in entries)
        assert outcomes == ["conflict", "ok"], (r, entries)
        assert len({rv for *_, rv in entries}) == 1, f"round {r}: both planned on the same state"

    ep = c.serving.get_endpoint(ENDPOINT)
    assert int(ep.resource_version) == start_rv + ROUNDS, "one write per round, no lost or double update"
    audit = c.audit.entries(limit=None)
    assert len(audit) == 2 * ROUNDS
    assert sorted(e.result for e in audit) == ["conflict"] * ROUNDS + ["ok"] * ROUNDS
    assert c.audit.verify().ok
    winners = [e for e in audit if e.result == "ok"]
    last = max(winners, key=lambda e: e.seq)
    assert ep.canary_weight == last.after["canary_weight"]
    c.engine.dispose()


def _worker(*args):
    from tests.integration.race_worker import run

    run(*args)
