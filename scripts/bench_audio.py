#!/usr/bin/env python3
"""Audio-path benchmark: what one 20 ms chunk costs, and what chunking does to the signal.

Resampler part: for each rate pair piagent meets, side by side in one run,

* CPU time per 20 ms chunk of (a) ``StreamResampler``, (b) soxr's streaming resampler at
  quality "HQ" (skipped, with an install hint, when ``soxr`` is missing) and (c) the naive
  per-chunk ``scipy.signal.resample_poly`` most projects use; and the ratios a/b and c/a;
* SNR of the 20 ms-chunked output against the one-shot output, for (a) and (c);
* the stopband attenuation and the delay of (a)'s filter.

Every figure is one function of a ``Case``; the table is the list ``COLUMNS`` of (heading,
function, format), so a later figure (the whole send loop, say) is one more function and one
more entry. CPU time is ``time.process_time_ns`` (every thread of the process, BLAS's included)
over a run of chunks, median of repeats. The benchmark installs nothing.

    .venv/bin/python scripts/bench_audio.py [--repeats N] [--seconds S]
"""

from __future__ import annotations

import argparse
import functools
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy
from scipy import signal

from piagent.audio.codecs import encode_audio
from piagent.audio.filtercache import AGENT_RATES
from piagent.audio.levels import apply_gain
from piagent.audio.resample import StreamResampler
from piagent.protocol.messages import AudioFormat, ConversationInitiationMetadata, encode
from piagent.protocol.session import Session

try:
    import soxr  # type: ignore[import-untyped, import-not-found, unused-ignore]
except ImportError:  # a bench-only dependency
    soxr = None

PAIRS = [
    (48000, 16000),
    (44100, 16000),
    (16000, 48000),
    (22050, 48000),
    (24000, 48000),
    (8000, 48000),
]
CHUNK_S = 0.020

Int16 = npt.NDArray[np.int16]
Chunker = Callable[[Int16], Any]


@dataclass(frozen=True, eq=False)
class Case:
    """One rate pair with its test signal cut into 20 ms chunks (hashed by identity, so each
    figure is measured once per case and the ratios use the printed figures)."""

    src: int
    dst: int
    signal: Int16
    chunks: list[Int16]
    repeats: int

    @property
    def ratio(self) -> tuple[int, int]:
        gcd = math.gcd(self.src, self.dst)
        return self.dst // gcd, self.src // gcd


def speechlike(rate: int, seconds: float) -> Int16:
    """A voiced-speech stand-in: 140 Hz harmonics to 7 kHz with a 1/k slope, a 4 Hz syllable
    envelope and a little noise, peaking near -6 dBFS; deterministic."""
    t = np.arange(round(rate * seconds)) / rate
    voiced = sum(np.sin(2 * np.pi * 140 * k * t + k) / k for k in range(1, 50) if 140 * k < 7000)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    noise = np.random.default_rng(0).standard_normal(t.size) * 0.02
    x = voiced * envelope / 2.2 + noise
    return np.clip(np.rint(x * 16384), -32768, 32767).astype(np.int16)


def make_case(src: int, dst: int, seconds: float, repeats: int) -> Case:
    x = speechlike(src, seconds)
    step = round(src * CHUNK_S)
    chunks = [x[i : i + step] for i in range(0, x.size - step + 1, step)]
    return Case(src, dst, x[: len(chunks) * step], chunks, repeats)


# --- the three resamplers, each as "a fresh stream: chunk -> output chunk" ------------------


def stream_resampler(case: Case) -> Chunker:
    return StreamResampler(case.src, case.dst).process


def soxr_stream(case: Case) -> Chunker:
    assert soxr is not None
    stream = soxr.ResampleStream(case.src, case.dst, 1, dtype="int16", quality="HQ")
    return stream.resample_chunk  # type: ignore[no-any-return]


def naive_resample_poly(case: Case) -> Chunker:
    up, down = case.ratio

    def resample(chunk: Int16) -> Int16:
        y = signal.resample_poly(chunk, up, down)
        out: Int16 = np.clip(np.rint(y), -32768, 32767).astype(np.int16)
        return out

    return resample


# --- measured items -------------------------------------------------------------------------


def cpu_us_per_chunk(case: Case, make: Callable[[Case], Chunker]) -> float:
    """Median over repeats of the CPU time one chunk takes, streaming the whole signal."""
    samples = []
    for _ in range(case.repeats):
        process = make(case)
        process(case.chunks[0])  # warm caches and lazy set-up outside the clock
        start = time.process_time_ns()
        for chunk in case.chunks:
            process(chunk)
        samples.append((time.process_time_ns() - start) / len(case.chunks) / 1000)
    return statistics.median(samples)


@functools.cache
def ours_us(case: Case) -> float:
    return cpu_us_per_chunk(case, stream_resampler)


@functools.cache
def soxr_us(case: Case) -> float | None:
    return None if soxr is None else cpu_us_per_chunk(case, soxr_stream)


@functools.cache
def naive_us(case: Case) -> float:
    return cpu_us_per_chunk(case, naive_resample_poly)


def ours_over_soxr(case: Case) -> float | None:
    theirs = soxr_us(case)
    return None if theirs is None else ours_us(case) / theirs


def naive_over_ours(case: Case) -> float:
    return naive_us(case) / ours_us(case)


def snr_db(reference: npt.NDArray[Any], actual: npt.NDArray[Any]) -> float:
    reference = reference.astype(np.float64)
    error = np.sum((actual.astype(np.float64) - reference) ** 2)
    return math.inf if error == 0 else float(10 * np.log10(np.sum(reference**2) / error))


def ours_chunk_snr(case: Case) -> float:
    """Chunked (20 ms, then flush) against one-shot; both the same length by construction."""
    chunked_stream = StreamResampler(case.src, case.dst)
    chunked = [chunked_stream.process(chunk) for chunk in case.chunks]
    chunked.append(chunked_stream.flush())
    whole_stream = StreamResampler(case.src, case.dst)
    whole = np.concatenate((whole_stream.process(case.signal), whole_stream.flush()))
    return snr_db(whole, np.concatenate(chunked))


def naive_chunk_snr(case: Case) -> float:
    up, down = case.ratio
    chunked = np.concatenate([signal.resample_poly(c, up, down) for c in case.chunks])
    return snr_db(signal.resample_poly(case.signal, up, down), chunked)


def ours_stopband_db(case: Case) -> float:
    """Worst attenuation over the stopband, from the designed filter's frequency response."""
    design = StreamResampler(case.src, case.dst).design
    assert design is not None
    grid = 1 << math.ceil(math.log2(16 * design.taps))
    freqs, response = signal.freqz(design.coefficients, worN=grid, fs=design.rate_hz)
    worst = np.abs(response[freqs >= design.stopband_hz]).max()
    return float(-20 * np.log10(worst))


def ours_delay_ms(case: Case) -> float:
    return StreamResampler(case.src, case.dst).delay_s * 1000


Column = tuple[str, Callable[[Case], float | None], str]

COLUMNS: list[Column] = [
    ("(a) ours us", ours_us, "{:.1f}"),
    ("(b) soxr us", soxr_us, "{:.1f}"),
    ("(c) naive us", naive_us, "{:.1f}"),
    ("a/b", ours_over_soxr, "{:.2f}x"),
    ("c/a", naive_over_ours, "{:.1f}x"),
    ("SNR a dB", ours_chunk_snr, "{:.1f}"),
    ("SNR c dB", naive_chunk_snr, "{:.1f}"),
    ("stop a dB", ours_stopband_db, "{:.1f}"),
    ("delay a ms", ours_delay_ms, "{:.2f}"),
]


def render(value: float | None, fmt: str) -> str:
    if value is None:
        return "-"
    return "exact" if math.isinf(value) else fmt.format(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timing repeats (median)")
    parser.add_argument("--seconds", type=float, default=2.0, help="signal length per pair")
    args = parser.parse_args(argv)

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"soxr {getattr(soxr, '__version__', 'missing')}, {platform.machine()}"
    )
    print(f"20 ms chunks, {args.seconds:g} s per pair, CPU us per chunk (median of {args.repeats})")
    if soxr is None:
        print("soxr is not installed: column (b) skipped; `pip install soxr` to compare")
    headings = ["pair", *(heading for heading, _, _ in COLUMNS)]
    cases = [make_case(src, dst, args.seconds, args.repeats) for src, dst in PAIRS]
    # Column by column, timings first: a one-shot conversion (the SNR columns) is one large
    # matrix product that OpenBLAS spreads over threads, and its workers then spin for a while,
    # which process_time would charge to whatever is timed next.
    columns = [[render(measure(case), fmt) for case in cases] for _, measure, fmt in COLUMNS]
    rows = [
        [f"{c.src}->{c.dst}", *row]
        for c, row in zip(cases, zip(*columns, strict=True), strict=True)
    ]
    widths = [max(len(row[i]) for row in [headings, *rows]) for i in range(len(headings))]
    for row in [headings, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    print()
    print_all_pairs(args.seconds, args.repeats)
    print()
    print_send_loop(args.repeats)
    return 0


def print_all_pairs(seconds: float, repeats: int) -> None:
    """Column a/b for every pair of the six rates, summed up: the table shows the usual ones."""
    if soxr is None:
        return
    rates = AGENT_RATES
    ratios: list[tuple[float, str]] = []
    for src in rates:
        for dst in rates:
            if src != dst:
                case = make_case(src, dst, seconds, repeats)
                ratio = ours_over_soxr(case)
                assert ratio is not None
                ratios.append((ratio, f"{src}->{dst}"))
    worst = max(ratios)
    median = statistics.median(ratio for ratio, _ in ratios)
    over = sum(ratio > 3 for ratio, _ in ratios)
    print(
        f"a/b over all {len(ratios)} pairs of {', '.join(map(str, rates))} Hz: median "
        f"{median:.2f}x, worst {worst[0]:.2f}x ({worst[1]}), {over} over 3x"
    )


def send_loop_cpu_s(src_rate: int, fmt: AudioFormat, seconds: float, chunk_ms: int) -> float:
    """CPU seconds to send ``seconds`` of microphone audio through the real send path.

    Per frame, as the daemon does it: the PortAudio bytes to int16 (``np.frombuffer``), the
    microphone gain (``levels.apply_gain``), the stream resampler to the agent's rate, the wire
    codec, and ``Session.send_audio`` (base64 and the JSON frame), collected with
    ``data_to_send``. Everything but the socket write."""
    frame = src_rate * chunk_ms // 1000
    raw = speechlike(src_rate, seconds).astype("<i2").tobytes()
    session = Session()
    session.initiate()
    session.receive_text(encode(ConversationInitiationMetadata("bench", fmt, fmt)))
    session.data_to_send()
    resampler = StreamResampler(src_rate, fmt.sample_rate)
    step = frame * 2
    start = time.process_time()
    for offset in range(0, len(raw) - step + 1, step):
        samples = np.frombuffer(raw[offset : offset + step], dtype="<i2").astype(np.int16)
        samples, _clipped = apply_gain(samples, 0.0)
        session.send_audio(encode_audio(resampler.process(samples), fmt))
        session.data_to_send()
    return time.process_time() - start


def print_send_loop(repeats: int) -> None:
    """The whole send loop per second of audio, and as a share of one core."""
    print("send loop (capture bytes -> gain -> resample -> encode -> JSON), per second of audio")
    print("  mic rate -> agent format   chunk   CPU ms per s of audio   share of one core")
    for src, fmt, chunk_ms in (
        (48000, AudioFormat.PCM_16000, 20),
        (44100, AudioFormat.PCM_16000, 20),
        (48000, AudioFormat.ULAW_8000, 20),
        (48000, AudioFormat.PCM_16000, 100),
    ):
        seconds = 10.0
        cpu = statistics.median(
            send_loop_cpu_s(src, fmt, seconds, chunk_ms) for _ in range(repeats)
        )
        per_second_ms = cpu / seconds * 1000
        print(
            f"  {src:>5} -> {fmt.value:<12}  {chunk_ms:>3} ms   {per_second_ms:20.2f}   "
            f"{per_second_ms / 10:16.3f} %"
        )


if __name__ == "__main__":
    sys.exit(main())
