"""The appliance's policy settings, and the backoff it retries with.

Owns ``Options`` (seconds unless stated; built from the config's ``session`` and ``audio``
sections by the I/O side) and ``Backoff`` (exponential, with full jitter and a cap; the
randomness is injected, so a test fixes it).

Pure: imports nothing that does I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Options:
    """What the appliance does, and when (seconds)."""

    idle_timeout: float = 30.0  # without speech either way before hanging up
    max_duration: float = 600.0  # a conversation's longest length
    always_connected: bool = False  # open a conversation at start and after every end
    half_duplex: bool = True  # send silence while the agent speaks, unless the user holds
    # "thinking" ends without a reply: after empty_turn_timeout when the server never heard a
    # user turn (the button was pressed with nothing said), else after reply_timeout.
    empty_turn_timeout: float = 5.0
    reply_timeout: float = 30.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    ending_grace: float = 10.0  # after the server announced the end: its last words play
    close_grace: float = 0.5  # then this long for the server to close before we do
    mic_grace: float = 2.0  # a microphone missing this long shows as error


class Backoff:
    """Exponential backoff with full jitter and a cap.

    The n-th delay (from 0) is uniform in [0, min(cap, initial * 2**n)]: spreading retries of
    many appliances after an outage, as the AWS architecture note on backoff recommends."""

    def __init__(self, initial: float, cap: float, rng: random.Random | None = None) -> None:
        if initial <= 0 or cap < initial:
            raise ValueError("backoff needs 0 < initial <= cap")
        self.initial = initial
        self.cap = cap
        self._rng = rng or random.Random()
        self.attempts = 0

    def bound(self) -> float:
        """The largest delay the next ``next_delay`` can return."""
        return min(self.cap, self.initial * 2.0 ** min(self.attempts, 62))

    def next_delay(self) -> float:
        """The delay before the next attempt."""
        delay = self._rng.uniform(0.0, self.bound())
        self.attempts += 1
        return delay

    def reset(self) -> None:
        """After a success: start again from ``initial``."""
        self.attempts = 0
