"""Full duplex on an open speaker: the echo chain the daemon wires between speaker and mic.

Owns ``EchoControl``, which puts ``echoref``, ``aec`` and ``nearend`` together behind two calls,
one per side, both on the event loop (the PortAudio adapters already hand their periods to the
loop; the ``wav`` backend runs there):

* speaker period path: ``record_played(samples, dac_time, slipped=)``: the samples the speaker
  just played (its own rate, int16) and the time its first one reaches the DAC, on the clock
  the mic uses (PortAudio's ``outputBufferDacTime``, or for the ``wav`` backend ``start_time``
  plus the position over the rate). They are resampled to 16 kHz and kept in the reference ring.
* mic period path: ``process(near, adc_time, slipped=) -> (cleaned, onset)``: a mic period
  already at 16 kHz (any whole number of 10 ms frames, e.g. 320 samples for 20 ms) and the time
  its first sample was captured (``inputBufferAdcTime``, or the ``wav`` mic's capture start plus
  the frame's offset). Returns the period with the echo removed, to send instead of the raw
  mic, and whether the user started talking over the agent in it (barge-in: flush playback).

Each side counts its samples from where its timeline was last placed on the clock, so clock
jitter moves nothing. A device xrun is the exception, and the device says so (``slipped``):
an underrun plays the rest later than the count says, an overrun drops captured samples. The
timeline is then placed on the clock again at once, quietly (``slips``): the echo path itself
did not change, so the measured latency and what the canceller learnt still hold. Without
that, every xrun would leave the reference up to a buffer off the echo, and a run of them
would keep the canceller from ever converging.

The speaker-to-mic latency starts at ``audio.aec.delay_ms`` (0 when null) and is measured
continuously from the signals (``DelayEstimator``). Raises ``AecUnavailable`` (naming
``audio.aec.engine``) when the engine cannot run, so the caller logs it and runs without.

Imports numpy and piagent's audio helpers and config schema; no devices, no asyncio.
"""

from __future__ import annotations

import logging

import numpy as np

from piagent.audio.aec import FRAME_SAMPLES, RATE, EchoCanceller
from piagent.audio.codecs import Samples
from piagent.audio.echoref import DelayEstimator, EchoReference, timeline_position
from piagent.audio.nearend import NearEndDetector
from piagent.audio.resample import StreamResampler
from piagent.config.schema import AecConfig

__all__ = ["EchoControl"]

logger = logging.getLogger(__name__)

_STRAY_S = 1.0  # a mic time off for this long (of audio) is believed: not a stall's burst
_RESYNC_MS = 5.0  # a time off by more than this (ms): the stream restarted, or it drifted


class EchoControl:
    """The echo chain for one speaker at ``speaker_rate`` Hz and one 16 kHz mic stream."""

    def __init__(
        self, config: AecConfig, *, speaker_rate: int, resync_ms: float = _RESYNC_MS
    ) -> None:
        self._canceller = EchoCanceller(
            config.engine,
            tail_ms=config.tail_ms,
            suppress_db=config.suppress_db,
            noise_suppression=config.noise_suppression,
        )
        self._reference = EchoReference(RATE, latency_ms=config.delay_ms or 0.0)
        self._estimator = DelayEstimator(self._reference)
        self._detector = NearEndDetector()
        self._resampler = StreamResampler(speaker_rate, RATE)
        self._speaker_rate = speaker_rate
        # Times read off a clock rather than the device's (the daemon stamps periods as the
        # loop sees them) jitter more: the caller widens this, within the estimator's reach.
        self._resync = round(RATE * resync_ms / 1000)
        self._next: int | None = None  # where the next resampled reference sample goes
        self._played = 0  # speaker samples since the last resync
        self._anchor = 0  # the resynced timeline position of speaker sample 0
        self._mic_next: int | None = None  # where the next mic period should start
        self.resyncs = 0  # times a timeline was placed on the clock again after its start
        self.slips = 0  # times a device xrun moved a timeline (placed on the clock, quietly)
        self._strayed = 0  # mic samples in a row whose time strays beyond the tolerance
        logger.info("echo cancellation: %s engine", self._canceller.engine)

    @property
    def engine(self) -> str:
        return self._canceller.engine

    @property
    def erle_db(self) -> float:
        """The canceller's running ERLE (dB)."""
        return self._canceller.erle_db

    @property
    def talking(self) -> bool:
        """Whether the near end is talking (the detector's episode)."""
        return self._detector.talking

    @property
    def far_playing(self) -> bool:
        """Whether what the speaker played may still be heard (the detector's far envelope)."""
        return self._detector.far_playing

    @property
    def latency_ms(self) -> float:
        """The speaker-to-mic latency the reference is aligned with now (ms)."""
        return self._reference.latency_samples * 1000 / RATE

    def record_played(self, samples: Samples, dac_time: float, *, slipped: bool = False) -> None:
        """The speaker played ``samples`` (its rate), the first reaching the DAC at
        ``dac_time`` (seconds, the mic's clock); ``slipped``: the device reported an xrun
        since the last period, so its sound resumes later than the sample count says."""
        position = timeline_position(dac_time, 0.0, RATE)
        expected = self._anchor + self._played * RATE // self._speaker_rate
        if self._next is None or abs(position - expected) > self._resync:
            # First period, or the stream rested or restarted: start a new timeline.
            if self._next is not None:
                self._realigned()
            self._resampler.reset()
            self._anchor, self._played = position, 0
            self._next = position
        elif slipped and position > expected:
            # An underrun: the device played silence meanwhile. The samples go where the clock
            # says; the ring keeps silence in the gap, as the room heard it.
            self.slips += 1
            self._anchor, self._played = position, 0
            self._next = max(self._next, position)
        out = self._resampler.process(samples)
        self._played += len(samples)
        self._reference.record(np.asarray(out, dtype=np.int16), self._next)
        self._next += len(out)

    def process(
        self, near: Samples, adc_time: float, *, slipped: bool = False
    ) -> tuple[Samples, bool]:
        """The mic period ``near`` (16 kHz, whole 10 ms frames) captured from ``adc_time``:
        the period with the echo removed, and whether a near-end onset was decided in it.
        ``slipped``: the device reported an xrun since the last period (samples were lost)."""
        if len(near) % FRAME_SAMPLES:
            raise ValueError(f"a mic period must be whole 10 ms frames, got {len(near)} samples")
        start = timeline_position(adc_time, 0.0, RATE)
        if self._mic_next is not None:
            if slipped and start > self._mic_next and start - self._mic_next <= self._resync:
                # An overrun dropped samples: this period was captured later than the count
                # says, by what the clock says.
                self.slips += 1
                self._strayed = 0
            elif abs(start - self._mic_next) <= self._resync:
                self._strayed = 0
                start = self._mic_next  # clock jitter: keep the mic's timeline contiguous
            elif self._strayed < RATE * _STRAY_S:
                # Off by more, but not for long yet: a stalled loop delivering a burst of
                # frames late. The samples themselves are contiguous: keep counting them.
                self._strayed += len(near)
                start = self._mic_next
            else:  # off for a second of audio: a gap, or the two clocks drifted apart
                self._strayed = 0
                self._realigned()
        self._mic_next = start + len(near)
        cleaned: list[Samples] = []
        onset = False
        for offset in range(0, len(near), FRAME_SAMPLES):
            frame = near[offset : offset + FRAME_SAMPLES]
            position = start + offset
            if self._estimator.observe(frame, position) is not None:
                self._estimator.apply()
                self._detector.realign()
                logger.debug("echo path latency now %.1f ms", self.latency_ms)
            far = self._reference.aligned(position, FRAME_SAMPLES)
            if self._detector.far_playing or far.any():
                out = self._canceller.process(frame, far)
            else:
                out = frame  # nothing played, no echo to remove: the filter keeps what it knows
            onset = self._detector.update(out, far) or onset
            cleaned.append(out)
        return np.concatenate(cleaned), onset

    def _realigned(self) -> None:
        """A timeline was placed on the clock again: until the delay estimator has measured it
        afresh, the echo may not be where the reference says, so the detector starts over
        from its cautious ratio, and ``resyncs`` tells the caller."""
        self.resyncs += 1
        self._detector.realign()

    def close(self) -> None:
        self._canceller.close()
