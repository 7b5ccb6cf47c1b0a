"""``piagent doctor``: checks an installation end to end and says what to fix.

The package owns the checks (``checks``: their one list, order and limits), the blocking
probes behind them (``probes``), the report (``report``) and running as the service
(``unit``). :func:`run_doctor` is the command: run as root where systemd runs and
piagent.service is installed, it re-runs itself as a transient unit with the service's user,
groups, credentials, environment and sandbox (``systemd-run``), so that it reports what the
daemon will see; otherwise (``--here``, not root, no systemd) the checks run in this process.
It returns the exit status (0: nothing failed; 1: a check failed; 78: the config is invalid).

PyAudio and gpiozero are imported inside the probes that need them. No I/O at import.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TextIO

from piagent.doctor.checks import CHECK_NAMES, CHECKS, LIMITS, run_checks
from piagent.doctor.report import Check, exit_status, format_json, format_report
from piagent.doctor.unit import current_situation, reexec_argv, reexec_reason

__all__ = [
    "CHECKS",
    "CHECK_NAMES",
    "LIMITS",
    "Check",
    "exit_status",
    "format_json",
    "format_report",
    "run_checks",
    "run_doctor",
]


def run_doctor(
    config_path: Path | None,
    *,
    as_json: bool,
    out: TextIO,
    here: bool = True,
    err: TextIO | None = None,
) -> int:
    """``piagent doctor [--config PATH] [--json] [--here]``: run every check, print the report
    to ``out`` and return the exit status: 0 when no check failed, 1 when one did, 78 when the
    config itself is invalid.

    Unless ``here``, first see whether to re-run as the service (see the module docstring);
    a line on ``err`` says which way the checks run, so the report is never mistaken for the
    service's view."""
    err = sys.stderr if err is None else err
    if not here:
        situation = current_situation(here=here)
        why = reexec_reason(situation)
        if why is None and situation.unit_text is not None:
            argv = reexec_argv(
                situation.unit_text,
                config=str(config_path) if config_path else None,
                as_json=as_json,
                systemd_run=shutil.which("systemd-run") or "systemd-run",
            )
            if not as_json:
                err.write("piagent doctor: checking as piagent.service sees it (systemd-run)\n")
                err.flush()
            # The child writes to our stdout and stderr directly (--pipe); its exit status is
            # the report's.
            out.flush()
            return subprocess.run(argv, check=False).returncode
        if not as_json and situation.euid == 0 and why != "--here":
            err.write(f"piagent doctor: checking in this process ({why})\n")
            err.flush()
    checks = asyncio.run(run_checks(config_path))
    out.write(format_json(checks) if as_json else format_report(checks))
    out.flush()
    return exit_status(checks)
