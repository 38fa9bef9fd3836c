"""The replica pool's decisions (issue 12, local replicas): the pure desired-replicas rule, the endpoint's bounds
over the gateway's defaults, and the pool's scale up / scale down / replacement over stand-in workers (the real
processes are tests/integration/test_gateway_replicas.py)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from services.capacity import bucket_replicas
from services.gateway import GatewayConfig
from services.gateway import workers as w
from services.gateway.workers import Bounds, ModelFailed, ReplicaPool, WorkerError, desired_replicas
from tests.streamlit_ws import run_sync


@pytest.mark.parametrize(("in_flight", "lo", "hi", "target", "want"), [
    (0, 1, 4, 1, 1), (1, 1, 4, 1, 1), (2, 1, 4, 1, 2), (4, 1, 4, 1, 4), (9, 1, 4, 1, 4),  # never above max
    (0, 2, 4, 1, 2), (0, 0, 4, 1, 1),  # min respected, and at least one process per version
    (5, 1, 10, 2, 3), (4, 1, 10, 2, 2), (1, 1, 10, 5, 1),  # target concurrency per replica
    (3, 5, 2, 1, 5),  # a max below min: min wins
    (-1, 1, 4, 1, 1), (3, 1, 4, 0, 3),  # nonsense in, a sane answer out
])
def test_desired_replicas(in_flight, lo, hi, target, want):
    assert desired_replicas(in_flight, min_replicas=lo, max_replicas=hi, target=target) == want


def test_bounds_take_the_endpoints_values_over_the_defaults():
    d = Bounds(1, 4, 1)
    assert Bounds.of(None, None, None, d) == d
    assert Bounds.of(2, None, 3, d) == Bounds(2, 4, 3)
    assert Bounds.of(6, None, None, d) == Bounds(6, 6, 1)  # a min above the default max lifts the max
    assert Bounds.of(0, 2, None, d) == Bounds(1, 2, 1)


def test_the_config_reads_the_replica_settings_and_refuses_nonsense():
    from services.errors import Invalid

    cfg = GatewayConfig.from_env({"MLOPS_GATEWAY_REPLICAS_MAX": "3", "MLOPS_GATEWAY_SCALE_DOWN_SECONDS": "0.5"})
    assert (cfg.replicas, cfg.replicas_max, cfg.scale_down_seconds) == ("process", 3, 0.5)
    assert GatewayConfig().replicas == "inline"  # build_app's default: the in-process tests
    assert GatewayConfig.from_env({"MLOPS_GATEWAY_REPLICAS": "inline"}).replicas == "inline"
    for env in ({"MLOPS_GATEWAY_REPLICAS": "threads"}, {"MLOPS_GATEWAY_REPLICAS_MIN": "0"},
                {"MLOPS_GATEWAY_WORKER_TIMEOUT": "soon"}):
        with pytest.raises(Invalid):
            GatewayConfig.from_env(env)


class StandIn:
    """A worker stand-in: answers when released (``gate``), or dies."""

    pids = iter(range(1000, 2000))

    def __init__(self):
        self.pid = next(self.pids)
        self.dead = False
        self.stopped = False
        self.gate = threading.Event()
        self.last_used = 0.0

    def alive(self):
        return not self.dead and not self.stopped

    def call(self, batch, timeout):
        if not self.gate.wait(timeout):
            raise WorkerError("timed out")
        if self.dead:
            raise WorkerError("stopped")
        if batch == "bad":
            raise ModelFailed("ValueError: bad")
        return [batch]

    def stop(self):
        self.stopped = True

    def kill(self):
        self.dead = True
        self.gate.set()


@pytest.fixture
def pool(monkeypatch):
    started: list[StandIn] = []

    def start(spec, timeout):
        r = StandIn()
        started.append(r)
        return r

    monkeypatch.setattr(w, "start_replica", start)
    ex = ThreadPoolExecutor(16)
    p = ReplicaPool("e", "1", {"path": "/x"}, Bounds(1, 3, 1), ex, start_timeout=5, call_timeout=5)
    p.started = started
    yield p
    for r in started:
        r.gate.set()
    ex.shutdown(wait=True)


async def until(check, timeout=5.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_the_pool_scales_up_to_its_max_under_load_and_down_to_its_min_when_idle(pool):
    async def scenario():
        pool._scale_up()
        await until(lambda: len(pool.replicas) == 1)
        tasks = [asyncio.create_task(pool.predict(i)) for i in range(5)]  # 5 in flight, target 1, max 3
        await until(lambda: len(pool.replicas) == 3 and pool.in_flight == 5)
        assert len(pool.replicas) + pool.starting == 3  # never above max
        for r in pool.started:
            r.gate.set()
        assert sorted(await asyncio.gather(*tasks)) == [[i] for i in range(5)]
        now = max(r.last_used for r in pool.replicas)
        pool.maintain(now + 0.5, scale_down_delay=1.0)  # not idle long enough
        assert len(pool.replicas) == 3
        pool.maintain(now + 2.0, scale_down_delay=1.0)
        assert len(pool.replicas) == 1  # down to min
        await until(lambda: sum(r.stopped for r in pool.started) == 2)  # stopped on the executor
        pool.maintain(now + 60, scale_down_delay=1.0)
        assert len(pool.replicas) == 1  # never below it
    run_sync(scenario())


def test_a_dead_worker_fails_its_request_with_a_worker_error_and_is_replaced(pool):
    async def scenario():
        pool._scale_up()
        await until(lambda: len(pool.replicas) == 1)
        first = pool.replicas[0]
        task = asyncio.create_task(pool.predict("x"))
        await until(lambda: pool.in_flight == 1)
        first.kill()
        with pytest.raises(WorkerError):
            await task
        await until(lambda: len(pool.replicas) == 1 and pool.replicas[0] is not first)
        pool.replicas[0].gate.set()
        assert await pool.predict("y") == ["y"]
        with pytest.raises(ModelFailed):  # the model raising: its worker stays
            await pool.predict("bad")
        assert len(pool.replicas) == 1 and pool.replicas[0].alive()
    run_sync(scenario())


def test_a_pool_whose_workers_cannot_start_answers_at_once(monkeypatch):
    def start(spec, timeout):
        raise WorkerError("the worker could not load the model: boom")

    monkeypatch.setattr(w, "start_replica", start)

    async def scenario():
        with ThreadPoolExecutor(2) as ex:
            p = ReplicaPool("e", "1", {}, Bounds(1, 2, 1), ex, retry_seconds=60)
            with pytest.raises(WorkerError, match="boom"):
                await asyncio.wait_for(p.predict("x"), 5)
            with pytest.raises(WorkerError, match="boom"):  # within the retry pause: no new start, no wait
                await asyncio.wait_for(p.predict("x"), 1)
    run_sync(scenario())


def test_replica_samples_are_bucketed_to_the_most_in_each_step():
    t0 = datetime(2026, 11, 27, 12, tzinfo=UTC)
    samples = [(t0 + timedelta(seconds=s), v, n) for s, v, n in
               ((0, "1", 1), (20, "1", 3), (50, "1", 2), (65, "1", 1), (10, "2", 1))]
    assert bucket_replicas(samples, t0, timedelta(minutes=1)) == [
        (t0, "1", 3), (t0, "2", 1), (t0 + timedelta(minutes=1), "1", 1)]


def test_closing_stops_idle_workers_and_kills_busy_ones(pool):
    async def scenario():
        pool.bounds = Bounds(2, 2, 1)
        pool._scale_up()
        await until(lambda: len(pool.replicas) == 2)
        busy = asyncio.create_task(pool.predict("x"))
        await until(lambda: len(pool.idle) == 1)
        (idle,) = pool.idle
        pool.idle.clear()  # both busy: a third request waits
        waiting = asyncio.create_task(pool.predict("z"))
        await until(lambda: len(pool.waiters) == 1)
        pool.idle.append(idle)
        for stop in pool.close():
            stop()
        assert idle.stopped and not idle.dead
        assert [r for r in pool.started if r is not idle][0].dead
        with pytest.raises(WorkerError):
            await busy
        with pytest.raises(WorkerError, match="stopping"):  # a waiting request hears it, not a cancellation
            await waiting
        assert pool.replicas == [] and pool.closed
        with pytest.raises(WorkerError, match="stopping"):
            await pool.predict("y")
    run_sync(scenario())
