"""Hearing: what happens to each microphone frame before the uplink sees it.

Owns ``Hearing``, the mic path's front end when echo cancellation (``audio.aec``) or the wake
word (``wake``) is on. Per microphone frame, on the event loop:

1. the frame is resampled to 16 kHz and cut into 10 ms frames;
2. with echo cancellation: the far-end reference of each 10 ms frame (what the speaker played,
   found again on a shared timeline of sample positions, ``audio.echoref``) goes with it into
   the ``EchoCanceller``; the ``DelayEstimator`` keeps that reference aligned with what the
   microphone actually hears; the ``NearEndDetector`` decides, on the cancelled signal, that
   the user is talking over the agent (``Heard.voice_over``);
3. with the wake word: the (cancelled) audio goes to the ``WakeListener``, whose detections
   come back as words (``Heard.words``).

What goes on to the uplink is the cancelled 16 kHz audio with echo cancellation on, the
microphone's own frame otherwise (the wake word listens beside it and changes nothing).

The speaker side is ``played``: the playback buffer calls it with every period it hands the
device, from the device's thread; it only queues the samples with the moment they were read.
The loop side places them on the timeline when it next hears a frame, so PortAudio's thread
never resamples or touches the canceller. Positions come from sample counts, anchored to the
monotonic clock and anchored again when a stream stops and starts (the speaker parks when
idle) or drifts beyond ``ANCHOR_TOLERANCE_S``.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from piagent.audio.aec import FRAME_SAMPLES, RATE, AecUnavailable, EchoCanceller
from piagent.audio.codecs import Samples
from piagent.audio.echoref import DelayEstimator, EchoReference, timeline_position
from piagent.audio.nearend import NearEndDetector
from piagent.audio.resample import StreamResampler
from piagent.config import Config
from piagent.errors import ConfigError
from piagent.wake import Detection, WakeListener, Word

__all__ = ["ANCHOR_TOLERANCE_S", "EchoParts", "Heard", "Hearing", "build_hearing"]

logger = logging.getLogger(__name__)

ANCHOR_TOLERANCE_S: Final = 0.06
"""A stream whose sample count strays this far from the clock is placed on it again (s)."""
_TAP_LIMIT: Final = 200  # speaker periods queued between two mic frames at most (4 s at 20 ms)


@dataclass(frozen=True, slots=True)
class Heard:
    """What one microphone frame came to."""

    frame: Samples
    """For the uplink: cancelled 16 kHz audio, or the microphone's frame as it came."""
    rate: int
    words: tuple[Detection, ...] = ()
    voice_over: bool = False
    """The user started talking over the agent in this frame (echo cancellation on)."""


@dataclass(slots=True)
class EchoParts:
    """The echo canceller and what keeps it fed: built from ``audio.aec`` by the assembly."""

    canceller: EchoCanceller
    reference: EchoReference
    estimator: DelayEstimator | None  # None: the latency is the configured one, kept
    detector: NearEndDetector = field(default_factory=NearEndDetector)
    output_latency_s: float = 0.0  # from a period's read to its DAC (the device's buffer)
    input_latency_s: float = 0.0  # from the ADC to the frame's delivery (one period at least)


class _Anchor:
    """Timeline positions of one stream: continuous while its samples are, from the clock when
    they are not (a gap, a restart, drift)."""

    def __init__(self, origin: float) -> None:
        self._origin = origin
        self._next: int | None = None
        self.anchored = 0

    def place(self, n: int, first_at: float) -> int:
        """The position of the first of ``n`` samples, the first of which is at ``first_at``."""
        expected = timeline_position(first_at, self._origin, RATE)
        tolerance = round(ANCHOR_TOLERANCE_S * RATE)
        if self._next is None or abs(self._next - expected) > tolerance:
            self._next = expected
            self.anchored += 1
        position = self._next
        self._next += n
        return position


class Hearing:
    """The mic path's front end; see the module docstring. ``mic_rate`` and ``speaker_rate``
    are the devices' rates (Hz); ``clock`` is the monotonic clock both sides read (seconds)."""

    def __init__(
        self,
        mic_rate: int,
        speaker_rate: int,
        *,
        echo: EchoParts | None = None,
        wake: WakeListener | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        origin = clock()
        self._echo = echo
        self._wake = wake
        self._mic_rate = mic_rate
        self._down = StreamResampler(mic_rate, RATE)
        self._speaker_rate = speaker_rate
        self._far_down = StreamResampler(speaker_rate, RATE)
        self._mic_anchor = _Anchor(origin)
        self._far_anchor = _Anchor(origin)
        self._taps: collections.deque[tuple[Samples, float]] = collections.deque(maxlen=_TAP_LIMIT)
        self._pending = np.zeros(0, dtype=np.int16)  # 16 kHz samples short of a 10 ms frame
        self._pending_at = 0  # the timeline position of the first pending sample
        self.voice_overs = 0
        self.words_heard = 0

    @property
    def cancels_echo(self) -> bool:
        return self._echo is not None

    @property
    def uplink_rate(self) -> int:
        """The rate of ``Heard.frame``."""
        return RATE if self._echo is not None else self._mic_rate

    def describe(self) -> dict[str, object]:
        """For ``ctl status``: what the front end does and how well."""
        info: dict[str, object] = {"wake": self._wake is not None}
        if self._echo is not None:
            estimator = self._echo.estimator
            estimate = None if estimator is None else estimator.estimate
            info["aec"] = {
                "engine": self._echo.canceller.engine,
                "erle_db": round(self._echo.canceller.erle_db, 1),
                "delay_ms": None if estimate is None else round(estimate * 1000 / RATE, 1),
                "voice_overs": self.voice_overs,
            }
        return info

    # -- the speaker's side (any thread) ----------------------------------------------------

    def played(self, samples: Samples) -> None:
        """A period handed to the speaker: queued with the moment it was read."""
        if self._echo is not None:
            self._taps.append((samples.copy(), self._clock()))

    # -- the microphone's side (the loop) ---------------------------------------------------

    def set_mic_rate(self, rate: int) -> None:
        """The microphone was reopened at another rate."""
        if rate != self._mic_rate:
            self._mic_rate = rate
            self._down = StreamResampler(rate, RATE)
            self._pending = np.zeros(0, dtype=np.int16)

    def hear(self, frame: Samples, at: float | None = None) -> Heard:
        """One microphone frame, delivered at ``at`` (the clock's now by default)."""
        now = self._clock() if at is None else at
        wide = self._down.process(frame)
        audio = np.asarray(wide, dtype=np.int16)
        if self._echo is not None:
            self._take_taps()
            first_at = now - len(audio) / RATE - self._echo.input_latency_s
        else:
            first_at = now - len(audio) / RATE
        position = self._mic_anchor.place(len(audio), first_at)
        if len(self._pending) == 0:
            self._pending_at = position
        self._pending = np.concatenate([self._pending, audio])
        whole = len(self._pending) // FRAME_SAMPLES * FRAME_SAMPLES
        chunk, self._pending = self._pending[:whole], self._pending[whole:]
        start, self._pending_at = self._pending_at, self._pending_at + whole
        cleaned, voice_over = self._cancel(chunk, start)
        words = self._listen(cleaned)
        if self._echo is None:
            return Heard(frame, self._mic_rate, words)
        return Heard(cleaned, RATE, words, voice_over)

    def _take_taps(self) -> None:
        assert self._echo is not None
        echo = self._echo
        while self._taps:
            samples, read_at = self._taps.popleft()
            far = np.asarray(self._far_down.process(samples), dtype=np.int16)
            if len(far):
                position = self._far_anchor.place(len(far), read_at + echo.output_latency_s)
                echo.reference.record(far, position)

    def _cancel(self, chunk: Samples, start: int) -> tuple[Samples, bool]:
        echo = self._echo
        if echo is None or len(chunk) == 0:
            return chunk, False
        out: list[Samples] = []
        onset = False
        for k in range(0, len(chunk), FRAME_SAMPLES):
            near = chunk[k : k + FRAME_SAMPLES]
            position = start + k
            estimator = echo.estimator
            if estimator is not None and estimator.observe(near, position) is not None:
                estimator.apply()
                logger.info(
                    "echo path: the microphone hears the speaker %.1f ms after it plays",
                    (estimator.estimate or 0) * 1000 / RATE,
                )
            far = echo.reference.aligned(position, FRAME_SAMPLES)
            cleaned = echo.canceller.process(near, far)
            if echo.detector.update(cleaned, far):
                onset = True  # the appliance acts on it only while the agent plays
            out.append(cleaned)
        if onset:
            self.voice_overs += 1
        return np.concatenate(out), onset

    def _listen(self, audio: Samples) -> tuple[Detection, ...]:
        if self._wake is None or len(audio) == 0:
            return ()
        found = tuple(self._wake.feed(audio))
        for detection in found:
            self.words_heard += 1
            logger.info(
                "heard the %s word (%s, probability %.2f)",
                detection.word,
                detection.model,
                detection.probability,
            )
        return found

    def close(self) -> None:
        if self._wake is not None:
            self._wake.close()
        if self._echo is not None:
            self._echo.canceller.close()


def words_of(heard: Heard) -> list[Word]:
    """The words a frame brought, in order."""
    return [detection.word for detection in heard.words]


def build_hearing(
    config: Config, mic_rate: int, speaker_rate: int, *, device_latency_s: tuple[float, float]
) -> Hearing | None:
    """The front end ``audio.aec`` and ``wake`` ask for, or None when neither is on.

    A canceller or a wake-word engine that cannot run here (no wheel, no library) is logged
    with the key to change and left out: the daemon runs on with the button and half duplex.
    ``device_latency_s`` is (input, output): the devices' buffering, a first guess the delay
    estimator then corrects."""
    echo: EchoParts | None = None
    aec = config.audio.aec
    if aec.enabled:
        try:
            canceller = EchoCanceller(
                aec.engine,
                tail_ms=aec.tail_ms,
                suppress_db=aec.suppress_db,
                noise_suppression=aec.noise_suppression,
            )
        except AecUnavailable as exc:
            logger.error("echo cancellation is off: %s", exc)
        else:
            reference = EchoReference(RATE, latency_ms=aec.delay_ms or 0.0)
            echo = EchoParts(
                canceller,
                reference,
                # A latency the user measured is kept; otherwise it is measured here.
                None if aec.delay_ms is not None else DelayEstimator(reference),
                input_latency_s=device_latency_s[0],
                output_latency_s=device_latency_s[1],
            )
            logger.info("echo cancellation on (%s)", canceller.engine)
    wake: WakeListener | None = None
    if config.wake is not None:
        try:
            wake = WakeListener(config.wake)
        except ConfigError as exc:
            logger.error("the wake word is off, the button still works: %s", exc)
        else:
            logger.info("listening for the wake word (%s)", config.wake.model)
    if echo is None and wake is None:
        return None
    return Hearing(mic_rate, speaker_rate, echo=echo, wake=wake)
