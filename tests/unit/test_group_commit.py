"""Group commit of the ingest: concurrent submissions share one write; each gets its own outcome; a failing
write fails every submission of that batch (nothing half-written); a lone item is written at once."""

from __future__ import annotations

import asyncio
import threading

import pytest

from services.ingest.batching import GroupCommit


def run(coro):
    """A fresh event loop in a thread of its own: this test process may already run one in the main thread
    (Playwright's sync API, when the browser tests ran first)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=30)


def test_concurrent_items_share_writes_and_get_their_own_outcomes():
    started, gate = threading.Event(), threading.Event()
    calls: list[list[int]] = []

    def write(items):
        calls.append(list(items))
        if len(calls) == 1:
            started.set()
            gate.wait(5)  # hold the first write so the rest queue behind it
        return [ValueError(f"bad {i}") if i == 7 else i * 10 for i in items]

    async def main():
        gc = GroupCommit(write)
        first = asyncio.ensure_future(gc.submit(0))
        assert await asyncio.to_thread(started.wait, 5), "the first write started"
        rest = [asyncio.ensure_future(gc.submit(i)) for i in range(1, 10)]
        await asyncio.sleep(0)  # let the submissions queue (they cannot be written while the first runs)
        gate.set()
        results = await asyncio.gather(first, *rest, return_exceptions=True)
        return gc, results

    gc, results = run(main())
    assert [r for i, r in enumerate(results) if i != 7] == [i * 10 for i in range(10) if i != 7]
    assert isinstance(results[7], ValueError) and str(results[7]) == "bad 7", "only its own item fails"
    assert calls[0] == [0] and sorted(x for c in calls[1:] for x in c) == list(range(1, 10))
    assert gc.batches == len(calls) < 10, "the queued items were written together"


def test_a_failing_write_fails_every_item_of_its_batch():
    def write(items):
        raise RuntimeError("database is gone")

    async def main():
        gc = GroupCommit(write)
        return await asyncio.gather(*(gc.submit(i) for i in range(5)), return_exceptions=True)

    results = run(main())
    assert all(isinstance(r, RuntimeError) and "gone" in str(r) for r in results)


def test_max_items_bounds_a_batch():
    sizes: list[int] = []

    def write(items):
        sizes.append(len(items))
        return list(items)

    async def main():
        gc = GroupCommit(write, max_items=3)
        return await asyncio.gather(*(gc.submit(i) for i in range(8)))

    assert run(main()) == list(range(8)) and max(sizes) <= 3 and sum(sizes) == 8


@pytest.mark.parametrize("window", [0.0, 0.01])
def test_a_lone_item_is_written(window):
    async def main():
        gc = GroupCommit(lambda items: [x + 1 for x in items], window_s=window)
        return await gc.submit(41), gc.batches

    assert run(main()) == (42, 1)
