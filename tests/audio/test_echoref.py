"""piagent.audio.echoref: the reference ring finds what played for each mic frame, and the
delay estimator measures the speaker-to-mic delay from the signals alone."""

from __future__ import annotations

import numpy as np
import pytest

from piagent.audio.echoref import DelayEstimator, EchoReference, timeline_position
from piagent.audio.room import Room, synthetic_impulse_response
from tests.audio.speechlike import frames, speechlike

RATE = 16000


def test_positions_come_from_times_on_one_clock() -> None:
    assert timeline_position(12.5, 12.0, RATE) == 8000
    assert timeline_position(12.0, 12.0, RATE) == 0


def test_aligned_returns_what_played_latency_earlier() -> None:
    ref = EchoReference(RATE, latency_ms=10)
    played = np.arange(1, 3201, dtype=np.int16)
    for k, period in enumerate(frames(played, 320)):
        ref.record(period, 1000 + 320 * k)
    # The mic frame captured at 1500 hears what played at 1340.
    np.testing.assert_array_equal(ref.aligned(1500, 160), played[340:500])
    ref.latency_samples = 0
    np.testing.assert_array_equal(ref.aligned(1500, 160), played[500:660])


def test_unrecorded_time_is_silence() -> None:
    ref = EchoReference(RATE, capacity_s=0.1)
    assert not ref.aligned(0, 160).any()  # nothing played yet
    ref.record(np.full(160, 7, np.int16), 0)
    ref.record(np.full(160, 9, np.int16), 480)  # the speaker skipped 320 samples
    got = ref.history(0, 640)
    assert (got[:160] == 7).all() and not got[160:480].any() and (got[480:] == 9).all()
    assert not ref.history(640, 160).any()  # not played yet
    ref.record(np.full(1600, 3, np.int16), 640)  # the ring holds 1600: older is gone
    assert not ref.history(0, 640).any()
    assert ref.end == 2240


def test_a_period_recorded_again_replaces_the_old_one() -> None:
    ref = EchoReference(RATE)
    ref.record(np.full(320, 5, np.int16), 0)
    ref.record(np.full(160, 6, np.int16), 160)
    got = ref.history(0, 320)
    assert (got[:160] == 5).all() and (got[160:] == 6).all()


@pytest.mark.parametrize("delay_ms", [30, 85, 120])
def test_the_estimator_measures_the_delay(delay_ms: int) -> None:
    far = speechlike(3, seed=2)
    ir = synthetic_impulse_response(RATE, length_ms=100, seed=3)
    mic = Room(RATE, delay_ms=delay_ms, gain_db=-10, impulse_response=ir).process(far)
    ref = EchoReference(RATE)
    estimator = DelayEstimator(ref, margin_ms=5)
    for k, (near, played) in enumerate(zip(frames(mic), frames(far), strict=True)):
        ref.record(played, 160 * k)
        estimator.observe(near, 160 * k)
    assert estimator.estimate is not None
    assert abs(estimator.estimate - RATE * delay_ms // 1000) <= RATE * 2 // 1000
    estimator.apply()
    assert ref.latency_samples == estimator.estimate - 80


def test_the_estimator_makes_no_estimate_without_echo() -> None:
    far = speechlike(3, seed=2)
    unrelated = speechlike(3, seed=9)
    ref = EchoReference(RATE)
    estimator = DelayEstimator(ref)
    for k, (near, played) in enumerate(zip(frames(unrelated), frames(far), strict=True)):
        ref.record(played, 160 * k)
        estimator.observe(near, 160 * k)
    assert estimator.estimate is None
    estimator.apply()
    assert ref.latency_samples == 0


def test_the_estimator_waits_for_far_end_sound() -> None:
    ref = EchoReference(RATE)
    estimator = DelayEstimator(ref)
    silence = np.zeros(160, np.int16)
    for k in range(300):
        ref.record(silence, 160 * k)
        assert estimator.observe(speechlike(0.01, seed=k), 160 * k) is None
    assert estimator.windows == 0
