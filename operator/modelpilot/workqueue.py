"""The work queue: controller-runtime's, in a page of asyncio.

Workers take keys from `WorkQueue` and run a reconcile. A key is never reconciled twice at once;
a key that changes while it is being reconciled runs again right after. Failures are retried with
capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable

from . import metrics

log = logging.getLogger(__name__)


def backoff(failures: int) -> float:
    """Seconds to wait after the n-th consecutive failure: 1, 2, 4 ... capped at 60."""
    return min(60.0, 0.5 * 2 ** min(failures, 7))


class WorkQueue:
    """Deduplicating async queue with per-key exclusivity and backoff."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._pending: set[Hashable] = set()
        self._active: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._failures: dict[Hashable, int] = defaultdict(int)
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}

    def add(self, key: Hashable) -> None:
        if key in self._active:
            self._dirty.add(key)
            return
        if key in self._pending:
            return
        self._pending.add(key)
        self._queue.put_nowait(key)
        metrics.QUEUE_DEPTH.set(len(self._pending))

    def add_after(self, key: Hashable, delay: float) -> None:
        loop = asyncio.get_running_loop()
        old = self._timers.pop(key, None)
        if old:
            old.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def run(self, worker: Callable[[Hashable], Awaitable[float | None]], concurrency: int) -> None:
        async def loop() -> None:
            while True:
                key = await self._queue.get()
                self._pending.discard(key)
                self._active.add(key)
                metrics.QUEUE_DEPTH.set(len(self._pending))
                try:
                    requeue = await worker(key)
                    self._failures.pop(key, None)
                    if requeue:
                        self.add_after(key, requeue)
                except Exception as e:  # retried with backoff; the reconcile already reported it
                    n = self._failures[key] = self._failures[key] + 1
                    delay = backoff(n)
                    log.warning("reconcile of %s failed (%s: %s); retry %d in %.1fs", key, type(e).__name__, e, n, delay)
                    self.add_after(key, delay)
                finally:
                    self._active.discard(key)
                    if key in self._dirty:
                        self._dirty.discard(key)
                        self.add(key)

        await asyncio.gather(*(loop() for _ in range(concurrency)))
