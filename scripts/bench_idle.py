#!/usr/bin/env python3
"""What the daemon costs while nobody talks to it: CPU and wake-ups at idle, side by side for
the configurations a user runs (the button alone; the wake word listening; the wake word with
echo cancellation), in one run.

Each configuration runs ``piagent run`` as the unit would (``python -m piagent run --config
FILE``, no tuning variables but what ``systemd/piagent.service`` sets), with the ``wav``
backend: a microphone file of room noise (no wake word in it) and a speaker file, mock pins,
no conversation. After ``--settle`` seconds (start-up, the filters' cache, the engine's
models) it reads, over ``--seconds``:

* CPU: utime + stime of every thread (``/proc/PID/stat``), as CPU-seconds per minute and as
  % of one core;
* wake-ups: context switches of every thread, voluntary and not
  (``/proc/PID/task/*/status``), per second;
* threads at the end: all of them (``/proc/PID/task``), and how many are Python's (the
  daemon's ``ctl status`` says).

Goals printed beside the figures: the wake word listening at most 5 % of a core (the
hands-free issue); the button alone at most 0.05 CPU-s per minute and a few wake-ups a second
(the CPU issue).

    .venv/bin/python scripts/bench_idle.py [--seconds 60] [--settle 8] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
RATE = 16000
TICKS = os.sysconf("SC_CLK_TCK")

CONFIGS: dict[str, dict[str, Any]] = {
    "button": {},
    "wake": {"wake": {"model": "okay_nabu"}},
    "wake+aec": {"wake": {"model": "okay_nabu"}, "audio": {"aec": {"enabled": True}}},
}
GOALS = {"button": "<= 0.05 CPU-s/min", "wake": "<= 5 % of a core", "wake+aec": "-"}


def unit_environment() -> dict[str, str]:
    """The variables the unit file sets (Environment= lines), checked against UNIT_ENV."""
    unit = (ROOT / "systemd" / "piagent.service").read_text()
    found: dict[str, str] = {}
    for line in unit.splitlines():
        if line.startswith("Environment="):
            for item in line.removeprefix("Environment=").split():
                key, _, value = item.strip('"').partition("=")
                found[key] = value
    return found


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype("<i2").tobytes())


def room_noise(seconds: float) -> np.ndarray:
    """Quiet room noise (about -60 dBFS), deterministic."""
    rng = np.random.default_rng(7)
    return np.clip(rng.normal(0.0, 33.0, int(seconds * RATE)), -32768, 32767).astype(np.int16)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (all threads)


def switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return total


def measure(name: str, extra: dict[str, Any], seconds: float, settle: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="piagent-idle-") as tmp:
        directory = Path(tmp)
        write_wav(directory / "mic.wav", room_noise(seconds + settle + 30), RATE)
        config: dict[str, Any] = {
            "agent": {"agent_id": "demo", "server": "ws://127.0.0.1:9"},
            "audio": {
                "backend": "wav",
                "input": {"file": str(directory / "mic.wav")},
                "output": {"file": str(directory / "speaker.wav"), "rate": RATE},
                "earcons": False,
            },
            "gpio": {"pin_factory": "mock"},
            "control": {"socket": str(directory / "control.sock")},
            "logging": {"journal": False},
        }
        for section, values in extra.items():
            config.setdefault(section, {}).update(values)
        (directory / "config.yaml").write_text(yaml.safe_dump(config))
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
        env.update(unit_environment())
        proc = subprocess.Popen(
            [sys.executable, "-m", "piagent", "run", "--config", str(directory / "config.yaml")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(settle)
            if proc.poll() is not None:
                raise SystemExit(f"{name}: the daemon exited ({proc.returncode})")
            cpu0, sw0, t0 = cpu_ticks(proc.pid), switches(proc.pid), time.monotonic()
            time.sleep(seconds)
            cpu1, sw1, t1 = cpu_ticks(proc.pid), switches(proc.pid), time.monotonic()
            threads = len(list(Path(f"/proc/{proc.pid}/task").iterdir()))
            status = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "piagent",
                    "ctl",
                    "--socket",
                    str(directory / "control.sock"),
                    "status",
                    "--json",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            python_threads = (
                json.loads(status.stdout)["threads"]["python"] if status.stdout else None
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    elapsed = t1 - t0
    cpu_s = (cpu1 - cpu0) / TICKS
    return {
        "name": name,
        "cpu_s_per_min": cpu_s * 60 / elapsed,
        "core_percent": 100 * cpu_s / elapsed,
        "wakeups_per_s": (sw1 - sw0) / elapsed,
        "threads": threads,
        "python_threads": python_threads,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=8.0)
    parser.add_argument("--only", choices=sorted(CONFIGS), action="append")
    args = parser.parse_args()
    rows = [
        measure(name, CONFIGS[name], args.seconds, args.settle)
        for name in CONFIGS
        if not args.only or name in args.only
    ]
    print(
        f"idle daemon, {args.seconds:.0f} s each after {args.settle:.0f} s to settle "
        f"({os.cpu_count()} cores, {os.uname().machine})"
    )
    print(
        f"{'config':10} {'CPU-s/min':>10} {'% core':>8} {'wakeups/s':>10} {'threads':>8}"
        f" {'python':>7}  goal"
    )
    base = rows[0]["cpu_s_per_min"] if rows else 0.0
    for row in rows:
        ratio = row["cpu_s_per_min"] / base if base else float("nan")
        print(
            f"{row['name']:10} {row['cpu_s_per_min']:10.3f} {row['core_percent']:8.2f} "
            f"{row['wakeups_per_s']:10.1f} {row['threads']:8d} {row['python_threads']!s:>7}  "
            f"{GOALS[row['name']]} (x{ratio:.1f} of {rows[0]['name']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
