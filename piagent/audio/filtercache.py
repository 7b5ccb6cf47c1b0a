"""The on-disk store of designed resampling filters, so that a daemon start needs no scipy.

Owns the cache directory and its files. ``design_filter`` (``audio.resample``) computes a
filter's specification with plain arithmetic and asks the store registered with
``use_coefficient_store`` for the coefficients; only when the store has none does it import
``scipy.signal`` (0.75 s of CPU and about 75 MB on a desktop, several seconds on a Pi Zero 2)
to design them, and it hands the result back to be kept. The daemon registers a
``FilterCache`` and designs the filters it may need in a worker thread at start-up, so the
first start pays once, every later start pays nothing, and no conversation ever waits on
scipy (only on loading its own two filters from the store, a few ms).

Where the files go (``cache_dir``): ``$PIAGENT_CACHE_DIR``; else systemd's
``$CACHE_DIRECTORY`` (``CacheDirectory=piagent``: /var/cache/piagent); else
``$XDG_CACHE_HOME/piagent`` or ``~/.cache/piagent``. One ``.npy`` file per filter, named by
a digest of its specification, written atomically (temporary file, then rename). A file that
cannot be read, or whose contents are not a valid filter for its name (wrong length, not
finite, not symmetric, not unit gain at DC), is ignored and replaced. A directory that cannot
be written is reported once; filters are then designed at every start, as without a cache.

``python -m piagent.audio.filtercache [DIR]`` designs every pair of the agent formats' rates
into the cache (a Pi image can ship it warm).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from piagent.audio.resample import design_filter, use_coefficient_store
from piagent.protocol.messages import AudioFormat

__all__ = ["AGENT_RATES", "FilterCache", "cache_dir", "prepare_filters", "rate_pairs"]

logger = logging.getLogger(__name__)

# The sample rates of the agent's audio formats (pcm_8000 ... pcm_48000, ulaw_8000).
AGENT_RATES = tuple(sorted({fmt.sample_rate for fmt in AudioFormat}))

# Tolerances of the checks on a loaded file: firwin's coefficients sum to 1 and are symmetric
# to float64 rounding; anything further off is not a file this module wrote.
_DC_GAIN_TOLERANCE = 1e-9
_SYMMETRY_TOLERANCE = 1e-12


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The directory filters are kept in (see the module docstring for the order)."""
    env = os.environ if env is None else env
    if env.get("PIAGENT_CACHE_DIR"):
        return Path(env["PIAGENT_CACHE_DIR"])
    if env.get("CACHE_DIRECTORY"):
        # systemd sets a colon-separated list when a unit names several; ours names one.
        return Path(env["CACHE_DIRECTORY"].split(":")[0])
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]) / "piagent"
    return Path(env.get("HOME") or Path.home()) / ".cache" / "piagent"


class FilterCache:
    """A directory of designed filters; implements ``resample.CoefficientStore``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.loaded = 0  # filters found
        self.missed = 0  # filters asked for and not found (or not valid): designed by scipy
        self.saved = 0
        self.writable = True  # until a write fails

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npy"

    def load(self, key: str, taps: int) -> npt.NDArray[np.float64] | None:
        """The coefficients stored under ``key``, or None when absent or not a valid filter."""
        path = self.path(key)
        try:
            coefficients = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            self.missed += 1
            return None
        except (OSError, ValueError, EOFError) as exc:
            logger.warning("filter cache: ignoring %s, which cannot be read (%s)", path, exc)
            self.missed += 1
            return None
        problem = _problem(coefficients, taps)
        if problem is not None:
            logger.warning("filter cache: ignoring %s: %s", path, problem)
            self.missed += 1
            return None
        self.loaded += 1
        return np.asarray(coefficients, dtype=np.float64)

    def save(self, key: str, coefficients: npt.NDArray[np.float64]) -> None:
        """Keep ``coefficients`` under ``key``; a failure is reported once and otherwise ignored."""
        if not self.writable:
            return
        temporary: Path | None = None
        try:
            self.directory.mkdir(mode=0o750, parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                dir=self.directory, prefix=f".{key}.", suffix=".tmp", delete=False
            ) as handle:
                temporary = Path(handle.name)
                np.save(handle, np.asarray(coefficients, dtype=np.float64))
            temporary.replace(self.path(key))
        except OSError as exc:
            if temporary is not None:
                temporary.unlink(missing_ok=True)
            self.writable = False
            logger.info(
                "filter cache: cannot write to %s (%s); resampling filters will be designed "
                "again at the next start",
                self.directory,
                exc.strerror or exc,
            )
            return
        self.saved += 1


def _problem(coefficients: npt.NDArray[np.float64], taps: int) -> str | None:
    """Why ``coefficients`` is not a valid ``taps``-long linear-phase low-pass (None if it is)."""
    if coefficients.dtype != np.float64 or coefficients.shape != (taps,):
        found = f"{coefficients.shape} {coefficients.dtype}"
        return f"expected {taps} float64 coefficients, found {found}"
    if not np.isfinite(coefficients).all():
        return "not every coefficient is finite"
    if np.abs(coefficients - coefficients[::-1]).max() > _SYMMETRY_TOLERANCE:
        return "the coefficients are not symmetric"
    if abs(float(coefficients.sum()) - 1.0) > _DC_GAIN_TOLERANCE:
        return "the gain at DC is not 1"
    return None


def rate_pairs(input_rate: int, output_rate: int) -> list[tuple[int, int]]:
    """The conversions a daemon may need: its microphone rate to each agent rate, and each
    agent rate to its speaker rate."""
    pairs = [(input_rate, rate) for rate in AGENT_RATES]
    pairs += [(rate, output_rate) for rate in AGENT_RATES]
    return [pair for pair in dict.fromkeys(pairs) if pair[0] != pair[1]]


def prepare_filters(pairs: Iterable[tuple[int, int]]) -> None:
    """Make sure the registered store holds the filter of each pair, designing the missing
    ones (scipy: the slow part). Blocking: the daemon runs it in a worker thread.

    Nothing is kept in memory: a conversation's ``StreamResampler`` loads its two filters from
    the store when it starts (a few ms), while keeping every pair's filter and matrices
    ready, for rates most agents never use, would add megabytes to the daemon's memory."""
    for src, dst in pairs:
        design_filter(src, dst)
        design_filter.cache_clear()  # one filter at a time in memory, not all of them


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m piagent.audio.filtercache",
        description="Design the resampling filter of every pair of agent rates into the cache.",
    )
    parser.add_argument("directory", nargs="?", type=Path, help="default: the daemon's")
    args = parser.parse_args(argv)
    store = FilterCache(args.directory or cache_dir())
    use_coefficient_store(store)
    prepare_filters((a, b) for a, b in itertools.product(AGENT_RATES, repeat=2) if a != b)
    print(f"{store.directory}: {store.saved} filters designed and kept, {store.loaded} were there")
    return 0 if store.writable else 73  # EX_CANTCREAT


if __name__ == "__main__":
    sys.exit(main())
