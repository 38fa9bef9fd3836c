"""Model workers: every served (endpoint, version) answers through a pool of replica *processes*.

Each replica is a real OS process (``python -m services.gateway.workers``) that loads the model directory the
gateway's :class:`~services.gateway.models.ModelCache` already downloaded and vetted (the trusted-types check runs
again in the worker before ``mlflow.pyfunc`` loads it) and answers predict batches over a socket pair
(:class:`multiprocessing.connection.Connection`, pickled messages between a parent and the child it started).

Scaling (:func:`desired_replicas`, pure): at least ``min`` (never below 1) replicas per served version; when a
request finds every replica busy and the requests in flight per replica exceed the target concurrency, one more
starts, up to ``max``; a replica idle for longer than the scale-down delay stops, down to ``min``.

The event loop never waits on a pipe: every round trip runs on a thread of the pool's own executor, with a
timeout. A replica that dies or does not answer in time is killed and replaced, and its request answers 503.
Workers read EOF and exit when the gateway's end closes (the gateway stopped or died); they also watch their
parent's pid, so none is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

log = logging.getLogger("services.gateway")


class WorkerError(Exception):
    """A replica could not answer (crashed, timed out, could not start): the request answers 503."""


class ModelFailed(Exception):
    """The model raised on a valid request, inside its worker: the request answers 500."""


def desired_replicas(in_flight: int, *, min_replicas: int, max_replicas: int, target: int) -> int:
    """Replicas wanted for ``in_flight`` requests at ``target`` concurrent requests per replica, within
    ``[max(1, min), max]`` (pure)."""
    lo = max(1, int(min_replicas))
    hi = max(lo, int(max_replicas))
    return max(lo, min(hi, math.ceil(max(0, in_flight) / max(1, int(target)))))


@dataclass(frozen=True)
class Bounds:
    min_replicas: int = 1
    max_replicas: int = 4
    target: int = 1  # concurrent requests per replica

    @classmethod
    def of(cls, min_replicas: int | None, max_replicas: int | None, target: int | None, default: Bounds) -> Bounds:
        """The endpoint's own values where set, the gateway's defaults elsewhere; min at least 1, max at least min."""
        lo = max(1, default.min_replicas if min_replicas is None else min_replicas)
        hi = max(lo, default.max_replicas if max_replicas is None else max_replicas)
        return cls(lo, hi, max(1, default.target if target is None else target))

    def desired(self, in_flight: int) -> int:
        return desired_replicas(in_flight, min_replicas=self.min_replicas, max_replicas=self.max_replicas,
                                target=self.target)


class Replica:
    """One worker process and the parent's end of its socket pair (used by one request at a time)."""

    def __init__(self, proc: subprocess.Popen, conn: Connection):
        self.proc, self.conn, self.pid = proc, conn, proc.pid
        self.last_used = time.monotonic()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, batch, timeout: float) -> list:
        """One predict round trip (blocking: run it on a thread)."""
        try:
            self.conn.send(("predict", batch))
            if not self.conn.poll(timeout):
                raise WorkerError(f"replica pid {self.pid} did not answer within {timeout:g} s")
            kind, value = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkerError(f"replica pid {self.pid} stopped (exit code {self.proc.poll()}): "
                              f"{type(exc).__name__}") from None
        if kind == "ok":
            return value
        raise ModelFailed(value)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask it to stop; kill it when it does not within ``timeout`` (blocking)."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(("stop",))
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        with contextlib.suppress(OSError):
            self.conn.close()

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        with contextlib.suppress(OSError):
            self.conn.close()


def start_replica(spec: dict, timeout: float) -> Replica:
    """Start one worker on ``spec`` (path, model, version, columns, trusted, allow_pickle) and wait for it to
    say it loaded the model (blocking: run it on a thread)."""
    parent, child = socket.socketpair()
    # One thread of native maths per worker: the workers are the parallelism, N of them must not each start one
    # BLAS/OpenMP thread per core (unless the operator says otherwise).
    env = {**{k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}, **os.environ}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "services.gateway.workers", str(child.fileno()),
                                 json.dumps(spec)], pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, env=env)
    except OSError as exc:
        parent.close()
        raise WorkerError(f"cannot start a worker process: {exc}") from exc
    finally:
        child.close()
    conn = Connection(parent.detach())
    replica = Replica(proc, conn)
    try:
        if not conn.poll(timeout):
            raise WorkerError(f"the worker did not load the model within {timeout:g} s")
        kind, value = conn.recv()
    except (EOFError, OSError):
        replica.kill()
        raise WorkerError(f"the worker exited while loading the model (exit code {proc.poll()})") from None
    except WorkerError:
        replica.kill()
        raise
    if kind != "ready":
        replica.kill()
        raise WorkerError(f"the worker could not load the model: {value}")
    return replica


class ReplicaPool:
    """The replicas of one (endpoint, version). Its methods run on the event loop; blocking work goes to
    ``executor``."""

    def __init__(self, endpoint: str, version: str, spec: dict, bounds: Bounds, executor, *,
                 start_timeout: float = 60.0, call_timeout: float = 30.0, retry_seconds: float = 5.0):
        self.endpoint, self.version, self.spec, self.bounds = endpoint, str(version), spec, bounds
        self.executor = executor
        self.start_timeout, self.call_timeout, self.retry_seconds = start_timeout, call_timeout, retry_seconds
        self.replicas: list[Replica] = []  # started, alive as far as known
        self.idle: list[Replica] = []  # a stack: the most recently used first, so the others idle out
        self.waiters: deque[asyncio.Future] = deque()
        self.starting = 0
        self.in_flight = 0
        self.closed = False
        self.last_error = ""
        self.retry_at = 0.0
        self._tasks: set[asyncio.Task] = set()

    @property
    def pids(self) -> list[int]:
        return [r.pid for r in self.replicas]

    # -- requests ---------------------------------------------------------------------------------------
    async def predict(self, batch) -> list:
        """The model's predictions for ``batch`` from a free replica. WorkerError: none could answer (503);
        ModelFailed: the model raised (500)."""
        self.in_flight += 1
        try:
            replica = await self._acquire()
            fut = asyncio.get_running_loop().run_in_executor(self.executor, replica.call, batch, self.call_timeout)
            fut.add_done_callback(lambda f: self._finished(replica, f))
            return await asyncio.shield(fut)  # a cancelled request leaves the replica busy until it answers
        finally:
            self.in_flight -= 1

    async def _acquire(self) -> Replica:
        if self.closed:
            raise WorkerError(f"the replicas of {self.endpoint} v{self.version} are stopping")
        while self.idle:
            r = self.idle.pop()
            if r.alive():
                return r
            self._discard(r, "found dead")
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        self._scale_up()
        if not self.replicas and not self.starting:
            self.waiters.remove(fut)
            raise WorkerError(f"no replica of {self.endpoint} v{self.version} can start: {self.last_error}")
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.start_timeout + self.call_timeout)
        except BaseException as exc:
            if fut in self.waiters:
                self.waiters.remove(fut)
            if not fut.done():
                fut.cancel()
            elif not fut.cancelled() and fut.exception() is None:
                self._release(fut.result())  # handed over just as this request gave up
            if isinstance(exc, TimeoutError):
                raise WorkerError(f"no replica of {self.endpoint} v{self.version} was free in time") from None
            raise

    def _finished(self, replica: Replica, fut: asyncio.Future) -> None:
        exc = None if fut.cancelled() else fut.exception()
        if fut.cancelled() or (exc is not None and not isinstance(exc, ModelFailed)):
            self.last_error = str(exc or "cancelled")
            self._discard(replica, self.last_error)
        else:
            self._release(replica)

    def _release(self, replica: Replica) -> None:
        replica.last_used = time.monotonic()
        if self.closed or len(self.replicas) > self.bounds.max_replicas:  # the maximum was lowered
            self._retire(replica)
            return
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_result(replica)
                return
        self.idle.append(replica)

    # -- scaling ----------------------------------------------------------------------------------------
    def _scale_up(self) -> None:
        want = self.bounds.desired(self.in_flight)
        if time.monotonic() >= self.retry_at:
            for _ in range(want - len(self.replicas) - self.starting):
                self._start()

    def _start(self) -> None:
        self.starting += 1
        task = asyncio.get_running_loop().create_task(self._starting())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _starting(self) -> None:
        try:
            r = await asyncio.get_running_loop().run_in_executor(self.executor, start_replica, self.spec,
                                                                 self.start_timeout)
        except Exception as exc:  # noqa: BLE001 - said, retried later, and told to whoever waits
            self.starting -= 1
            self.last_error = str(exc)
            self.retry_at = time.monotonic() + self.retry_seconds
            log.warning("%s v%s: a replica did not start: %s", self.endpoint, self.version, exc)
            if not self.replicas and not self.starting:
                while self.waiters:
                    w = self.waiters.popleft()
                    if not w.done():
                        w.set_exception(WorkerError(f"no replica of {self.endpoint} v{self.version} can start: "
                                                    f"{exc}"))
            return
        self.starting -= 1
        self.replicas.append(r)
        log.info("%s v%s: replica pid %s started (%d now)", self.endpoint, self.version, r.pid, len(self.replicas))
        self._release(r)

    def _remove(self, replica: Replica) -> None:
        for lst in (self.replicas, self.idle):
            if replica in lst:
                lst.remove(replica)

    def _retire(self, replica: Replica) -> None:
        self._remove(replica)
        self.executor.submit(replica.stop)
        log.info("%s v%s: replica pid %s stopped (%d left)", self.endpoint, self.version, replica.pid,
                 len(self.replicas))

    def _discard(self, replica: Replica, why: str) -> None:
        """A replica that failed: killed, and replaced while the pool is below its minimum."""
        self._remove(replica)
        self.executor.submit(replica.kill)
        log.warning("%s v%s: replica pid %s replaced: %s", self.endpoint, self.version, replica.pid, why)
        if not self.closed:
            self._scale_up()

    def maintain(self, now: float, scale_down_delay: float) -> None:
        """Replace dead replicas, keep the minimum, stop replicas idle beyond ``scale_down_delay``."""
        if self.closed:
            return
        for r in [r for r in self.idle if not r.alive()]:
            self._discard(r, f"exited (code {r.proc.poll()})")
        for r in sorted(self.idle, key=lambda r: r.last_used):
            if len(self.replicas) <= self.bounds.min_replicas:
                break
            if now - r.last_used > scale_down_delay or len(self.replicas) > self.bounds.max_replicas:
                self._retire(r)
        self._scale_up()

    def close(self) -> list:
        """Stop taking requests (on the event loop). Returns the blocking stops to run on a thread: idle replicas
        are asked to stop, busy ones killed."""
        self.closed = True
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_exception(WorkerError(f"the replicas of {self.endpoint} v{self.version} are stopping"))
        idle = {id(r) for r in self.idle}
        stops = [r.stop if id(r) in idle else r.kill for r in self.replicas]
        self.replicas.clear()
        self.idle.clear()
        return stops


# --------------------------------------------------------------------------------------------- the worker
def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)  # the gateway is gone: never outlive it


def worker_main(argv: list[str]) -> int:
    from services.gateway.models import load_local

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the gateway stops its workers
    conn = Connection(int(argv[0]))
    spec = json.loads(argv[1])
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    try:
        model = load_local(Path(spec["path"]), model=spec["model"], version=spec["version"],
                           columns=tuple(tuple(c) for c in spec["columns"]), trusted=frozenset(spec["trusted"]),
                           allow_pickle=bool(spec["allow_pickle"]))
    except Exception as exc:  # noqa: BLE001 - told to the gateway, which answers 503
        conn.send(("error", f"{type(exc).__name__}: {str(exc)[:300]}"))
        return 1
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return 0
        if msg[0] != "predict":
            return 0
        try:
            answer = ("ok", model.predict(msg[1]))
        except Exception as exc:  # noqa: BLE001 - the model failed on this request: a 500, the worker goes on
            answer = ("error", f"{type(exc).__name__}: {str(exc)[:300]}")
        try:
            conn.send(answer)
        except OSError:
            return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
