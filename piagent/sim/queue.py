"""The agent's concurrency limit: conversation slots, and the queue of those waiting for one.

Owns ``Slots``, one per agent with a ``concurrency_limit`` (protocol.md §4 ``queue_status``,
§9 concurrency). A conversation takes a slot once its metadata is sent and gives it back when
it ends. When every slot is taken, a new conversation waits in a first-come, first-served
queue: ``wait`` returns once a slot is handed to it, and a waiter that gives up (its wait timed
out, or its client left) leaves the queue without taking a slot, so none leaks. What the
conversation says meanwhile (``waiting``, ``admitted``, ``timed_out`` and close 3008) is
``conversation``'s business.

No I/O; asyncio only for the waiters' futures, all on the server's loop.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Slots"]


class Slots:
    """``limit`` conversation slots of one agent, handed out in order of arrival."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self.limit = limit
        self._taken = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def taken(self) -> int:
        """Slots held by conversations now."""
        return self._taken

    @property
    def waiting(self) -> int:
        """Conversations in the queue now."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    def try_take(self) -> bool:
        """Take a free slot at once; False when all are taken or others wait before us."""
        if self._taken < self.limit and not self.waiting:
            self._taken += 1
            return True
        return False

    async def wait(self) -> None:
        """Queue for a slot; on return the caller holds it and must ``release`` it later.

        Cancelling the wait (a timeout, the client leaving) takes the caller out of the queue;
        a slot handed over in the same instant is passed on to the next in line."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed over just as the wait was cancelled: pass it on
            elif waiter in self._waiters:  # release() may have dropped it already
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back: the first conversation still waiting gets it, else it is free."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands; ``taken`` stays the same
                return
        self._taken -= 1
