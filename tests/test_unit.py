"""systemd/piagent.service: systemd's own linter and sandbox scorer, and the directives the
daemon and the installer rely on.

``systemd-analyze`` works without a running systemd. ``verify`` insists that the ExecStart
binary exists, and /opt/piagent/venv/bin/piagent exists only after scripts/install.sh has
run, so it checks a copy whose ExecStart names an executable that is there (this test's own
``piagent`` entry point, else /bin/true); every other line is checked as shipped. Unknown
or misspelt directives only print warnings with exit status 0, so any output fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from piagent import cli, config

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "piagent.service"
SHIPPED_EXEC = "/opt/piagent/venv/bin/piagent"
MAX_EXPOSURE = 2.0

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is missing (Debian package systemd; scripts/setup.sh installs it)",
)


def read_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given, in order (systemd allows repeats)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        assert not value.endswith("\\"), "continuation lines are not expected"
        sections[section][key.strip()].append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return read_unit(UNIT.read_text())


def words(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> list[str]:
    return [word for value in unit[section][key] for word in value.split()]


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section][key]
    assert len(values) == 1, f"{key}= given {len(values)} times in [{section}]"
    return values[0]


def runnable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at an executable that exists on this machine."""
    entry_point = Path(sys.executable).with_name("piagent")
    binary = entry_point if entry_point.is_file() else Path("/bin/true")
    text = UNIT.read_text()
    assert text.count(f"ExecStart={SHIPPED_EXEC} ") == 1
    copy = tmp_path / UNIT.name  # the same name: security reports it by name
    copy.write_text(text.replace(f"ExecStart={SHIPPED_EXEC} ", f"ExecStart={binary} "))
    return copy


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "SYSTEMD_COLORS": "0"},
    )


@needs_analyze
def test_systemd_analyze_verify_prints_nothing(tmp_path: Path) -> None:
    result = analyze("verify", str(runnable_copy(tmp_path)))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_analyze
def test_verify_of_the_shipped_file_only_misses_the_installed_binary() -> None:
    """The shipped unit itself: the missing /opt/piagent binary is the only complaint."""
    result = analyze("verify", str(UNIT))
    complaints = (result.stdout + result.stderr).strip().splitlines()
    assert complaints, "verify no longer checks ExecStart: the copy above may be unneeded"
    assert all(SHIPPED_EXEC in line for line in complaints), complaints


@needs_analyze
def test_sandbox_exposure_is_at_most_2(tmp_path: Path) -> None:
    result = analyze("security", "--offline=true", str(runnable_copy(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    match = re.search(
        r"Overall exposure level for piagent\.service: (\d+\.\d+) (\w+)", result.stdout
    )
    assert match, result.stdout
    exposure = float(match[1])
    assert exposure <= MAX_EXPOSURE, result.stdout
    # The figure the unit's comment quotes.
    assert f"scores this unit {exposure:.1f} (" in UNIT.read_text()


@needs_analyze
def test_sandbox_keeps_only_the_expected_openings(tmp_path: Path) -> None:
    """Each opening the security report flags is one the unit's comments justify."""
    result = analyze("security", "--offline=true", str(runnable_copy(tmp_path)))
    flagged = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("✗")}
    assert flagged == {
        "RootDirectory=/RootImage=",
        "SupplementaryGroups=",  # audio and gpio: the devices
        "PrivateDevices=",  # DevicePolicy=closed with a DeviceAllow list instead
        "RestrictAddressFamilies=~AF_UNIX",  # control socket, journald, sd_notify
        "RestrictAddressFamilies=~AF_(INET|INET6)",  # the ElevenLabs API
        "ProcSubset=",  # gpiozero reads /proc/cpuinfo and /proc/device-tree
        "PrivateNetwork=",
        "PrivateUsers=",  # see the unit's comment
        "DeviceAllow=",  # ALSA and GPIO
        "IPAddressDeny=",  # the API's addresses are not fixed
        "UMask=",  # 0027: files group-readable for the piagent group
    }


def test_service_lifecycle(unit: dict[str, dict[str, list[str]]]) -> None:
    service = "Service"
    assert one(unit, service, "Type") == "notify"
    assert one(unit, service, "NotifyAccess") == "main"
    assert one(unit, service, "ExecStart") == (
        f"{SHIPPED_EXEC} run --config {config.DEFAULT_CONFIG_PATH}"
    )
    assert one(unit, service, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(unit, service, "WatchdogSec") == "30"
    assert one(unit, service, "Restart") == "on-failure"
    assert one(unit, service, "RestartSec") == "2"
    # A bad config exits with EX_CONFIG and is not retried.
    assert one(unit, service, "RestartPreventExitStatus") == str(cli.EX_CONFIG) == "78"
    assert one(unit, service, "TimeoutStopSec") == "10"
    assert words(unit, "Install", "WantedBy") == ["multi-user.target"]


def test_ordering(unit: dict[str, dict[str, list[str]]]) -> None:
    after = words(unit, "Unit", "After")
    assert {"network-online.target", "time-sync.target", "sound.target"} <= set(after)
    assert "network-online.target" in words(unit, "Unit", "Wants")


def test_identity_and_devices(unit: dict[str, dict[str, list[str]]]) -> None:
    service = "Service"
    assert one(unit, service, "User") == "piagent"
    assert one(unit, service, "Group") == "piagent"
    assert {"audio", "gpio"} <= set(words(unit, service, "SupplementaryGroups"))
    assert one(unit, service, "DevicePolicy") == "closed"
    allowed = unit[service]["DeviceAllow"]
    assert "char-alsa rw" in allowed  # /dev/snd/*
    assert "char-gpiochip rw" in allowed  # /dev/gpiochip*
    assert unit[service].get("PrivateDevices", ["no"]) == ["no"]  # it would hide /dev/snd
    families = set(words(unit, service, "RestrictAddressFamilies"))
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= families
    assert not any(family.startswith("~") for family in families)  # an allow list


def test_directories_and_environment(unit: dict[str, dict[str, list[str]]]) -> None:
    service = "Service"
    assert one(unit, service, "RuntimeDirectory") == "piagent"
    assert one(unit, service, "StateDirectory") == "piagent"
    # The daemon's default control socket lives in the RuntimeDirectory.
    socket_path = config.ControlConfig().socket
    assert socket_path.parent == Path("/run") / one(unit, service, "RuntimeDirectory")
    environment = set(words(unit, service, "Environment"))
    assert {"PYTHONUNBUFFERED=1", "OPENBLAS_NUM_THREADS=1"} <= environment
    assert one(unit, service, "UMask") == "0027"


def test_api_key_credential(unit: dict[str, dict[str, list[str]]]) -> None:
    """The credential is named as the daemon looks it up, with a default when the file is
    absent (without one, a missing /etc/piagent/api_key would fail the start)."""
    name = config.API_KEY_CREDENTIAL
    assert one(unit, "Service", "LoadCredential") == f"{name}:/etc/piagent/api_key"
    default = one(unit, "Service", "SetCredential")
    assert default.startswith(f"{name}:")
    assert default.removeprefix(f"{name}:").replace("\\n", "").strip() == ""


def test_hardening(unit: dict[str, dict[str, list[str]]]) -> None:
    service = "Service"
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
        "ProtectProc": "invisible",
    }
    assert {key: one(unit, service, key) for key in expected} == expected
    assert unit[service]["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]


def test_every_hardening_choice_against_the_brief_is_explained() -> None:
    """The settings deliberately left out say why in a comment."""
    text = UNIT.read_text()
    for left_out in ("PrivateDevices=", "ProcSubset=pid", "PrivateUsers=", "IPAddressDeny="):
        assert re.search(rf"^#.*\b{re.escape(left_out)}", text, re.MULTILINE), left_out
    for explained in (
        "RestrictRealtime=yes",
        "MemoryDenyWriteExecute=yes",
        "RestrictAddressFamilies=",
        "WorkingDirectory=",
        "SetCredential=",
    ):
        index = text.index(explained)
        assert text.rfind("#", 0, index) > text.rfind("\n\n", 0, index), explained
