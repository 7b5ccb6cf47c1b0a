"""Hearing: what happens to each microphone frame before the uplink sees it.

Owns ``Hearing``, the mic path's front end when echo cancellation (``audio.aec``) or the wake
word (``wake``) is on, and ``build_hearing``, which makes it from the config. Per microphone
frame, on the event loop:

1. the frame is resampled to 16 kHz and cut into whole 10 ms frames (a remainder waits for the
   next frame);
2. with echo cancellation: ``audio.duplex.EchoControl`` removes what the speaker played from
   them, and says when the user starts talking over the agent (``Heard.voice_over``);
3. with the wake word: the (cancelled) audio goes to the ``WakeListener``, whose detections
   come back as ``Heard.words``.

What goes on to the uplink is the cancelled 16 kHz audio with echo cancellation on, the
microphone's own frame otherwise (the wake word listens beside it and changes nothing).

The speaker's side is ``played``: the playback buffer's tap calls it with every period the
device takes, from the device's thread (PortAudio's callback), and it only queues the samples
with the moment they were read. The loop hands them to ``EchoControl`` when it next hears a
frame, so the device's thread never resamples or touches the canceller. Both sides are placed
on the monotonic clock: a speaker period reaches the DAC ``output_latency_s`` after it is read
(the device's buffer), a mic frame's first sample was taken its own length (plus
``input_latency_s``) before it arrived. Those are first guesses: the delay estimator measures
the rest, and timelines stay contiguous through up to ``RESYNC_MS`` of scheduling jitter.
A device xrun (``input_xruns`` / ``output_xruns``, the devices' counts of PortAudio's flags,
and of microphone frames dropped for a late loop, going up) tells ``EchoControl`` that the
next period on that side slipped: it is placed on the clock at once instead of counted on.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from piagent.audio.aec import FRAME_SAMPLES, RATE, AecUnavailable
from piagent.audio.codecs import Samples
from piagent.audio.duplex import EchoControl
from piagent.audio.resample import StreamResampler
from piagent.config import Config
from piagent.errors import ConfigError
from piagent.wake import Detection, WakeListener

__all__ = ["RESYNC_MS", "Heard", "Hearing", "build_hearing"]

logger = logging.getLogger(__name__)

RESYNC_MS: Final = 250.0
"""A stream whose sample count strays this far from the clock is placed on it again (ms).
Both sides count their samples, so a stalled loop (periods read or frames delivered late, in
a burst) moves nothing; only a real gap (the speaker resting, a device reopened) or long
drift between two devices' clocks does. Within the delay estimator's reach (400 ms)."""
CONVERGED_ERLE_DB: Final = 12.0
"""The canceller counts as converged once its ERLE has held this (dB) for ``CONVERGED_S`` of
far-end sound; until then the agent's voice could pass for the user's."""
CONVERGED_S: Final = 1.0
ECHO_TAIL_S: Final = 0.5
"""How long after the speaker last played sound its echo may still reach the microphone, for
the upstream gate (s): the room's delay and reverberation, and any misalignment of the two
timelines the delay estimator has not measured yet."""
_TAP_LIMIT: Final = 400  # speaker periods queued between two mic frames at most (8 s of 20 ms)


@dataclass(frozen=True, slots=True)
class Heard:
    """What one microphone frame came to."""

    frame: Samples
    """For the uplink: cancelled 16 kHz audio, or the microphone's frame as it came."""
    rate: int
    words: tuple[Detection, ...] = ()
    voice_over: bool = False
    """The user started talking over the far end in this frame (echo cancellation on)."""


class Hearing:
    """The mic path's front end; see the module docstring. ``mic_rate`` is the microphone's
    rate (Hz); ``clock`` the monotonic clock both sides are stamped with (seconds)."""

    def __init__(
        self,
        mic_rate: int,
        *,
        echo: EchoControl | None = None,
        wake: WakeListener | None = None,
        input_latency_s: float = 0.0,
        output_latency_s: float = 0.0,
        input_xruns: Callable[[], int] = lambda: 0,
        output_xruns: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._input_xruns, self._output_xruns = input_xruns, output_xruns
        self._input_seen = self._output_seen = 0  # the counts when last looked at
        self._echo = echo
        self._wake = wake
        self._mic_rate = mic_rate
        self._down = StreamResampler(mic_rate, RATE)
        self._input_latency = input_latency_s
        self._output_latency = output_latency_s
        # (samples, when read, whether the speaker reported an xrun since the period before)
        self._taps: collections.deque[tuple[Samples, float, bool]] = collections.deque(
            maxlen=_TAP_LIMIT
        )
        self._pending = np.zeros(0, dtype=np.int16)  # 16 kHz samples short of a 10 ms frame
        self.voice_overs = 0
        self.words_heard = 0
        self._sounding_until = -1.0  # clock time until which the speaker's echo may be heard
        self._converged_s = 0.0  # far-end sound heard with the ERLE above CONVERGED_ERLE_DB
        # The reference's latency and resyncs while convergence was counted.
        self._alignment: tuple[float, int] | None = None

    @property
    def cancels_echo(self) -> bool:
        return self._echo is not None

    @property
    def uplink_rate(self) -> int:
        """The rate of ``Heard.frame``."""
        return RATE if self._echo is not None else self._mic_rate

    def describe(self) -> dict[str, object]:
        """For ``ctl status``: what the front end does, and how well."""
        info: dict[str, object] = {"wake": self._wake is not None, "words": self.words_heard}
        if self._echo is not None:
            info["aec"] = {
                "engine": self._echo.engine,
                "converged": self.converged,
                "erle_db": round(self._echo.erle_db, 1),
                "latency_ms": round(self._echo.latency_ms, 1),
                "voice_overs": self.voice_overs,
                "slips": self._echo.slips,
                "resyncs": self._echo.resyncs,
            }
        return info

    @property
    def converged(self) -> bool:
        """Whether the canceller has learnt the echo path (see ``CONVERGED_ERLE_DB``)."""
        return self._converged_s >= CONVERGED_S

    # -- the speaker's side (any thread) ----------------------------------------------------

    def played(self, samples: Samples) -> None:
        """A period handed to the speaker: queued with the moment it was read (the speaker's
        xrun count is already up when the period after an xrun is read)."""
        if self._echo is not None:
            xruns = self._output_xruns()
            slipped, self._output_seen = xruns != self._output_seen, xruns
            self._taps.append((samples.copy(), self._clock(), slipped))

    # -- the microphone's side (the loop) ---------------------------------------------------

    def hear(self, frame: Samples, mic_rate: int | None = None) -> Heard:
        """One microphone frame (at ``mic_rate``, the last one's by default), just arrived."""
        now = self._clock()
        if mic_rate is not None and mic_rate != self._mic_rate:
            self._mic_rate = mic_rate  # the microphone was reopened at another rate
            self._down = StreamResampler(mic_rate, RATE)
            self._pending = np.zeros(0, dtype=np.int16)
        audio = np.asarray(self._down.process(frame), dtype=np.int16)
        self._pending = np.concatenate([self._pending, audio])
        # Stamped afresh from the clock every time: the newest sample was taken just now, the
        # first pending one as long before as all of them last. A stamp counted forward from
        # an old one would carry a burst (frames delivered faster than real time, as when a
        # device's buffer drains at start) as a lasting lead over the speaker's timeline.
        taken_at = now - len(self._pending) / RATE - self._input_latency
        whole = len(self._pending) // FRAME_SAMPLES * FRAME_SAMPLES
        chunk, self._pending = self._pending[:whole], self._pending[whole:]
        cleaned, voice_over = self._cancel(chunk, taken_at)
        words = self._listen(cleaned)
        if self._echo is None:
            return Heard(frame, self._mic_rate, words)
        return Heard(cleaned, RATE, words, voice_over)

    def _cancel(self, chunk: Samples, taken_at: float) -> tuple[Samples, bool]:
        echo = self._echo
        if echo is None or len(chunk) == 0:
            return chunk, False
        while self._taps:
            samples, read_at, slipped = self._taps.popleft()
            echo.record_played(samples, read_at + self._output_latency, slipped=slipped)
            if samples.any():
                self._sounding_until = read_at + self._output_latency + ECHO_TAIL_S
        xruns = self._input_xruns()
        slipped, self._input_seen = xruns != self._input_seen, xruns
        cleaned, onset = echo.process(chunk, taken_at, slipped=slipped)
        self._follow_convergence(echo, len(chunk) / RATE)
        # Whether the speaker's echo may be in the chunk: by the aligned reference, or, before
        # the alignment is known (or when it is off), by the speaker having sounded lately.
        if not echo.far_playing and self._clock() >= self._sounding_until:
            return cleaned, onset  # nothing to mistake the user for: as it is
        # The far end plays. Until the canceller has converged, its residual could pass for
        # the user: no barge-in and, upstream, silence (half duplex, as without cancelling).
        # After that only the user's own episodes go up, so no residual echo ever reaches the
        # server's turn detection either.
        if not self.converged:
            return np.zeros_like(cleaned), False
        if onset:
            self.voice_overs += 1
        if not echo.talking:
            return np.zeros_like(cleaned), onset
        return cleaned, onset

    def _follow_convergence(self, echo: EchoControl, seconds: float) -> None:
        alignment = (echo.latency_ms, echo.resyncs)
        if alignment != self._alignment:  # realigned: the canceller learns again
            self._alignment = alignment
            self._converged_s = 0.0
        if echo.far_playing and not echo.talking:
            if echo.erle_db >= CONVERGED_ERLE_DB:
                self._converged_s += seconds
            elif not self.converged:
                self._converged_s = 0.0

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
            self._echo.close()


def build_hearing(
    config: Config,
    mic_rate: int,
    speaker_rate: int,
    *,
    latency_s: tuple[float, float] = (0.0, 0.0),
    xruns: tuple[Callable[[], int], Callable[[], int]] = (lambda: 0, lambda: 0),
) -> Hearing | None:
    """The front end ``audio.aec`` and ``wake`` ask for, or None when neither is on.

    A canceller or a wake-word engine that cannot run here (no wheel, no library) is logged
    with the key to change and left out: the daemon runs on with the button (and half duplex).
    ``latency_s`` is the devices' (input, output) buffering, ``xruns`` their xrun counts."""
    echo: EchoControl | None = None
    if config.audio.aec.enabled:
        try:
            echo = EchoControl(config.audio.aec, speaker_rate=speaker_rate, resync_ms=RESYNC_MS)
        except AecUnavailable as exc:
            logger.error("echo cancellation is off (half duplex instead): %s", exc)
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
    return Hearing(
        mic_rate,
        echo=echo,
        wake=wake,
        input_latency_s=latency_s[0],
        output_latency_s=latency_s[1],
        input_xruns=xruns[0],
        output_xruns=xruns[1],
    )
