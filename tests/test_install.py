"""scripts/install.sh, run for real into a throwaway root (``--root``, so no apt, useradd or
systemctl: those are printed instead).

Every step is the real one: the source is copied to /opt/piagent/src, a venv is created and
piagent is built from that copy and installed into it (not editable), then piagent.selfcheck
imports everything the daemon imports. Only the dependencies are not installed again (apt is
what brings them on a device): the script's ``--pip-args "--no-deps --no-build-isolation"``
installs piagent alone, and PYTHONPATH lends the venv the dependencies this test session
already has (its site-packages minus piagent itself and pip). That needs the build backend
in this session's environment, as --no-build-isolation does: setuptools>=61, and wheel where
setuptools is older than 70.1 (Debian bookworm's python3-wheel, on a device).
The source is a copy taken once per module: the work tree may change while tests run.
The preflight is driven with a fake interpreter (--python), a fake dpkg on PATH, or a PATH
without dpkg and apt.
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
        setuptools = tuple(int(n) for n in importlib.metadata.version("setuptools").split(".")[:2])
        if setuptools < (70, 1):  # before 70.1, setuptools builds wheels with wheel's command
            importlib.metadata.version("wheel")
    except importlib.metadata.PackageNotFoundError:
        return False
    return setuptools >= (61, 0)


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
def apt_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An APT_CONFIG under which apt-cache keeps its package cache, for the module.

    Each install asks apt-cache about a few packages (python3-lgpio, and the candidates of
    python3-websockets and python3-gpiozero). A system that disables apt's binary cache
    (Docker images do, in apt.conf.d/docker-clean) rebuilds it from the package lists at
    every call, about 1 s each, so a dozen installs spent half a minute there. The
    installer's apt-cache and the package lists stay the real ones; only the cache is kept,
    in a directory of the test's own. apt reads APT_CONFIG before apt.conf.d, so the parts
    are read from a copy of that directory that links to the system's files, and a last
    part of the test's own names the cache files."""
    directory = tmp_path_factory.mktemp("apt")
    parts = directory / "apt.conf.d"
    parts.mkdir()
    system_parts = Path("/etc/apt/apt.conf.d")
    if system_parts.is_dir():
        for part in system_parts.iterdir():
            (parts / part.name).symlink_to(part)
    (parts / "zz-piagent-test-cache").write_text(
        f'Dir::Cache::pkgcache "{directory / "pkgcache.bin"}";\n'
        f'Dir::Cache::srcpkgcache "{directory / "srcpkgcache.bin"}";\n'
    )
    config = directory / "apt.conf"
    config.write_text(f'Dir::Etc::parts "{parts}";\n')
    return config


@pytest.fixture(scope="module")
def env(deps: Path, apt_config: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(deps),
        "PIP_CONFIG_FILE": os.devnull,  # no site pip configuration (indexes, find-links)
        "PIP_NO_INDEX": "1",  # nothing may be downloaded
        "ELEVENLABS_API_KEY": KEY,
        "APT_CONFIG": str(apt_config),
    }


def install(
    root: Path, *args: str, env: dict[str, str], source: Path, python: str = sys.executable
) -> Run:
    """Run the installer into root, without a terminal on stdin (as the rig does); the API
    key must never appear in its output."""
    command = [str(SCRIPT), "--root", str(root), "--source", str(source), *args]
    command += ["--python", python, "--pip-args", PIP_ARGS]
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
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
    assert "sudo piagent doctor" in out
    assert "sudo -u piagent" not in out
    assert out.startswith(f"preflight:   {_dpkg_architecture()}, Python ")
    assert "selfcheck:   all " in out and " modules import" in out
    assert "modules:     installed /etc/modules-load.d/piagent.conf" in out
    assert "would run: modprobe snd" in out
    # The fresh config gets piagent setup, non-interactively without a terminal; a source
    # without the command (setup is newer than the installer) skips it.
    (setup,) = [line for line in out.splitlines() if line.startswith("setup:")]
    assert setup in (
        "setup:       skipped (--no-system), would run: /opt/piagent/venv/bin/piagent setup"
        " --config /etc/piagent/config.yaml --yes",
        "setup:       skipped: this piagent has no 'setup' command yet;"
        " edit /etc/piagent/config.yaml instead",
    )


def _dpkg_architecture() -> str:
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


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
    for step in ("software", "link", "config", "api-key", "unit", "modules"):
        (line,) = run.lines(step)
        assert "already installed" in line, line
    assert run.lines("setup") == [
        "setup:       not needed (the config was there; --setup runs it: piagent setup)"
    ]
    (selfcheck,) = run.lines("selfcheck")  # checked again: a Debian package may have gone
    assert selfcheck.endswith(" modules import")


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
    assert not (root / "etc/modules-load.d/piagent.conf").exists()
    assert (root / "etc/modules-load.d").is_dir()  # the system's directory stays
    assert (root / "etc/piagent/config.yaml").is_file()
    assert (root / "etc/piagent/api_key").read_text() == KEY + "\n"
    assert "would run: systemctl disable --now piagent.service" in run.stdout
    assert "kept /etc/piagent" in run.stdout
    # Again: nothing left to remove, and that is fine.
    again = uninstall(root, "--uninstall")
    assert again.returncode == 0
    for step in ("unit", "modules", "link", "software"):
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
        "--agent-id",
        "--server",
        "--setup",
        "--no-setup",
        "--help",
    ):
        assert option in shown.stdout
    assert script("--bogus").returncode == 1
    assert script("--root").returncode == 1
    refused = script("--root", str(tmp_path / "r"), "--start")
    assert refused.returncode == 1
    assert "--start needs systemctl" in refused.stderr
    conflict = script("--root", str(tmp_path / "r"), "--no-setup", "--agent-id", "agent_1")
    assert conflict.returncode == 1
    assert "drop --no-setup" in conflict.stderr
    for removed in ("gcc", "python3-dev", "portaudio19-dev", "libsystemd-dev", "sox"):
        assert removed not in shown.stdout.split(), removed
    wrong_source = script("--root", str(tmp_path / "r"), "--source", str(tmp_path))
    assert wrong_source.returncode == 1
    assert "is not a piagent source tree" in wrong_source.stderr


def test_modules_load_d_loads_alsa_core_at_boot(installed: Path) -> None:
    conf = installed / "etc/modules-load.d/piagent.conf"
    assert mode(conf) == 0o644
    lines = conf.read_text().splitlines()
    assert [line for line in lines if not line.startswith("#")] == ["snd"]
    assert any("char-alsa" in line for line in lines)  # the comment says why


def test_agent_id_and_server_go_to_piagent_setup(
    copy_of_installed: Path, env: dict[str, str], source: Path
) -> None:
    run = install(
        copy_of_installed,
        "--agent-id",
        "agent_1",
        "--server",
        "ws://127.0.0.1:8765",
        env=env,
        source=source,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (line,) = run.lines("setup")
    assert line in (
        "setup:       skipped (--no-system), would run: /opt/piagent/venv/bin/piagent setup"
        " --config /etc/piagent/config.yaml --agent-id agent_1 --server ws://127.0.0.1:8765"
        " --yes",
        "setup:       skipped: this piagent has no 'setup' command yet;"
        " edit /etc/piagent/config.yaml instead",
    )
    again = install(copy_of_installed, "--no-setup", env=env, source=source)
    assert again.lines("setup") == ["setup:       skipped (--no-setup)"]


def test_a_failing_import_fails_the_install(
    tmp_path: Path, env: dict[str, str], deps: Path, source: Path
) -> None:
    """The selfcheck runs in the new venv: PyAudio whose libportaudio is missing stops the
    install, with the reason and the Debian package."""
    if not _has_build_backend():
        pytest.skip("building piagent offline needs setuptools>=61 (and wheel before 70.1)")
    shadow = tmp_path / "shadow/pyaudio"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ImportError('libportaudio.so.2: cannot open shared object file')\n"
    )
    broken = {**env, "PYTHONPATH": f"{shadow.parent}:{deps}"}
    run = install(tmp_path / "root", env=broken, source=source)
    assert run.returncode == 1
    failed = [line for line in run.stderr.splitlines() if "FAILED" in line]
    assert any(
        "pyaudio" in line
        and "libportaudio.so.2" in line
        and "provided by the Debian package python3-pyaudio" in line
        for line in failed
    ), run.stderr
    assert "install.sh: error: piagent does not import in /opt/piagent/venv" in run.stderr
    assert not run.lines("link"), "the install went on after the failed selfcheck"


def fake_tool(directory: Path, name: str, script: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / name
    tool.write_text(f"#!/bin/sh\n{script}\n")
    tool.chmod(0o755)


def preflight(tmp_path: Path, env: dict[str, str], source: Path, **kwargs: str) -> Run:
    root = tmp_path / "root"
    run = install(root, env=env, source=source, **kwargs)
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.endswith("install.sh: nothing was changed\n")
    assert not root.exists(), "the preflight changed something"
    return run


def test_preflight_refuses_an_old_python(tmp_path: Path, env: dict[str, str], source: Path) -> None:
    fake_tool(tmp_path / "bin", "python3.9", "echo 3.9.2")
    python = str(tmp_path / "bin/python3.9")
    run = preflight(tmp_path, env, source, python=python)
    assert run.stderr.splitlines()[0] == (
        f"install.sh: error: Python 3.9.2 ({python}) is too old: piagent needs Python >= 3.11"
        " (Debian 12 bookworm, Raspberry Pi OS Bookworm, or later)"
    )
    missing = preflight(tmp_path, env, source, python=str(tmp_path / "nowhere/python3"))
    assert f"no Python interpreter {tmp_path}/nowhere/python3 (--python)" in missing.stderr


def test_preflight_refuses_an_unknown_architecture(
    tmp_path: Path, env: dict[str, str], source: Path
) -> None:
    fake_tool(tmp_path / "bin", "dpkg", 'echo i386  # --print-architecture "$@"')
    fake_tool(tmp_path / "bin", "python3.9", "echo 3.9.2")
    path_env = {**env, "PATH": f"{tmp_path / 'bin'}:{env['PATH']}"}
    run = preflight(tmp_path, path_env, source)
    assert "install.sh: error: unsupported architecture i386 (" in run.stderr
    assert "piagent supports arm64, armhf, amd64" in run.stderr
    # Every problem is named, one line each.
    both = preflight(tmp_path, path_env, source, python=str(tmp_path / "bin/python3.9"))
    errors = both.stderr.splitlines()
    assert len(errors) == 3, errors
    assert "unsupported architecture i386" in errors[0]
    assert "Python 3.9.2" in errors[1]


def test_preflight_refuses_a_system_without_dpkg_and_apt(
    tmp_path: Path, env: dict[str, str], source: Path
) -> None:
    """PATH holds every command but Debian's package tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    hidden = {"dpkg", "dpkg-query", "apt-get", "apt-cache"}
    for directory in env["PATH"].split(os.pathsep):
        if not Path(directory).is_dir():
            continue
        for tool in Path(directory).iterdir():
            link = bin_dir / tool.name
            if tool.name not in hidden and not link.exists() and os.access(tool, os.X_OK):
                link.symlink_to(tool)
    run = preflight(tmp_path, {**env, "PATH": str(bin_dir)}, source)
    assert run.stderr.splitlines()[0] == (
        "install.sh: error: not a Debian-based system (no dpkg or apt-get): piagent's"
        " installer needs Raspberry Pi OS or Debian, bookworm or later"
    )


def test_script_syntax() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck() -> None:
    result = subprocess.run(
        ["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout
