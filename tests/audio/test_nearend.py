"""piagent.audio.nearend: the detector fires fast on a talker and never on residual echo.

Fixtures are the real chain on synthetic speech-like signals: far-end "agent" speech through a
simulated room, cancelled by the speex engine with the reference aligned, then the detector.
"""

from __future__ import annotations

import numpy as np
import pytest

from piagent.audio.aec import FRAME_SAMPLES, EchoCanceller, engine_problem
from piagent.audio.nearend import NearEndDetector
from piagent.audio.room import Room, synthetic_impulse_response
from tests.audio.speechlike import frames, speechlike

RATE = 16000
DELAY_MS = 70
needs_speex = pytest.mark.skipif(engine_problem("speex") is not None, reason="no libspeexdsp1")


def chain(far: np.ndarray, near: np.ndarray, detector: NearEndDetector) -> list[int]:
    """Frame indices where the detector decided an onset."""
    ir = synthetic_impulse_response(RATE, rt60_ms=200, length_ms=120, seed=4)
    echo = Room(RATE, delay_ms=DELAY_MS, gain_db=-6, impulse_response=ir).process(far)
    mic = np.clip(echo.astype(np.int32) + near, -32768, 32767).astype(np.int16)
    shift = RATE * (DELAY_MS - 5) // 1000
    ref = np.concatenate([np.zeros(shift, np.int16), far])[: len(far)]
    canceller = EchoCanceller("speex")
    onsets = []
    for k, (n, f) in enumerate(zip(frames(mic), frames(ref), strict=True)):
        if detector.update(canceller.process(n, f), f):
            onsets.append(k)
    return onsets


@needs_speex
def test_never_fires_on_the_agents_echo_alone() -> None:
    far = speechlike(40, seed=11, level_dbfs=-16)
    detector = NearEndDetector()
    assert chain(far, np.zeros(len(far), np.int16), detector) == []
    assert detector.residual_ratio_db < -20  # it learnt how good the cancellation is


@needs_speex
def test_fires_within_80_ms_of_a_talker_over_the_agent() -> None:
    far = speechlike(20, seed=11, level_dbfs=-16)
    near = np.zeros(len(far), np.int16)
    starts = [10 * RATE, 15 * RATE]
    for start in starts:
        talk = speechlike(1.5, seed=5, level_dbfs=-22)
        near[start : start + len(talk)] = talk
    onsets = chain(far, near, NearEndDetector())
    assert len(onsets) == 2
    for onset, start in zip(onsets, starts, strict=True):
        first = start + int(np.argmax(np.abs(near[start:]) > 1000))
        latency_ms = ((onset + 1) * FRAME_SAMPLES - first) * 1000 / RATE
        assert 0 <= latency_ms <= 80


def test_without_far_end_it_is_a_voice_gate_that_releases() -> None:
    detector = NearEndDetector(onset_frames=3, release_frames=10)
    silent = np.zeros(FRAME_SAMPLES, np.int16)
    loud = speechlike(0.5, seed=1, level_dbfs=-20, pause_s=0.02)
    decided = [detector.update(f, silent) for f in frames(loud)]
    assert decided.count(True) == 1 and detector.talking and detector.onsets == 1
    for _ in range(10):
        detector.update(silent, silent)
    assert not detector.talking


def test_quiet_room_noise_is_not_a_talker() -> None:
    detector = NearEndDetector()
    noise = (np.random.default_rng(1).standard_normal(RATE * 5) * 60).astype(np.int16)  # -55 dBFS
    assert not any(detector.update(f, -120.0) for f in frames(noise))


def test_a_fresh_detector_does_not_fire_on_unconverged_echo() -> None:
    """Before the canceller converges the residual is as loud as the echo: the initial ratio
    (0 dB) keeps the bar above it."""
    detector = NearEndDetector()
    far = speechlike(2, seed=3, level_dbfs=-16)
    echo = (far.astype(np.float64) * 0.5).astype(np.int16)  # -6 dB, nothing cancelled
    assert not any(detector.update(e, f) for e, f in zip(frames(echo), frames(far), strict=True))
