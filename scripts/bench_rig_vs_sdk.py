#!/usr/bin/env python3
"""piagent against the official SDK on a clocked ALSA card, in the platform rig: the CPU each
costs per minute of conversation on the same emulated Cortex-A53, in alternating runs.

The rig (``scripts/rig.sh up``) must be up; this script uses it as it finds it and leaves it
so. The simulator runs here, on the host (the guest reaches it at 10.0.2.2), with one agent
whose first message is 76 s of speech without a pause. Each client holds that conversation
in the guest, with the snd-aloop card as its sound card, and streams its microphone up all
along (silence: rigmic plays none), while the agent's voice plays:

* piagent: the daemon as installed, under systemd, its ``pyaudio`` backend on the card's
  ``hw`` devices (48 kHz stereo, resampled in-process), 20 ms chunks; the button is held over
  the control socket, so the microphone streams (half duplex: silence while the agent talks).
* SDK: ``Conversation`` (elevenlabs 2.78.0, in a venv of its own in the guest beside Debian's
  PyAudio) with its ``DefaultAudioInterface``: PortAudio's default devices at 16 kHz mono,
  which an ``.asoundrc`` points at the same card through ALSA's ``plug`` (the conversion
  happens in alsa-lib), 250 ms chunks.

For each run, from 5 s after the simulator sees the conversation, over ``--window`` seconds:
the process's CPU (utime+stime from the guest's ``/proc``), the chunks the simulator received,
its threads and its peak resident memory at the end; for piagent also the device xruns
(capture, playback) and the jitter buffer's underruns from its press to the window's end
(``ctl status``; an xrun is a callback PortAudio flagged: an overflow or underflow it
recovered from). Emulation slows Python and native code
alike, far more than a Pi's own CPU would, so the ratio is the figure to read.

    .venv/bin/python scripts/bench_rig_vs_sdk.py [--runs N] [--window S]
"""

from __future__ import annotations

import sys

if sys.argv[1:2] == ["--sdk-child"]:  # inside the guest: stdlib and elevenlabs only
    from elevenlabs.client import ElevenLabs
    from elevenlabs.conversational_ai.conversation import Conversation
    from elevenlabs.conversational_ai.default_audio_interface import DefaultAudioInterface

    conversation = Conversation(
        ElevenLabs(base_url=sys.argv[2], api_key=None),
        sys.argv[3],
        requires_auth=False,
        audio_interface=DefaultAudioInterface(),  # type: ignore[no-untyped-call]
    )
    conversation.start_session()  # type: ignore[no-untyped-call]
    conversation.wait_for_session_end()
    sys.exit(0)

import argparse
import json
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from piagent.sim.agent import AgentDefinition
from piagent.sim.record import ConversationRecord
from piagent.sim.server import SimServer

ROOT = Path(__file__).resolve().parent.parent
RIG = ROOT / "scripts" / "rig.sh"
HOST = "10.0.2.2"
AGENT = "talker"
FIRST_MESSAGE = "aoeui" * 160  # about 76 s of the simulated voice
SDK_VERSION = "2.78.0"
SDK_VENV = "/opt/rigbench/sdk"
SDK_HOME = "/opt/rigbench/home"  # the SDK's ~/.asoundrc
SETTLE_S = 5.0
SOCKET = "/run/piagent/control.sock"
ASOUNDRC = """\
pcm.!default {
    type asym
    playback.pcm { type plug; slave.pcm "hw:Loopback,0" }
    capture.pcm { type plug; slave.pcm "hw:Loopback,1" }
}
"""


def rig(command: str, *, stdin: str | None = None, timeout: float = 900) -> str:
    """A shell command line as root in the guest; its standard output."""
    result = subprocess.run(
        [str(RIG), "run", command],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"in the rig: {command!r} exited {result.returncode}: {result.stderr}")
    return result.stdout.strip()


def prepare() -> str:
    """The SDK's venv and ALSA defaults in the guest, and this script; the guest's release."""
    status = subprocess.run([str(RIG), "status"], capture_output=True, text=True, check=False)
    if status.returncode != 0:
        sys.exit("the rig is not up: scripts/rig.sh up")
    rig(
        f"test -x {SDK_VENV}/bin/python || "
        f"(python3 -m venv --system-site-packages {SDK_VENV} && "
        f"{SDK_VENV}/bin/pip install -q elevenlabs=={SDK_VERSION})",
        timeout=1800,
    )
    rig(f"mkdir -p {SDK_HOME} && cat > {SDK_HOME}/.asoundrc", stdin=ASOUNDRC)
    rig("cat > /opt/rigbench/bench_rig_vs_sdk.py", stdin=Path(__file__).read_text())
    # The card and the processes that hold its format (48 kHz stereo) and play and hear it,
    # as the rig's tests set them up (tests/rig/conftest.py): a fresh rig has neither.
    guest = ROOT / "tests" / "rig" / "guest"
    subprocess.run([str(RIG), "copy-in", str(guest), "/opt/rig"], check=True, timeout=300)
    for name in ("rigmic", "rigspeaker"):
        unit = (
            f"[Unit]\nDescription=rig: {name}\nBefore=piagent.service\n[Service]\n"
            f"ExecStart=/usr/bin/python3 /opt/rig/{name}.py\nRestart=always\nRestartSec=0.5\n"
        )
        rig(f"cat > /etc/systemd/system/{name}.service", stdin=unit)
    rig(
        "systemctl stop piagent; systemctl daemon-reload && modprobe snd-aloop && "
        "systemctl restart rigspeaker rigmic && sleep 3"
    )
    return status.stdout.split()[1].rstrip(",")


def proc(pid: int) -> tuple[float, float, int, int]:
    """(seconds since boot, CPU seconds, threads, peak RSS in kB) of a guest process."""
    text = rig(
        f"cat /proc/uptime; cat /proc/{pid}/stat; getconf CLK_TCK; "
        f"grep -E '^(Threads|VmHWM):' /proc/{pid}/status"
    )
    lines = text.splitlines()
    uptime = float(lines[0].split()[0])
    fields = lines[1].rsplit(")", 1)[1].split()
    ticks = int(lines[2])
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    status = dict(line.split(":", 1) for line in lines[3:])
    return uptime, cpu, int(status["Threads"]), int(status["VmHWM"].split()[0])


@dataclass
class Run:
    client: str
    cpu_per_min: float
    chunks_per_s: float
    threads: int
    peak_mb: float
    # piagent only, from the press to the window's end (``ctl status``): device xruns, capture
    # and playback, and the jitter buffer's underruns.
    losses: tuple[int, int, int] | None = None


def losses(status: dict[str, Any]) -> tuple[int, int, int]:
    """(capture xruns, playback xruns, jitter-buffer underruns) in a ``ctl status``."""
    devices = status["devices"]
    output = devices["output"]
    return devices["input"]["xruns"], output["xruns"], output["underruns"]


def wait_conversation(sim: SimServer, before: int, within: float) -> ConversationRecord:
    deadline = time.monotonic() + within
    while len(sim.conversations) == before:
        if time.monotonic() > deadline:
            raise RuntimeError("no conversation reached the simulator")
        time.sleep(0.2)
    return sim.conversations[-1]


def measure(client: str, pid: int, record: ConversationRecord, window: float) -> Run:
    time.sleep(SETTLE_S)
    t1, cpu1, _, _ = proc(pid)
    chunks1 = record.audio_chunks
    time.sleep(window)
    t2, cpu2, threads, peak_kb = proc(pid)
    chunks2 = record.audio_chunks
    return Run(
        client,
        cpu_per_min=(cpu2 - cpu1) / (t2 - t1) * 60,
        chunks_per_s=(chunks2 - chunks1) / (t2 - t1),
        threads=threads,
        peak_mb=peak_kb / 1024,
    )


def run_piagent(sim: SimServer, window: float) -> Run:
    config = {
        "agent": {
            "agent_id": AGENT,
            "server": f"ws://{HOST}:{sim.port}",
            "api_base": f"http://{HOST}:{sim.port}",
        },
        "audio": {
            "backend": "pyaudio",
            "input": {"device": "hw:Loopback,1"},
            "output": {"device": "hw:Loopback,0", "volume": 1.0},
            "earcons": False,
        },
        "gpio": {"pin_factory": "mock"},
        "session": {"idle_timeout": 300},
    }
    rig(
        "cat > /etc/piagent/config.yaml && chown root:piagent /etc/piagent/config.yaml",
        stdin=yaml.safe_dump(config),
    )
    rig("systemctl reset-failed piagent; systemctl restart piagent")
    deadline = time.monotonic() + 180
    while True:
        status = json.loads(rig(f"piagent ctl --socket {SOCKET} status --json"))
        devices = status["devices"]
        if (
            status["state"] == "ready"
            and devices["input"]["healthy"]
            and devices["output"]["healthy"]
        ):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the daemon did not get ready: {status}")
        time.sleep(1)
    pid = int(rig("systemctl show piagent -p MainPID --value"))
    before = len(sim.conversations)
    at_press = losses(status)
    rig(f"piagent ctl --socket {SOCKET} press")
    record = wait_conversation(sim, before, 60)
    try:
        run = measure("piagent", pid, record, window)
        at_end = losses(json.loads(rig(f"piagent ctl --socket {SOCKET} status --json")))
        capture, playback, underruns = (b - a for a, b in zip(at_press, at_end, strict=True))
        run.losses = capture, playback, underruns
        return run
    finally:
        rig(f"piagent ctl --socket {SOCKET} release; systemctl stop piagent")


def run_sdk(sim: SimServer, window: float) -> Run:
    command = (
        f"HOME={SDK_HOME} nohup {SDK_VENV}/bin/python /opt/rigbench/bench_rig_vs_sdk.py "
        f"--sdk-child http://{HOST}:{sim.port} {AGENT} >/opt/rigbench/sdk.log 2>&1 & echo $!"
    )
    before = len(sim.conversations)
    pid = int(rig(command))
    try:
        record = wait_conversation(sim, before, 300)
        return measure("sdk", pid, record, window)
    finally:
        rig(f"kill {pid}; sleep 1; kill -9 {pid} 2>/dev/null; true")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=2, help="runs per client (2)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured a run (60)")
    args = parser.parse_args(argv)
    release = prepare()
    runs: list[Run] = []
    agents = [AgentDefinition(agent_id=AGENT, first_message=FIRST_MESSAGE)]
    with SimServer(agents).run_in_thread() as sim:
        for k in range(args.runs):
            for client, runner in (("piagent", run_piagent), ("sdk", run_sdk)):
                run = runner(sim, args.window)
                runs.append(run)
                lost = (
                    ""
                    if run.losses is None
                    else ", xruns (capture/playback) {}/{}, underruns {}".format(*run.losses)
                )
                print(
                    f"bench: {client} run {k + 1}: {run.cpu_per_min:.2f} CPU s/min, "
                    f"{run.chunks_per_s:.1f} chunks/s, {run.threads} threads, "
                    f"peak RSS {run.peak_mb:.0f} MB{lost}",
                    file=sys.stderr,
                    flush=True,
                )
    print(f"\nIn the rig ({release}, arm64 under qemu TCG), medians of {args.runs} runs each:\n")
    print("| figure | piagent | SDK | ratio |\n|---|---|---|---|")
    for label, key, pattern in (
        ("CPU per conversation minute (s)", "cpu_per_min", "{:.2f}"),
        ("chunks sent per second", "chunks_per_s", "{:.1f}"),
        ("threads at the end", "threads", "{:.0f}"),
        ("peak resident memory (MB)", "peak_mb", "{:.1f}"),
    ):
        ours = statistics.median(getattr(r, key) for r in runs if r.client == "piagent")
        theirs = statistics.median(getattr(r, key) for r in runs if r.client == "sdk")
        ratio = f"{ours / theirs:.2f}" if theirs else "-"
        print(f"| {label} | {pattern.format(ours)} | {pattern.format(theirs)} | {ratio} |")
    print("\n| piagent run | CPU s/min | capture xruns | playback xruns | jitter underruns |")
    print("|---|---|---|---|---|")
    counted = [(r.cpu_per_min, r.losses) for r in runs if r.losses is not None]
    for k, (cpu, (capture, playback, underruns)) in enumerate(counted, 1):
        print(f"| {k} | {cpu:.2f} | {capture} | {playback} | {underruns} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
