"""scripts/install.sh, run for real into a throwaway root (``--root``, so no apt, useradd or
systemctl: those are printed instead).

Every step is the real one: the source is copied to /opt/piagent/src, a venv is created and
piagent is built from that copy and installed into it (not editable). Only the dependencies
are not downloaded and compiled again (numpy, scipy, PyAudio... would take minutes and need
the network): the script's ``--pip-args "--no-deps --no-build-isolation"`` installs piagent
alone, and PYTHONPATH lends the venv the dependencies this test session already has (its
site-packages minus piagent itself and pip). That needs the build backend
(setuptools>=68 and wheel) in this session's environment, as --no-build-isolation does.
The source is a copy taken once per module: the work tree may change while tests run.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "install.sh"
KEY = "sk_test_0123456789abcdef0123456789abcdef"
PIP_ARGS = "--no-deps --no-build-isolation"
SOURCE_FILES = ("pyproject.toml", "README.md", "config.yaml.example", "piagent", "systemd")


def _has_build_backend() -> bool:
    try:
        setuptools_major = int(importlib.metadata.version("setuptools").split(".")[0])
        importlib.metadata.version("wheel")
    except importlib.metadata.PackageNotFoundError:
        return False
    return setuptools_major >= 68


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    def lines(self, step: str) -> list[str]:
        """The status lines of one step (``step: ...``)."""
        return [line for line in self.stdout.splitlines() if line.startswith(f"{step}:")]


def copy_source(destination: Path) -> Path:
    """The files the installer uses, copied (the repository may change while tests run)."""
    destination.mkdir(parents=True)
    for name in SOURCE_FILES:
        if (REPO / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(REPO / name, destination / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, destination / name)
    return destination


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_source(tmp_path_factory.mktemp("source") / "piagent")


@pytest.fixture(scope="module")
def deps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This session's installed distributions, less piagent and pip, as one directory."""
    directory = tmp_path_factory.mktemp("deps")
    site_dirs = {Path(sysconfig.get_paths()[name]) for name in ("purelib", "platlib")}
    for site in site_dirs:
        for entry in site.iterdir():
            name = entry.name
            if (
                name.startswith(("piagent", "__editable__", "pip-", "__pycache__"))
                or name == "pip"
                or name.endswith(".pth")
            ):
                continue
            link = directory / name
            if not link.exists():
                link.symlink_to(entry)
    return directory


@pytest.fixture(scope="module")
def env(deps: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(deps),
        "PIP_CONFIG_FILE": os.devnull,  # no site pip configuration (indexes, find-links)
        "PIP_NO_INDEX": "1",  # nothing may be downloaded
        "ELEVENLABS_API_KEY": KEY,
    }


def install(root: Path, *args: str, env: dict[str, str], source: Path) -> Run:
    """Run the installer into root; the API key must never appear in its output."""
    command = [str(SCRIPT), "--root", str(root), "--source", str(source), *args]
    command += ["--python", sys.executable, "--pip-args", PIP_ARGS]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=root.parent,
    )
    run = Run(result.returncode, result.stdout, result.stderr)
    assert KEY not in run.stdout + run.stderr, "the API key was printed"
    return run


def uninstall(root: Path, *args: str) -> Run:
    result = subprocess.run(
        [str(SCRIPT), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=root.parent,
    )
    return Run(result.returncode, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str], source: Path) -> Path:
    """A root installed once for the module; tests that change it work on a copy."""
    if not _has_build_backend():
        pytest.skip("building piagent offline needs setuptools>=68 and wheel (the [test] extra)")
    root = tmp_path_factory.mktemp("installed") / "root"
    run = install(root, env=env, source=source)
    assert run.returncode == 0, run.stdout + run.stderr
    (root.parent / "first-run.txt").write_text(run.stdout)
    return root


@pytest.fixture
def copy_of_installed(installed: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    return root


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path under root: type, mode, mtime and content (or link target)."""
    state: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            content: object = path.readlink()
        elif stat.S_ISREG(info.st_mode):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            content = None
        state[str(path.relative_to(root))] = (info.st_mode, info.st_mtime_ns, content)
    return state


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_install_reports_every_step(installed: Path) -> None:
    out = (installed.parent / "first-run.txt").read_text()
    for line in (
        "software:    installed /opt/piagent (venv and source)",
        "config:      installed /etc/piagent/config.yaml from config.yaml.example",
        "api-key:     installed /etc/piagent/api_key from $ELEVENLABS_API_KEY (mode 0600)",
        "unit:        installed /etc/systemd/system/piagent.service",
        "link:        installed /usr/local/bin/piagent -> /opt/piagent/venv/bin/piagent",
    ):
        assert line in out
    # What --root leaves alone is said, not done.
    for command in ("useradd --system", "usermod -aG audio,gpio piagent", "systemctl enable"):
        assert f"would run: {command}" in out
    for next_step in ("/etc/piagent/config.yaml", "systemctl start piagent", "journalctl -u"):
        assert next_step in out
    assert "piagent doctor" in out


def test_venv_runs_the_installed_copy_of_piagent(
    installed: Path, env: dict[str, str], source: Path
) -> None:
    venv = installed / "opt/piagent/venv"
    result = subprocess.run(
        [str(venv / "bin/piagent"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=installed,
    )
    assert result.returncode == 0, result.stderr
    assert "check-config" in result.stdout
    shebang = (venv / "bin/piagent").read_text().splitlines()[0]
    assert shebang == f"#!{venv / 'bin/python'}"
    where = subprocess.run(
        [str(venv / "bin/python"), "-c", "import piagent; print(piagent.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
        cwd=installed,
    ).stdout.strip()
    # Installed into the venv (not an editable link back to the repository).
    assert Path(where).is_relative_to(venv / "lib")
    assert (installed / "opt/piagent/src/pyproject.toml").read_bytes() == (
        source / "pyproject.toml"
    ).read_bytes()
    assert not (installed / "opt/piagent/src/build").exists()
    link = installed / "usr/local/bin/piagent"
    assert str(link.readlink()) == "/opt/piagent/venv/bin/piagent"


def test_config_key_and_unit(installed: Path, source: Path) -> None:
    etc = installed / "etc/piagent"
    assert mode(etc) == 0o750
    config = etc / "config.yaml"
    assert config.read_bytes() == (source / "config.yaml.example").read_bytes()
    assert mode(config) == 0o640
    key = etc / "api_key"
    assert key.read_text() == KEY + "\n"
    assert mode(key) == 0o600
    assert not list(etc.glob(".api_key.*")), "a temporary key file was left behind"
    unit = installed / "etc/systemd/system/piagent.service"
    assert unit.read_bytes() == (source / "systemd/piagent.service").read_bytes()
    assert mode(unit) == 0o644


def test_second_run_changes_nothing(
    copy_of_installed: Path, env: dict[str, str], source: Path
) -> None:
    root = copy_of_installed
    before = snapshot(root)
    run = install(root, env=env, source=source)
    assert run.returncode == 0, run.stdout + run.stderr
    assert snapshot(root) == before
    for step in ("software", "link", "config", "api-key", "unit"):
        (line,) = run.lines(step)
        assert "already installed" in line, line


def test_an_edited_config_is_kept(
    copy_of_installed: Path, env: dict[str, str], source: Path
) -> None:
    config = copy_of_installed / "etc/piagent/config.yaml"
    config.write_text("agent:\n  agent_id: mine\n")
    run = install(copy_of_installed, env=env, source=source)
    assert run.returncode == 0, run.stdout + run.stderr
    assert config.read_text() == "agent:\n  agent_id: mine\n"
    assert run.lines("config") == [
        "config:      already installed (/etc/piagent/config.yaml, your edits kept)"
    ]


def test_a_new_key_from_a_file_replaces_the_old(
    copy_of_installed: Path, env: dict[str, str], tmp_path: Path, source: Path
) -> None:
    new_key = "sk_test_new_key_000"
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"  {new_key}\n\n")
    no_env_key = {name: value for name, value in env.items() if name != "ELEVENLABS_API_KEY"}
    root = copy_of_installed
    run = install(root, "--api-key-file", str(key_file), env=no_env_key, source=source)
    assert run.returncode == 0, run.stdout + run.stderr
    assert new_key not in run.stdout + run.stderr
    key = root / "etc/piagent/api_key"
    assert key.read_text() == new_key + "\n"
    assert mode(key) == 0o600
    assert run.lines("api-key") == [
        f"api-key:     updated /etc/piagent/api_key from {key_file} (mode 0600)"
    ]
    # Without a key given, the installed one is kept.
    run = install(root, env=no_env_key, source=source)
    assert run.lines("api-key") == ["api-key:     already installed (/etc/piagent/api_key)"]
    assert key.read_text() == new_key + "\n"


def test_a_key_with_spaces_is_refused_without_showing_it(
    tmp_path: Path, env: dict[str, str], source: Path
) -> None:
    root = tmp_path / "root"
    run = install(root, env={**env, "ELEVENLABS_API_KEY": f"{KEY} oops"}, source=source)
    assert run.returncode == 1
    assert "the API key from $ELEVENLABS_API_KEY contains spaces or lines" in run.stderr
    assert not (root / "etc/piagent/api_key").exists()


def test_without_a_key_none_is_installed(
    copy_of_installed: Path, env: dict[str, str], source: Path
) -> None:
    """No key given and none installed: no key file (the unit's SetCredential= default)."""
    root = copy_of_installed
    (root / "etc/piagent/api_key").unlink()
    no_env_key = {name: value for name, value in env.items() if name != "ELEVENLABS_API_KEY"}
    run = install(root, env=no_env_key, source=source)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not (root / "etc/piagent/api_key").exists()
    (line,) = run.lines("api-key")
    assert line.startswith("api-key:     none (public agents need none")


def test_a_changed_source_is_reinstalled(
    copy_of_installed: Path, env: dict[str, str], tmp_path: Path, source: Path
) -> None:
    changed = shutil.copytree(source, tmp_path / "changed")
    marker = "# changed by test_install\n"
    with (changed / "piagent/__init__.py").open("a") as file:
        file.write(marker)
    root = copy_of_installed
    run = install(root, env=env, source=changed)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.lines("software") == ["software:    installed /opt/piagent (venv and source)"]
    installed_init = next(
        (root / "opt/piagent/venv/lib").glob("python3*/site-packages/piagent/__init__.py")
    )
    assert installed_init.read_text().endswith(marker)


def test_uninstall_keeps_the_config_and_key(copy_of_installed: Path) -> None:
    root = copy_of_installed
    (root / "var/cache/piagent").mkdir(parents=True)
    (root / "var/cache/piagent/lowpass-48000-307-0123456789abcdef.npy").write_bytes(b"x")
    run = uninstall(root, "--uninstall")
    assert run.returncode == 0, run.stdout + run.stderr
    assert not (root / "opt/piagent").exists()
    assert not (root / "var/cache/piagent").exists()  # derived data, not the user's
    assert not (root / "etc/systemd/system/piagent.service").exists()
    assert not (root / "usr/local/bin/piagent").is_symlink()
    assert (root / "etc/piagent/config.yaml").is_file()
    assert (root / "etc/piagent/api_key").read_text() == KEY + "\n"
    assert "would run: systemctl disable --now piagent.service" in run.stdout
    assert "kept /etc/piagent" in run.stdout
    # Again: nothing left to remove, and that is fine.
    again = uninstall(root, "--uninstall")
    assert again.returncode == 0
    for step in ("unit", "link", "software"):
        assert again.lines(step) == [f"{step + ':':<12} not installed"]
    assert again.lines("cache") == ["cache:       not present"]


def test_purge_removes_config_and_state(copy_of_installed: Path) -> None:
    root = copy_of_installed
    (root / "var/lib/piagent").mkdir(parents=True)
    (root / "var/lib/piagent/volume").write_text("0.5\n")
    run = uninstall(root, "--purge")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "piagent kept (userdel piagent removes it)" in run.stdout
    for gone in (
        "opt/piagent",
        "etc/piagent",
        "var/lib/piagent",
        "etc/systemd/system/piagent.service",
    ):
        assert not (root / gone).exists(), gone


def test_help_and_bad_options(tmp_path: Path) -> None:
    def script(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            cwd=tmp_path,
        )

    shown = script("--help")
    assert shown.returncode == 0
    for option in (
        "--root",
        "--no-system",
        "--uninstall",
        "--purge",
        "--source",
        "--api-key-file",
        "--start",
        "--python",
        "--pip-args",
        "--help",
    ):
        assert option in shown.stdout
    assert script("--bogus").returncode == 1
    assert script("--root").returncode == 1
    refused = script("--root", str(tmp_path / "r"), "--start")
    assert refused.returncode == 1
    assert "--start needs systemctl" in refused.stderr
    wrong_source = script("--root", str(tmp_path / "r"), "--source", str(tmp_path))
    assert wrong_source.returncode == 1
    assert "is not a piagent source tree" in wrong_source.stderr


def test_script_syntax() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck() -> None:
    result = subprocess.run(
        ["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout
