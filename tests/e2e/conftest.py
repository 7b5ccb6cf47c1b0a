"""Fixtures the end-to-end tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import Daemon


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons a test starts; each is closed (killed if need be) when the test ends."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.close()
