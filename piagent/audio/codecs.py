"""Pure codecs between wire audio bytes and numpy int16 samples (protocol.md §6).

Owns two byte layouts: 16-bit signed little-endian PCM, and G.711 mu-law (one byte a sample,
bias 0x84, clip 32635, as the official JS SDK's wavefile tables). Mu-law goes through numpy
lookup tables built once, on first use (a 64 KiB encode table and a 256-entry decode table), so no
per-sample Python runs on the 20 ms audio path and nothing depends on ``audioop``, which
Python 3.13 removed.

Pure: imports numpy and the protocol's ``AudioFormat`` only; no I/O.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import numpy.typing as npt

from piagent.protocol.messages import AudioFormat

__all__ = [
    "NATIVE_PCM16",
    "ULAW_BIAS",
    "ULAW_CLIP",
    "Samples",
    "decode_audio",
    "decode_pcm16",
    "decode_ulaw",
    "encode_audio",
    "encode_pcm16",
    "encode_ulaw",
    "to_int16",
]

Samples = npt.NDArray[np.int16]

ULAW_BIAS = 0x84
ULAW_CLIP = 32635

_PCM16_LE = np.dtype("<i2")

NATIVE_PCM16: np.dtype[np.int16] | None = np.dtype(np.int16) if sys.byteorder == "little" else None
"""The dtype of int16 arrays whose memory already is little-endian 16-bit PCM, to write or send
as they are (``array.dtype is NATIVE_PCM16``, one identity check); None on a big-endian
machine."""


@functools.cache
def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    """The mu-law byte for every int16 value, indexed by the value's uint16 bit pattern.
    Built on first use: its working arrays would add megabytes to the peak memory of a
    daemon that only ever speaks PCM."""
    values = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(values < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(values), ULAW_CLIP) + ULAW_BIAS  # at most 32767
    # The segment (exponent) is the position of the highest set bit above bit 7.
    exponent = np.floor(np.log2(magnitude >> 7 | 1)).astype(np.int32)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    codes = ~(sign | (exponent << 4) | mantissa) & 0xFF
    table = np.empty(65536, dtype=np.uint8)
    table[values.astype(np.uint16)] = codes.astype(np.uint8)
    return table


@functools.cache
def _ulaw_decode_table() -> Samples:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def to_int16(samples: npt.ArrayLike) -> Samples:
    """Round and clip any numeric samples (int16 full scale) to int16."""
    array: npt.NDArray[np.generic] = np.asarray(samples)
    if array.dtype == np.int16:
        return array.astype(np.int16, copy=False)
    if np.issubdtype(array.dtype, np.floating):
        array = np.rint(array)
    clipped: npt.NDArray[np.generic] = np.clip(array, -32768, 32767)
    return clipped.astype(np.int16)


def decode_pcm16(data: bytes) -> Samples:
    """Little-endian 16-bit PCM bytes to native int16 samples; odd lengths raise ValueError.
    On a little-endian machine the samples are a read-only view of ``data``, not a copy."""
    if len(data) % 2:
        raise ValueError(f"16-bit PCM needs an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype=_PCM16_LE).astype(np.int16, copy=False)


def encode_pcm16(samples: npt.ArrayLike) -> bytes:
    """Samples (clipped to int16) to little-endian 16-bit PCM bytes."""
    if isinstance(samples, np.ndarray) and samples.dtype == _PCM16_LE:
        return samples.tobytes()  # the 20 ms path: int16 frames on a little-endian machine
    return to_int16(samples).astype(_PCM16_LE, copy=False).tobytes()


def encode_ulaw(samples: npt.ArrayLike) -> bytes:
    """Samples (clipped to int16) to G.711 mu-law bytes."""
    return _ulaw_encode_table()[to_int16(samples).view(np.uint16)].tobytes()


def decode_ulaw(data: bytes) -> Samples:
    """G.711 mu-law bytes to int16 samples."""
    return _ulaw_decode_table()[np.frombuffer(data, dtype=np.uint8)]


def decode_audio(data: bytes, audio_format: AudioFormat) -> Samples:
    """Wire bytes in ``audio_format`` to int16 samples at the format's rate."""
    return decode_ulaw(data) if audio_format.is_ulaw else decode_pcm16(data)


def encode_audio(samples: npt.ArrayLike, audio_format: AudioFormat) -> bytes:
    """int16-scaled samples (at the format's rate) to wire bytes in ``audio_format``."""
    return encode_ulaw(samples) if audio_format.is_ulaw else encode_pcm16(samples)
