"""piagent.selfcheck: the install's smoke test, in this environment and with a dependency
made unimportable (a package on PYTHONPATH that shadows the real one and raises ImportError,
as a missing shared library would)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from piagent import selfcheck

REPO = Path(__file__).resolve().parents[1]


def run_selfcheck(tmp_path: Path, shadow: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m piagent.selfcheck`` with each ``shadow`` package (name -> __init__.py
    text) first on PYTHONPATH, from an empty directory."""
    shadows = tmp_path / "shadows"
    for name, text in shadow.items():
        (shadows / name).mkdir(parents=True)
        (shadows / name / "__init__.py").write_text(text)
    work = tmp_path / "cwd"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadows), str(REPO)])}
    return subprocess.run(
        [sys.executable, "-m", "piagent.selfcheck"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=work,
    )


def test_everything_imports_here() -> None:
    lines: list[str] = []
    assert selfcheck.main([], write=lines.append) == 0
    assert lines[0].startswith("Python ")
    reported = {line.split()[1] for line in lines[1:-1]}
    for module in (
        "numpy",
        "scipy.signal",
        "pyaudio",
        "systemd.daemon",
        "systemd.journal",
        "gpiozero",
        "yaml",
        "websockets.asyncio.client",
        "piagent.service",
        "piagent.control",
        "piagent.doctor",
    ):
        assert module in reported, module
    assert all(line.startswith("ok ") for line in lines[1:-1]), lines
    assert lines[-1].startswith("selfcheck: all ")
    pyaudio_line = next(line for line in lines if line.split()[1] == "pyaudio")
    assert "PortAudio" in pyaudio_line  # libportaudio itself was loaded


def test_a_missing_native_library_fails_and_names_the_debian_package(tmp_path: Path) -> None:
    result = run_selfcheck(
        tmp_path,
        {"pyaudio": "raise ImportError('libportaudio.so.2: cannot open shared object file')"},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    (pyaudio_line,) = [line for line in failed if line.split()[1] == "pyaudio"]
    assert "libportaudio.so.2: cannot open shared object file" in pyaudio_line
    assert "provided by the Debian package python3-pyaudio" in pyaudio_line
    # The daemon's PyAudio backend imports it too: its import fails, pointing at the same
    # package (the daemon loads it only when audio.backend is pyaudio).
    (devices_line,) = [line for line in failed if line.split()[1] == "piagent.audio.devices"]
    assert "python3-pyaudio" in devices_line
    assert result.stdout.splitlines()[-1].endswith("(Debian packages concerned: python3-pyaudio)")
    assert not list((tmp_path / "cwd").iterdir()), "the check left files in its directory"


def test_websockets_without_the_asyncio_api_fails(tmp_path: Path) -> None:
    """Debian bookworm's websockets 10.4 has no websockets.asyncio."""
    result = run_selfcheck(tmp_path, {"websockets": "__version__ = '10.4'\n"})
    assert result.returncode == 1
    (line,) = [line for line in result.stdout.splitlines() if "websockets.asyncio.client" in line]
    assert line.startswith("FAILED")
    assert "No module named 'websockets.asyncio'" in line
    assert "python3-websockets" in line


def test_an_installed_lgpio_gets_gpiozeros_lgpio_driver_checked(tmp_path: Path) -> None:
    result = run_selfcheck(tmp_path, {"lgpio": "raise OSError('cannot map /dev/gpiochip0')"})
    assert result.returncode == 1
    (line,) = [line for line in result.stdout.splitlines() if "gpiozero.pins.lgpio" in line]
    assert "OSError: cannot map /dev/gpiochip0" in line
    assert "python3-lgpio" in line


def test_without_lgpio_its_driver_is_not_checked() -> None:
    if selfcheck.importlib.util.find_spec("lgpio") is not None:
        pytest.skip("lgpio is installed here")
    assert all(outcome.module != "gpiozero.pins.lgpio" for outcome in selfcheck.check())


def test_importing_it_does_nothing() -> None:
    code = "import sys, piagent.selfcheck; print(sorted({'numpy', 'yaml'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == "[]\n"
    assert result.stderr == ""


def test_arguments_are_refused() -> None:
    lines: list[str] = []
    assert selfcheck.main(["--bogus"], write=lines.append) == 2
    assert "takes no arguments" in lines[0]


@pytest.mark.parametrize(
    ("requirement", "parsed"),
    [
        ("numpy>=1.24", ("numpy", "1.24")),
        ("gpiozero (>=1.6)", ("gpiozero", "1.6")),  # setuptools 66's metadata
        ("systemd_python>=235", ("systemd-python", "235")),
        ("soxr>=1.0; extra == 'bench'", None),
        ("elevenlabs==2.78.0", None),
    ],
)
def test_parse_minimum(requirement: str, parsed: tuple[str, str] | None) -> None:
    assert selfcheck.parse_minimum(requirement) == parsed


def test_release_compares_numerically() -> None:
    assert selfcheck.release("1.6.2") < selfcheck.release("2.0")
    assert selfcheck.release("2.0.1.post3") >= selfcheck.release("2.0")
    assert selfcheck.release("10.4") < selfcheck.release("13.0")
    assert selfcheck.release("1.24.2") >= selfcheck.release("1.24")


def test_an_old_version_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    requirement = selfcheck.Requirement("json", "gpiozero", "python3-gpiozero", "a test")
    monkeypatch.setattr(selfcheck, "_installed_version", lambda *_: "1.5.1")
    outcome = selfcheck.check_requirement(requirement, {"gpiozero": "1.6"})
    assert outcome is not None
    assert outcome.problem == "gpiozero 1.5.1 is too old: piagent needs >= 1.6"
    assert "python3-gpiozero" in outcome.line()
