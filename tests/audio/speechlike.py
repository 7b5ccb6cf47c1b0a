"""Speech-like test signals without a synthesiser: syllable-shaped bursts of coloured noise.

Each "syllable" is 80-250 ms of noise shaped by a smooth envelope, with short pauses, and the
noise is coloured by a voice-band filter so its spectrum resembles speech (most energy at
200-3000 Hz). Different seeds make different talkers. Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.signal import butter, sosfilt

Samples = npt.NDArray[np.int16]

RATE = 16000


def speechlike(
    seconds: float, *, seed: int, level_dbfs: float = -20.0, pause_s: float = 0.15
) -> Samples:
    """``seconds`` of syllable bursts at about ``level_dbfs`` RMS while active, with gaps of
    20 ms to ``pause_s`` between syllables."""
    rng = np.random.default_rng(seed)
    total = int(seconds * RATE)
    envelope = np.zeros(total)
    pos = 0
    while pos < total:
        length = int(rng.uniform(0.08, 0.25) * RATE)
        end = min(total, pos + length)
        envelope[pos:end] = np.hanning(length)[: end - pos] ** 0.5
        pos = end + int(rng.uniform(0.02, pause_s) * RATE)
    sos = butter(4, [200, 3000], btype="bandpass", fs=RATE, output="sos")
    noise = sosfilt(sos, rng.standard_normal(total))
    x = noise * envelope
    active = x[envelope > 0.1]
    scale = 10 ** (level_dbfs / 20) * 32768 / max(float(np.sqrt(np.mean(active**2))), 1e-9)
    out: Samples = np.clip(np.rint(x * scale), -32768, 32767).astype(np.int16)
    return out


def frames(x: Samples, size: int = 160) -> list[Samples]:
    """``x`` cut into whole frames (a tail shorter than ``size`` is dropped)."""
    return [x[i : i + size] for i in range(0, len(x) - size + 1, size)]


def power(x: npt.ArrayLike) -> float:
    f = np.asarray(x, dtype=np.float64)
    return float(np.mean(f * f)) if f.size else 0.0
