"""Group commit: items submitted by concurrent requests at about the same moment are written by ONE blocking
call (one transaction), each request awaiting its own outcome.

While a write runs (in a worker thread), newly submitted items wait; when it ends, everything that waited (up to
``max_items``) goes in the next call at once. So batches form by themselves under load, and a lone item is
written at once (``window_s`` 0, the default) or after at most ``window_s`` of waiting for company. At most
one write runs at a time per :class:`GroupCommit`.

``write(items)`` returns one outcome per item, in order: a value, or an exception instance for an item that
failed on its own (its submitter gets it raised). If ``write`` itself raises, every item of that call gets the
exception: nothing of the batch was written (one transaction).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(self, write: Callable[[list[T]], Sequence[R | BaseException]], *, window_s: float = 0.0,
                 max_items: int = 256):
        self.write = write
        self.window_s = window_s
        self.max_items = max_items
        self.batches = 0  # calls of write (for stats and tests)
        self.items = 0
        self._waiting: list[tuple[T, asyncio.Future]] = []
        self._runner: asyncio.Task | None = None
        self._full: asyncio.Future | None = None

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._waiting.append((item, done))
        if len(self._waiting) >= self.max_items and self._full is not None and not self._full.done():
            self._full.set_result(None)
        if self._runner is None:
            self._runner = loop.create_task(self._run())
        return await done

    async def _run(self) -> None:
        try:
            first = True
            while self._waiting:
                if first and self.window_s > 0 and len(self._waiting) < self.max_items:
                    self._full = asyncio.get_running_loop().create_future()
                    await asyncio.wait([self._full], timeout=self.window_s)
                    self._full = None
                first = False  # what waited during a write has waited enough: next batch at once
                batch, self._waiting = self._waiting[:self.max_items], self._waiting[self.max_items:]
                await self._write([item for item, _ in batch], [done for _, done in batch])
        finally:
            self._runner = None

    async def _write(self, items: list[T], futures: list[asyncio.Future]) -> None:
        self.batches += 1
        self.items += len(items)
        try:
            outcomes: Sequence[Any] = await run_in_threadpool(self.write, items)
            if len(outcomes) != len(items):
                raise RuntimeError(f"group write returned {len(outcomes)} outcomes for {len(items)} items")
        except asyncio.CancelledError:  # the loop is shutting down
            for done in futures:
                done.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - every waiting submitter gets the batch's failure
            for done in futures:
                if not done.done():
                    done.set_exception(exc)
            return
        for done, outcome in zip(futures, outcomes, strict=True):
            if done.done():  # its request went away (client disconnected): written all the same
                continue
            if isinstance(outcome, BaseException):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)
