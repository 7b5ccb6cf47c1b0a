"""Sample levels: software gain with a clip count, and peak / RMS in dBFS.

Owns the level arithmetic the microphone path (``gain_db``) and ``piagent doctor`` share. Gain
is integer fixed-point on int32, so a frame costs one multiply, one shift and one clip, with
no float round trip; levels are measured in float64 (a 20 ms frame is a few hundred samples).

Full scale is 32768 (``-32768`` reads 0 dBFS); a full-scale sine therefore reads 0 dBFS peak
and about -3.01 dBFS RMS. Silence and empty frames read ``FLOOR_DBFS`` rather than minus
infinity, so the figures stay valid JSON.

Pure: imports numpy and piagent's codecs only; no I/O.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from piagent.audio.codecs import Samples

__all__ = [
    "FLOOR_DBFS",
    "FULL_SCALE",
    "apply_gain",
    "gain_q",
    "gain_table",
    "peak_dbfs",
    "rms_dbfs",
    "scale_q",
]

FULL_SCALE = 32768.0
FLOOR_DBFS = -120.0  # what silence reads: well below 16-bit quantisation noise (-96 dBFS)

_INT16_MIN = -32768
_INT16_MAX = 32767
_INT32_MAX = 2**31 - 1


def gain_q(linear: float, *, headroom: int = 1) -> tuple[int, int]:
    """A linear gain as fixed point ``(multiplier, shift)``: ``x * multiplier >> shift``.

    The shift is as large as int32 allows when ``headroom`` int16 full-scale values are summed
    before the multiply (so ``headroom * 32768 * multiplier`` stays below 2**31), and at most
    15, which makes unity gain exact (``multiplier = 2**shift``).
    """
    if not math.isfinite(linear) or linear < 0:
        raise ValueError(f"gain must be finite and >= 0, got {linear}")
    shift = 15
    while shift > 0 and headroom * 32768 * round(linear * 2**shift) > _INT32_MAX + 1:
        shift -= 1
    return round(linear * 2**shift), shift


def scale_q(values: npt.NDArray[np.int32], multiplier: int, shift: int) -> npt.NDArray[np.int32]:
    """``values * multiplier >> shift`` rounded to nearest, in place on int32 (see ``gain_q``
    for the ranges that cannot overflow)."""
    values *= np.int32(multiplier)
    if shift:
        values += np.int32(1 << (shift - 1))
        values >>= shift
    return values


def gain_table(multiplier: int, shift: int) -> Samples:
    """Every int16 value through ``scale_q`` and clipped to int16, indexed by the value's bits
    as uint16 (``table[frame.view(np.uint16)]``): a whole frame scaled in one lookup, the same
    numbers as the multiply, round, shift and clip (128 KiB, made once per gain)."""
    values = np.arange(65536, dtype=np.int32)
    values[32768:] -= 65536  # uint16 bit patterns 0x8000-0xffff are -32768..-1
    scale_q(values, multiplier, shift)
    np.clip(values, _INT16_MIN, _INT16_MAX, out=values)
    table = values.astype(np.int16)
    table.flags.writeable = False
    return table


def apply_gain(frame: Samples, gain_db: float) -> tuple[Samples, int]:
    """``frame`` amplified by ``gain_db`` (int32 math, clipped to int16) and how many samples
    clipped. A new array; 0 dB returns an unchanged copy."""
    samples = np.asarray(frame, dtype=np.int16)
    if gain_db == 0.0:
        return samples.copy(), 0
    multiplier, shift = gain_q(10.0 ** (gain_db / 20.0))
    scaled = scale_q(samples.astype(np.int32), multiplier, shift)
    clipped = int(np.count_nonzero((scaled > _INT16_MAX) | (scaled < _INT16_MIN)))
    np.clip(scaled, _INT16_MIN, _INT16_MAX, out=scaled)
    return scaled.astype(np.int16), clipped


def _dbfs(level: float) -> float:
    if level <= 0.0:
        return FLOOR_DBFS
    return max(FLOOR_DBFS, 20.0 * math.log10(level / FULL_SCALE))


def peak_dbfs(frame: Samples) -> float:
    """The largest magnitude in ``frame``, in dBFS (``FLOOR_DBFS`` for silence)."""
    samples = np.asarray(frame, dtype=np.int16)
    if samples.size == 0:
        return FLOOR_DBFS
    return _dbfs(float(np.max(np.abs(samples.astype(np.int32)))))


def rms_dbfs(frame: Samples) -> float:
    """The root-mean-square level of ``frame``, in dBFS (``FLOOR_DBFS`` for silence)."""
    samples = np.asarray(frame, dtype=np.int16)
    if samples.size == 0:
        return FLOOR_DBFS
    as_float = samples.astype(np.float64)
    return _dbfs(math.sqrt(float(np.mean(as_float * as_float))))
