"""Running the doctor as the service: the installed unit's settings turned into a
``systemd-run`` command line, and the decision whether to use it.

``sudo piagent doctor`` should see what ``piagent.service`` sees: its user and groups, its
API key (handed over by ``LoadCredential=`` from a root-only file), its environment, working
directory and sandbox. Rather than imitate them, the doctor re-runs itself as a transient
unit with the same ``[Service]`` settings (``systemd-run --pipe --wait``), its output piped
back. Everything here is pure (text and values in, an argv out) but :func:`read_installed_unit`
and :func:`reexec_argv`'s look-ups, so the argv can be tested without systemd.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

UNIT: Final = "piagent.service"
UNIT_FILE: Final = Path("/etc/systemd/system") / UNIT
SYSTEMD_BOOTED: Final = Path("/run/systemd/system")  # sd_booted(3): exists iff PID 1 is systemd
SYSTEMCTL_TIMEOUT: Final = 5.0

# [Service] settings that describe how the daemon is started, supervised and stopped, not the
# environment it runs in: systemd-run either refuses them or they would change how the doctor
# runs (Type=notify would wait for a READY=1 the doctor never sends). Standard* too: --pipe
# connects the doctor's stdio to ours.
_SKIPPED_PREFIXES: Final = ("Exec", "Restart", "Watchdog", "Notify", "Timeout", "Standard")
_SKIPPED: Final = frozenset(
    {
        "Type",
        "ExitType",
        "PIDFile",
        "RemainAfterExit",
        "GuessMainPID",
        "BusName",
        "Sockets",
        "FileDescriptorStoreMax",
        "FileDescriptorStorePreserve",
        "USBFunctionDescriptors",
        "USBFunctionStrings",
        "RuntimeMaxSec",
        "RuntimeRandomizedExtraSec",
        "SuccessExitStatus",
        "ReloadSignal",
        "OpenFile",
        "NonBlocking",
    }
)


@dataclass(frozen=True, slots=True)
class ServiceUnit:
    """The ``[Service]`` settings of a unit (with its drop-ins applied), in file order."""

    settings: tuple[tuple[str, str], ...]

    def values(self, key: str) -> list[str]:
        return [value for name, value in self.settings if name == key]


def parse_unit(text: str) -> ServiceUnit:
    """The ``[Service]`` section of a unit file, or of ``systemctl cat`` output (the unit then
    its drop-ins, each headed by a ``# /path`` comment line).

    As systemd reads them: comments start with ``#`` or ``;``; a line ending in a backslash
    continues on the next; an empty assignment (``Key=``) resets what earlier lines set for
    that key (a drop-in's way of clearing a list).
    """
    settings: list[tuple[str, str]] = []
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if pending:
            line = pending + " " + line
            pending = ""
        elif not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "Service" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not value:
            settings = [(k, v) for k, v in settings if k != key]
            continue
        settings.append((key, value))
    return ServiceUnit(tuple(settings))


def _is_passed(key: str) -> bool:
    return key not in _SKIPPED and not key.startswith(_SKIPPED_PREFIXES)


def exec_start(unit: ServiceUnit) -> list[str]:
    """The words of the unit's last ``ExecStart=``, without systemd's prefixes (``-@:+!``)."""
    found = unit.values("ExecStart")
    if not found:
        return []
    words = shlex.split(found[-1])
    if words:
        words[0] = words[0].lstrip("-@:+!|")
    return words


def service_config_path(unit: ServiceUnit) -> str | None:
    """The ``--config PATH`` the unit's ExecStart passes to ``piagent run``, if any."""
    words = exec_start(unit)
    for i, word in enumerate(words):
        if word == "--config" and i + 1 < len(words):
            return words[i + 1]
        if word.startswith("--config="):
            return word.partition("=")[2]
    return None


def doctor_command(unit: ServiceUnit, *, fallback: Sequence[str]) -> list[str]:
    """The piagent the service runs (ExecStart's program) when it is one, else ``fallback``
    (this interpreter with ``-m piagent``): a transient unit under ProtectHome= may not see a
    development checkout."""
    words = exec_start(unit)
    if words and Path(words[0]).name == "piagent" and Path(words[0]).is_absolute():
        return [words[0]]
    return list(fallback)


def systemd_run_argv(
    unit: ServiceUnit,
    doctor_args: Sequence[str],
    *,
    program: Sequence[str],
    systemd_run: str = "systemd-run",
) -> list[str]:
    """``systemd-run`` running ``program doctor_args...`` with the unit's environment.

    Each [Service] setting but those about starting and supervising (see ``_SKIPPED``) is
    passed as ``-p KEY=VALUE``, verbatim: systemd-run unescapes and splits them as the unit
    file parser does. ``RuntimeDirectoryPreserve=yes`` is added when the unit has a
    RuntimeDirectory=: the transient unit shares /run/piagent with the running daemon, and
    removing it at the doctor's exit would delete the daemon's control socket.
    """
    argv = [
        systemd_run,
        "--pipe",
        "--wait",
        "--collect",
        "--quiet",
        "--service-type=exec",
        "-p",
        "Description=piagent doctor, as piagent.service",
    ]
    for key, value in unit.settings:
        if _is_passed(key):
            argv += ["-p", f"{key}={value}"]
    if unit.values("RuntimeDirectory"):
        argv += ["-p", "RuntimeDirectoryPreserve=yes"]
    return [*argv, "--", *program, *doctor_args]


@dataclass(frozen=True, slots=True)
class Situation:
    """What decides whether the doctor re-runs itself as the service."""

    here: bool  # --here given
    euid: int
    systemd_booted: bool  # PID 1 is systemd
    has_systemd_run: bool
    unit_text: str | None  # the installed unit (systemctl cat), None when not installed


def reexec_reason(situation: Situation) -> str | None:
    """Why the checks run in this process (a sentence), or None: re-run as the service."""
    if situation.here:
        return "--here"
    if situation.euid != 0:
        return "not root: checks run as this user (sudo piagent doctor checks as the service)"
    if not situation.systemd_booted:
        return "systemd is not running"
    if not situation.has_systemd_run:
        return "no systemd-run here"
    if situation.unit_text is None:
        return f"{UNIT} is not installed"
    return None


def read_installed_unit() -> str | None:
    """``systemctl cat piagent.service`` (the unit and its drop-ins), else the unit file
    itself, else None."""
    systemctl = shutil.which("systemctl")
    if systemctl is not None:
        try:
            done = subprocess.run(
                [systemctl, "cat", "--", UNIT],
                capture_output=True,
                text=True,
                timeout=SYSTEMCTL_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            pass
        else:
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout
    try:
        return UNIT_FILE.read_text(encoding="utf-8")
    except OSError:
        return None


def current_situation(*, here: bool) -> Situation:
    """The situation of this process (reads the system only when it could matter)."""
    euid = os.geteuid()
    booted = SYSTEMD_BOOTED.is_dir()
    has_run = shutil.which("systemd-run") is not None
    text = read_installed_unit() if not here and euid == 0 and booted and has_run else None
    return Situation(here, euid, booted, has_run, text)


def reexec_argv(
    unit_text: str, *, config: str | None, as_json: bool, systemd_run: str
) -> list[str]:
    """The full systemd-run command for ``piagent doctor --here`` as the installed service,
    with the config the service uses unless ``config`` is given."""
    unit = parse_unit(unit_text)
    args = ["doctor", "--here"]
    chosen = config or service_config_path(unit)
    if chosen:
        args += ["--config", str(Path(chosen).absolute())]
    if as_json:
        args.append("--json")
    program = doctor_command(unit, fallback=[sys.executable, "-m", "piagent"])
    return systemd_run_argv(unit, args, program=program, systemd_run=systemd_run)
