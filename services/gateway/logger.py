"""Payload logging the way KServe's inference logger does it: two CloudEvents per prediction (binary mode),
the request and the response, sharing the request id, POSTed to ``MLOPS_INGEST_URL``.

Events go through a bounded queue to background senders: a prediction only ever does a ``put_nowait``.
When the queue is full the event is dropped and counted (``mlops_gateway_logger_dropped_total``); each
POST has a timeout, and a failed one is counted (``mlops_gateway_logger_failed_total``), never retried
(the ingest side stores a repeated event once, but a dead ingest must not grow our memory).

The gateway says when the ingest stops taking events: one warning in its log when deliveries start failing
(and one when they work again), and :meth:`PayloadLogger.status` in the answer of ``/v2/health/ready`` —
predictions go on either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from cloudevents.core.bindings.http import HTTPMessage, to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

log = logging.getLogger("services.gateway")

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
_FORMAT = JSONFormat()


def inference_event(kind: str, *, request_id: str, at: datetime, source: str, endpoint: str, role: str,
                    version: str | None, body: bytes, status: int | None = None, model: str | None = None,
                    namespace: str = "default") -> HTTPMessage:
    """One CloudEvent as KServe's logger sends it (``kind``: request or response), in HTTP binary mode."""
    attributes = {
        "specversion": "1.0",
        "id": request_id,
        "source": source,
        "type": REQUEST_TYPE if kind == "request" else RESPONSE_TYPE,
        "time": at,
        "datacontenttype": "application/json",
        # KServe's own extensions
        "namespace": namespace,
        "inferenceservicename": endpoint,
        "component": "predictor",
        "endpoint": role,
        # ours: who answered
        "modelversion": str(version or ""),
        "role": role,
    }
    if model:
        attributes["model"] = model  # the registered model's name
    if status is not None:
        attributes["status"] = str(status)  # the HTTP status of the answer (response events)
    return to_binary(CloudEvent(attributes, data=body), _FORMAT)


class PayloadLogger:
    """Bounded queue + ``workers`` sender tasks over one aiohttp session. ``url=None`` turns logging off."""

    def __init__(self, url: str | None, *, maxsize: int = 10000, timeout: float = 2.0, workers: int = 4,
                 on_drop: Callable[[], None] = lambda: None, on_fail: Callable[[], None] = lambda: None,
                 on_sent: Callable[[], None] = lambda: None):
        self.url = url
        self.maxsize = max(1, maxsize)
        self.timeout = timeout
        self.workers = max(1, workers)
        self.on_drop, self.on_fail, self.on_sent = on_drop, on_fail, on_sent
        self._queue: asyncio.Queue[HTTPMessage] | None = None
        self._tasks: list[asyncio.Task] = []
        self._session = None
        self.failing = 0  # deliveries failed in a row (0: the last one went through, or none was tried)
        self.last_error: str | None = None

    def status(self) -> dict:
        """Whether payload events reach the ingest, for the health answer: ``delivering`` is False while the
        latest deliveries failed (``failing`` in a row, the ``last_error``)."""
        if not self.enabled:
            return {"enabled": False}
        return {"enabled": True, "url": self.url, "delivering": self.failing == 0, "failing": self.failing,
                "last_error": self.last_error, "queued": self.pending()}

    def _failed(self, why: str) -> None:
        self.on_fail()
        self.last_error = why
        self.failing += 1
        if self.failing == 1:
            log.warning("the ingest at %s does not take payload events (%s): predictions go on, their events "
                        "are not logged (mlops_gateway_logger_failed_total)", self.url, why)

    def _sent(self) -> None:
        self.on_sent()
        if self.failing:
            log.warning("the ingest at %s takes payload events again (after %d failed)", self.url, self.failing)
        self.failing = 0

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def pending(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        if not self.enabled:
            return
        import aiohttp

        self._queue = asyncio.Queue(self.maxsize)
        timeout = aiohttp.ClientTimeout(total=self.timeout, connect=min(self.timeout, 1.0))
        self._session = aiohttp.ClientSession(timeout=timeout,
                                              connector=aiohttp.TCPConnector(limit=self.workers))
        self._tasks = [asyncio.create_task(self._run(), name=f"payload-logger-{i}") for i in range(self.workers)]

    def submit(self, message: HTTPMessage) -> bool:
        """Queue one event; False (and counted) when the queue is full. Never blocks."""
        if self._queue is None:
            return False
        try:
            self._queue.put_nowait(message)
            return True
        except asyncio.QueueFull:
            self.on_drop()
            return False

    async def _run(self) -> None:
        assert self._queue is not None and self._session is not None
        while True:
            message = await self._queue.get()
            try:
                async with self._session.post(self.url, data=message.body, headers=message.headers) as resp:
                    await resp.read()
                    if resp.status >= 300:
                        self._failed(f"HTTP {resp.status}")
                    else:
                        self._sent()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - timeouts, refused connections: counted, not retried
                self._failed(f"{type(exc).__name__}: {exc}"[:200] if str(exc) else type(exc).__name__)
            finally:
                self._queue.task_done()

    async def drain(self, timeout: float) -> bool:
        """Wait until every queued event was sent (or failed); False when ``timeout`` passed first."""
        if self._queue is None:
            return True
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
            return True
        except TimeoutError:
            return False

    async def stop(self, drain_timeout: float = 2.0) -> None:
        await self.drain(drain_timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None
