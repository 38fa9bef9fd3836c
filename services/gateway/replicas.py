"""The gateway's replica pools (``MLOPS_GATEWAY_REPLICAS=process``): one :class:`~services.gateway.workers.ReplicaPool`
per served (endpoint, version), their bounds from the endpoint's scaling (re-read with the routing snapshot, every
second), a maintenance loop (replace dead workers, keep the minimum, stop idle ones, stop the pools of versions no
longer served), the ``mlops_gateway_replicas`` / ``mlops_gateway_in_flight`` gauges, and a replica sample every
few seconds through the serving port's ``record_replicas`` (a failed write is logged, never a failed prediction).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from services.gateway.workers import Bounds, ReplicaPool

log = logging.getLogger("services.gateway")


class Replicas:
    def __init__(self, config, serving, metrics):
        self.config = config
        self.serving = serving
        self.metrics = metrics
        self.default = Bounds(config.replicas_min, config.replicas_max, config.replicas_target)
        self.pools: dict[tuple[str, str], ReplicaPool] = {}
        self.executor = ThreadPoolExecutor(max_workers=config.worker_threads, thread_name_prefix="replica")
        self._task: asyncio.Task | None = None
        self._sampled = float("-inf")
        self._sample_failing = False
        self.cold_answers = 0  # answered in this process while a version's first replica started

    def bounds(self, route) -> Bounds:
        return Bounds.of(route.min_replicas, route.max_replicas, route.target, self.default)

    def pool(self, route, version: str, model) -> ReplicaPool:
        """The pool of ``route``'s ``version`` (created, or renewed when the model was loaded afresh)."""
        key = (route.endpoint, str(version))
        pool = self.pools.get(key)
        if pool is not None and pool.spec["path"] != str(model.path):  # the cache reloaded it into a new folder
            self._close(key)
            pool = None
        if pool is None:
            spec = {"path": str(model.path), "model": model.model, "version": str(version),
                    "columns": [list(c) for c in model.columns], "trusted": sorted(self.config_trusted()),
                    "allow_pickle": self.config.allow_pickle}
            pool = ReplicaPool(route.endpoint, str(version), spec, self.bounds(route), self.executor,
                               start_timeout=self.config.worker_start_timeout,
                               call_timeout=self.config.worker_timeout)
            self.pools[key] = pool
            pool._scale_up()  # its minimum starts now
        else:
            pool.bounds = self.bounds(route)
        return pool

    def config_trusted(self) -> frozenset[str]:
        from services.gateway.models import TRUSTED_SKOPS_TYPES

        return TRUSTED_SKOPS_TYPES | self.config.skops_trusted

    async def predict(self, route, version: str, model, batch) -> list:
        """From a replica; while a version's first replica is still starting (a worker takes seconds to import
        MLflow and load), in this process with the model the cache loaded: a cold start costs no request."""
        pool = self.pool(route, version, model)
        if not pool.replicas and pool.starting and not pool.closed:
            self.cold_answers += 1
            return await asyncio.get_running_loop().run_in_executor(self.executor, model.predict, batch)
        return await pool.predict(batch)

    # -- background ---------------------------------------------------------------------------------------
    def start(self, routing, models) -> None:
        self._task = asyncio.create_task(self._run(routing, models))

    async def _run(self, routing, models) -> None:
        tick = max(0.05, min(0.5, self.config.scale_down_seconds / 4))
        while True:
            try:
                await self.maintain(routing, models)
            except Exception as exc:  # noqa: BLE001 - the loop must go on
                log.warning("replica maintenance failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(tick)

    async def maintain(self, routing, models) -> None:
        try:
            routes = await routing.routes()
        except RuntimeError:
            routes = None
        if routes is not None:
            served = {(r.endpoint, v): r for r in routes.values() for v in r.versions()}
            for key in [k for k in self.pools if k not in served]:
                self._close(key)
            for (_endpoint, version), route in served.items():
                model = models.peek(route.model, version) if route.model else None
                if model is not None:  # loaded (preload or a first request): its minimum runs from now on
                    self.pool(route, version, model)
        now = time.monotonic()
        for pool in self.pools.values():
            pool.maintain(now, self.config.scale_down_seconds)
        self._gauges()
        if now - self._sampled >= self.config.sample_seconds:
            self._sampled = now
            await self._sample()

    def _gauges(self) -> None:
        for (endpoint, version), pool in self.pools.items():
            self.metrics.replicas.labels(endpoint, version).set(len(pool.replicas))
            self.metrics.in_flight.labels(endpoint, version).set(pool.in_flight)

    async def _sample(self, *, final: bool = False) -> None:
        samples = [(e, v, 0 if final else len(p.replicas), 0 if final else p.in_flight)
                   for (e, v), p in sorted(self.pools.items())]
        record = getattr(self.serving, "record_replicas", None)
        if record is None or not samples:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self.executor, record, samples)
        except Exception as exc:  # noqa: BLE001 - a sample lost is a gap in a chart, never a failed prediction
            if not self._sample_failing:
                log.warning("cannot record the replica counts: %s: %s", type(exc).__name__, exc)
            self._sample_failing = True
        else:
            if self._sample_failing:
                log.info("recording the replica counts works again")
            self._sample_failing = False

    def _close(self, key) -> None:
        pool = self.pools.pop(key)
        with contextlib.suppress(KeyError):
            self.metrics.replicas.remove(*key)
            self.metrics.in_flight.remove(*key)
        for stop in pool.close():
            self.executor.submit(stop)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self.pools:  # the last sample: none left, so the chart drops to zero where the gateway stopped
            self._sampled = float("-inf")
            for pool in self.pools.values():
                pool.closed = True
            await self._sample(final=True)
        pools = list(self.pools.values())
        self.pools.clear()
        loop = asyncio.get_running_loop()
        stops = [stop for p in pools for stop in p.close()]
        await asyncio.gather(*(loop.run_in_executor(self.executor, stop) for stop in stops), return_exceptions=True)
        self.executor.shutdown(wait=True, cancel_futures=False)

    def snapshot(self) -> dict:
        """What runs now (the ``/admin/replicas`` answer, tests): per endpoint and version, pids and in-flight."""
        return {f"{e}/{v}": {"endpoint": e, "version": v, "pids": p.pids, "in_flight": p.in_flight,
                             "starting": p.starting, "min": p.bounds.min_replicas, "max": p.bounds.max_replicas,
                             "target": p.bounds.target, "last_error": p.last_error}
                for (e, v), p in sorted(self.pools.items())}
