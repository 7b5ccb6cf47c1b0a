"""piagent.audio.codecs: little-endian PCM and G.711 mu-law against the standard's values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from piagent.audio.codecs import (
    decode_audio,
    decode_pcm16,
    decode_ulaw,
    encode_audio,
    encode_pcm16,
    encode_ulaw,
    to_int16,
)
from piagent.protocol.messages import AudioFormat


def reference_ulaw(sample: int) -> int:
    """G.711 mu-law of one sample, written out the long way (bias 0x84, clip 32635)."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = 7
    while exponent > 0 and not magnitude & (0x4000 >> (7 - exponent)):
        exponent -= 1
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | exponent << 4 | mantissa) & 0xFF


@pytest.mark.parametrize(
    ("sample", "code"),
    [
        (0, 0xFF),
        (32767, 0x80),
        (32635, 0x80),
        (-32768, 0x00),
        (-1, 0x7F),
        (1, 0xFF),
        (100, 0xF2),
        (-100, 0x72),
        (1000, 0xCE),
        (-8000, 0x20),
    ],
)
def test_ulaw_encode_known_values(sample: int, code: int) -> None:
    assert encode_ulaw(np.array([sample], dtype=np.int16)) == bytes([code])


def test_ulaw_encode_matches_reference_for_every_int16() -> None:
    samples = np.arange(-32768, 32768, dtype=np.int32)
    expected = bytes(reference_ulaw(int(s)) for s in samples)
    assert encode_ulaw(samples.astype(np.int16)) == expected


@pytest.mark.parametrize(
    ("code", "sample"),
    [(0xFF, 0), (0x7F, 0), (0x80, 32124), (0x00, -32124), (0xF2, 104), (0xCE, 988)],
)
def test_ulaw_decode_known_values(code: int, sample: int) -> None:
    assert decode_ulaw(bytes([code])).tolist() == [sample]


def test_ulaw_decode_then_encode_is_identity_except_negative_zero() -> None:
    codes = bytes(range(256))
    again = encode_ulaw(decode_ulaw(codes))
    # 0x7F is mu-law's "negative zero": it decodes to 0, which encodes as 0xFF.
    assert [c for c, a in zip(codes, again, strict=True) if c != a] == [0x7F]


def test_ulaw_round_trip_error_is_within_half_a_step() -> None:
    samples = np.arange(-32768, 32768, dtype=np.int32)
    decoded = decode_ulaw(encode_ulaw(samples.astype(np.int16))).astype(np.int32)
    error = np.abs(decoded - samples)
    inside = np.abs(samples) <= 32635
    # Within the clip range, the error is at most half a segment step: (|x| + bias) / 32.
    assert np.all(error[inside] <= (np.abs(samples[inside]) + 0x84) / 32 + 1)
    assert error.max() <= 32768 - 32124


def test_ulaw_silence_is_ff() -> None:
    assert encode_ulaw(np.zeros(4, dtype=np.int16)) == b"\xff" * 4
    assert decode_ulaw(b"\xff" * 4).tolist() == [0, 0, 0, 0]


def test_pcm16_is_little_endian() -> None:
    assert encode_pcm16(np.array([1, -2, 0x1234], dtype=np.int16)) == b"\x01\x00\xfe\xff\x34\x12"
    assert decode_pcm16(b"\x01\x00\xfe\xff\x34\x12").tolist() == [1, -2, 0x1234]


def test_pcm16_rejects_odd_length() -> None:
    with pytest.raises(ValueError, match="even"):
        decode_pcm16(b"\x00\x01\x02")


def test_to_int16_rounds_and_clips_floats() -> None:
    assert to_int16(np.array([0.4, 0.6, -0.6, 40000.0, -40000.0])).tolist() == [
        0,
        1,
        -1,
        32767,
        -32768,
    ]


@given(st.lists(st.integers(-32768, 32767), max_size=200))
def test_pcm16_round_trip(values: list[int]) -> None:
    samples = np.array(values, dtype=np.int16)
    assert decode_pcm16(encode_pcm16(samples)).tolist() == values


@pytest.mark.parametrize("audio_format", list(AudioFormat))
def test_format_helpers_round_trip(audio_format: AudioFormat) -> None:
    samples = np.array([0, 1000, -1000, 20000, -20000], dtype=np.int16)
    data = encode_audio(samples, audio_format)
    assert len(data) == len(samples) * audio_format.bytes_per_sample
    decoded = decode_audio(data, audio_format)
    tolerance = 700 if audio_format.is_ulaw else 0
    assert np.all(np.abs(decoded.astype(np.int32) - samples) <= tolerance)
    silence = bytes([audio_format.silence_byte]) * audio_format.bytes_per_sample * 3
    assert decode_audio(silence, audio_format).tolist() == [0, 0, 0]
