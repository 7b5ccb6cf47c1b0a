"""Scenarios run in a child process, for tests of the real PortAudio/ALSA path.

``ALSA_CONFIG_PATH`` must be set before alsa-lib and PortAudio first start, PortAudio can
abort a process, and a stream blocked on a FIFO can hang: so each scenario runs in a child
Python with the fake card's environment, returns a JSON object, and the parent asserts on it.
A test module makes one ``Scenarios(__name__)``, decorates its scenario functions with it and
calls ``spawn``; the child imports the module and runs the named scenario, keeping piagent's
log records (off stderr) in the result's ``logs``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.audio.alsa import FakeCard

Json = dict[str, Any]
Scenario = Callable[[Json], Json]

REPO_ROOT = Path(__file__).resolve().parents[2]

_CHILD_MAIN = """
import importlib, json, sys, warnings
warnings.simplefilter("error")
scenarios = importlib.import_module(sys.argv[1]).scenarios
print("RESULT " + json.dumps(scenarios.run(sys.argv[2], json.loads(sys.argv[3]))), flush=True)
"""


class _LogRecords(logging.Handler):
    """Keeps piagent's log records (and keeps them off stderr)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelname, record.getMessage()))


class Scenarios:
    """The scenarios of one test module (which must name this object ``scenarios``)."""

    def __init__(self, module: str, *, level: int = logging.DEBUG) -> None:
        self._module = module
        self._level = level
        self._functions: dict[str, Scenario] = {}

    def __call__(self, function: Scenario) -> Scenario:
        """Register ``function`` as a scenario under its name."""
        self._functions[function.__name__] = function
        return function

    def run(self, name: str, args: Json) -> Json:
        """In the child: run scenario ``name``; its result gains the log records."""
        handler = _LogRecords()
        root = logging.getLogger("piagent")
        root.setLevel(self._level)
        root.addHandler(handler)
        root.propagate = False
        result = self._functions[name](args)
        result["logs"] = handler.records
        return result

    def spawn(self, card: FakeCard, name: str, *, timeout: float, **args: Any) -> tuple[Json, str]:
        """In the parent: run scenario ``name`` in a child on ``card``; (result, stderr)."""
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD_MAIN, self._module, name, json.dumps(args)],
            cwd=REPO_ROOT,
            env={**os.environ, **card.env()},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        (line,) = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        result: Json = json.loads(line.removeprefix("RESULT "))
        return result, proc.stderr
