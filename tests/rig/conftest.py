"""The platform rig, for tests: the emulated Debian arm64 system of ``scripts/rig.sh``.

Every test here is marked ``rig`` and is left out of the main suite (pyproject's addopts);
``scripts/test_rig.sh`` runs them: it brings the system up first (``rig.sh up``: the image
built or reused, booted fresh, this checkout installed by its own installer), outside any
test's timeout, and takes it down afterwards unless ``PIAGENT_RIG_KEEP=1``. Run as plain
``pytest -m rig tests/rig`` with no system up, the session's first test brings it up itself
(then a build from nothing counts against that test's timeout) and the last takes it down.
The release comes from ``$PIAGENT_RIG_RELEASE`` (trixie by default).

Inside, two small programs of tests/rig/guest stand in for the hardware around the snd-aloop
card: ``rigmic`` plays into one side (the daemon captures the other, as from a USB microphone)
and ``rigspeaker`` records what the daemon plays. Both open their side first, at 48 kHz
stereo, which fixes the daemon's side to exactly that: a stereo-only, fixed-rate device.
A third, ``rigroom``, takes both their places in test_hands_free: it writes what the daemon
plays back into its microphone (an echo path in real time) and mixes in a user's voice.

The simulator runs here, on the host, and the system reaches it through qemu's user network
at 10.0.2.2.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RIG = ROOT / "scripts" / "rig.sh"
GUEST = Path(__file__).resolve().parent / "guest"
HOST_FROM_GUEST = "10.0.2.2"  # qemu's user network: the host's loopback, seen from inside

# The loopback card's sides, as rigmic/rigspeaker leave them to the daemon: rigmic plays into
# device 0 subdevice 0, so capture from device 1 gets it (the first free subdevice of device
# 1 is 0); rigspeaker records device 1 subdevice 1, so playback into device 0 takes the first
# free subdevice, 1, whose sound comes out there.
MIC_DEVICE = "hw:Loopback,1"
SPEAKER_DEVICE = "hw:Loopback,0"
CARD_RATE = 48000
CARD_CHANNELS = 2


@dataclass
class Rig:
    """The running system: commands as root inside it, files in, and its services."""

    release: str

    def run(
        self, command: str, *, check: bool = True, timeout: float = 300, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        raw = subprocess.run(
            [str(RIG), "run", command],
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        result = subprocess.CompletedProcess(
            raw.args,
            raw.returncode,
            raw.stdout.decode(errors="replace"),
            raw.stderr.decode(errors="replace"),
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"in the rig: {command!r} exited {result.returncode}\n"
                f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}"
            )
        return result

    def out(self, command: str, **kwargs: Any) -> str:
        return self.run(command, **kwargs).stdout.strip()

    def read_bytes(self, path: str, offset: int = 0) -> bytes:
        result = subprocess.run(
            [str(RIG), "run", f"tail -c +{offset + 1} {shlex.quote(path)}"],
            capture_output=True,
            timeout=300,
            check=True,
        )
        return result.stdout

    def copy_in(self, source: Path, destination: str) -> None:
        subprocess.run([str(RIG), "copy-in", str(source), destination], check=True, timeout=300)

    def write(self, path: str, text: str, mode: str = "0644") -> None:
        self.run(
            f"cat > {shlex.quote(path)} && chmod {mode} {shlex.quote(path)}",
            input=text.encode(),
        )

    def write_config(self, config: dict[str, Any]) -> None:
        self.write("/etc/piagent/config.yaml", yaml.safe_dump(config), mode="0640")
        self.run("chown root:piagent /etc/piagent/config.yaml")

    def wait_for(
        self, command: str, predicate: Callable[[str], bool], within: float, what: str
    ) -> str:
        deadline = time.monotonic() + within
        output = ""
        while time.monotonic() < deadline:
            output = self.run(command, check=False).stdout
            if predicate(output):
                return output
            time.sleep(1)
        raise AssertionError(f"{what}: not within {within} s; last output: {output[-2000:]}")

    def status(self) -> dict[str, Any]:
        text = self.out("piagent ctl --socket /run/piagent/control.sock status --json")
        status: dict[str, Any] = json.loads(text)
        return status

    def service(self, prop: str) -> str:
        return self.out(f"systemctl show piagent -p {prop} --value")


@pytest.fixture(scope="session")
def rig() -> Iterator[Rig]:
    release = os.environ.get("PIAGENT_RIG_RELEASE", "trixie")
    status = subprocess.run([str(RIG), "status"], capture_output=True, text=True, check=False)
    started_here = status.returncode != 0
    if started_here:
        subprocess.run([str(RIG), "up", "--release", release], check=True, timeout=3600)
    else:
        release = status.stdout.split()[1].rstrip(",")
    rig = Rig(release)
    rig.copy_in(GUEST, "/opt/rig")
    rig.write("/etc/systemd/system/rigmic.service", _unit("rigmic", "the microphone's sound"))
    rig.write("/etc/systemd/system/rigspeaker.service", _unit("rigspeaker", "a speaker's ear"))
    # The card's format is rigmic's and rigspeaker's: they open it before the daemon does.
    rig.run(
        "systemctl stop piagent; systemctl daemon-reload && modprobe snd-aloop && "
        "systemctl restart rigspeaker rigmic && sleep 3"
    )
    try:
        yield rig
    finally:
        if started_here and os.environ.get("PIAGENT_RIG_KEEP") != "1":
            subprocess.run([str(RIG), "down"], check=False, timeout=120)


def _unit(name: str, what: str) -> str:
    # Before piagent, so that the card's format is theirs; restarted with the card.
    return (
        f"[Unit]\nDescription=rig: {what}\nBefore=piagent.service\n"
        f"[Service]\nExecStart=/usr/bin/python3 /opt/rig/{name}.py\nRestart=always\n"
        "RestartSec=0.5\n"
    )


def daemon_config(sim_port: int, **audio: Any) -> dict[str, Any]:
    """The daemon's config in the rig: the host's simulator, the loopback card, mock pins."""
    return {
        "agent": {
            "agent_id": "demo",
            "server": f"ws://{HOST_FROM_GUEST}:{sim_port}",
            "api_base": f"http://{HOST_FROM_GUEST}:{sim_port}",
        },
        "audio": {
            "backend": "pyaudio",
            "input": {"device": audio.get("input", MIC_DEVICE)},
            "output": {"device": audio.get("output", SPEAKER_DEVICE), "volume": 1.0},
            "earcons": False,
        },
        "gpio": {"pin_factory": "mock"},
        "session": {"idle_timeout": 60},
    }
