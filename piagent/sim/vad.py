"""Energy-based voice activity detection and end-of-turn detection for the simulator.

Owns ``EnergyVad``: a sans-I/O detector fed with int16 user samples in chunks of any size. It
cuts them into 20 ms frames, calls a frame speech when its level reaches a threshold (dBFS),
starts a user turn after ``min_speech_ms`` of speech in a row and ends it after
``turn_end_silence_ms`` of silence (protocol.md §5: the server detects the end of a turn from
trailing silence; §8: clients stream digital silence while muted, which must never count as
speech). It also turns levels into a 0-1 ``vad_score`` at a fixed rate of *audio* time.

Pure: numpy only; no I/O, no clock (time is the audio's own sample count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from piagent.audio.codecs import Samples

__all__ = ["EnergyVad", "SpeechEnded", "SpeechStarted", "VadEvent", "VadLevel", "frame_levels_db"]

FRAME_MS = 20


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """A user turn began ``at_ms`` milliseconds into the stream."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class VadLevel:
    """The probability-like speech score of the last interval, 0 to 1."""

    score: float


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """A user turn ended; ``samples`` run from its first speech frame to its last."""

    samples: Samples
    rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate


VadEvent = SpeechStarted | VadLevel | SpeechEnded


def frame_levels_db(frames: np.ndarray[tuple[int, int], np.dtype[np.int16]]) -> list[float]:
    """RMS level of each row of ``frames`` in dBFS; digital silence is ``-inf``."""
    values = frames.astype(np.float64)
    rms = np.sqrt(np.mean(values * values, axis=1))
    with np.errstate(divide="ignore"):
        levels = 20.0 * np.log10(rms / 32768.0)
    return [float(level) for level in levels]


class EnergyVad:
    """Feed samples with ``feed``; get ``SpeechStarted``, ``VadLevel`` and ``SpeechEnded``."""

    def __init__(
        self,
        rate: int,
        *,
        threshold_db: float = -40.0,
        min_speech_ms: int = 60,
        end_silence_ms: int = 600,
        score_interval_ms: int = 100,
        max_utterance_ms: int = 30000,
    ) -> None:
        self.rate = rate
        self.threshold_db = threshold_db
        self._frame_len = rate * FRAME_MS // 1000
        self._min_speech = max(1, math.ceil(min_speech_ms / FRAME_MS))
        self._end_silence = max(1, math.ceil(end_silence_ms / FRAME_MS))
        self._score_every = max(1, round(score_interval_ms / FRAME_MS))
        self._max_frames = max(self._min_speech + 1, max_utterance_ms // FRAME_MS)
        self._pending = np.zeros(0, dtype=np.int16)
        self._frames_seen = 0
        self._run: list[Samples] = []  # speech frames in a row, before a turn starts
        self._utterance: list[Samples] = []  # frames of the turn in progress
        self._last_speech = 0  # number of utterance frames up to the last speech frame
        self._silence = 0
        self._score_frames = 0
        self._score_peak = -math.inf
        self._last_score = 0.0  # silence at the start is not reported either

    @property
    def in_speech(self) -> bool:
        """True between ``SpeechStarted`` and ``SpeechEnded``."""
        return bool(self._utterance)

    def score(self, level_db: float) -> float:
        """Map a level in dBFS to 0-1: 0.5 at the threshold, 0 for digital silence."""
        if level_db == -math.inf:
            return 0.0
        return round(1.0 / (1.0 + math.exp(-(level_db - self.threshold_db) / 4.0)), 3)

    def feed(self, samples: Samples) -> list[VadEvent]:
        """Process the next samples of the stream; returns what they caused, in order."""
        data = np.concatenate((self._pending, samples)) if len(self._pending) else samples
        count = len(data) // self._frame_len
        self._pending = data[count * self._frame_len :].copy()
        if not count:
            return []
        frames = data[: count * self._frame_len].reshape(count, self._frame_len)
        events: list[VadEvent] = []
        for frame, level in zip(frames, frame_levels_db(frames), strict=True):
            self._frames_seen += 1
            self._step(frame, level >= self.threshold_db, events)
            self._score_peak = max(self._score_peak, level)
            self._score_frames += 1
            if self._score_frames >= self._score_every:
                score = self.score(self._score_peak)
                # Continuous digital silence would otherwise mean ten zeros a second forever.
                if score > 0.0 or self._last_score != 0.0:
                    events.append(VadLevel(score))
                self._last_score = score
                self._score_frames = 0
                self._score_peak = -math.inf
        return events

    def _step(self, frame: Samples, is_speech: bool, events: list[VadEvent]) -> None:
        if not self._utterance:
            if not is_speech:
                self._run.clear()
                return
            self._run.append(frame)
            if len(self._run) >= self._min_speech:
                start_ms = (self._frames_seen - len(self._run)) * FRAME_MS
                self._utterance, self._run = self._run, []
                self._last_speech = len(self._utterance)
                self._silence = 0
                events.append(SpeechStarted(start_ms))
            return
        self._utterance.append(frame)
        if is_speech:
            self._last_speech = len(self._utterance)
            self._silence = 0
        else:
            self._silence += 1
        if self._silence >= self._end_silence or len(self._utterance) >= self._max_frames:
            speech = self._utterance[: self._last_speech]
            self._utterance = []
            events.append(SpeechEnded(np.concatenate(speech), self.rate))
