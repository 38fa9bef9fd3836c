"""Set scaling on the ``local`` backend (issue 12, local replicas): the guarded action end to end over the console
database — dry run (the exact UPDATE), compare-and-set, one audit entry per attempt, refusals audited — plus the
replica samples the gateway records and what the Capacity block reads from them. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from services.capacity import capacity, history
from services.errors import Conflict, Invalid, PreconditionFailed
from services.serving import Change, Scaling
from services.serving.local import DEFAULTS
from tests.conftest import ENDPOINT


def _json(v):
    return json.loads(v) if isinstance(v, str) else v


def test_local_endpoints_report_scaling_and_set_scaling_applies_the_dry_run(container):
    c, alice = container, container.directory.get("alice")
    ep = c.serving.get_endpoint(ENDPOINT)
    assert ep.scaling == Scaling(None, None, "concurrency", None)  # the gateway's defaults
    plan = c.actions.plan(alice, "set_scaling", ENDPOINT, min="2", max="3", target="2")
    assert plan.backend_preview == {"UPDATE endpoints WHERE": {"name": ENDPOINT, "resource_version": 1},
                                    "SET": {"min_replicas": 2, "max_replicas": 3, "scale_target": 2,
                                            "resource_version": 2}}
    assert c.serving.get_endpoint(ENDPOINT).scaling == ep.scaling  # a dry run
    out = c.actions.execute(plan, alice, "more workers for the campaign")
    assert out.status == "applied"
    after = c.serving.get_endpoint(ENDPOINT)
    assert after.scaling == Scaling(2, 3, "concurrency", 2) and after.resource_version == "2"
    assert after.state() == ep.state()  # what serves did not change
    assert after.revisions[0].name == "r2"
    (entry,) = [e for e in c.audit.entries() if e.action == "set_scaling"]
    assert entry.result == "ok" and entry.reason == "more workers for the campaign"
    assert _json(entry.before)["scaling"] == {"min_replicas": None, "max_replicas": None, "metric": "concurrency",
                                              "target": None}
    assert _json(entry.after)["scaling"] == {"min_replicas": 2, "max_replicas": 3, "metric": "concurrency",
                                             "target": 2}
    assert c.audit.verify().ok


def test_a_stale_plan_conflicts_and_bad_inputs_are_refused_and_audited(container):
    c, alice = container, container.directory.get("alice")
    plan = c.actions.plan(alice, "set_scaling", ENDPOINT, max=3)
    ep = c.serving.get_endpoint(ENDPOINT)
    c.serving.apply(ENDPOINT, Change("set_scaling", ep.resource_version, scaling=Scaling(max_replicas=2)),
                    actor="bob")  # someone else, meanwhile
    with pytest.raises(Conflict, match="changed since"):
        c.actions.execute(plan, alice, "late")
    assert c.serving.get_endpoint(ENDPOINT).scaling.max_replicas == 2
    for params, error in (({"min": 5}, Invalid),  # above the current maximum (2)
                          ({"min": 4, "max": 3}, Invalid), ({"max": -1}, Invalid), ({"min": -2}, Invalid),
                          ({"target": 0}, Invalid), ({"max": "two"}, Invalid), ({"min": 1.5}, Invalid),
                          ({}, Invalid), ({"max": 2}, PreconditionFailed),  # nothing to change
                          ({"min": 0}, PreconditionFailed)):  # the local gateway does not scale to zero
        with pytest.raises(error):
            c.actions.plan(alice, "set_scaling", ENDPOINT, **params)
    assert c.serving.get_endpoint(ENDPOINT).scaling == Scaling(None, 2, "concurrency", None)
    results = [e.result for e in c.audit.entries() if e.action == "set_scaling"]
    assert results.count("refused") >= 10 and "conflict" in results
    assert c.audit.verify().ok


def test_the_backend_itself_refuses_what_the_gateway_cannot_do(container):
    c = container
    rv = c.serving.get_endpoint(ENDPOINT).resource_version
    for bad in (Scaling(3, 2), Scaling(metric="cpu"), Scaling(max_replicas=0), Scaling(min_replicas=-1)):
        with pytest.raises(Invalid):
            c.serving.apply(ENDPOINT, Change("set_scaling", rv, scaling=bad), actor="alice")
    with pytest.raises(PreconditionFailed, match="does not scale to zero"):
        c.serving.apply(ENDPOINT, Change("set_scaling", rv, scaling=Scaling(min_replicas=0)), actor="alice")
    assert c.serving.get_endpoint(ENDPOINT).resource_version == rv


def test_replica_samples_feed_the_status_and_the_history(container, clock):
    c = container
    now = c.clock()
    ep = c.serving.get_endpoint(ENDPOINT)
    assert "has not served this endpoint" in c.serving.scaling_status(ep).note
    for i, (n1, n2, busy) in enumerate(((1, 1, 0), (2, 1, 2), (3, 1, 5), (1, 1, 0))):
        c.serving.record_replicas([(ENDPOINT, "1", n1, busy), (ENDPOINT, "2", n2, 0)],
                                  at=now - timedelta(minutes=30) + timedelta(minutes=5 * i))
    rows = c.serving.replica_history(ENDPOINT, now - timedelta(hours=1), now)
    assert [(v, n) for _, v, n in rows] == [("1", 1), ("2", 1), ("1", 2), ("2", 1), ("1", 3), ("2", 1), ("1", 1),
                                            ("2", 1)]
    stale = c.serving.scaling_status(ep)  # the last sample is 15 minutes old
    assert stale.current_replicas is None and "not running" in stale.note
    c.serving.record_replicas([(ENDPOINT, "1", 2, 3), (ENDPOINT, "2", 1, 0)], at=now)
    st = c.serving.scaling_status(ep)
    want = min(3, DEFAULTS["max_replicas"]) + 1  # v1: 3 in flight at target 1, up to the default maximum (the cores)
    assert (st.source, st.current_replicas, st.desired_replicas, st.note) == ("local gateway", 3, want, "")
    assert st.revisions == (("v1", 80, 2), ("v2", 20, 1))
    cap = capacity(c.serving, c.metrics, c.policy, ep, now)
    assert (cap.replicas, cap.replicas_source) == (3, "local gateway")
    h = history(c.serving, c.metrics, ENDPOINT, now - timedelta(hours=1), now + timedelta(minutes=1))
    assert max(n for _, v, n in h.replicas if v == "1") == 3 and not [n for n in h.notes if "replica" in n]


def test_the_cli_sets_scaling_on_the_local_backend(container, capsys):
    from services.cli import main

    c = container
    assert main(["set-scaling", "--endpoint", ENDPOINT, "--max", "2", "--dry-run", "--json", "--as", "alice"],
                container=c) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert plan["backend_preview"]["SET"] == {"max_replicas": 2, "resource_version": 2}
    assert c.serving.get_endpoint(ENDPOINT).scaling.max_replicas is None
    assert main(["set-scaling", "--endpoint", ENDPOINT, "--min", "-1", "--reason", "r", "--as", "alice"],
                container=c) == 2
    assert main(["set-scaling", "--endpoint", ENDPOINT, "--max", "2", "--reason", "r", "--as", "carol"],
                container=c) == 7
    assert main(["set-scaling", "--endpoint", ENDPOINT, "--min", "2", "--max", "2", "--reason", "steady", "--as",
                 "alice"], container=c) == 0
    assert f"Set scaling on {ENDPOINT}" in capsys.readouterr().out
    assert c.serving.get_endpoint(ENDPOINT).scaling == Scaling(2, 2, "concurrency", None)
