"""A simulated echo path: what a microphone hears of what the speaker played.

Owns ``Room``, a streaming model of the acoustic path from a loudspeaker to a microphone in the
same box: an optional mild nonlinearity first (a small speaker driven hard soft-clips), then a
bulk delay (device buffers plus the air), a room impulse response (direct path and reverb,
from a WAV file or synthesised by ``synthetic_impulse_response``), and a gain (the coupling:
how loud the echo is at the mic, in dB). ``process`` takes what the speaker played, any number
of samples at a time, and returns as many samples of what the mic hears of it, keeping the
delay line and the convolution tail between calls, so chunk boundaries never show.
``change_path`` swaps the delay, gain and response mid-stream (someone moved the device), as
the echo canceller's bench and tests need.

Used by the ``wav`` backend's echo path (``audio.input.echo``) and by ``scripts/bench_aec.py``.
Pure: numpy and scipy's FFT convolution, plus ``read_wav`` to load a response file; no devices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from piagent.audio.codecs import Samples
from piagent.audio.resample import StreamResampler

__all__ = [
    "Room",
    "load_impulse_response",
    "soft_clip",
    "synthetic_impulse_response",
]

_Float = npt.NDArray[np.float64]
_FULL_SCALE = 32768.0


def synthetic_impulse_response(
    rate: int, *, rt60_ms: float = 200.0, length_ms: float = 150.0, seed: int = 1
) -> _Float:
    """A room-like response: a unit direct path, then exponentially decaying noise.

    ``rt60_ms`` is the time the reverb takes to fall 60 dB; ``length_ms`` where it is cut.
    The reverb starts 2 ms after the direct path at a quarter of its level (a small room's
    early reflections), and the whole response is scaled to unit energy so ``gain_db`` alone
    sets the echo level. Deterministic for a given ``seed``.
    """
    n = max(1, int(rate * length_ms / 1000))
    t = np.arange(n) / rate
    decay = np.exp(-6.9078 * t / (rt60_ms / 1000))  # ln(1000): -60 dB at rt60
    rng = np.random.default_rng(seed)
    ir = rng.standard_normal(n) * decay * 0.25
    onset = int(rate * 0.002)
    ir[:onset] = 0.0
    ir[0] = 1.0
    energy = float(np.sqrt(np.sum(ir * ir)))
    return ir / energy


def load_impulse_response(path: Path | str, rate: int) -> _Float:
    """The response in a 16-bit mono WAV, resampled to ``rate`` Hz and scaled to unit energy.

    Raises ``WavFileError`` (from ``read_wav``) for a file it cannot use, and ``ValueError`` for
    a silent one."""
    from piagent.audio.wavio import read_wav  # wavio imports this module for its echo path

    samples, file_rate = read_wav(Path(path))
    if file_rate != rate:
        resampler = StreamResampler(file_rate, rate)
        samples = np.concatenate([resampler.process(samples), resampler.flush()])
    ir = samples.astype(np.float64) / _FULL_SCALE
    energy = float(np.sqrt(np.sum(ir * ir)))
    if energy == 0.0:
        raise ValueError(f"{path}: the impulse response is silent")
    return ir / energy


def soft_clip(x: _Float, drive: float) -> _Float:
    """A speaker's mild saturation: ``tanh(drive * x) / drive`` on full-scale floats.

    ``drive`` 0 is linear; 1 bends a full-scale peak by about 24 %, 2 by about 52 %. Small
    signals pass nearly unchanged, so the distortion grows with the level, as a real driver's."""
    if drive <= 0.0:
        return x
    result: _Float = np.tanh(drive * x) / drive
    return result


class Room:
    """The echo path at ``rate`` Hz, streaming (see the module docstring).

    ``delay_ms`` is the bulk delay (ms, >= 0), ``gain_db`` the echo level relative to what was
    played (dB; -10 is a loud echo, typical of a speaker a few cm from the mic), ``impulse_
    response`` a unit-energy response at ``rate`` (None: a single tap, i.e. a pure delay) and
    ``drive`` the soft clipping (0: linear).
    """

    def __init__(
        self,
        rate: int,
        *,
        delay_ms: float = 0.0,
        gain_db: float = 0.0,
        impulse_response: npt.ArrayLike | None = None,
        drive: float = 0.0,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self._rate = rate
        self._delay = 0
        self._gain = 1.0
        self._ir: _Float = np.ones(1)
        self._drive = 0.0
        # What was played and not yet heard (the delay line), then the response's input
        # history (its last len(ir) - 1 samples), both as floats.
        self._line: _Float = np.zeros(0)
        self._history: _Float = np.zeros(0)
        self.change_path(
            delay_ms=delay_ms, gain_db=gain_db, impulse_response=impulse_response, drive=drive
        )

    @property
    def rate(self) -> int:
        return self._rate

    @property
    def delay_samples(self) -> int:
        """The bulk delay in samples."""
        return self._delay

    def change_path(
        self,
        *,
        delay_ms: float,
        gain_db: float,
        impulse_response: npt.ArrayLike | None = None,
        drive: float = 0.0,
    ) -> None:
        """Move to a new echo path from the next sample on. Sound already in the air (the
        delay line) keeps its place; a longer delay inserts silence, a shorter one drops the
        oldest samples, as moving the device would."""
        if delay_ms < 0:
            raise ValueError(f"delay_ms must be >= 0, got {delay_ms}")
        delay = round(self._rate * delay_ms / 1000)
        if delay > len(self._line):
            self._line = np.concatenate([np.zeros(delay - len(self._line)), self._line])
        elif delay < len(self._line):
            self._line = self._line[len(self._line) - delay :]
        self._delay = delay
        self._gain = float(10.0 ** (gain_db / 20.0))
        ir = np.ones(1) if impulse_response is None else np.asarray(impulse_response, float)
        if ir.ndim != 1 or len(ir) == 0:
            raise ValueError("impulse_response must be a non-empty 1-D array")
        keep = len(ir) - 1
        history = self._history[-keep:] if keep else np.zeros(0)
        self._history = np.concatenate([np.zeros(keep - len(history)), history])
        self._ir = ir
        self._drive = drive

    def process(self, played: npt.ArrayLike) -> Samples:
        """What the mic hears of ``played`` (int16), as many int16 samples, clipped."""
        x = np.asarray(played, dtype=np.float64) / _FULL_SCALE
        n = len(x)
        if n == 0:
            return np.zeros(0, dtype=np.int16)
        x = soft_clip(x, self._drive)
        line = np.concatenate([self._line, x])
        due, self._line = line[:n], line[n:]
        return self._convolve(due)

    def _convolve(self, due: _Float) -> Samples:
        keep = len(self._ir) - 1
        block = np.concatenate([self._history, due])
        if keep == 0:
            wet = block * self._ir[0]
        else:
            # Only the fully overlapped part of the convolution is new output.
            # Imported here: a daemon without a simulated room never loads scipy at start-up
            # (its filters come from the cache), and the wav backend imports this module.
            from scipy.signal import fftconvolve

            wet = fftconvolve(block, self._ir, mode="valid")
            self._history = block[len(block) - keep :]
        scaled = np.rint(np.asarray(wet, dtype=np.float64) * (self._gain * _FULL_SCALE))
        heard: Samples = np.clip(scaled, -32768, 32767).astype(np.int16)
        return heard
