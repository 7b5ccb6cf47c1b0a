"""piagent.audio.filtercache: filters kept on disk, so that a daemon start needs no scipy.

The designs read back from the cache must be the very coefficients scipy designs; a damaged
or foreign file must be ignored and replaced; a cache that cannot be written must cost nothing
but the design; and a process whose filters are all cached must never import scipy.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from piagent.audio import resample
from piagent.audio.filtercache import (
    AGENT_RATES,
    FilterCache,
    cache_dir,
    prepare_filters,
    rate_pairs,
)
from piagent.audio.resample import (
    StreamResampler,
    design_filter,
    kaiser_beta,
    kaiser_taps,
    use_coefficient_store,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FilterCache]:
    """A fresh cache in use, with the in-memory designs forgotten before and after."""
    cache = FilterCache(tmp_path / "filters")
    design_filter.cache_clear()
    previous = resample._store
    use_coefficient_store(cache)
    yield cache
    use_coefficient_store(previous)
    design_filter.cache_clear()


def scipy_design(src: int, dst: int) -> np.ndarray:
    """The coefficients scipy designs for the pair's specification, not reading any cache."""
    design = design_filter(src, dst)
    coefficients: np.ndarray = signal.firwin(
        design.taps,
        (design.passband_hz + design.stopband_hz) / 2,
        window=("kaiser", design.beta),
        fs=design.rate_hz,
    )
    return coefficients


@pytest.mark.parametrize("attenuation", [21.5, 30.0, 50.0, 50.01, 81.0, 100.0, 120.0])
@pytest.mark.parametrize("width", [0.0009, 0.0113, 0.05, 0.37])
def test_kaiser_formulas_are_scipys(attenuation: float, width: float) -> None:
    taps, beta = signal.kaiserord(attenuation, width)
    assert kaiser_taps(attenuation, width) == taps
    assert kaiser_beta(attenuation) == beta == signal.kaiser_beta(attenuation)


def test_a_design_is_kept_then_read_back_bit_exact(store: FilterCache) -> None:
    first = design_filter(44100, 16000)
    assert (store.missed, store.saved, store.loaded) == (1, 1, 0)
    [path] = store.directory.glob("*.npy")
    assert path.name.startswith(f"lowpass-{first.rate_hz}-{first.taps}-")
    design_filter.cache_clear()
    again = design_filter(44100, 16000)
    assert (store.missed, store.saved, store.loaded) == (1, 1, 1)
    np.testing.assert_array_equal(again.coefficients, scipy_design(44100, 16000))
    assert not again.coefficients.flags.writeable


def test_reverse_pairs_share_one_file(store: FilterCache) -> None:
    design_filter(16000, 48000)
    design_filter(48000, 16000)
    assert store.saved == 1
    assert store.loaded == 1


def test_other_specifications_get_their_own_files(store: FilterCache) -> None:
    design_filter(48000, 16000)
    design_filter(48000, 16000, stopband_db=90.0)
    design_filter(48000, 16000, passband=0.8)
    assert len(list(store.directory.glob("*.npy"))) == 3


def damage(path: Path, how: str) -> None:
    coefficients = np.load(path)
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif how == "garbage":
        path.write_bytes(b"not a numpy file at all")
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "short":
        np.save(path, coefficients[:-2])
    elif how == "float32":
        np.save(path, coefficients.astype(np.float32))
    elif how == "nan":
        coefficients[3] = np.nan
        np.save(path, coefficients)
    elif how == "asymmetric":
        coefficients[0] += 1e-6
        coefficients[-1] -= 1e-6  # the DC gain is kept: only the symmetry check can see it
        np.save(path, coefficients)
    elif how == "gain":
        np.save(path, coefficients * 1.01)
    elif how == "pickle":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)


@pytest.mark.parametrize(
    "how",
    ["truncated", "garbage", "empty", "short", "float32", "nan", "asymmetric", "gain", "pickle"],
)
def test_a_damaged_file_is_ignored_and_replaced(
    store: FilterCache, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    design_filter(24000, 16000)
    [path] = store.directory.glob("*.npy")
    damage(path, how)
    design_filter.cache_clear()
    with caplog.at_level(logging.WARNING, logger="piagent.audio.filtercache"):
        design = design_filter(24000, 16000)
    np.testing.assert_array_equal(design.coefficients, scipy_design(24000, 16000))
    assert store.loaded == 0
    assert store.missed == 2
    assert [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    # The replacement is whole again: the next start reads it.
    design_filter.cache_clear()
    design_filter(24000, 16000)
    assert store.loaded == 1


def test_an_unwritable_cache_costs_only_the_design(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    cache = FilterCache(blocker / "filters")
    design_filter.cache_clear()
    previous = resample._store
    use_coefficient_store(cache)
    try:
        with caplog.at_level(logging.INFO, logger="piagent.audio.filtercache"):
            first = design_filter(48000, 16000)
            second = design_filter(16000, 24000)
    finally:
        use_coefficient_store(previous)
        design_filter.cache_clear()
    np.testing.assert_array_equal(first.coefficients, scipy_design(48000, 16000))
    np.testing.assert_array_equal(second.coefficients, scipy_design(16000, 24000))
    assert cache.writable is False
    reports = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(reports) == 1  # said once, not once per filter
    assert not list(tmp_path.glob("**/*.tmp"))


def test_no_temporary_file_is_left_behind(store: FilterCache) -> None:
    prepare_filters(rate_pairs(44100, 48000))
    names = [path.name for path in store.directory.iterdir()]
    assert names and all(name.endswith(".npy") and not name.startswith(".") for name in names)


def test_cache_directory_order() -> None:
    home = {"HOME": "/home/pi"}
    assert cache_dir(home) == Path("/home/pi/.cache/piagent")
    xdg = {**home, "XDG_CACHE_HOME": "/xdg"}
    assert cache_dir(xdg) == Path("/xdg/piagent")
    systemd = {**xdg, "CACHE_DIRECTORY": "/var/cache/piagent:/var/cache/other"}
    assert cache_dir(systemd) == Path("/var/cache/piagent")
    assert cache_dir({**systemd, "PIAGENT_CACHE_DIR": "/srv/f"}) == Path("/srv/f")
    assert cache_dir({**systemd, "PIAGENT_CACHE_DIR": ""}) == Path("/var/cache/piagent")


def test_rate_pairs_cover_every_agent_format_both_ways() -> None:
    pairs = rate_pairs(44100, 48000)
    assert len(pairs) == len(set(pairs)) == 9
    assert set(pairs) == {(44100, rate) for rate in AGENT_RATES if rate != 44100} | {
        (rate, 48000) for rate in AGENT_RATES if rate != 48000
    }
    assert rate_pairs(16000, 16000) == [
        *((16000, rate) for rate in AGENT_RATES if rate != 16000),
        *((rate, 16000) for rate in AGENT_RATES if rate != 16000),
    ]


CHILD = """
import sys
import numpy as np
from piagent.audio.filtercache import FilterCache, prepare_filters, rate_pairs
from piagent.audio.resample import StreamResampler, use_coefficient_store
import piagent.service  # everything the daemon imports

store = FilterCache(__import__("pathlib").Path(sys.argv[1]))
use_coefficient_store(store)
prepare_filters(rate_pairs(44100, 48000))
x = (np.sin(np.arange(8820) * 0.05) * 12000).astype(np.int16)
up = StreamResampler(44100, 16000)
down = StreamResampler(16000, 48000)
y = np.concatenate([up.process(x[i:i + 882]) for i in range(0, x.size, 882)])
z = down.process(y)
np.save(sys.argv[2], np.concatenate([y, z]))
print("scipy" in sys.modules, store.loaded, store.missed)
"""


def run_child(directory: Path, out: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(directory), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.strip()


def test_a_warm_cache_keeps_scipy_out_of_the_process(tmp_path: Path) -> None:
    directory = tmp_path / "filters"
    # The child's two resamplers load their filters from the store after it is prepared
    # (prepare_filters keeps nothing in memory): two loads more than the pairs prepared.
    assert run_child(directory, tmp_path / "cold.npy") == "True 2 9"
    assert run_child(directory, tmp_path / "warm.npy") == "False 11 0"
    np.testing.assert_array_equal(np.load(tmp_path / "cold.npy"), np.load(tmp_path / "warm.npy"))
    # And what came out is what the scipy-designed resampler gives in this process.
    x = (np.sin(np.arange(8820) * 0.05) * 12000).astype(np.int16)
    design_filter.cache_clear()
    up, down = StreamResampler(44100, 16000), StreamResampler(16000, 48000)
    y = np.concatenate([up.process(x[i : i + 882]) for i in range(0, x.size, 882)])
    expected = np.concatenate([y, down.process(y)])
    np.testing.assert_array_equal(np.load(tmp_path / "warm.npy"), expected)


def test_the_command_fills_the_cache_for_every_pair(tmp_path: Path) -> None:
    def fill() -> str:
        result = subprocess.run(
            [sys.executable, "-m", "piagent.audio.filtercache", str(tmp_path / "c")],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return result.stdout.strip()

    # 30 pairs share 12 filters: a pair and its reverse, and 16000 -> 24000 or 48000 (say).
    assert fill() == f"{tmp_path / 'c'}: 12 filters designed and kept, 18 were there"
    assert len(list((tmp_path / "c").glob("*.npy"))) == 12
    assert fill() == f"{tmp_path / 'c'}: 0 filters designed and kept, 30 were there"
