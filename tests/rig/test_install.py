"""The install, as a user does it, inside the rig: `rig.sh up` copied a clone of this checkout
in and ran its ``scripts/install.sh --start``. What it installed is checked here."""

from __future__ import annotations

import pytest

from tests.rig.conftest import Rig

pytestmark = [pytest.mark.rig, pytest.mark.timeout(900)]

# The daemon's dependencies and the Debian packages that carry them.
DEBIAN = {
    "numpy": "python3-numpy",
    "scipy": "python3-scipy",
    "pyaudio": "python3-pyaudio",
    "systemd": "python3-systemd",
    "gpiozero": "python3-gpiozero",
    "yaml": "python3-yaml",
    "websockets": "python3-websockets",
}


def debian_version(rig: Rig, package: str) -> str:
    return rig.out(f"dpkg-query -W -f '${{Version}}' {package} 2>/dev/null || true")


def test_every_dependency_debian_carries_comes_from_debian(rig: Rig) -> None:
    venv_site = rig.out(
        "/opt/piagent/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path(\"purelib\"))'"
    )
    where = {}
    for module in DEBIAN:
        where[module] = rig.out(
            f"/opt/piagent/venv/bin/python -c 'import {module}; print({module}.__file__)'"
        )
    print({m: w.split("/")[1:4] for m, w in where.items()})
    from_pip = {m for m, w in where.items() if w.startswith(venv_site)}
    if rig.release == "trixie":
        assert from_pip == set(), f"from pip on trixie: {from_pip}"
    else:
        # bookworm's python3-websockets (10.4) lacks websockets.asyncio (13 and later).
        assert from_pip == {"websockets"}, f"from pip on bookworm: {from_pip}"
    for module, package in DEBIAN.items():
        if module not in from_pip:
            assert where[module].startswith("/usr/lib/python3/dist-packages/"), where[module]
            assert debian_version(rig, package), f"{package} is not installed"


COMPILERS = ("gcc", "g++", "cc", "python3-dev")


def test_nothing_is_compiled_on_the_device(rig: Rig) -> None:
    installed = [tool for tool in COMPILERS if debian_version(rig, tool)]
    asked = rig.out("grep '^Commandline:' /var/log/apt/history.log")
    print("compilers installed:", installed or "none")
    # The installer never asks apt for a compiler.
    assert not any(f" {tool} " in f"{line} " for line in asked.splitlines() for tool in COMPILERS)
    if rig.release == "bookworm":
        # Debian 12's python3-scipy depends on python3-pythran, which depends on g++ (and the
        # boost headers): Debian brings a compiler along, and nothing here runs it.
        assert debian_version(rig, "python3-pythran"), "a compiler came from somewhere else"
    else:
        assert installed == [], f"{installed} installed"
        assert rig.run("command -v gcc", check=False).returncode != 0
    # No extension module in the venv but what prebuilt wheels carry: everything else native
    # is Debian's. The wheels' own: websockets' optional speedups (bookworm), and the wake
    # word's TensorFlow Lite library and feature extractor (pymicro-wakeword, pymicro-features).
    wheels = "/websockets/|/pymicro_wakeword/lib/libtensorflowlite_c|/micro_features_cpp"
    native = rig.out(f"find /opt/piagent/venv -name '*.so' | grep -Ev '{wheels}' | head")
    assert native == "", native
    assert (
        rig.run("/opt/piagent/venv/bin/pip show pymicro-wakeword pymicro-features").returncode == 0
    )


def test_the_smoke_test_imports_what_the_daemon_imports(rig: Rig) -> None:
    result = rig.run("/opt/piagent/venv/bin/python -m piagent.selfcheck")
    print(result.stdout)
    for module in ("numpy", "scipy", "pyaudio", "websockets", "gpiozero", "yaml", "systemd"):
        assert module in result.stdout


def test_the_preflight_names_an_old_python_before_changing_anything(rig: Rig) -> None:
    # An interpreter that says it is Python 3.9, for a fresh install into an empty root (an
    # existing venv's own interpreter would be checked instead).
    rig.write("/tmp/python3.9", "#!/bin/sh\necho 3.9.2\n", mode="0755")
    rig.run("rm -rf /tmp/preflight-root")
    result = rig.run(
        "cd /root/piagent && scripts/install.sh --root /tmp/preflight-root "
        "--python /tmp/python3.9 2>&1",
        check=False,
    )
    print(result.stdout)
    assert result.returncode != 0
    assert "Python 3.9.2" in result.stdout and "3.11" in result.stdout
    assert "nothing was changed" in result.stdout
    assert rig.run("test -e /tmp/preflight-root/opt", check=False).returncode != 0


@pytest.mark.parametrize("unit", ["piagent.service"])
def test_the_unit_is_installed_and_enabled(rig: Rig, unit: str) -> None:
    assert rig.out(f"systemctl is-enabled {unit}") == "enabled"
    assert rig.out("cat /etc/modules-load.d/piagent.conf | grep -v '^#'") == "snd"
