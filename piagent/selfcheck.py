"""The install's smoke test: ``python -m piagent.selfcheck`` imports what the daemon imports.

Owns the list of piagent's native and third-party dependencies as the daemon really uses
them (:data:`REQUIREMENTS`: module, Debian package, what it is for) and :func:`main`, which
imports each of them and then piagent's own module graph, and prints one line per module
with its version. Exit 0 when everything imports, 1 when something does not, naming the
module, the reason and the Debian package that provides it.

scripts/install.sh runs it in the fresh venv and fails the install on exit 1: a missing
``libportaudio.so.2``, a Debian package shadowed by an incompatible one, or websockets older
than the ``websockets.asyncio`` API then stop the installer, not the service at its first
start (where the failure would only show in the journal, in a restart loop).

Imports nothing beyond the standard library at import time, and does nothing then either:
the checks run in :func:`main`. It opens no device: PortAudio is loaded, not initialised,
and no GPIO pin factory is started.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final

__all__ = ["REQUIREMENTS", "Outcome", "Requirement", "check", "main", "parse_minimum", "release"]


@dataclass(frozen=True, slots=True)
class Requirement:
    """One module the daemon imports, and where it comes from."""

    module: str  # the module imported, as the daemon imports it
    distribution: str  # the name in piagent's dependencies (its version and minimum)
    package: str  # the Debian package that provides it
    why: str  # what the daemon uses it for (shown when it fails)
    # Checked only when this module can be found (without importing it): an optional driver.
    only_with: str | None = None


# The order is the order of the report: the native libraries first, so that a failure of
# piagent's own import further down is already explained above it.
REQUIREMENTS: Final[tuple[Requirement, ...]] = (
    Requirement("numpy", "numpy", "python3-numpy", "audio buffers and resampling"),
    Requirement(
        "scipy.signal", "scipy", "python3-scipy", "resampling filter design at the first start"
    ),
    Requirement(
        "pyaudio", "pyaudio", "python3-pyaudio", "ALSA capture and playback (libportaudio2)"
    ),
    Requirement("systemd.daemon", "systemd-python", "python3-systemd", "sd_notify"),
    Requirement("systemd.journal", "systemd-python", "python3-systemd", "logging to journald"),
    Requirement("gpiozero", "gpiozero", "python3-gpiozero", "the button and the LEDs"),
    Requirement(
        "gpiozero.pins.lgpio",
        "gpiozero",
        "python3-lgpio",
        "gpiozero's pin driver on Raspberry Pi OS",
        only_with="lgpio",
    ),
    Requirement("yaml", "pyyaml", "python3-yaml", "the config file"),
    Requirement(
        "websockets.asyncio.client",
        "websockets",
        "python3-websockets",
        "the agent connection (the websockets.asyncio API of websockets 13 and later)",
    ),
)

# piagent's own module graph: the daemon (which imports the rest of the package), its
# PyAudio backend (loaded only when configured), the command line and the tools run next to it.
PIAGENT_MODULES: Final[tuple[str, ...]] = (
    "piagent.service",
    "piagent.audio.devices",
    "piagent.cli",
    "piagent.control",
    "piagent.doctor",
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What importing one module gave: ``problem`` is None when it imported and is recent."""

    module: str
    version: str
    detail: str = ""
    problem: str | None = None
    package: str | None = None  # the Debian package to install or fix, when known

    @property
    def ok(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        """The report's line for this module."""
        if self.problem is None:
            extra = f" ({self.detail})" if self.detail else ""
            return f"ok      {self.module:<27} {self.version}{extra}"
        hint = f"; provided by the Debian package {self.package}" if self.package else ""
        return f"FAILED  {self.module:<27} {self.problem}{hint}"


def parse_minimum(requirement: str) -> tuple[str, str] | None:
    """``numpy>=1.24`` (or ``numpy (>=1.24)``, as setuptools before 67 writes it) ->
    ("numpy", "1.24"); None for anything else (no minimum, or an extra's requirement)."""
    if ";" in requirement:  # a marker: an extra's requirement (test, bench), not the daemon's
        return None
    match = re.fullmatch(r"([A-Za-z0-9._-]+) *\(?>= *([0-9][0-9.]*)\)?", requirement.strip())
    return (match[1].lower().replace("_", "-"), match[2]) if match else None


def _minimums() -> dict[str, str]:
    """Distribution (lower case) -> the minimum version piagent's metadata declares.

    Read from the installed piagent's own requirements (pyproject.toml's list), so the
    minimums are declared once. Empty when piagent is not installed (run from a checkout).
    """
    try:
        declared = importlib.metadata.requires("piagent") or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    return dict(parsed for requirement in declared if (parsed := parse_minimum(requirement)))


def release(version: str) -> tuple[int, ...]:
    """The leading numbers of a version (``1.24.2`` -> (1, 24, 2); ``2.0.1.post3`` too)."""
    numbers = re.match(r"[0-9]+(?:\.[0-9]+)*", version)
    return tuple(int(part) for part in numbers[0].split(".")) if numbers else ()


def _installed_version(distribution: str, module: ModuleType | None) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        version = getattr(module, "__version__", None)
        return str(version) if version is not None else "(version unknown)"


@contextlib.contextmanager
def _in_scratch_directory() -> Iterator[None]:
    """Run in an empty temporary directory: loading lgpio creates its notification FIFO
    (``.lgd-nfy*``) in the current directory, which must not be the user's."""
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="piagent-selfcheck-") as scratch:
        os.chdir(scratch)
        try:
            yield
        finally:
            os.chdir(previous)


def _describe(module: ModuleType, requirement: Requirement) -> str:
    """A detail worth printing next to the version: the native library actually loaded."""
    if requirement.module == "pyaudio":
        text: object = getattr(module, "get_portaudio_version_text", lambda: "")()
        return str(text)
    if requirement.module == "yaml":
        has_c = hasattr(module, "CSafeLoader")
        return "with libyaml" if has_c else "pure Python, without libyaml: slower, works"
    return ""


def _import_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def check_requirement(requirement: Requirement, minimums: dict[str, str]) -> Outcome | None:
    """Import one requirement; None when it does not apply here (an absent optional driver)."""
    optional = requirement.only_with
    if optional is not None and importlib.util.find_spec(optional) is None:
        return None
    try:
        with _in_scratch_directory():
            module = importlib.import_module(requirement.module)
    except Exception as exc:  # ImportError, or OSError from a library a module loads
        problem = f"cannot import ({_import_error(exc)}), needed for {requirement.why}"
        try:
            problem += f"; installed: {requirement.distribution} "
            problem += importlib.metadata.version(requirement.distribution)
        except importlib.metadata.PackageNotFoundError:
            problem = problem.removesuffix(f"; installed: {requirement.distribution} ")
        return Outcome(requirement.module, "-", problem=problem, package=requirement.package)
    version = _installed_version(requirement.distribution, module)
    minimum = minimums.get(requirement.distribution)
    if minimum is not None and release(version) < release(minimum):
        problem = f"{requirement.distribution} {version} is too old: piagent needs >= {minimum}"
        return Outcome(requirement.module, version, problem=problem, package=requirement.package)
    return Outcome(requirement.module, version, _describe(module, requirement))


def check_piagent(name: str) -> Outcome:
    """Import one of piagent's modules (and so everything it imports)."""
    import piagent  # the package itself, for its version

    try:
        importlib.import_module(name)
    except Exception as exc:
        culprit = _culprit(exc)
        package = _package_of(culprit) if culprit else None
        return Outcome(name, "-", problem=f"cannot import ({_import_error(exc)})", package=package)
    return Outcome(name, piagent.__version__)


def _culprit(exc: Exception) -> str | None:
    """The module outside piagent whose import failed: the one an ImportError names, else
    the first module in the traceback that is neither piagent's nor importlib's (a library
    that raised while loading, e.g. a missing shared object)."""
    named = exc.name if isinstance(exc, ImportError) else None
    if named:
        return named
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        module = str(frame.f_globals.get("__name__", ""))
        if module and not module.startswith(("piagent", "importlib", "__main__")):
            return module
    return None


def _package_of(module: str) -> str | None:
    """The Debian package for a module that failed to import, from :data:`REQUIREMENTS`."""
    for requirement in REQUIREMENTS:
        top = requirement.module.split(".")[0]
        if module == requirement.module or module.split(".")[0] == top:
            return requirement.package
    return None


def check() -> list[Outcome]:
    """Every requirement, then piagent's modules, in report order."""
    minimums = _minimums()
    outcomes = [
        outcome
        for requirement in REQUIREMENTS
        if (outcome := check_requirement(requirement, minimums)) is not None
    ]
    outcomes += [check_piagent(name) for name in PIAGENT_MODULES]
    return outcomes


def main(argv: Sequence[str] | None = None, *, write: Callable[[str], object] = print) -> int:
    """Run the checks and print the report; 0 when everything imports, 1 otherwise."""
    if argv:
        write(f"usage: python -m piagent.selfcheck (takes no arguments, got {' '.join(argv)})")
        return 2
    write(f"Python {sys.version.split()[0]} at {sys.executable}")
    outcomes = check()
    for outcome in outcomes:
        write(outcome.line())
    failed = [outcome for outcome in outcomes if not outcome.ok]
    if not failed:
        write(f"selfcheck: all {len(outcomes)} modules import")
        return 0
    packages = sorted({outcome.package for outcome in failed if outcome.package})
    advice = f" (Debian packages concerned: {' '.join(packages)})" if packages else ""
    write(f"selfcheck: {len(failed)} of {len(outcomes)} modules failed{advice}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
