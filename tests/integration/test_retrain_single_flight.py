"""At most one retraining of an endpoint starting at a time (issue 12), on SQLite and PostgreSQL: the lease table
lets exactly one of many concurrent takers in; a second person retraining while a (slow, local-like) retraining is
still being started is refused with a conflict, audited, and starts nothing; once the first run is recorded, its
open state refuses the next start; a lease a stopped process never gave back lapses."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from services.audit.sql import SqlAuditTrail
from services.errors import Conflict
from services.identity import Actor
from services.retraining.leases_sql import SqlRetrainLeases
from services.retraining.usecases import request_retraining
from services.serving.local import LocalServingBackend
from services.store.db import make_engine
from tests.conftest import Clock, _pg_available, drop_pg, fresh_pg_url
from tests.fakes import FakeRetrainer

EP = "screening é'\"x"
ALICE, DANA = Actor("alice", ("operator",)), Actor("dana", ("admin",))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
        yield eng
        eng.dispose()
        return
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable (CI must start it)")
        pytest.skip("PostgreSQL is not reachable")
    url = fresh_pg_url()
    eng = make_engine(url)
    yield eng
    eng.dispose()
    drop_pg(url)


def test_of_many_concurrent_takers_exactly_one_gets_the_lease_and_a_lapsed_one_is_taken_over(engine):
    leases, clock = SqlRetrainLeases(engine), Clock()
    start = threading.Barrier(8)

    def take(i: int) -> str | None:
        start.wait(timeout=30)
        try:
            leases.acquire(EP, f"p{i}", now=clock(), until=clock() + timedelta(minutes=30))
            return f"p{i}"
        except Conflict as exc:
            assert "is being started by" in exc.message
            return None

    with ThreadPoolExecutor(8) as pool:
        won = [w for w in pool.map(take, range(8)) if w]
    assert len(won) == 1, won
    leases.release(EP, "p-none")  # someone else's release changes nothing
    with pytest.raises(Conflict, match=r"is being started by p\d"):
        leases.acquire(EP, "late", now=clock(), until=clock() + timedelta(minutes=30))
    clock.advance(minutes=31)  # the holder stopped and never gave it back: it lapsed
    leases.acquire(EP, "late", now=clock(), until=clock() + timedelta(minutes=30))
    leases.release(EP, "late")
    leases.acquire(EP, "next", now=clock(), until=clock() + timedelta(minutes=30))  # free again


class SlowRetrainer(FakeRetrainer):
    """Trains for as long as the test holds it, like the local retrainer does before anything is recorded."""

    def __init__(self):
        super().__init__(states=("running",))
        self.inside, self.go = threading.Event(), threading.Event()

    def trigger(self, request):
        self.inside.set()
        assert self.go.wait(timeout=30)
        return super().trigger(request)


def test_a_second_retraining_while_one_is_being_started_is_refused_and_audited(engine):
    clock = Clock()
    serving, audit = LocalServingBackend(engine, clock=clock), SqlAuditTrail(engine, clock=clock)
    serving.ensure_endpoint(EP, "clf", "1")
    retrainer, leases = SlowRetrainer(), SqlRetrainLeases(engine)

    def retrain(actor: Actor, why: str):
        return request_retraining(retrainer, audit, serving, actor, EP, why, clock=clock, leases=leases)

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(retrain, ALICE, "accuracy fell")
        assert retrainer.inside.wait(timeout=30)  # alice's retraining is training now, not yet recorded
        with pytest.raises(Conflict, match="being started by alice"):
            retrain(DANA, "me too")
        retrainer.go.set()
        run = first.result(timeout=30)
    assert run.run_id == "fake-1" and len(retrainer.requests) == 1
    with pytest.raises(Conflict, match="still open: run fake-1"):  # recorded now, and still running
        retrain(DANA, "and now?")
    assert len(retrainer.requests) == 1
    entries = audit.entries(action="retrain")
    # newest first: dana refused after alice's run was recorded, alice's run, dana refused while it trained
    assert [(e.actor, e.result) for e in entries] == [("dana", "conflict"), ("alice", "ok"), ("dana", "conflict")]
    assert audit.verify().ok
