"""The ``wav`` backend's echo path: what a WAV microphone hears of what the WAV speaker played.

Owns ``WavEchoPath`` (``audio.input.echo``) and ``WavFileError``, the backend's error. The speaker
hands the path every sample it plays, the path runs them through a simulated room
(``room.Room``: delay, gain, impulse response, soft clipping) at the microphone's rate, and the
microphone adds what it hears to each frame. Both sides place samples on the loop's clock (the
speaker's sample 0 at its ``start_time``, the microphone's frame ``k`` at its start plus ``k``
periods), fixing the offset between the two timelines once, in whole samples, so the echo is
sample-aligned and never drifts.

Pure: numpy and piagent's audio helpers; no I/O but reading an impulse response file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from piagent.audio.codecs import Samples
from piagent.audio.resample import StreamResampler
from piagent.audio.room import Room, load_impulse_response
from piagent.errors import PiagentError

__all__ = ["WavEchoPath", "WavFileError"]


class WavFileError(PiagentError):
    """A WAV file the ``wav`` backend cannot use; the message names the file and the fix."""


class WavEchoPath:
    """What the microphone (at ``rate`` Hz) hears of what the speaker played: the simulated
    room of ``audio.input.echo`` between a ``WavSpeaker`` and a ``WavMicrophone``.

    ``delay_ms``, ``gain_db`` and ``drive`` are ``room.Room``'s; ``impulse_response`` a WAV
    file of the room's response (resampled to ``rate``; ``WavFileError`` if unusable). Echo
    the microphone has not taken within ``keep_s`` seconds is dropped.
    """

    def __init__(
        self,
        rate: int,
        *,
        delay_ms: float = 50.0,
        gain_db: float = -10.0,
        impulse_response: Path | str | None = None,
        drive: float = 0.0,
        keep_s: float = 5.0,
    ) -> None:
        response = None
        if impulse_response is not None:
            try:
                response = load_impulse_response(impulse_response, rate)
            except ValueError as exc:
                raise WavFileError(str(exc)) from exc
        self._room = Room(
            rate, delay_ms=delay_ms, gain_db=gain_db, impulse_response=response, drive=drive
        )
        self._rate = rate
        self._keep = int(keep_s * rate)
        self._start: float | None = None  # the speaker's start_time
        self._resampler: StreamResampler | None = None
        self._echo = np.zeros(0, dtype=np.int16)  # heard samples from index ``_base`` on
        self._base = 0

    @property
    def rate(self) -> int:
        return self._rate

    def start_speaker(self, start_time: float, rate: int) -> None:
        """The speaker's timeline begins: its sample 0 plays at ``start_time`` (loop time)."""
        self._start = start_time
        self._resampler = StreamResampler(rate, self._rate)
        self._echo = np.zeros(0, dtype=np.int16)
        self._base = 0

    def played(self, samples: Samples) -> None:
        """The speaker played ``samples``, next on its timeline."""
        if self._resampler is None:
            return
        heard = self._room.process(self._resampler.process(samples))
        self._echo = np.concatenate([self._echo, heard])
        excess = len(self._echo) - self._keep
        if excess > 0:
            self._echo = self._echo[excess:]
            self._base += excess

    def heard(self, capture_start: float, index: int, n: int) -> Samples:
        """The ``n`` echo samples in the microphone's samples ``index`` on, counted from
        ``capture_start`` (loop time): silence before the speaker started or past what it has
        played so far."""
        out = np.zeros(n, dtype=np.int16)
        if self._start is None:
            return out
        # Echo sample i reaches the mic at start + i / rate (the resampler keeps sample
        # positions; it only holds its last few back). The offset is fixed once per pair of
        # starts, so consecutive frames stay contiguous.
        first = round((capture_start - self._start) * self._rate) + index
        lo, hi = max(first, self._base), min(first + n, self._base + len(self._echo))
        if lo < hi:
            out[lo - first : hi - first] = self._echo[lo - self._base : hi - self._base]
        if lo > self._base:  # the microphone reads forward: drop what it has passed
            drop = min(lo, self._base + len(self._echo)) - self._base
            self._echo = self._echo[drop:]
            self._base += drop
        return out
