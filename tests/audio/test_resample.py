"""piagent.audio.resample: filter specification, chunking invariance, sample counts, tones.

Every pair among the rates piagent meets (8, 16, 22.05, 24, 44.1 and 48 kHz) is checked
against the figures the module promises: a stopband of 80 dB measured on the designed filter,
a flat passband to 0.9 of the lower Nyquist frequency, at most 5 ms of delay, chunked output
equal to one-shot output within one LSB, and integer-exact sample counts. The one-shot output
is itself checked against ``scipy.signal.resample_poly`` run with the same filter.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from piagent.audio.resample import StreamResampler, design_filter

RATES = (8000, 16000, 22050, 24000, 44100, 48000)
PAIRS = list(itertools.permutations(RATES, 2))
DOWN_PAIRS = [(src, dst) for src, dst in PAIRS if dst < src]

Samples = npt.NDArray[Any]


def pair_id(pair: tuple[int, int]) -> str:
    return f"{pair[0]}->{pair[1]}"


def test_thirty_pairs() -> None:
    assert len(PAIRS) == 30


def noise(rate: int, seconds: float, seed: int = 0) -> npt.NDArray[np.int16]:
    """Broadband int16 audio: white noise plus two tones, peaks near -6 dBFS."""
    rng = np.random.default_rng(seed)
    n = round(rate * seconds)
    t = np.arange(n) / rate
    x = 4000 * rng.standard_normal(n) + 6000 * np.sin(2 * np.pi * 440 * t)
    x += 3000 * np.sin(2 * np.pi * 0.42 * rate * t)
    samples: npt.NDArray[np.int16] = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    return samples


def feed(resampler: StreamResampler, samples: Samples, sizes: list[int]) -> list[Samples]:
    """Push ``samples`` through in chunks of ``sizes`` (the rest in one chunk); outputs."""
    outputs: list[Samples] = []
    start = 0
    for size in sizes:
        outputs.append(resampler.process(samples[start : start + size]))
        start += size
    outputs.append(resampler.process(samples[start:]))
    return outputs


def one_shot(src: int, dst: int, samples: Samples) -> Samples:
    resampler = StreamResampler(src, dst)
    return np.concatenate((resampler.process(samples), resampler.flush()))


def ready_count(resampler: StreamResampler, n_in: int) -> int:
    """The documented rule, counted the long way: outputs whose last input has arrived."""
    up, down = resampler.ratio
    half = (resampler.taps - 1) // 2
    k = np.arange(n_in * up // down + 2)
    return int(np.count_nonzero((k * down + half) // up <= n_in - 1))


def sizes_for(rate: int, n: int, chunk: int | str, seed: int = 1) -> list[int]:
    if chunk == "random":
        rng = np.random.default_rng(seed)
        return [int(s) for s in rng.integers(0, rate // 20, size=n // (rate // 40) + 1)]
    assert isinstance(chunk, int)
    return [chunk] * (n // chunk)


# --- the filter ---------------------------------------------------------------------------


def test_ratio_is_reduced_by_gcd() -> None:
    assert StreamResampler(44100, 16000).ratio == (160, 441)
    assert StreamResampler(22050, 48000).ratio == (320, 147)
    assert StreamResampler(48000, 16000).ratio == (1, 3)


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_filter_meets_specification(pair: tuple[int, int]) -> None:
    src, dst = pair
    design = StreamResampler(src, dst).design
    assert design is not None
    nyquist = min(src, dst) / 2
    assert design.taps % 2 == 1
    assert design.delay_s <= 0.005
    assert design.passband_hz >= 0.9 * nyquist
    # The stopband starts at the Nyquist frequency, or past it only as far as keeps what
    # folds back out of the passband.
    assert nyquist <= design.stopband_hz <= 2 * nyquist - design.passband_hz
    grid = 1 << math.ceil(math.log2(16 * design.taps))
    freqs, response = signal.freqz(design.coefficients, worN=grid, fs=design.rate_hz)
    gain_db = 20 * np.log10(np.maximum(np.abs(response), 1e-300))
    assert gain_db[freqs >= design.stopband_hz].max() <= -80.0
    assert np.abs(gain_db[freqs <= design.passband_hz]).max() <= 0.01
    # The cutoff (-6 dB, half amplitude) lies between the passband edge and the Nyquist
    # frequency.
    assert design.passband_hz < freqs[np.argmax(gain_db < -6.0)] < nyquist


def test_stopband_is_at_nyquist_when_the_delay_allows() -> None:
    for src, dst in PAIRS:
        design = design_filter(src, dst)
        if min(src, dst) > 8000:
            assert design.stopband_hz == min(src, dst) / 2
        else:
            # 80 dB over a 400 Hz band needs 6.3 ms: the band grows past 4 kHz instead.
            assert 4000 < design.stopband_hz < 4200
            assert 0.005 - 1 / design.rate_hz < design.delay_s <= 0.005


def test_reverse_pairs_share_one_filter_shape() -> None:
    forward, backward = design_filter(44100, 16000), design_filter(16000, 44100)
    assert forward.rate_hz == backward.rate_hz
    np.testing.assert_array_equal(forward.coefficients, backward.coefficients)


def test_design_is_cached() -> None:
    assert StreamResampler(48000, 16000).design is StreamResampler(48000, 16000).design
    assert design_filter(48000, 16000) is not design_filter(48000, 16000, stopband_db=90.0)


def test_coefficients_are_read_only() -> None:
    design = design_filter(48000, 16000)
    with pytest.raises(ValueError, match="read-only"):
        design.coefficients[0] = 1.0


def test_delay_properties() -> None:
    resampler = StreamResampler(48000, 16000)
    assert resampler.delay_s == pytest.approx((resampler.taps - 1) / 2 / 48000)
    assert resampler.delay_samples == pytest.approx(resampler.delay_s * 16000)
    assert 0 < resampler.delay_s <= 0.005


def test_impossible_specification_is_refused() -> None:
    with pytest.raises(ValueError, match="allow more delay"):
        design_filter(48000, 8000, max_delay_ms=1.0)
    with pytest.raises(ValueError, match="passband"):
        StreamResampler(48000, 16000, passband=1.0)
    with pytest.raises(ValueError, match="stopband_db"):
        StreamResampler(48000, 16000, stopband_db=20.0)
    with pytest.raises(ValueError, match="positive"):
        StreamResampler(0, 16000)
    with pytest.raises(ValueError, match="positive"):
        StreamResampler(-1, -1)


# --- streaming ----------------------------------------------------------------------------


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_one_shot_matches_resample_poly(pair: tuple[int, int]) -> None:
    src, dst = pair
    x = noise(src, 0.1)
    resampler = StreamResampler(src, dst)
    assert resampler.design is not None
    ours = one_shot(src, dst, x).astype(np.int64)
    up, down = resampler.ratio
    reference = signal.resample_poly(
        x.astype(np.float64), up, down, window=resampler.design.coefficients
    )
    expected = np.clip(np.rint(reference), -32768, 32767)
    assert ours.size == reference.size == math.ceil(x.size * up / down)
    assert np.abs(ours - expected).max() <= 1


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
@pytest.mark.parametrize("chunk", [1, 7, "20ms", "100ms", "random"])
def test_chunked_equals_one_shot(pair: tuple[int, int], chunk: int | str) -> None:
    src, dst = pair
    # One- and seven-sample chunks on a shorter signal keep the suite quick.
    x = noise(src, 0.03 if isinstance(chunk, int) else 0.25)
    size = {"20ms": src // 50, "100ms": src // 10}.get(str(chunk), chunk)
    resampler = StreamResampler(src, dst)
    outputs = feed(resampler, x, sizes_for(src, x.size, size))
    assert all(out.dtype == np.int16 for out in outputs)
    assert sum(out.size for out in outputs) == ready_count(resampler, x.size)
    outputs.append(resampler.flush())
    chunked = np.concatenate(outputs).astype(np.int64)
    reference = one_shot(src, dst, x).astype(np.int64)
    assert chunked.size == reference.size
    assert np.abs(chunked - reference).max() <= 1


@settings(max_examples=60, deadline=None)
@given(
    pair=st.sampled_from(PAIRS),
    sizes=st.lists(st.integers(0, 1500), max_size=12),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_chunking_gives_the_same_samples_and_counts(
    pair: tuple[int, int], sizes: list[int], seed: int
) -> None:
    src, dst = pair
    x = noise(src, (sum(sizes) + 1) / src, seed=seed)
    resampler = StreamResampler(src, dst)
    pieces = []
    fed = 0
    for size in sizes:
        pieces.append(resampler.process(x[fed : fed + size]))
        fed += size
        # The count depends on nothing but the number of samples fed so far.
        assert sum(piece.size for piece in pieces) == ready_count(resampler, fed)
        assert resampler.samples_in == fed
    pieces.append(resampler.process(x[fed:]))
    pieces.append(resampler.flush())
    chunked = np.concatenate(pieces).astype(np.int64)
    reference = one_shot(src, dst, x).astype(np.int64)
    assert chunked.size == math.ceil(x.size * dst / src)
    assert np.abs(chunked - reference).max() <= 1


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 159, 160, 441, 1000, 4410])
@pytest.mark.parametrize("pair", [(44100, 16000), (16000, 44100), (48000, 8000), (8000, 48000)])
def test_flush_completes_to_ceil(pair: tuple[int, int], n: int) -> None:
    src, dst = pair
    resampler = StreamResampler(src, dst)
    up, down = resampler.ratio
    body = resampler.process(noise(src, n / src))
    tail = resampler.flush()
    assert body.size == ready_count(resampler, n)
    assert body.size + tail.size == -(-n * up // down)
    assert tail.dtype == np.int16


def test_emission_trails_input_by_the_delay() -> None:
    resampler = StreamResampler(48000, 16000)
    out = resampler.process(np.zeros(4800, dtype=np.int16))
    assert 4800 // 3 - out.size == pytest.approx(resampler.delay_samples, abs=1)


def test_flush_resets_the_stream() -> None:
    x = noise(48000, 0.05)
    resampler = StreamResampler(48000, 16000)
    resampler.process(noise(48000, 0.02, seed=7))
    resampler.flush()
    assert resampler.samples_in == resampler.samples_out == 0
    again = np.concatenate((resampler.process(x), resampler.flush()))
    np.testing.assert_array_equal(again, one_shot(48000, 16000, x))


def test_reset_forgets_history() -> None:
    x = noise(16000, 0.05)
    resampler = StreamResampler(16000, 48000)
    resampler.process(noise(16000, 0.02, seed=3))
    resampler.reset()
    fresh = StreamResampler(16000, 48000)
    np.testing.assert_array_equal(resampler.process(x), fresh.process(x))


def test_empty_and_single_sample_chunks() -> None:
    resampler = StreamResampler(44100, 16000)
    assert resampler.process(np.zeros(0, dtype=np.int16)).dtype == np.int16
    assert resampler.process(np.zeros(0, dtype=np.float32)).dtype == np.float32
    x = noise(44100, 0.01)
    outputs = [resampler.process(x[i : i + 1]) for i in range(x.size)]
    outputs.append(resampler.process(np.zeros(0, dtype=np.int16)))
    assert all(out.size <= 1 for out in outputs)  # 16 000 / 44 100 < 1 output per input
    assert sum(out.size for out in outputs) == ready_count(resampler, x.size)
    chunked = np.concatenate([*outputs, resampler.flush()]).astype(np.int64)
    assert np.abs(chunked - one_shot(44100, 16000, x)).max() <= 1


def test_empty_input_flushes_to_nothing() -> None:
    resampler = StreamResampler(22050, 48000)
    assert resampler.process(np.zeros(0, dtype=np.int16)).size == 0
    assert resampler.flush().size == 0


# --- sample formats -----------------------------------------------------------------------


def test_full_scale_clips_instead_of_wrapping() -> None:
    # A full-scale square wave rings past full scale once band-limited (Gibbs).
    t = np.arange(4800)
    x = np.where((t // 24) % 2 == 0, 32767, -32768).astype(np.int16)
    resampler = StreamResampler(48000, 16000)
    assert resampler.design is not None
    y = one_shot(48000, 16000, x).astype(np.int64)
    exact = signal.resample_poly(x.astype(np.float64), 1, 3, window=resampler.design.coefficients)
    assert exact.max() > 32767 and exact.min() < -32768
    assert y.max() == 32767 and y.min() == -32768
    assert np.abs(y - np.clip(np.rint(exact), -32768, 32767)).max() <= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_input_gives_float32(dtype: type[np.floating]) -> None:
    x16 = noise(24000, 0.1)
    x = (x16 / 32768).astype(dtype)
    resampler = StreamResampler(24000, 16000)
    chunked = feed(resampler, x, sizes_for(24000, x.size, "random"))
    assert all(piece.dtype == np.float32 for piece in chunked)
    chunked.append(resampler.flush())
    assert chunked[-1].dtype == np.float32
    y = np.concatenate(chunked)
    whole = one_shot(24000, 16000, x)
    assert whole.dtype == np.float32
    np.testing.assert_allclose(y, whole, atol=1e-6)
    as_int = one_shot(24000, 16000, x16).astype(np.float64)
    assert np.abs(y * 32768 - as_int).max() <= 0.5 + 1e-3


def test_rejects_other_shapes_and_types() -> None:
    resampler = StreamResampler(48000, 16000)
    with pytest.raises(ValueError, match="mono"):
        resampler.process(np.zeros((10, 2), dtype=np.int16))
    with pytest.raises(TypeError, match="int16 or float"):
        resampler.process(np.zeros(10, dtype=np.int32))
    resampler.process(np.zeros(10, dtype=np.int16))
    with pytest.raises(TypeError, match="mixed"):
        resampler.process(np.zeros(10, dtype=np.float32))
    assert resampler.samples_in == 10


def test_equal_rates_pass_through_as_a_copy() -> None:
    resampler = StreamResampler(16000, 16000)
    x = noise(16000, 0.02)
    y = resampler.process(x)
    np.testing.assert_array_equal(y, x)
    assert y is not x and not np.shares_memory(y, x)
    assert resampler.ratio == (1, 1) and resampler.taps == 1 and resampler.delay_s == 0.0
    assert resampler.delay_samples == 0.0 and resampler.design is None
    # An empty chunk takes the stream's kind, whatever its dtype.
    assert resampler.process(x[:0].astype(np.float64)).dtype == np.int16
    assert resampler.flush().size == 0
    assert resampler.process(x / 32768).dtype == np.float32


# --- what comes out -----------------------------------------------------------------------


def snr_db(ideal: npt.NDArray[np.float64], actual: npt.NDArray[np.float64]) -> float:
    return float(10 * np.log10(np.sum(ideal**2) / np.sum((actual - ideal) ** 2)))


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_passband_tones_come_out_clean(pair: tuple[int, int]) -> None:
    src, dst = pair
    for freq in (1000.0, 0.85 * min(src, dst) / 2):
        x = 0.5 * np.sin(2 * np.pi * freq * np.arange(src // 4) / src)
        y = one_shot(src, dst, x).astype(np.float64)
        # The output is time-aligned with the input, so the ideal tone needs no phase fit;
        # skip 10 ms at each end, where the tone starts and stops abruptly.
        ideal = 0.5 * np.sin(2 * np.pi * freq * np.arange(y.size) / dst)
        edge = dst // 100
        assert snr_db(ideal[edge:-edge], y[edge:-edge]) > 80, freq


@pytest.mark.parametrize("pair", DOWN_PAIRS, ids=pair_id)
def test_tones_above_the_new_nyquist_are_removed(pair: tuple[int, int]) -> None:
    src, dst = pair
    design = design_filter(src, dst)
    for freq in (design.stopband_hz + 50, (design.stopband_hz + src / 2) / 2, 0.49 * src):
        x = 0.5 * np.sin(2 * np.pi * freq * np.arange(src // 4) / src)
        y = one_shot(src, dst, x).astype(np.float64)
        edge = dst // 100
        residual_rms = np.sqrt(np.mean(y[edge:-edge] ** 2))
        assert 20 * np.log10(0.5 / math.sqrt(2) / residual_rms) >= 75, freq


@pytest.mark.parametrize("pair", [(16000, 48000), (8000, 48000), (22050, 48000)], ids=pair_id)
def test_upsampling_leaves_no_images(pair: tuple[int, int]) -> None:
    src, dst = pair
    x = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(src // 4) / src)
    y = one_shot(src, dst, x).astype(np.float64)
    edge = dst // 100
    spectrum = np.abs(np.fft.rfft(y[edge:-edge] * np.hanning(y.size - 2 * edge)))
    freqs = np.fft.rfftfreq(y.size - 2 * edge, 1 / dst)
    above = spectrum[freqs > min(src, dst) / 2 + 200]
    assert 20 * np.log10(above.max() / spectrum.max()) < -80
