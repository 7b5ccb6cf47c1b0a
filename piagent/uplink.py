"""The microphone's way to the agent: the held user turn and what each frame becomes.

Owns ``TurnUplink``: the frames of the user's turn, kept from the press until the appliance
says the turn was answered (``StartTurn`` ... ``ForgetTurn``), so that a turn captured while a
conversation opens, while the service queues it, or before a drop can be sent (again) once
audio is heard; and the uplink's mode (``HOLD``: nothing sent; ``VOICE``: the microphone's
audio; ``SILENCE``: digital silence in its place, protocol.md §8). It decides nothing: the
appliance sets the mode and says when to start, stop, replay and forget the turn.

The held turn is bounded (``hold_limit`` seconds); past it the oldest frames are dropped.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from piagent.appliance.rules import Uplink

Samples = npt.NDArray[np.int16]


class TurnUplink:
    """The held turn and the uplink's mode; see the module docstring."""

    def __init__(self, hold_frames: int) -> None:
        self.mode = Uplink.HOLD
        self._turn: collections.deque[Samples] = collections.deque(maxlen=max(1, hold_frames))
        self._recording = False
        self._silence: Samples = np.zeros(0, dtype=np.int16)

    @property
    def needed(self) -> bool:
        """Whether frames have anywhere to go: a conversation takes them, or a turn is being
        held. While not, the microphone may rest (the WAV backend's does)."""
        return self.mode is not Uplink.HOLD or self._recording

    @property
    def held_frames(self) -> int:
        """Frames of the turn being held."""
        return len(self._turn)

    def start_turn(self) -> None:
        """A new turn: forget the old one, keep every frame from now on."""
        self._turn.clear()
        self._recording = True

    def stop_turn(self) -> None:
        """The turn is over: keep it, add nothing more."""
        self._recording = False

    def forget(self) -> None:
        """The turn was answered or abandoned."""
        self._turn.clear()

    def restart(self) -> None:
        """The microphone's rate changed: frames held at the old rate are useless."""
        self._turn.clear()

    def replay(self, send: Callable[[Samples], None]) -> None:
        """Send the held turn (it stays held until forgotten: a second drop may need it)."""
        for frame in self._turn:
            send(frame)

    def feed(self, frame: Samples, send: Callable[[Samples], None]) -> bool:
        """One microphone frame: held if a turn is being captured, then sent as the mode says.
        Returns whether the user's voice was sent."""
        if self._recording:
            self._turn.append(frame)
        if self.mode is Uplink.HOLD:
            return False
        if self.mode is Uplink.VOICE:
            send(frame)
            return True
        if len(self._silence) != len(frame):  # one zero buffer reused: this runs every 20 ms
            self._silence = np.zeros(len(frame), dtype=np.int16)
        send(self._silence)
        return False
