"""Streaming sample-rate conversion: ``StreamResampler``, a polyphase FIR kept across chunks.

Owns the resampling filters and the per-stream state. A Kaiser-window low-pass is designed once
per (rates, specification) with ``scipy.signal`` and cached; each stream then pushes chunks of
any length through it, carrying its input history, so chunk edges leave no seam: the chunked
output equals the one-shot output (``scipy.signal.resample_poly`` with the same filter) to
float32 rounding, and the number of samples emitted never depends on the chunking.

Sample-count rule. With ``up/down`` the reduced ratio and ``half = (taps - 1) // 2``, output
sample ``k`` sits at up-sampled index ``k * down + half`` and needs input up to
``(k * down + half) // up``. ``process`` emits every output whose input has arrived, so after
``N`` input samples in any chunking exactly ``max(0, (N * up - 1 - half) // down + 1)``
samples have come out (``ceil((N * up - half) / down)`` once positive), counted with integers
only. ``flush`` then zero-pads the input and brings the total to ``ceil(N * up / down)``, the
length ``resample_poly`` gives. The output is time-aligned with the input (output 0 is input
0); the price is ``delay_s`` of latency.

Where coefficients come from. The filter's length, window and cut-off follow from Kaiser's
formulas (the ones ``scipy.signal.kaiserord`` and ``kaiser_beta`` implement) with plain
arithmetic; the coefficients themselves are ``scipy.signal.firwin``'s, or, when a
``CoefficientStore`` registered with ``use_coefficient_store`` holds them, the store's.
``scipy.signal`` is imported only to design a filter no store has (see ``audio.filtercache``).

Pure: imports numpy, and scipy only when designing; no I/O of its own, starts no threads,
imports nothing from piagent.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "CoefficientStore",
    "FilterDesign",
    "StreamResampler",
    "design_filter",
    "use_coefficient_store",
]

_Float32 = npt.NDArray[np.float32]

# Kaiser's length estimate (the one kaiserord uses) is a few tenths of a dB optimistic at some
# lengths; designing for this much more keeps the measured stopband at the requested figure.
_STOPBAND_MARGIN_DB = 1.0

# A block (see _Kernel) takes in about this many input samples per tap of a phase: longer blocks
# copy fewer overlapping windows but multiply more zeros. Flat from 0.05 to 0.5 when timing
# 20 ms chunks.
_ROW_INPUTS_PER_TAP = 0.25

# When one phase's taps would fill less than _SPLIT_BELOW_FILL of a block's input span (large
# ``up``: 44100 -> 16000 has 160 phases over 441 inputs), the block's matrix would be mostly
# zeros, so the block is cut into groups of consecutive outputs with a narrower matrix each.
# A group keeps at least _MIN_GROUP_OUTPUTS outputs, as smaller matrix products cost more than
# the zeros they skip, and a block that is cut spans enough cycles for _MIN_SPLIT_BLOCK outputs.
# Chosen by timing 20 ms chunks of all 30 rate pairs (scripts/bench_audio.py).
_SPLIT_BELOW_FILL = 0.6
_MIN_GROUP_OUTPUTS = 32
_MIN_SPLIT_BLOCK = 128

# Float32 bounds for rounding to int16, as 0-d arrays: the ufuncs take those with the least work.
_INT16_MAX = np.array(32767, dtype=np.float32)
_INT16_MIN = np.array(-32768, dtype=np.float32)


@dataclass(frozen=True, slots=True, eq=False)
class FilterDesign:
    """The anti-aliasing / anti-imaging low-pass for one conversion.

    ``coefficients`` run at ``rate_hz = src_rate * up`` with unit gain at DC (read-only); the
    band edges are in Hz. The stopband starts at the lower Nyquist frequency unless the delay
    budget forced a wider transition band, which then reaches past it (see ``design_filter``).
    Compared and hashed by identity: ``design_filter`` caches them.
    """

    up: int
    down: int
    rate_hz: int
    coefficients: npt.NDArray[np.float64]
    passband_hz: float
    stopband_hz: float
    stopband_db: float
    beta: float

    @property
    def taps(self) -> int:
        """Filter length; always odd, so the delay is a whole number of up-sampled samples."""
        return int(self.coefficients.size)

    @property
    def delay_s(self) -> float:
        """Group delay of the linear-phase filter, in seconds."""
        return (self.taps - 1) / 2 / self.rate_hz


class CoefficientStore(Protocol):
    """Keeps designed coefficients by key, so that a later process need not design them."""

    def load(self, key: str, taps: int) -> npt.NDArray[np.float64] | None:
        """The ``taps`` coefficients kept under ``key``, or None."""

    def save(self, key: str, coefficients: npt.NDArray[np.float64]) -> None:
        """Keep ``coefficients`` under ``key``."""


_store: CoefficientStore | None = None


def use_coefficient_store(store: CoefficientStore | None) -> None:
    """Take coefficients from ``store`` (and give it every new design) from now on."""
    global _store
    _store = store


def kaiser_beta(attenuation_db: float) -> float:
    """Kaiser's window parameter for a stopband attenuation (as ``scipy.signal.kaiser_beta``)."""
    if attenuation_db > 50.0:
        return 0.1102 * (attenuation_db - 8.7)
    if attenuation_db > 21.0:
        excess = attenuation_db - 21.0
        return float(0.5842 * excess**0.4 + 0.07886 * excess)
    return 0.0


def kaiser_taps(attenuation_db: float, width: float) -> int:
    """Kaiser's length estimate for a transition ``width`` (a fraction of the Nyquist
    frequency), as ``scipy.signal.kaiserord`` returns it."""
    return math.ceil((attenuation_db - 7.95) / 2.285 / (math.pi * width) + 1)


def _firwin(taps: int, cutoff: float, beta: float, rate_hz: int) -> npt.NDArray[np.float64]:
    """The windowed-sinc low-pass, from the store when it has it, else designed by scipy."""
    spec = f"kaiser low-pass, taps {taps}, cutoff {cutoff!r} Hz, beta {beta!r}, rate {rate_hz}"
    key = f"lowpass-{rate_hz}-{taps}-{hashlib.sha256(spec.encode()).hexdigest()[:16]}"
    store = _store
    coefficients = None if store is None else store.load(key, taps)
    if coefficients is None:
        from scipy import signal  # 0.75 s and 75 MB: only when no store has the filter

        coefficients = signal.firwin(taps, cutoff, window=("kaiser", beta), fs=rate_hz)
        if store is not None:
            store.save(key, coefficients)
    return coefficients


@functools.lru_cache(maxsize=64)
def design_filter(
    src_rate: int,
    dst_rate: int,
    *,
    stopband_db: float = 80.0,
    passband: float = 0.9,
    max_delay_ms: float = 5.0,
) -> FilterDesign:
    """Design (once per argument set, cached) the Kaiser low-pass for ``src_rate -> dst_rate``.

    The passband ends at ``passband`` times the lower Nyquist frequency and the stopband starts
    at that Nyquist frequency, attenuated by ``stopband_db``. If that filter would delay the
    signal by more than ``max_delay_ms``, the transition band is widened past the Nyquist
    frequency until it fits: the passband and the attenuation are kept, and what the wider band
    lets through folds back only into the transition band above the passband, never into it.
    Raises ValueError when even that cannot meet the figures.
    """
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {src_rate} and {dst_rate}")
    if not 0.0 < passband < 1.0:
        raise ValueError(f"passband must be a fraction of the Nyquist frequency, got {passband}")
    if stopband_db <= 21.0:
        raise ValueError(f"stopband_db must exceed 21 dB for a Kaiser design, got {stopband_db}")
    gcd = math.gcd(src_rate, dst_rate)
    up, down = dst_rate // gcd, src_rate // gcd
    rate_hz = src_rate * up
    nyquist = min(src_rate, dst_rate) / 2
    passband_hz = passband * nyquist
    design_db = stopband_db + _STOPBAND_MARGIN_DB
    numtaps = kaiser_taps(design_db, (nyquist - passband_hz) / (rate_hz / 2)) | 1
    stopband_hz = nyquist
    max_taps = 2 * math.floor(max_delay_ms / 1000 * rate_hz) + 1
    if numtaps > max_taps:
        # Invert Kaiser's estimate numtaps - 1 = (A - 7.95) / (2.285 * pi * width).
        numtaps = max_taps
        width = (design_db - 7.95) / (2.285 * math.pi * (numtaps - 1))
        stopband_hz = passband_hz + width * rate_hz / 2
        if stopband_hz > 2 * nyquist - passband_hz:
            raise ValueError(
                f"{src_rate} -> {dst_rate} Hz: cannot reach {stopband_db} dB with a passband "
                f"to {passband_hz:.0f} Hz within {max_delay_ms} ms; allow more delay or a "
                "narrower passband"
            )
    beta = kaiser_beta(design_db)
    cutoff = (passband_hz + stopband_hz) / 2
    coefficients = _firwin(numtaps, cutoff, beta, rate_hz)
    coefficients.setflags(write=False)
    return FilterDesign(
        up=up,
        down=down,
        rate_hz=rate_hz,
        coefficients=coefficients,
        passband_hz=passband_hz,
        stopband_hz=stopband_hz,
        stopband_db=stopband_db,
        beta=beta,
    )


@dataclass(frozen=True, slots=True)
class _Kernel:
    """The filter laid out for one batched matrix product per chunk.

    Outputs are computed in blocks of ``block`` (a whole number of ``up``-output cycles, so every
    block has the same phase pattern), each cut into ``groups`` runs of ``block // groups``
    consecutive outputs. Block ``b`` starts reading at input ``b * stride + first``, and its
    group ``g`` reads the ``span`` inputs from ``g * group_stride`` further on; ``matrix[g, :, j]``
    holds the taps of output ``j`` of group ``g`` at the positions of its window within that
    span, zeros elsewhere. Windows of the same group in consecutive blocks times ``matrix[g]``
    give that group's outputs for all of them in one product. ``pad`` zeros after the input
    are enough for any window of the next block; ``zeros`` is that padding.
    """

    block: int
    stride: int
    groups: int
    group_stride: int
    span: int
    first: int
    half: int
    pad: int
    matrix: _Float32
    zeros: _Float32


def _should_split(per_phase: int, spread: int) -> bool:
    """Whether a block whose window starts spread over ``spread`` inputs is mostly zeros."""
    return per_phase < _SPLIT_BELOW_FILL * (spread + per_phase)


def _group_count(block: int) -> int:
    """How many groups a block that is cut gets: the most with ``_MIN_GROUP_OUTPUTS`` each."""
    sizes = [size for size in range(_MIN_GROUP_OUTPUTS, block) if block % size == 0]
    return block // sizes[0] if sizes else 1


@functools.lru_cache(maxsize=64)
def _kernel(design: FilterDesign) -> _Kernel:
    up, down = design.up, design.down
    half = (design.taps - 1) // 2
    # Taps per phase; at least ceil(down / up) so a block never starts past the input seen.
    per_phase = max(-(-design.taps // up), -(-down // up))
    cycles = max(1, round(_ROW_INPUTS_PER_TAP * per_phase / down))
    split = _should_split(per_phase, (up - 1) * down // up)
    if split:
        cycles = max(cycles, -(-_MIN_SPLIT_BLOCK // up))
    block = cycles * up
    points = np.arange(block) * down + half  # up-sampled index of each output in block 0
    ends, phases = np.divmod(points, up)  # last input each output reads, and its phase
    offsets = ends - ends[0]  # where each output's window starts, from the block's first
    groups = _group_count(block) if split else 1
    size = block // groups
    group = np.repeat(np.arange(groups), size)
    # The largest even step between group windows that starts none after its first output's.
    starts = offsets[::size]
    group_stride = min((int(starts[g]) // g for g in range(1, groups)), default=0)
    local = offsets - group * group_stride  # window start within the group's span
    span = int(local.max()) + per_phase
    padded = np.zeros(per_phase * up)
    padded[: design.taps] = design.coefficients * up  # gain ``up`` undoes zero-stuffing
    # taps[j, t] multiplies input ends[j] - t; store them oldest input first.
    taps = padded[phases[:, None] + up * np.arange(per_phase)[None, :]][:, ::-1]
    matrix = np.zeros((groups, span, size), dtype=np.float32)
    rows = local[:, None] + np.arange(per_phase)[None, :]
    matrix[group[:, None], rows, (np.arange(block) % size)[:, None]] = taps
    matrix.setflags(write=False)
    pad = (groups - 1) * group_stride + span
    zeros = np.zeros(pad, dtype=np.float32)
    zeros.setflags(write=False)
    return _Kernel(
        block=block,
        stride=cycles * down,
        groups=groups,
        group_stride=group_stride,
        span=span,
        first=int(ends[0]) - per_phase + 1,
        half=half,
        pad=pad,
        matrix=matrix,
        zeros=zeros,
    )


class StreamResampler:
    """Converts one mono stream from ``src_rate`` to ``dst_rate`` Hz, chunk by chunk.

    ``process`` takes int16 samples (returns int16, rounded and clipped) or float samples in
    [-1, 1) (returns float32) of any length; ``flush`` ends the stream and returns its tail;
    ``reset`` forgets the stream. One instance per stream; constructing one is cheap because
    the filter design is cached. Equal rates pass samples through as a copy.
    """

    def __init__(
        self,
        src_rate: int,
        dst_rate: int,
        *,
        stopband_db: float = 80.0,
        passband: float = 0.9,
        max_delay_ms: float = 5.0,
    ) -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._design: FilterDesign | None = None
        self._kernel: _Kernel | None = None
        self._up = self._down = 1
        if src_rate != dst_rate:
            self._design = design_filter(
                src_rate,
                dst_rate,
                stopband_db=stopband_db,
                passband=passband,
                max_delay_ms=max_delay_ms,
            )
            self._kernel = _kernel(self._design)
            self._up, self._down = self._design.up, self._design.down
        elif src_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {src_rate}")
        self.reset()

    @property
    def design(self) -> FilterDesign | None:
        """The filter in use, or None for a pass-through."""
        return self._design

    @property
    def ratio(self) -> tuple[int, int]:
        """``(up, down)``: ``dst_rate / src_rate`` in lowest terms."""
        return (self._up, self._down)

    @property
    def taps(self) -> int:
        """Filter length in up-sampled samples (1 for a pass-through)."""
        return 1 if self._design is None else self._design.taps

    @property
    def delay_samples(self) -> float:
        """Latency in output samples: how far emission trails the input (may be fractional)."""
        if self._kernel is None:
            return 0.0
        return self._kernel.half / self._down

    @property
    def delay_s(self) -> float:
        """Latency in seconds; at most ``max_delay_ms``."""
        return 0.0 if self._design is None else self._design.delay_s

    @property
    def samples_in(self) -> int:
        """Input samples fed since the last reset."""
        return self._n_in

    @property
    def samples_out(self) -> int:
        """Output samples returned since the last reset."""
        return self._n_out

    def reset(self) -> None:
        """Forget the stream: history, counters and sample kind."""
        self._n_in = 0
        self._n_out = 0
        self._is_int: bool | None = None
        # Inputs from the start of the next block to compute; before the stream, zeros.
        first = 0 if self._kernel is None else self._kernel.first
        self._history: _Float32 = np.zeros(-first, dtype=np.float32)

    def process(self, samples: npt.ArrayLike) -> npt.NDArray[np.int16] | _Float32:
        """Feed the next chunk; return every output sample whose input has now arrived."""
        chunk = np.asarray(samples)
        if chunk.ndim != 1:
            raise ValueError(f"expected mono samples (1-D), got shape {chunk.shape}")
        # An empty chunk carries no samples, so it may not fix or contradict the stream's kind.
        is_int = self._is_int
        if chunk.size or is_int is None:
            is_int = self._kind(chunk)
        if chunk.size and self._is_int is None:
            self._is_int = is_int
        elif chunk.size and is_int != self._is_int:
            raise TypeError("int16 and float chunks mixed in one stream; reset() in between")
        self._n_in += chunk.size
        if self._kernel is None:
            self._n_out += chunk.size
            return chunk.astype(np.int16) if is_int else chunk.astype(np.float32)
        kernel = self._kernel
        ready = max(0, (self._n_in * self._up - 1 - kernel.half) // self._down + 1)
        size = self._history.size + chunk.size
        buffer = np.concatenate((self._history, chunk, kernel.zeros), dtype=np.float32)
        return self._finish(self._render(buffer, size, ready), is_int=is_int)

    def flush(self) -> npt.NDArray[np.int16] | _Float32:
        """End the stream: return the remaining outputs (input zero-padded) and reset.

        Afterwards the stream has produced ``ceil(N * up / down)`` samples for ``N`` fed.
        The dtype follows the stream's input (int16 when nothing was fed).
        """
        if self._kernel is None:
            tail = np.zeros(0, dtype=np.float32)
        else:
            total = -(-self._n_in * self._up // self._down)
            history = self._history
            buffer = np.concatenate((history, self._kernel.zeros))
            tail = self._render(buffer, history.size, total)
        out = self._finish(tail, is_int=self._is_int is not False)
        self.reset()
        return out

    @staticmethod
    def _kind(chunk: npt.NDArray[np.generic]) -> bool:
        if chunk.dtype == np.int16:
            return True
        if np.issubdtype(chunk.dtype, np.floating):
            return False
        raise TypeError(f"expected int16 or float samples, got {chunk.dtype}")

    def _render(self, buffer: _Float32, size: int, ready: int) -> _Float32:
        """Compute outputs ``samples_out .. ready - 1`` and keep the input the next ones need.

        ``buffer[:size]`` holds the history followed by the new input, starting at the first
        input of the block that contains output ``samples_out``; zeros follow it.
        """
        kernel = self._kernel
        assert kernel is not None
        start = self._n_out
        if ready <= start:
            self._history = buffer[:size]
            return np.zeros(0, dtype=np.float32)
        first_block = start // kernel.block
        rows = (ready - 1) // kernel.block - first_block + 1
        # Outputs still waiting for input read past it; their zero taps meet zeros.
        short = (rows - 1) * kernel.stride + kernel.pad - buffer.size
        if short > 0:
            buffer = np.concatenate((buffer, np.zeros(short, dtype=np.float32)))
        # A lone row's stride is never stepped; the span keeps it a plain matrix for BLAS.
        stride = kernel.stride if rows > 1 else kernel.span
        windows = np.ndarray(
            (kernel.groups, rows, kernel.span),
            dtype=np.float32,
            buffer=buffer,
            strides=(kernel.group_stride * 4, stride * 4, 4),
        )
        if stride < kernel.span:  # overlapping rows: BLAS wants them apart
            windows = np.ascontiguousarray(windows)
        out: _Float32 = np.matmul(windows, kernel.matrix).transpose(1, 0, 2).ravel()
        offset = first_block * kernel.block
        self._n_out = ready
        drop = (ready // kernel.block - first_block) * kernel.stride
        self._history = buffer[drop:size]
        return out[start - offset : ready - offset]

    @staticmethod
    def _finish(out: _Float32, *, is_int: bool) -> npt.NDArray[np.int16] | _Float32:
        if not is_int:
            return out
        # The ufuncs directly: np.clip's Python wrapper costs more than the clipping itself.
        np.rint(out, out=out)
        np.minimum(out, _INT16_MAX, out=out)
        np.maximum(out, _INT16_MIN, out=out)
        return out.astype(np.int16)
