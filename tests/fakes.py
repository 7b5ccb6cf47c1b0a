"""Fake devices for tests: real implementations of piagent's small device protocols.

``PacedSink`` is a speaker that "plays" in real time on the event loop's clock: audio queued
with ``play`` is heard over its duration, ``flush`` silences it at once, and everything that was
actually heard (not flushed) is kept, so a test can compare what reached the ear.
"""

from __future__ import annotations

import asyncio

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]


class PacedSink:
    """An ``AudioSink`` that plays in real time without a sound card."""

    def __init__(self, rate: int = 16000) -> None:
        self._rate = rate
        self._queue: list[Samples] = []
        self._queued_samples = 0
        self._play_start = 0.0  # loop time when the head of the queue started playing
        self.played: list[Samples] = []  # what finished playing, in order
        self.flushes = 0
        self.flushed_samples = 0
        self.turn_ends = 0

    @property
    def rate(self) -> int:
        return self._rate

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _advance(self) -> None:
        """Move what has been heard by now from the queue to ``played``."""
        if not self._queue:
            return
        heard = int((self._now() - self._play_start) * self._rate)
        while self._queue and heard >= len(self._queue[0]):
            chunk = self._queue.pop(0)
            heard -= len(chunk)
            self._queued_samples -= len(chunk)
            self._play_start += len(chunk) / self._rate
            self.played.append(chunk)

    @property
    def is_playing(self) -> bool:
        self._advance()
        return bool(self._queue)

    @property
    def queued_seconds(self) -> float:
        self._advance()
        if not self._queue:
            return 0.0
        return self._queued_samples / self._rate - (self._now() - self._play_start)

    def play(self, samples: Samples) -> None:
        self._advance()
        if not self._queue:
            self._play_start = self._now()
        self._queue.append(np.asarray(samples, dtype=np.int16))
        self._queued_samples += len(samples)

    def mark_end(self) -> None:
        self.turn_ends += 1

    def flush(self) -> None:
        self._advance()
        self.flushes += 1
        self.flushed_samples += self._queued_samples
        self._queue.clear()
        self._queued_samples = 0

    async def wait_drained(self) -> None:
        # Each sleep lasts exactly until the queued audio ends; audio queued meanwhile extends it.
        while self.is_playing:  # noqa: ASYNC110
            await asyncio.sleep(max(0.005, self.queued_seconds))

    def heard(self) -> Samples:
        """Everything played so far, concatenated."""
        self._advance()
        if not self.played:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self.played)
