"""Earcons: the short sounds piagent makes on its own, synthesised in code (no asset files).

Owns what each earcon sounds like. Every earcon is a few notes, each a band-limited sine or
triangle (the triangle is summed from its odd harmonics below Nyquist, so no rate aliases it)
under a raised-cosine attack and release, so every note starts and ends at exactly zero and
nothing clicks. They are quiet (peak ``LEVEL`` of full scale) so that, mixed over agent speech,
they rarely clip, and are generated once per (kind, rate) and cached read-only.

    press      one high note (C6), 80 ms: "I'm listening"
    release    one lower note (G5), 80 ms: "got it"
    connected  a rising A major arpeggio (A4 C#5 E5), 210 ms
    offline    a falling fifth (G4 to C4) in triangle, 220 ms
    error      two low triangle pulses (A3), 200 ms

Pure: imports numpy only (and piagent's codecs for the sample type); no I/O.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from piagent.audio.codecs import Samples

__all__ = ["KINDS", "LEVEL", "EarconKind", "earcon"]

EarconKind = Literal["press", "release", "connected", "offline", "error"]
KINDS: tuple[EarconKind, ...] = get_args(EarconKind)

LEVEL = 0.3  # peak, as a fraction of full scale (about -10 dBFS)
_FADE_S = 0.008  # raised-cosine attack and release of every note


@dataclass(frozen=True, slots=True)
class _Note:
    freq_hz: float  # 0: a rest
    duration_s: float
    wave: Literal["sine", "triangle"] = "sine"


_SCORES: dict[EarconKind, tuple[_Note, ...]] = {
    "press": (_Note(1046.5, 0.080),),
    "release": (_Note(784.0, 0.080),),
    "connected": (_Note(440.0, 0.070), _Note(554.37, 0.070), _Note(659.25, 0.070)),
    "offline": (_Note(392.0, 0.110, "triangle"), _Note(261.63, 0.110, "triangle")),
    "error": (
        _Note(220.0, 0.080, "triangle"),
        _Note(0.0, 0.040),
        _Note(220.0, 0.080, "triangle"),
    ),
}


def _note(note: _Note, rate: int) -> npt.NDArray[np.float64]:
    n = round(note.duration_s * rate)
    if note.freq_hz <= 0.0:
        return np.zeros(n)
    t = np.arange(n) / rate
    if note.wave == "sine":
        tone = np.sin(2 * math.pi * note.freq_hz * t)
    else:
        # Band-limited triangle: odd harmonics k with alternating sign and 1/k**2 amplitude.
        tone = np.zeros(n)
        harmonics = range(1, int((rate / 2) // note.freq_hz) + 1, 2)
        for index, k in enumerate(harmonics):
            tone += (-1) ** index * np.sin(2 * math.pi * k * note.freq_hz * t) / k**2
        tone *= 8 / math.pi**2
    # A raised-cosine fade over both ends; the end fade reaches zero on the last sample.
    fade = min(round(_FADE_S * rate), n // 2)
    if fade > 1:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / (fade - 1))
        tone[:fade] *= ramp
        tone[n - fade :] *= ramp[::-1]
    return tone


def earcon(kind: EarconKind, rate: int) -> Samples:
    """The earcon ``kind`` as int16 samples at ``rate`` Hz (read-only, cached)."""
    return _synthesise(kind, rate)


@functools.cache
def _synthesise(kind: EarconKind, rate: int) -> Samples:
    if kind not in _SCORES:
        raise ValueError(f"unknown earcon {kind!r}; expected one of {', '.join(KINDS)}")
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    wave = np.concatenate([_note(note, rate) for note in _SCORES[kind]])
    peak = float(np.max(np.abs(wave)))
    samples = np.rint(wave * (LEVEL * 32767 / peak)).astype(np.int16)
    samples.setflags(write=False)
    return samples
