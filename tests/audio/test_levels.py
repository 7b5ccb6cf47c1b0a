"""piagent.audio.levels: fixed-point gain with clip counts, and peak / RMS levels in dBFS."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from piagent.audio.levels import (
    FLOOR_DBFS,
    apply_gain,
    gain_q,
    gain_table,
    peak_dbfs,
    rms_dbfs,
    scale_q,
)


def test_zero_db_is_an_unchanged_copy() -> None:
    frame = np.array([-32768, -1, 0, 1, 32767], dtype=np.int16)
    out, clipped = apply_gain(frame, 0.0)
    assert clipped == 0
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, frame)
    out[0] = 5
    assert frame[0] == -32768


@pytest.mark.parametrize("gain_db", [-30.0, -6.0, -0.5, 0.5, 6.0, 20.0, 30.0])
def test_gain_matches_float_math_within_one_lsb(gain_db: float) -> None:
    rng = np.random.default_rng(7)
    frame = rng.integers(-32768, 32768, 960).astype(np.int16)
    frame[:4] = [-32768, 32767, 0, 1]
    out, clipped = apply_gain(frame, gain_db)
    exact = frame.astype(np.float64) * 10 ** (gain_db / 20)
    expected = np.clip(np.rint(exact), -32768, 32767)
    assert np.max(np.abs(out.astype(np.float64) - expected)) <= 1.0
    rounded = np.rint(exact)
    # One sample may sit on the clip boundary and round the other way in fixed point.
    assert abs(clipped - np.count_nonzero((rounded > 32767) | (rounded < -32768))) <= 1
    if gain_db < 0:
        assert clipped == 0


def test_gain_clips_and_counts_instead_of_wrapping() -> None:
    frame = np.array([20000, -20000, 100, -100], dtype=np.int16)
    out, clipped = apply_gain(frame, 6.0206)  # x2
    assert out.tolist() == [32767, -32768, 200, -200]
    assert clipped == 2


def test_six_db_down_halves() -> None:
    out, clipped = apply_gain(np.array([1000, -1000, 32767], dtype=np.int16), -6.0206)
    assert out.tolist() == [500, -500, 16384]
    assert clipped == 0


@given(st.floats(min_value=0.0, max_value=40.0), st.integers(1, 3))
def test_gain_q_never_overflows_int32(linear: float, headroom: int) -> None:
    multiplier, shift = gain_q(linear, headroom=headroom)
    assert 0 <= shift <= 15
    assert headroom * 32768 * multiplier <= 2**31
    if linear <= 1.0 and headroom == 1:
        assert shift == 15


def test_unity_gain_is_exact() -> None:
    assert gain_q(1.0) == (32768, 15)


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_gain_q_rejects_nonsense(bad: float) -> None:
    with pytest.raises(ValueError, match="gain"):
        gain_q(bad)


def test_levels_of_known_signals() -> None:
    t = np.arange(48000) / 48000
    sine = np.rint(np.sin(2 * np.pi * 1000 * t) * 32767).astype(np.int16)
    assert peak_dbfs(sine) == pytest.approx(0.0, abs=0.01)
    assert rms_dbfs(sine) == pytest.approx(-3.01, abs=0.01)
    half = (sine // 2).astype(np.int16)
    assert peak_dbfs(half) == pytest.approx(-6.02, abs=0.01)
    assert rms_dbfs(half) == pytest.approx(-9.03, abs=0.01)
    assert peak_dbfs(np.array([-32768], dtype=np.int16)) == 0.0


@pytest.mark.parametrize("frame", [np.zeros(320, dtype=np.int16), np.zeros(0, dtype=np.int16)])
def test_silence_reads_the_floor(frame: np.ndarray) -> None:
    assert peak_dbfs(frame) == FLOOR_DBFS
    assert rms_dbfs(frame) == FLOOR_DBFS


def test_one_lsb_is_above_the_floor() -> None:
    one = np.array([1], dtype=np.int16)
    assert peak_dbfs(one) == pytest.approx(-90.31, abs=0.01)
    assert rms_dbfs(one) > FLOOR_DBFS


@pytest.mark.parametrize("linear", [0.0, 0.001, 0.5, 0.8, 0.999, 1.0])
@pytest.mark.parametrize("headroom", [1, 2])
def test_gain_table_is_the_fixed_point_arithmetic_for_every_sample(
    linear: float, headroom: int
) -> None:
    multiplier, shift = gain_q(linear, headroom=headroom)
    every = np.arange(-32768, 32768, dtype=np.int32)
    expected = np.clip(scale_q(every.copy(), multiplier, shift), -32768, 32767)
    table = gain_table(multiplier, shift)
    looked_up = table[every.astype(np.int16).view(np.uint16)]
    assert looked_up.dtype == np.int16
    np.testing.assert_array_equal(looked_up, expected)
    assert not table.flags.writeable
