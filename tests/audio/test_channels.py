"""Tests of piagent.audio.channels: the channel counts tried, the downmix and the upmix."""

from __future__ import annotations

import numpy as np
import pytest

from piagent.audio.channels import Upmixer, channel_candidates, describe_channels, downmix


@pytest.mark.parametrize(
    ("maximum", "minimum", "expected"),
    [
        (128, None, (1, 2, 128)),  # a plug PCM: anything
        (2, None, (1, 2)),
        (1, None, (1,)),
        (0, None, ()),  # no channels in this direction
        (2, 2, (2,)),  # a stereo-only DAC: never mono (PortAudio would pad it)
        (8, 2, (2, 8)),
        (8, 4, (4, 8)),  # a minimum above 2 is tried before the maximum
        (6, 6, (6,)),
        (2, 1, (1, 2)),
    ],
)
def test_channel_candidates(maximum: int, minimum: int | None, expected: tuple[int, ...]) -> None:
    assert channel_candidates(maximum, minimum) == expected


def test_describe_channels() -> None:
    assert describe_channels(1) == "mono"
    assert describe_channels(2) == "2 channels"
    assert describe_channels([1, 2, 128]) == "1, 2 or 128 channels"
    assert describe_channels([2]) == "2 channels"
    assert describe_channels([]) == "no channels"


def test_downmix_is_the_mean_without_overflow() -> None:
    left = np.array([32767, -32768, 1000, 3, -3, 0], dtype=np.int16)
    right = np.array([32767, -32768, -3000, 4, -4, 1], dtype=np.int16)
    interleaved = np.stack([left, right], axis=1).reshape(-1)
    mono = downmix(interleaved, 2)
    assert mono.dtype == np.int32
    # Floor of the mean; full scale on both channels stays full scale (no int16 wrap).
    assert mono.tolist() == [32767, -32768, -1000, 3, -4, 0]
    equal = np.stack([left, left], axis=1).reshape(-1)
    assert np.array_equal(downmix(equal, 2), left.astype(np.int32))  # exact when equal


def test_downmix_many_channels_and_mono() -> None:
    rng = np.random.default_rng(5)
    frames = rng.integers(-32768, 32768, size=(480, 6), dtype=np.int16)
    expected = np.floor(frames.astype(np.int64).sum(axis=1) / 6).astype(np.int32)
    assert np.array_equal(downmix(frames.reshape(-1), 6), expected)
    mono = frames[:, 0].copy()
    assert np.array_equal(downmix(mono, 1), mono.astype(np.int32))
    with pytest.raises(ValueError, match="whole frames"):
        downmix(np.zeros(5, dtype=np.int16), 2)


def test_upmix_copies_the_signal_onto_every_channel() -> None:
    samples = np.array([1, -2, 32767, -32768], dtype=np.int16)
    upmixer = Upmixer(3, frames=2)  # grows when asked for more
    data = upmixer.upmix(samples)
    out = np.frombuffer(data, dtype="<i2").reshape(-1, 3)
    assert all(np.array_equal(out[:, c], samples) for c in range(3))
    shorter = upmixer.upmix(samples[:2])
    assert np.frombuffer(shorter, dtype="<i2").tolist() == [1, 1, 1, -2, -2, -2]
    assert upmixer.silence(4) == bytes(24)
    assert Upmixer(1).upmix(samples) == samples.astype("<i2").tobytes()
    with pytest.raises(ValueError, match="channels"):
        Upmixer(0)


def test_upmix_reuses_its_buffer() -> None:
    upmixer = Upmixer(2, frames=960)
    before = upmixer._buffer  # the callback path must not allocate a new one per period
    for _ in range(3):
        upmixer.upmix(np.arange(960, dtype=np.int16))
    assert upmixer._buffer is before
