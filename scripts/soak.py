#!/usr/bin/env python3
"""Soak: one ``piagent run`` process holds conversation after conversation with the simulator.

One daemon (WAV backend, mock pins, a real ``NOTIFY_SOCKET`` with a watchdog) is started once
and driven through its control socket, as ``piagent ctl`` drives it, against ``SimServer`` in a
thread of this process. It goes through a cycle of episodes, one conversation each, again and
again until the simulator has accounted for ``--minutes`` of conversation:

* ``talk``: press, speak, release, the parrot answers; three turns; ``ctl hangup``;
* ``typed``: a SIGHUP reload first, then ``say``, ``context``, ``say``; the idle hang-up;
* ``barge-in``: a turn, then a press while the agent answers (playback flushed, the server
  interrupts), a second turn; the idle hang-up;
* ``tools``: a scripted agent calls ``current_time``, ``set_volume`` and a command tool
  (``/bin/cat``, a child process per call), speaks, and hangs up with ``end_call``;
* ``hang-up tool``: the agent asks the device to hang up through the ``hang_up`` tool;
* ``mute``: press, ``mute`` (silence goes out), ``unmute``, speak, release;
* faults, each followed by proof of recovery (a later turn is answered): a 1011 close while
  the button is held (the daemon reconnects by itself), a stalled server (the daemon's stall
  detection closes and reconnects), an upgrade refused with 503 (retried), a 1011 close right
  after the metadata (retried), junk frames (skipped), and a 1011 close while idle (the next
  press opens a new conversation).

Measured: ``/proc/<pid>/status`` (VmRSS, VmHWM, Threads) and ``/proc/<pid>/fd`` every few
seconds, and at an idle checkpoint after every episode (no conversation open, state ``ready``);
the growth goals compare the checkpoint at the end of the warm-up (the first cycle) with the
last one. Also counted: conversations, turns, interruptions, tool results, pongs, faults
injected and recovered, the watchdog's longest silence, and task crashes in the daemon's log.

What counts as conversation time is the simulator's accounting: user speech (the 20 ms frames
of received user audio at or above its VAD threshold, -40 dBFS) plus agent audio the client
must play (stale chunks after an interruption excluded; an interrupted turn counted
conservatively as what was sent before the interruption divided by ``audio_pace``). The digital
silence the daemon streams between turns is not counted.

What is accelerated, and what is not: the daemon plays agent audio and captures the microphone
in real time (that is what is being soaked), and one daemon holds one conversation at a time,
so conversation time cannot pass faster than the wall clock. Only the dead time is cut: the
agent sends its audio 1.5 times faster than real time (as the service does), the simulator
ends a turn after 200 ms of silence (not 600), the daemon hangs up after 2 s idle (not 30),
reconnects after 0.2 s (not 0.5) and detects a stall in 2 s (not 15), greetings are short,
and the next turn starts as soon as the answer has played. Expect the wall clock to be about
1.2 times the conversation time (30 minutes: 37 minutes on a 2-core AMD EPYC VM).

The microphone is a WAV file of continuous speech-like sound at 8 kHz (the daemon resamples it
to 16 kHz, as a Pi resamples 48 kHz), as long as the soak may last: the daemon sends it only
while the button is held, and digital silence otherwise, so every press is speech. The daemon
keeps that file in memory (shown in the table); it is read before the warm-up, so it does not
count as growth. The speaker is a 48 kHz WAV timeline.

Exit status: 0 when every goal is met; 1 when a goal is missed; 2 when the run itself failed
(the daemon died, a wait timed out, a fault was not recovered). ``--quick`` (CI smoke, about
30 s) runs a shortened cycle and judges no goal: half a minute says nothing about growth.

    .venv/bin/python scripts/soak.py [--minutes N] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import io
import json
import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from piagent import __version__
from piagent.control import run_ctl
from piagent.sim.agent import AgentDefinition
from piagent.sim.record import ConversationRecord
from piagent.sim.scenario import Scenario
from piagent.sim.server import SimServer
from piagent.sim.vad import frame_levels_db

AGENT_ID = "soak"
MIC_RATE = 8000  # the microphone file's rate: the daemon resamples it to 16 kHz
WIRE_RATE = 16000  # pcm_16000 both ways, the simulator's default formats
SPEAKER_RATE = 48000
AUDIO_PACE = 1.5  # the simulator's agent audio, times real time
VAD_THRESHOLD_DB = -40.0
WATCHDOG_USEC = 2_000_000
RSS_GROWTH_GOAL_KB = 5 * 1024
WAIT = 20.0  # seconds: the longest any single expected change may take
SAMPLE_EVERY = 2.0  # seconds between /proc samples (0.5 in --quick)
SETTLE = 0.5  # seconds between the last control request and an idle checkpoint

GREETING = "Hi."


class SoakFailed(Exception):
    """The run itself failed: not a missed goal, a broken soak (exit 2)."""


# --------------------------------------------------------------------------------------------
# /proc


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One look at the daemon: monotonic time, kB of VmRSS and VmHWM, threads, open fds."""

    t: float
    rss_kb: int
    hwm_kb: int
    threads: int
    fds: int


def sample_process(pid: int) -> ProcSample | None:
    """The daemon's figures now, or None when it has exited."""
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "Threads"):
                    fields[key] = int(value.split()[0])
        fds = sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return None
    if len(fields) < 3:  # a zombie has no memory lines
        return None
    return ProcSample(time.monotonic(), fields["VmRSS"], fields["VmHWM"], fields["Threads"], fds)


def fd_targets(pid: int) -> list[str]:
    """What the daemon's file descriptors point at (socket and pipe inodes left out)."""
    targets = []
    with contextlib.suppress(FileNotFoundError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(FileNotFoundError):
                target = str(fd.readlink())
                targets.append(target.split(":[")[0] if target.endswith("]") else target)
    return sorted(targets)


class Sampler:
    """Samples the daemon every ``interval`` seconds in a thread until stopped."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[ProcSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            sample = sample_process(self.pid)
            if sample is not None:
                self.samples.append(sample)


class NotifySocket:
    """The daemon's ``NOTIFY_SOCKET``: counts datagrams and the watchdog's longest silence."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.counts: Counter[str] = Counter()
        self.watchdog_gap_max = 0.0
        self._last_watchdog: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-notify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            with self._lock:
                for line in data.decode(errors="replace").splitlines():
                    key = line.partition("=")[0]
                    self.counts[key] += 1
                    if line == "WATCHDOG=1":
                        if self._last_watchdog is not None:
                            gap = now - self._last_watchdog
                            self.watchdog_gap_max = max(self.watchdog_gap_max, gap)
                        self._last_watchdog = now

    def count(self, key: str) -> int:
        with self._lock:
            return self.counts[key]

    def wait_count(self, key: str, at_least: int, within: float = WAIT) -> None:
        deadline = time.monotonic() + within
        while self.count(key) < at_least:
            if time.monotonic() > deadline:
                raise SoakFailed(f"no {key} #{at_least} from the daemon within {within:g} s")
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


# --------------------------------------------------------------------------------------------
# The daemon


class Daemon:
    """The ``piagent run`` child process, driven the way ``piagent ctl`` drives it."""

    def __init__(self, workdir: Path, config: dict[str, Any], notify: NotifySocket) -> None:
        self.workdir = workdir
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.socket_path = Path(config["control"]["socket"])
        self.log_path = workdir / "daemon.log"
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(notify.path),
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
            "STATE_DIRECTORY": str(workdir / "state"),
        }
        env.pop("JOURNAL_STREAM", None)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "piagent", "run", "--config", str(self.config_path)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise SoakFailed(f"the daemon exited with {self.proc.returncode}; see {self.log_path}")

    def ctl(self, *words: str) -> str:
        """One ``piagent ctl`` request (its own code, minus the interpreter start-up)."""
        self.check_alive()
        out, err = io.StringIO(), io.StringIO()
        code = run_ctl(self.socket_path, list(words), stdout=out, stderr=err, timeout=10.0)
        if code != 0:
            raise SoakFailed(f"piagent ctl {' '.join(words)}: exit {code}: {err.getvalue()}")
        return out.getvalue()

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = json.loads(self.ctl("status", "--json"))
        return status

    def wait_status(
        self, what: str, predicate: Callable[[dict[str, Any]], bool], within: float = WAIT
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            status = self.status()
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise SoakFailed(f"timed out after {within:g} s waiting for {what}: {status}")
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM and wait (kill after 10 s); the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def log_lines(self, fragment: str) -> int:
        with open(self.log_path, errors="replace") as log:
            return sum(1 for line in log if fragment in line)


# --------------------------------------------------------------------------------------------
# The simulator's accounting


@dataclass
class Tally:
    """What the simulator recorded, summed over every connection."""

    connections: int = 0
    conversations: int = 0  # connections that got as far as the metadata
    user_turns: int = 0
    agent_turns: int = 0
    interruptions: int = 0
    tool_results: int = 0
    tool_errors: int = 0
    pings: int = 0
    pongs: int = 0
    user_speech_s: float = 0.0
    user_stream_s: float = 0.0  # all user audio received, digital silence included
    agent_audio_s: float = 0.0
    close_codes: Counter[int] = field(default_factory=Counter)

    @property
    def conversation_s(self) -> float:
        return self.user_speech_s + self.agent_audio_s

    def add(self, rec: ConversationRecord) -> None:
        self.connections += 1
        self.conversations += rec.conversation_id is not None
        self.user_turns += len(rec.user_transcripts)
        self.agent_turns += len(rec.agent_turns)
        self.interruptions += len(rec.interruptions)
        self.tool_results += len(rec.tool_results)
        self.tool_errors += sum(1 for r in rec.tool_results if r.is_error)
        self.pings += rec.pings_sent
        self.pongs += len(rec.pongs)
        self.user_speech_s += speech_seconds(bytes(rec.user_audio))
        self.user_stream_s += len(rec.user_audio) / (2 * WIRE_RATE)
        self.agent_audio_s += agent_seconds(rec.sent)
        self.close_codes[rec.close_code or 0] += 1


def speech_seconds(pcm: bytes) -> float:
    """Seconds of 20 ms frames at or above the simulator's VAD threshold."""
    frame = WIRE_RATE * 20 // 1000
    samples = np.frombuffer(pcm[: len(pcm) // (2 * frame) * 2 * frame], dtype="<i2")
    if not len(samples):
        return 0.0
    levels = frame_levels_db(samples.reshape(-1, frame))
    return sum(1 for level in levels if level >= VAD_THRESHOLD_DB) * 0.020


def agent_seconds(sent: list[str]) -> float:
    """Agent audio a client must play: stale chunks dropped, an interrupted turn counted as
    what was sent before its interruption over ``audio_pace`` (the least it can have played)."""
    per_turn: dict[int, float] = {}
    interrupted: set[int] = set()
    up_to = 0
    for frame in sent:
        try:
            message = json.loads(frame)
        except ValueError:
            continue  # the junk-frames fault
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "interruption":
            up_to = message["interruption_event"]["event_id"]
            interrupted.add(up_to)
        elif kind == "audio":
            event = message["audio_event"]
            if event["event_id"] > up_to:
                seconds = len(base64.b64decode(event["audio_base_64"])) / (2 * WIRE_RATE)
                per_turn[event["event_id"]] = per_turn.get(event["event_id"], 0.0) + seconds
    return sum(s / AUDIO_PACE if turn in interrupted else s for turn, s in per_turn.items())


def speaker_seconds(path: Path) -> float:
    """Seconds of the daemon's speaker timeline that are not digital silence (20 ms frames)."""
    frame = SPEAKER_RATE * 20 // 1000
    loud = 0
    with wave.open(str(path), "rb") as wav:
        while True:
            data = wav.readframes(frame * 500)
            if not data:
                break
            samples = np.frombuffer(data[: len(data) // (2 * frame) * 2 * frame], dtype="<i2")
            loud += int(np.count_nonzero(np.any(samples.reshape(-1, frame) != 0, axis=1)))
    return loud * 0.020


# --------------------------------------------------------------------------------------------
# Fixtures


def write_speechlike_wav(path: Path, seconds: float) -> None:
    """Continuous speech-like sound (140 Hz harmonics, a 4 Hz syllable envelope, -12 to
    -30 dBFS: always above the VAD threshold), written in 10 s blocks of one repeated period."""
    period = 10.0
    t = np.arange(round(MIC_RATE * period)) / MIC_RATE
    voiced = sum(np.sin(2 * np.pi * 140 * k * t + k) / k for k in range(1, 26))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    noise = np.random.default_rng(0).standard_normal(t.size) * 0.01
    block = np.clip(np.rint((voiced * envelope / 4.0 + noise) * 16384), -32768, 32767)
    data = block.astype("<i2").tobytes()
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(MIC_RATE)
        for _ in range(math.ceil(seconds / period)):
            wav.writeframes(data)


def daemon_config(workdir: Path, sim: SimServer) -> dict[str, Any]:
    return {
        "agent": {"agent_id": AGENT_ID, "server": sim.ws_base, "api_base": sim.http_base},
        "audio": {
            "backend": "wav",
            "input": {"file": str(workdir / "mic.wav")},
            "output": {"file": str(workdir / "speaker.wav"), "rate": SPEAKER_RATE},
            "earcons": True,
        },
        "gpio": {"pin_factory": "mock"},
        "control": {"socket": str(workdir / "control.sock")},
        "session": {
            "idle_timeout": 2,
            "stall_timeout": 2,
            "connect_timeout": 5,
            "backoff_initial": 0.2,
            "backoff_max": 2,
        },
        "tools": {"commands": {"echo": {"command": ["/bin/cat"], "timeout": 5}}},
        "logging": {"level": "info", "journal": False},
    }


SOAK_AGENT = AgentDefinition(
    agent_id=AGENT_ID,
    first_message=GREETING,
    ping_interval=1.0,
    turn_end_silence_ms=200,
    audio_pace=AUDIO_PACE,
    response_timeout_secs=5.0,
)


# --------------------------------------------------------------------------------------------
# Episodes


@dataclass
class Soak:
    """Everything an episode needs, and what the episodes found."""

    daemon: Daemon
    sim: SimServer
    notify: NotifySocket
    rng: random.Random
    quick: bool
    tally: Tally = field(default_factory=Tally)
    accounted: int = 0  # records of sim.conversations already added to the tally
    faults_injected: Counter[str] = field(default_factory=Counter)
    faults_recovered: Counter[str] = field(default_factory=Counter)
    episodes: Counter[str] = field(default_factory=Counter)
    refusals: int = 0
    reloads: int = 0
    _resets: set[asyncio.Task[None]] = field(default_factory=set)  # pending scenario resets

    # -- helpers ---------------------------------------------------------------------------

    def hold(self, low: float, high: float) -> float:
        """A hold time in seconds (shorter in --quick)."""
        return round(self.rng.uniform(low, high) * (0.5 if self.quick else 1.0), 2)

    def arm(self, scenario: Scenario | None, *, once: bool = True) -> None:
        """Script the next connection; with ``once``, only that one (the next gets none).

        The reset runs on the simulator's loop as soon as the connection is accepted, before
        any reconnection can reach it, so a retried connection is never faulted twice."""
        sim = self.sim
        sim.scenario = scenario
        if not once or scenario is None:
            return
        after = len(sim.conversations) + 1

        async def reset() -> None:
            with contextlib.suppress(TimeoutError):
                await sim.wait_for_conversations(after, timeout=60)
            sim.scenario = None

        async def start_reset() -> None:
            task = asyncio.get_running_loop().create_task(reset())
            self._resets.add(task)
            task.add_done_callback(self._resets.discard)

        sim.run_coroutine(start_reset(), WAIT)

    def records_since(self, index: int) -> list[ConversationRecord]:
        return list(self.sim.conversations[index:])

    def wait_idle(self, within: float = WAIT) -> dict[str, Any]:
        """No conversation open and the state ``ready``: the idle checkpoint."""
        return self.daemon.wait_status(
            "the daemon to be idle",
            lambda s: s["state"] == "ready" and s["conversation_id"] is None,
            within,
        )

    def wait_answered(self, turns_before: int, within: float = WAIT) -> None:
        """The agent's answer to the last user turn has arrived and played out."""
        self.daemon.wait_status(
            "the agent's answer",
            lambda s: s["turns"] > turns_before and s["state"] == "ready",
            within,
        )

    def wait_conversation(self, within: float = WAIT) -> dict[str, Any]:
        return self.daemon.wait_status(
            "a conversation", lambda s: s["conversation_id"] is not None, within
        )

    def talk(self, seconds: float) -> None:
        """Press, speak for ``seconds``, release, wait for the answer to play."""
        before = self.daemon.status()["turns"]
        self.daemon.ctl("press")
        time.sleep(seconds)
        self.daemon.ctl("release")
        self.wait_answered(before)

    def type(self, text: str) -> None:
        before = self.daemon.status()["turns"]
        self.daemon.ctl("say", text)
        self.wait_answered(before)

    def hang_up(self) -> None:
        self.daemon.ctl("hangup")
        self.wait_idle()

    def answered_after(self, index: int) -> bool:
        """Whether a connection from ``index`` on got a user turn answered."""
        for rec in self.records_since(index):
            greeting = 1 if rec.settings is not None and rec.settings.first_message else 0
            if rec.user_transcripts and len(rec.agent_turns) > greeting:
                return True
        return False

    def closed_with(self, index: int, code: int) -> bool:
        """Whether connection ``index`` was closed with ``code``."""
        records = self.sim.conversations
        return len(records) > index and records[index].close_code == code

    def inject(self, fault: str) -> int:
        """Count a fault about to be injected; the index of the next simulator record."""
        self.faults_injected[fault] += 1
        return len(self.sim.conversations)

    def recovered(self, fault: str, index: int, *, reconnected: bool, proof: bool) -> None:
        """Check that the fault happened (``proof``) and that a turn was answered after it,
        on a new connection when ``reconnected``."""
        if not proof:
            raise SoakFailed(f"fault {fault!r} was not injected")
        if not self.answered_after(index + 1 if reconnected else index):
            raise SoakFailed(f"fault {fault!r}: no answered turn afterwards")
        if self.daemon.status()["state"] == "error":
            raise SoakFailed(f"fault {fault!r}: the daemon is in the error state")
        self.faults_recovered[fault] += 1

    def account(self) -> None:
        """Add every closed record to the tally and drop its audio and frames."""
        records = self.sim.conversations
        deadline = time.monotonic() + WAIT
        while any(not rec.closed for rec in records[self.accounted :]):
            if time.monotonic() > deadline:
                raise SoakFailed("a simulator connection is still open after the episode")
            time.sleep(0.05)
        for rec in records[self.accounted :]:
            self.tally.add(rec)
            rec.user_audio = bytearray()
            rec.sent = []
        self.accounted = len(records)

    # -- the episodes ----------------------------------------------------------------------

    def ep_talk(self) -> None:
        for _ in range(1 if self.quick else 3):
            self.talk(self.hold(2.0, 4.0))
        self.hang_up()

    def ep_typed(self) -> None:
        ready = self.notify.count("READY")
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.notify.wait_count("READY", ready + 1)
        self.reloads += 1
        self.type("Tell me something about the sea and the boats on it.")
        self.daemon.ctl("context", "The user is in the kitchen.")
        if not self.quick:
            self.type("And what about the weather tomorrow?")
        self.wait_idle()  # the idle hang-up

    def ep_barge_in(self) -> None:
        before = self.daemon.status()["turns"]
        self.daemon.ctl("press")
        time.sleep(self.hold(3.0, 4.0))
        self.daemon.ctl("release")
        self.daemon.wait_status("the agent to speak", lambda s: s["state"] == "speaking")
        time.sleep(0.5)
        self.daemon.ctl("press")  # barge-in: playback flushed at once, then the server agrees
        time.sleep(self.hold(1.5, 2.5))
        self.daemon.ctl("release")
        self.wait_answered(before + 1)
        self.wait_idle()

    def ep_tools(self) -> None:
        self.arm(
            Scenario.from_yaml(
                """
steps:
  - expect: user_turn
  - tool_call: {name: current_time, parameters: {timezone: UTC}, timeout: 5}
  - tool_call: {name: set_volume, parameters: {level: 70}, timeout: 5}
  - tool_call: {name: echo, parameters: {text: hello, n: 3}, timeout: 5}
  - agent_say: "All three tools answered. Goodbye."
  - end_call: true
"""
            )
        )
        index = len(self.sim.conversations)
        self.daemon.ctl("press")
        time.sleep(self.hold(1.5, 2.5))
        self.daemon.ctl("release")
        self.wait_idle()
        results = [r for rec in self.records_since(index) for r in rec.tool_results]
        if len(results) != 3 or any(r.is_error for r in results):
            raise SoakFailed(f"tools: expected 3 good results, got {results}")

    def ep_hang_up_tool(self) -> None:
        self.arm(
            Scenario.from_yaml(
                """
steps:
  - expect: user_turn
  - agent_say: "Alright, I will hang up now."
  - tool_call: {name: hang_up, timeout: 5}
"""
            )
        )
        index = len(self.sim.conversations)
        self.talk(self.hold(1.5, 2.5))
        self.wait_idle()
        rec = self.sim.conversations[index]
        self.sim.run_coroutine(rec.wait_closed(WAIT), WAIT + 5)
        if rec.close_code != 1000 or not rec.tool_results:
            raise SoakFailed(f"hang-up tool: closed {rec.close_code}, {rec.tool_results}")

    def ep_mute(self) -> None:
        before = self.daemon.status()["turns"]
        self.daemon.ctl("mute")
        self.daemon.ctl("press")
        self.wait_conversation()
        time.sleep(self.hold(1.0, 1.5))
        self.daemon.ctl("unmute")
        time.sleep(self.hold(1.5, 2.5))
        self.daemon.ctl("release")
        self.wait_answered(before)
        self.hang_up()

    def ep_close_while_held(self) -> None:
        """A server error mid-turn while the button is held: the daemon reconnects itself."""
        index = self.inject("close 1011 while held")
        self.arm(Scenario.from_yaml("steps: [{sleep: 0.5}, {close: {code: 1011, reason: soak}}]"))
        before = self.daemon.status()["turns"]
        self.daemon.ctl("press")
        time.sleep(self.hold(3.0, 4.0))
        self.daemon.ctl("release")
        self.wait_answered(before)
        self.hang_up()
        proof = self.closed_with(index, 1011)
        self.recovered("close 1011 while held", index, reconnected=True, proof=proof)

    def ep_stall(self) -> None:
        """The server stops reading and writing: stall detection, then a new connection."""
        index = self.inject("stalled server")
        stalls = self.daemon.log_lines("connection stalled")
        self.arm(Scenario.from_yaml("steps: [{sleep: 0.3}, {stall: 4}]"))
        before = self.daemon.status()["turns"]
        self.daemon.ctl("press")
        time.sleep(4.5)  # the stall is detected in 2 s; the reconnection hears the rest
        self.daemon.ctl("release")
        self.wait_answered(before)
        self.hang_up()
        proof = self.daemon.log_lines("connection stalled") > stalls
        self.recovered("stalled server", index, reconnected=True, proof=proof)

    def ep_refused(self) -> None:
        """The upgrade is refused once with 503: the daemon retries after a backoff."""
        index = self.inject("upgrade refused (503)")
        refused = self.daemon.log_lines("code 503")
        self.refusals += 1
        self.arm(
            Scenario.from_yaml(
                f"agent: {{refuse_upgrade: 503, refuse_upgrade_times: {self.refusals}}}"
            ),
            once=False,
        )
        try:
            self.talk(self.hold(1.5, 2.5))
        finally:
            self.arm(None)
        self.hang_up()
        proof = self.daemon.log_lines("code 503") > refused
        self.recovered("upgrade refused (503)", index, reconnected=False, proof=proof)

    def ep_close_at_metadata(self) -> None:
        """A 1011 close right after the metadata, while the button is held: retried."""
        index = self.inject("close 1011 after metadata")
        self.arm(Scenario.from_yaml("agent: {fault_close: {at: metadata, code: 1011}}"))
        self.talk(self.hold(1.5, 2.5))
        self.hang_up()
        proof = self.closed_with(index, 1011)
        self.recovered("close 1011 after metadata", index, reconnected=True, proof=proof)

    def ep_junk(self) -> None:
        """Frames the client must skip: not JSON, and an unknown event type."""
        index = self.inject("junk frames")
        skipped = self.daemon.log_lines("skipping malformed server message")
        self.arm(
            Scenario.from_yaml(
                """
steps:
  - send_text: "{not json"
  - send: {type: soak_unknown_event, soak_unknown_event: {n: 1}}
"""
            )
        )
        self.talk(self.hold(1.5, 2.5))
        self.hang_up()
        proof = self.daemon.log_lines("skipping malformed server message") > skipped
        self.recovered("junk frames", index, reconnected=False, proof=proof)

    def ep_close_while_idle(self) -> None:
        """A server error while nobody talks: no reconnection; the next press opens one."""
        index = self.inject("close 1011 while idle")
        self.arm(Scenario.from_yaml("steps: [{close: {code: 1011, reason: soak idle}}]"))
        self.daemon.ctl("say", "Hello?")
        self.wait_idle()
        self.talk(self.hold(1.5, 2.5))
        self.hang_up()
        proof = self.closed_with(index, 1011)
        self.recovered("close 1011 while idle", index, reconnected=True, proof=proof)

    def cycle(self) -> list[tuple[str, Callable[[], None]]]:
        episodes = [
            ("talk", self.ep_talk),
            ("typed", self.ep_typed),
            ("barge-in", self.ep_barge_in),
            ("tools", self.ep_tools),
            ("close 1011 while held", self.ep_close_while_held),
            ("hang-up tool", self.ep_hang_up_tool),
            ("stalled server", self.ep_stall),
            ("mute", self.ep_mute),
            ("upgrade refused", self.ep_refused),
            ("close 1011 after metadata", self.ep_close_at_metadata),
            ("junk frames", self.ep_junk),
            ("close 1011 while idle", self.ep_close_while_idle),
        ]
        if self.quick:
            keep = {"talk", "typed", "barge-in", "tools", "close 1011 while held"}
            episodes = [(name, run) for name, run in episodes if name in keep]
        return episodes


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class Result:
    """The figures of a run, the goals and whether each was met."""

    figures: dict[str, Any]
    goals: list[tuple[str, bool | None]]  # None: not judged (--quick)
    failure: str | None = None


@contextlib.contextmanager
def running_sim() -> Iterator[SimServer]:
    with SimServer([SOAK_AGENT]).run_in_thread() as sim:
        yield sim


def run_soak(workdir: Path, minutes: float, quick: bool, log: Callable[[str], None]) -> Result:
    target_s = minutes * 60.0
    # The microphone must outlast the run: the wall clock is about 1.2 times the conversation
    # time; the margin covers a slow machine (the soak stops, failing, when it runs out).
    mic_s = 60.0 if quick else target_s * 1.6 + 120.0
    write_speechlike_wav(workdir / "mic.wav", mic_s)
    notify = NotifySocket(workdir / "notify.sock")
    started = time.monotonic()
    checkpoints: list[tuple[float, ProcSample, str]] = []  # (conversation s, sample, after)
    fd_lists: list[list[str]] = []  # what the daemon's fds were, at each checkpoint
    failure: str | None = None
    with running_sim() as sim:
        daemon = Daemon(workdir, daemon_config(workdir, sim), notify)
        soak = Soak(daemon, sim, notify, random.Random(1), quick)
        try:
            notify.wait_count("READY", 1, within=30)
            with Sampler(daemon.pid, 0.5 if quick else SAMPLE_EVERY) as sampler:
                warm_index = 0
                cycle_no = 0
                while True:
                    cycle_no += 1
                    for name, episode in soak.cycle():
                        if time.monotonic() - started > mic_s - 30:
                            raise SoakFailed("the microphone file is about to run out")
                        episode()
                        soak.episodes[name] += 1
                        soak.wait_idle()
                        soak.account()
                        # The daemon closes its end of the last control connection just after
                        # answering: give it that moment, or it counts as one more fd.
                        time.sleep(SETTLE)
                        sample = sample_process(daemon.pid)
                        targets = fd_targets(daemon.pid)
                        if sample is None:
                            daemon.check_alive()
                            raise SoakFailed("the daemon's /proc entry is gone")
                        checkpoints.append((soak.tally.conversation_s, sample, name))
                        fd_lists.append(targets)
                        if quick and cycle_no == 1 and name == "barge-in":
                            warm_index = len(checkpoints) - 1
                    if cycle_no == 1 and not quick:
                        warm_index = len(checkpoints) - 1
                        log(f"warm-up done: {soak.tally.conversation_s:.0f} s of conversation")
                    else:
                        last = checkpoints[-1][1]
                        log(
                            f"cycle {cycle_no}: {soak.tally.conversation_s:.0f} s of "
                            f"conversation, RSS {last.rss_kb / 1024:.1f} MB, "
                            f"{last.threads} threads, {last.fds} fds"
                        )
                    if soak.tally.conversation_s >= target_s and (quick or cycle_no >= 2):
                        break
                samples = list(sampler.samples)
        except SoakFailed as exc:
            failure = str(exc)
            samples = []
        finally:
            exit_code = daemon.stop()
            notify.close()
        if failure is None and exit_code != 0:
            failure = f"the daemon exited with {exit_code} on SIGTERM"
        wall_s = time.monotonic() - started
        with contextlib.suppress(SoakFailed):
            soak.account()
    crashes = daemon.log_lines("crashed; restarting") + daemon.log_lines("Traceback")
    if failure is not None or not checkpoints:
        return Result({"wall_s": round(wall_s, 1)}, [], failure or "no checkpoint")
    result = summarize(
        soak, checkpoints, warm_index, samples, wall_s, target_s, crashes, workdir, quick
    )
    result.figures["fd_targets_warm"] = fd_lists[warm_index]
    result.figures["fd_targets_end"] = fd_lists[-1]
    return result


def machine() -> str:
    """CPU model and cores, OS, Python, websockets: where the figures were measured."""
    model = platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return (
        f"{model}, {os.cpu_count()} cores; {platform.system()} {platform.release()}; "
        f"websockets {version('websockets')}"
    )


def slope_mb_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, kB) in MB per hour."""
    if len(points) < 3:
        return None
    t = np.array([p[0] for p in points])
    y = np.array([p[1] for p in points])
    if np.ptp(t) == 0:
        return None
    slope = float(np.polyfit(t, y, 1)[0])
    return slope * 3600 / 1024


def summarize(
    soak: Soak,
    checkpoints: list[tuple[float, ProcSample, str]],
    warm_index: int,
    samples: list[ProcSample],
    wall_s: float,
    target_s: float,
    crashes: int,
    workdir: Path,
    quick: bool,
) -> Result:
    tally = soak.tally
    warm = checkpoints[warm_index][1]
    end = checkpoints[-1][1]
    after_warm = [c[1] for c in checkpoints[warm_index:]]
    growth_kb = end.rss_kb - warm.rss_kb
    mic_mb = (workdir / "mic.wav").stat().st_size / 2**20
    figures: dict[str, Any] = {
        "machine": machine(),
        "piagent": __version__,
        "python": platform.python_version(),
        "wall_s": round(wall_s, 1),
        "conversation_s": round(tally.conversation_s, 1),
        "user_speech_s": round(tally.user_speech_s, 1),
        "agent_audio_s": round(tally.agent_audio_s, 1),
        "user_stream_s": round(tally.user_stream_s, 1),
        "speaker_loud_s": round(speaker_seconds(workdir / "speaker.wav"), 1),
        "episodes": sum(soak.episodes.values()),
        "connections": tally.connections,
        "conversations": tally.conversations,
        "user_turns": tally.user_turns,
        "agent_turns": tally.agent_turns,
        "interruptions": tally.interruptions,
        "tool_results": tally.tool_results,
        "tool_errors": tally.tool_errors,
        "pings": tally.pings,
        "pongs": tally.pongs,
        "reloads": soak.reloads,
        "faults_injected": sum(soak.faults_injected.values()),
        "faults_recovered": sum(soak.faults_recovered.values()),
        "faults": {k: [v, soak.faults_recovered[k]] for k, v in soak.faults_injected.items()},
        "close_codes": dict(sorted(tally.close_codes.items())),
        "watchdog_pings": soak.notify.counts["WATCHDOG"],
        "watchdog_gap_max_s": round(soak.notify.watchdog_gap_max, 2),
        "task_crashes": crashes,
        "mic_file_mb": round(mic_mb, 1),
        "rss_warm_mb": round(warm.rss_kb / 1024, 1),
        "rss_end_mb": round(end.rss_kb / 1024, 1),
        "rss_growth_mb": round(growth_kb / 1024, 2),
        "rss_max_mb": round(max(s.rss_kb for s in [*samples, end]) / 1024, 1),
        "rss_hwm_mb": round(end.hwm_kb / 1024, 1),
        "rss_slope_mb_per_h": slope_mb_per_hour(
            [(c[0], float(c[1].rss_kb)) for c in checkpoints[warm_index:]]
        ),
        "threads_warm": warm.threads,
        "threads_end": end.threads,
        "threads_max": max(s.threads for s in [*samples, end]),
        "threads_idle_max": max(s.threads for s in after_warm),
        "fds_warm": warm.fds,
        "fds_end": end.fds,
        "fds_max": max(s.fds for s in [*samples, end]),
        "fds_idle_max": max(s.fds for s in after_warm),
        "samples": len(samples),
        "warm_up_conversation_s": round(checkpoints[warm_index][0], 1),
    }
    if figures["rss_slope_mb_per_h"] is not None:
        figures["rss_slope_mb_per_h"] = round(figures["rss_slope_mb_per_h"], 2)

    def judged(met: bool) -> bool | None:
        return None if quick else met

    goals: list[tuple[str, bool | None]] = [
        (f"conversation time >= {target_s:.0f} s", judged(tally.conversation_s >= target_s)),
        ("RSS growth after warm-up < 5 MB", judged(growth_kb < RSS_GROWTH_GOAL_KB)),
        ("threads: no growth", judged(end.threads <= warm.threads)),
        ("file descriptors: no growth", judged(end.fds <= warm.fds)),
        (
            "every fault recovered",
            sum(soak.faults_recovered.values()) == sum(soak.faults_injected.values()),
        ),
        ("no task crashed", crashes == 0),
        (
            f"watchdog never silent for {WATCHDOG_USEC / 1e6:g} s",
            soak.notify.watchdog_gap_max < WATCHDOG_USEC / 1e6,
        ),
    ]
    return Result(figures, goals)


# --------------------------------------------------------------------------------------------
# Output


ROWS: list[tuple[str, str, str]] = [
    ("machine", "machine", "{}"),
    ("versions", "piagent", "piagent {}"),
    ("wall clock", "wall_s", "{} s"),
    ("conversation time (user speech + agent audio)", "conversation_s", "{} s"),
    ("  user speech (simulator)", "user_speech_s", "{} s"),
    ("  agent audio (simulator)", "agent_audio_s", "{} s"),
    ("  user audio streamed, silence included", "user_stream_s", "{} s"),
    ("  speaker timeline not silent (agent audio, earcons)", "speaker_loud_s", "{} s"),
    ("episodes", "episodes", "{}"),
    ("connections / conversations", "connections", "{}"),
    ("user turns / agent turns", "user_turns", "{}"),
    ("interruptions", "interruptions", "{}"),
    ("tool results (errors)", "tool_results", "{}"),
    ("pings / pongs", "pings", "{}"),
    ("config reloads (SIGHUP)", "reloads", "{}"),
    ("faults injected / recovered", "faults_injected", "{}"),
    ("watchdog pings (longest gap)", "watchdog_pings", "{}"),
    ("task crashes in the log", "task_crashes", "{}"),
    ("microphone file held in memory", "mic_file_mb", "{} MB"),
    ("RSS after warm-up / at the end", "rss_warm_mb", "{} MB"),
    ("RSS growth", "rss_growth_mb", "{} MB"),
    ("RSS trend after warm-up", "rss_slope_mb_per_h", "{} MB/h"),
    ("RSS max sampled / VmHWM", "rss_max_mb", "{} MB"),
    ("threads after warm-up / at the end (max)", "threads_warm", "{}"),
    ("fds after warm-up / at the end (max)", "fds_warm", "{}"),
]

PAIRS = {
    "connections": "conversations",
    "user_turns": "agent_turns",
    "pings": "pongs",
    "faults_injected": "faults_recovered",
    "rss_warm_mb": "rss_end_mb",
    "rss_max_mb": "rss_hwm_mb",
    "watchdog_pings": "watchdog_gap_max_s",
    "tool_results": "tool_errors",
}


def render_table(result: Result) -> str:
    f = result.figures
    lines = ["| figure | value |", "|---|---|"]
    for label, key, fmt in ROWS:
        if key not in f:
            continue
        value = fmt.format(f[key])
        if key in PAIRS:
            other = f[PAIRS[key]]
            value = (
                f"{value} ({other} s)"
                if key == "watchdog_pings"
                else f"{value} ({other})"
                if key == "tool_results"
                else f"{value} / {fmt.format(other)}"
            )
        if key == "piagent":
            value += f", Python {f['python']}"
        if key == "threads_warm":
            value = f"{f['threads_warm']} / {f['threads_end']} ({f['threads_max']})"
        if key == "fds_warm":
            value = f"{f['fds_warm']} / {f['fds_end']} ({f['fds_max']})"
        lines.append(f"| {label} | {value} |")
    warm_fds, end_fds = Counter(f.get("fd_targets_warm", [])), Counter(f.get("fd_targets_end", []))
    if warm_fds != end_fds:
        added = ", ".join(sorted((end_fds - warm_fds).elements())) or "none"
        gone = ", ".join(sorted((warm_fds - end_fds).elements())) or "none"
        lines.append(f"| fds opened since warm-up / closed | {added} / {gone} |")
    for fault, (injected, recovered) in f.get("faults", {}).items():
        lines.append(f"| fault: {fault} | {injected} / {recovered} |")
    lines.append("")
    lines.append("| goal | met |")
    lines.append("|---|---|")
    for goal, met in result.goals:
        lines.append(f"| {goal} | {'-' if met is None else 'yes' if met else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes", type=float, default=30.0, help="simulated conversation minutes (30)"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (about 30 s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temp dir)")
    args = parser.parse_args(argv)
    minutes = 0.25 if args.quick else args.minutes

    def log(text: str) -> None:
        print(f"soak: {text}", file=sys.stderr, flush=True)

    with contextlib.ExitStack() as stack:
        if args.workdir is not None:
            workdir = args.workdir
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        log(f"{minutes:g} min of conversation against one daemon, files in {workdir}")
        result = run_soak(workdir, minutes, args.quick, log)
    if args.json:
        out = dataclasses.asdict(result)
        out["goals"] = [{"goal": g, "met": m} for g, m in result.goals]
        print(json.dumps(out, indent=2))
    else:
        print(render_table(result))
    if result.failure is not None:
        print(f"soak failed: {result.failure}", file=sys.stderr)
        return 2
    return 0 if all(met is not False for _, met in result.goals) else 1


if __name__ == "__main__":
    sys.exit(main())
