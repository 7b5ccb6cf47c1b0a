"""Fixtures shared by the whole suite.

Every daemon the suite starts, in this process or as a child, keeps its resampling filters
in one throwaway directory (``$PIAGENT_CACHE_DIR``), never in the user's ``~/.cache``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_CACHE_ENV = "PIAGENT_CACHE_DIR"
_owned = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get(_CACHE_ENV):
        directory = tempfile.mkdtemp(prefix="piagent-filters-")
        os.environ[_CACHE_ENV] = directory
        config.stash[_owned] = directory


def pytest_unconfigure(config: pytest.Config) -> None:
    directory = config.stash.get(_owned, None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
