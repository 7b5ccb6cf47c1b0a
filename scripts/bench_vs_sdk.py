#!/usr/bin/env python3
"""piagent against the official SDK's ``Conversation``: the same scripted conversation, each in
its own process, with identically paced audio, side by side in one run.

The simulator (``SimServer`` in a thread of this process) plays one scenario to every client: a
greeting, ``N`` user turns each answered by the agent (the answer before the last one is long
and the user's last turn barges into it, so the simulator sends ``interruption``), then
``end_call``. Pings every second. Both clients hear the same microphone: one 16 kHz WAV file
holding the user's ``N`` sentences (speech-like audio synthesized from known text) at fixed
times, with digital silence between them, played in real time from the start of the
conversation, then silence. Both write what they play to a 16 kHz WAV timeline in real time,
in 20 ms periods, silence included, as a sound card would.

* piagent: ``piagent run`` with the ``wav`` backend (20 ms microphone frames), mock pins, no
  earcons, in the environment its systemd unit gives it (the unit file's ``Environment=``
  lines, ``STATE_DIRECTORY``, and ``CACHE_DIRECTORY`` holding the resampling filters, as after
  an appliance's first start) and nothing of the shell's; the bench presses the button over
  the control socket as soon as the daemon answers and holds it for the whole conversation
  (an open microphone, as the SDK has).
* SDK: this file run as a child (``--sdk-child``; it imports only the standard library and
  ``elevenlabs``) holding ``Conversation(ElevenLabs(base_url=sim), ..., audio_interface=
  WavDevice)``. ``WavDevice`` is an ``AudioInterface``: a thread feeds the same WAV in 250 ms
  chunks (4000 frames, the size ``DefaultAudioInterface`` uses) on absolute deadlines; a thread
  writes the output timeline in 20 ms periods; ``interrupt`` drops what is queued. The
  callbacks print the agent's and the user's words, as piagent logs them.

Runs alternate (piagent, SDK, piagent, SDK, ...). Figures per process, over the conversation
(from the simulator sending the metadata to the socket closing):

* CPU seconds per conversation minute: ``/proc/<pid>/stat`` utime+stime+cutime+cstime, read by
  the simulator at those two moments (and the system part alone); also the CPU spent before
  the conversation (start-up: imports, devices) and, for piagent, per minute of standby (the
  daemon up with no conversation and the button released, for 5 s from 2.5 s after its last
  answer has played: the SDK has no such state);
* peak resident memory: ``VmHWM`` once the conversation is over; threads at its end;
* the period of user audio chunks as the server sees them: arrival times of
  ``user_audio_chunk`` frames at the simulator (median and 95th percentile);
* pong latency: the simulator's ``ping_rtts_ms``;
* interruption to silence: from the simulator sending ``interruption`` to the first 30 ms of
  digital silence in the client's speaker timeline (the interrupted answer is synthesized
  without pauses, so its first silence is the flush). The timeline's start is estimated from
  the file's growth, polled every 5 ms (periods are written on deadlines, never early);
* piagent only, in a separate phase with its own daemon and a microphone that is always speech:
  press to first chunk on the wire, from sending ``press`` on the control socket (what ``piagent
  ctl press`` sends, without the interpreter's start-up) to the first non-silent chunk
  arriving at the simulator: cold (the press opens the conversation) and warm (it is open).

After each pair of runs (unless ``--only`` or ``--no-floor``), ``scripts/bench_floor.py``'s
bare clients, one asyncio-shaped as piagent is, one threaded as the SDK is: programs doing
piagent's conversation I/O (a 20 ms frame to a loopback socket and a 20 ms speaker append
with its header rewrite every period, an agent message read every 100 ms) and none of its
work. Their CPU per minute is the floor on this machine below which no client of that shape
with 20 ms chunks can go; the table gives both clients' CPU as multiples of it.

The simulator records no arrival times, so this script subclasses its ``Conversation`` (the
per-connection handler) to time ``user_audio_chunk`` frames, ``interruption`` frames and the
metadata, and to read the client's ``/proc`` figures at those moments. The tables are
markdown. Goals: piagent's CPU per conversation minute <= the SDK's; piagent's chunk period
<= a tenth of the SDK's. Exit status 1 when a goal is missed (not judged with ``--quick``),
2 when a run failed.

With ``--rig`` the same two clients are then compared on the platform rig's clocked ALSA
card (``scripts/bench_rig_vs_sdk.py``, which says how), in the same run.

    .venv/bin/python scripts/bench_vs_sdk.py [--runs N] [--turns N] [--quick] [--json] [--rig]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SAMPLE_RATE = 16_000
SDK_CHUNK_FRAMES = 4_000  # DefaultAudioInterface's frames_per_buffer: 250 ms
PERIOD_MS = 20  # speaker timeline period, both clients (piagent's WavSpeaker default)
WAIT = 20.0  # seconds: the longest any single expected event may take


# --------------------------------------------------------------------------------------------
# The SDK child: standard library and elevenlabs only (no numpy, no piagent), so its CPU and
# memory are the SDK's own.


def read_pcm(path: str) -> bytes:
    with wave.open(path, "rb") as wav:
        if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (1, 2, SAMPLE_RATE):
            raise SystemExit(f"{path}: need 16-bit mono {SAMPLE_RATE} Hz")
        return wav.readframes(wav.getnframes())


def sdk_child(*args: str, limit: float) -> int:
    """Hold one conversation with the SDK (``args``: base URL, agent id, microphone WAV,
    speaker WAV); print a JSON line; return when stdin says so."""
    base_url, agent_id, mic, speaker = args
    import warnings

    with warnings.catch_warnings():
        # elevenlabs 2.78.0 touches deprecated websockets names at import (see the SDK test).
        warnings.simplefilter("ignore", DeprecationWarning)
        from elevenlabs.client import ElevenLabs
        from elevenlabs.conversational_ai.conversation import AudioInterface, Conversation

    class WavDevice(AudioInterface):
        """The SDK's audio device: the WAV microphone in 250 ms chunks, a 20 ms timeline."""

        def __init__(self, mic_pcm: bytes, speaker_path: str) -> None:
            self._mic = mic_pcm
            self._speaker_path = speaker_path
            self._lock = threading.Lock()
            self._queued = bytearray()
            self._stop = threading.Event()
            self._threads: list[threading.Thread] = []
            self.speaker_start: float | None = None
            self.interrupts = 0

        def start(self, input_callback: Callable[[bytes], None]) -> None:
            for target, name in ((self._capture, "wav-mic"), (self._play, "wav-speaker")):
                thread = threading.Thread(
                    target=target, args=(input_callback,), name=name, daemon=True
                )
                self._threads.append(thread)
                thread.start()

        def _capture(self, input_callback: Callable[[bytes], None]) -> None:
            size = 2 * SDK_CHUNK_FRAMES
            period = SDK_CHUNK_FRAMES / SAMPLE_RATE
            start = time.monotonic()
            k = 0
            # Chunk k is delivered once captured, at start + (k + 1) * period, as piagent's
            # WavMicrophone delivers its frames.
            while not self._stop.wait(max(0.0, start + (k + 1) * period - time.monotonic())):
                chunk = self._mic[k * size : (k + 1) * size]
                input_callback(chunk + bytes(size - len(chunk)))
                k += 1

        def _play(self, _: object) -> None:
            size = 2 * SAMPLE_RATE * PERIOD_MS // 1000
            period = PERIOD_MS / 1000
            with wave.open(self._speaker_path, "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(SAMPLE_RATE)
                start = self.speaker_start = time.monotonic()
                k = 0
                while not self._stop.is_set():
                    # Every period whose deadline has passed is written (period k at
                    # start + k * period), as piagent's WavSpeaker writes its timeline.
                    due = int((time.monotonic() - start) / period) + 1
                    with self._lock:
                        want = (due - k) * size
                        data = bytes(self._queued[:want])
                        del self._queued[:want]
                    out.writeframes(data + bytes(want - len(data)))
                    k = due
                    self._stop.wait(max(0.0, start + k * period - time.monotonic()))

        def output(self, audio: bytes) -> None:
            with self._lock:
                self._queued.extend(audio)

        def interrupt(self) -> None:
            with self._lock:
                self._queued.clear()
                self.interrupts += 1

        def stop(self) -> None:
            self._stop.set()
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join(5)

    device = WavDevice(read_pcm(mic), speaker)
    conversation = Conversation(
        ElevenLabs(base_url=base_url, api_key=None),
        agent_id,
        requires_auth=False,
        audio_interface=device,
        callback_agent_response=lambda text: print(f"agent: {text}", file=sys.stderr),
        callback_user_transcript=lambda text: print(f"user: {text}", file=sys.stderr),
    )
    timer = threading.Timer(limit, conversation.end_session)
    timer.daemon = True
    timer.start()
    conversation.start_session()  # type: ignore[no-untyped-call]
    conversation_id = conversation.wait_for_session_end()
    timer.cancel()
    print(
        json.dumps(
            {
                "conversation_id": conversation_id,
                "speaker_start": device.speaker_start,
                "interrupts": device.interrupts,
            }
        ),
        flush=True,
    )
    sys.stdin.readline()  # the parent reads /proc first
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--sdk-child"]:
    sys.exit(sdk_child(*sys.argv[2:6], limit=float(sys.argv[6])))


# --------------------------------------------------------------------------------------------
# The parent: the simulator, both clients, the figures.

import collections  # noqa: E402 - the child must not import what follows
import contextlib  # noqa: E402
import io  # noqa: E402
import itertools  # noqa: E402
import platform  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from importlib.metadata import version  # noqa: E402

import bench_floor  # noqa: E402 - beside this script
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from bench_idle import unit_environment  # noqa: E402 - beside this script

import piagent.sim.server  # noqa: E402
from piagent import __version__  # noqa: E402
from piagent.audio.wavio import PARK_AFTER_S  # noqa: E402
from piagent.control import run_ctl  # noqa: E402
from piagent.sim.agent import AgentDefinition  # noqa: E402
from piagent.sim.conversation import Conversation  # noqa: E402
from piagent.sim.record import ConversationRecord  # noqa: E402
from piagent.sim.scenario import AgentSay, EndCall, ExpectUserTurn, Scenario, Step  # noqa: E402
from piagent.sim.server import SimServer  # noqa: E402
from piagent.sim.voice import PREMADE_VOICES, synthesize  # noqa: E402

AGENT_VOICE = AgentDefinition().voice_id
USER_VOICE = PREMADE_VOICES[1].voice_id  # Adam: the user sounds unlike the agent
GREETING = "Hello, ask me anything."
TURN_END_SILENCE_MS = 400  # longer than the longest pause inside a synthesized sentence
BARGE_IN_AFTER = 1.2  # seconds into the long answer when the user's last turn starts
GAP = 1.5  # seconds of silence between an answer's end and the next sentence
USER_SENTENCES = [
    "What is the weather like today?",
    "Can you tell me a joke?",
    "How far away is the moon?",
    "Who wrote the first novel?",
    "Set a timer for ten minutes.",
    "What should I cook tonight?",
    "Thank you, that is all.",
]
# The answer that is interrupted: letters only, so its audio has no pause to mistake for the
# silence of the flush.
LONG_ANSWER = "Welllletmetellyouaboutthelonghistoryofthisfineoldharbourtown"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchFailed(Exception):
    """A run did not complete (exit 2)."""


def cpu_seconds(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of ``pid``, waited-for children included (utime + cutime,
    stime + cstime); None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14-17.
    utime, stime, cutime, cstime = (int(fields[i]) for i in range(11, 15))
    return (utime + cutime) / CLK_TCK, (stime + cstime) / CLK_TCK


def thread_stats(pid: int) -> dict[int, tuple[float, int]]:
    """Per thread of ``pid`` (by thread id): (CPU seconds, context switches, voluntary and
    not: its wake-ups); empty once it is gone. Native threads count as Python's do."""
    out: dict[int, tuple[float, int]] = {}
    try:
        tids = [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]
    except (FileNotFoundError, ProcessLookupError):
        return out
    for tid in tids:
        base = f"/proc/{pid}/task/{tid}"
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # the thread ended
            with open(f"{base}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
            with open(f"{base}/status") as status:
                switches = sum(int(line.split()[1]) for line in status if "ctxt_switches:" in line)
            out[tid] = ((int(fields[11]) + int(fields[12])) / CLK_TCK, switches)
    return out


def proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with (
        contextlib.suppress(FileNotFoundError, ProcessLookupError),
        open(f"/proc/{pid}/status") as status,
    ):
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "Threads"):
                out[key] = int(value.split()[0])
    return out


# --------------------------------------------------------------------------------------------
# Timing the simulator's side


@dataclass
class Timeline:
    """What the simulator saw of one connection, on the monotonic clock (shared by all
    processes here: asyncio's loop time is ``time.monotonic``)."""

    pid: int | None
    chunk_times: list[float] = field(default_factory=list)
    onsets: list[float] = field(default_factory=list)  # non-silent chunks after silence
    interruptions: list[float] = field(default_factory=list)
    metadata_at: float | None = None
    closed_at: float | None = None
    cpu_at_metadata: tuple[float, float] | None = None  # (user, system) seconds
    cpu_at_close: tuple[float, float] | None = None
    threads_at_close: int | None = None
    threads_at_metadata: dict[int, tuple[float, int]] = field(default_factory=dict)
    threads_by_close: dict[int, tuple[float, int]] = field(default_factory=dict)
    _silent: bool = True


TIMELINES: dict[int, Timeline] = {}  # id(record) -> its timeline
CLIENT_PID: list[int | None] = [None]  # the process whose /proc the next connections read
SECTIONS_PIDS: set[int] = set()  # daemons under scripts/daemon_costs.py: signalled at both ends


def snapshot_sections(pid: int | None) -> None:
    """Ask a daemon timed by ``scripts/daemon_costs.py`` for its running totals."""
    if pid in SECTIONS_PIDS:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1)


class TimedConversation(Conversation):
    """The simulator's per-connection handler, plus the timestamps this bench needs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeline = Timeline(CLIENT_PID[0])
        TIMELINES[id(self.record)] = self.timeline

    async def _send_text(self, text: str) -> None:
        timeline = self.timeline
        if text.startswith('{"type":"conversation_initiation_metadata"'):
            timeline.metadata_at = time.monotonic()
            if timeline.pid is not None:
                timeline.cpu_at_metadata = cpu_seconds(timeline.pid)
                timeline.threads_at_metadata = thread_stats(timeline.pid)
                snapshot_sections(timeline.pid)
        elif text.startswith('{"type":"interruption"'):
            timeline.interruptions.append(time.monotonic())
        await super()._send_text(text)

    async def _receive_audio(self, audio: bytes, now: float) -> None:
        timeline = self.timeline
        timeline.chunk_times.append(now)
        silent = not any(audio)
        if timeline._silent and not silent:
            timeline.onsets.append(now)
        timeline._silent = silent
        await super()._receive_audio(audio, now)

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            timeline = self.timeline
            timeline.closed_at = time.monotonic()
            if timeline.pid is not None:
                timeline.cpu_at_close = cpu_seconds(timeline.pid)
                timeline.threads_by_close = thread_stats(timeline.pid)
                snapshot_sections(timeline.pid)
                timeline.threads_at_close = proc_status(timeline.pid).get("Threads")


piagent.sim.server.Conversation = TimedConversation  # type: ignore[attr-defined]


class FileGrowth:
    """Polls a timeline WAV's size every 5 ms: the latest estimate of when its sample 0 played.

    A writer of ``PERIOD_MS`` periods on deadlines has written ``n`` periods by ``t`` only if
    ``t >= start + (n - 1) * period``; so ``start <= t - (n - 1) * period`` at every look, and
    the smallest such bound is the estimate (late writes only loosen a bound)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="file-growth", daemon=True)

    def __enter__(self) -> FileGrowth:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        per_period = 2 * SAMPLE_RATE * PERIOD_MS // 1000
        while not self._stop.wait(0.005):
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                continue
            now = time.monotonic()
            periods = (size - 44) // per_period
            if periods >= 1:
                bound = now - (periods - 1) * PERIOD_MS / 1000
                if self.start is None or bound < self.start:
                    self.start = bound


def silence_after(
    path: Path, start: float, at: float, min_ms: int = 30, look_back_s: float = 0.2
) -> float | None:
    """When the timeline in ``path`` (sample 0 at ``start``) first went digitally silent for
    ``min_ms`` at or after ``at - look_back_s``; None if it never did or was silent already."""
    with wave.open(str(path), "rb") as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    first = max(0, round((at - look_back_s - start) * SAMPLE_RATE))
    run = SAMPLE_RATE * min_ms // 1000
    loud = samples[first:] != 0
    if not loud[: SAMPLE_RATE // 100].any():
        return None  # nothing was playing: no interruption to measure
    quiet = np.flatnonzero(np.convolve(~loud, np.ones(run, dtype=int), "valid") == run)
    if not len(quiet):
        return None
    return start + (first + int(quiet[0])) / SAMPLE_RATE


# --------------------------------------------------------------------------------------------
# The script


@dataclass(frozen=True)
class Script:
    """The scenario and the microphone that go together."""

    scenario: Scenario
    mic: bytes  # 16 kHz pcm16
    turns: int
    seconds: float  # the microphone's planned length


def duration(text: str, voice: str) -> float:
    speech = synthesize(text, SAMPLE_RATE, voice)
    return len(speech.samples) / SAMPLE_RATE


def make_script(turns: int) -> Script:
    """Greeting, ``turns`` user sentences with their answers; the last sentence barges into
    the long answer before it; end_call."""
    if not 2 <= turns <= len(USER_SENTENCES):
        raise SystemExit(f"--turns must be between 2 and {len(USER_SENTENCES)}")
    sentences = [*USER_SENTENCES[: turns - 1], USER_SENTENCES[-1]]
    answers = [f"Answer {i + 1}: noted, {text.lower()}" for i, text in enumerate(sentences)]
    answers[-2] = LONG_ANSWER
    steps: list[Step] = []
    for answer in answers:
        steps += [ExpectUserTurn(30.0), AgentSay(answer)]
    steps.append(EndCall())
    scenario = Scenario(
        {
            "first_message": GREETING,
            "ping_interval": 1.0,
            "turn_end_silence_ms": TURN_END_SILENCE_MS,
        },
        tuple(steps),
    )
    pieces: list[tuple[float, np.ndarray[Any, Any]]] = []
    at_s = duration(GREETING, AGENT_VOICE) + GAP
    for i, sentence in enumerate(sentences):
        speech = synthesize(sentence, SAMPLE_RATE, USER_VOICE).samples
        pieces.append((at_s, speech))
        end = at_s + len(speech) / SAMPLE_RATE + TURN_END_SILENCE_MS / 1000
        if i == len(sentences) - 2:
            at_s = end + BARGE_IN_AFTER  # the last sentence barges into this answer
        else:
            at_s = end + duration(answers[i], AGENT_VOICE) + GAP
    total = at_s + 2.0
    mic = np.zeros(round(total * SAMPLE_RATE), dtype="<i2")
    for at, speech in pieces:
        first = round(at * SAMPLE_RATE)
        mic[first : first + len(speech)] = speech
    return Script(scenario, mic.tobytes(), turns, total)


def write_wav(path: Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm)


def continuous_speech(seconds: float) -> bytes:
    """Voiced sound with no pause at all, for the press phase (every press is speech)."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    voiced = sum(np.sin(2 * np.pi * 140 * k * t + k) / k for k in range(1, 40))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    return np.clip(np.rint(voiced * envelope * 4000), -32768, 32767).astype("<i2").tobytes()


# --------------------------------------------------------------------------------------------
# The clients


FILTER_CACHE: list[Path | None] = [None]  # the daemons' CacheDirectory=, filters made once


class PiagentDaemon:
    """``piagent run`` (WAV backend) in a work directory, driven over its control socket."""

    def __init__(
        self, workdir: Path, sim: SimServer, mic: Path, agent_id: str, costs: Path | None = None
    ) -> None:
        self.workdir = workdir
        self.socket = workdir / "control.sock"
        self.speaker = workdir / "speaker.wav"
        config = {
            "agent": {"agent_id": agent_id, "server": sim.ws_base, "api_base": sim.http_base},
            "audio": {
                "backend": "wav",
                "input": {"file": str(mic)},
                "output": {"file": str(self.speaker), "rate": SAMPLE_RATE},
                "earcons": False,
            },
            "gpio": {"pin_factory": "mock"},
            "control": {"socket": str(self.socket)},
            "session": {"idle_timeout": 60},
            "logging": {"journal": False},
        }
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        # What the unit gives the daemon: its Environment= lines and the directories systemd
        # makes for StateDirectory= and CacheDirectory= (the filters are there, as after the
        # appliance's first start), nothing of this shell's.
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
        env.update(unit_environment())
        env["STATE_DIRECTORY"] = str(workdir / "state")
        if FILTER_CACHE[0] is not None:
            env["CACHE_DIRECTORY"] = str(FILTER_CACHE[0])
        self.log = open(workdir / "daemon.log", "wb")  # noqa: SIM115 - closed in stop()
        # With ``costs``, the same daemon with its hot paths timed (scripts/daemon_costs.py).
        runner = ["-m", "piagent"] if costs is None else [str(DAEMON_COSTS), str(costs)]
        self.proc = subprocess.Popen(
            [sys.executable, *runner, "run", "--config", str(workdir / "config.yaml")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def ctl(self, *words: str) -> str:
        if self.proc.poll() is not None:
            raise BenchFailed(f"piagent exited with {self.proc.returncode}")
        out, err = io.StringIO(), io.StringIO()
        code = run_ctl(self.socket, list(words), stdout=out, stderr=err, timeout=10.0)
        if code != 0:
            raise BenchFailed(f"ctl {' '.join(words)}: exit {code}: {err.getvalue().strip()}")
        return out.getvalue()

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = json.loads(self.ctl("status", "--json"))
        return status

    def wait_ready(self) -> None:
        """Poll the control socket every 10 ms until the daemon answers ``ready``."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchFailed(f"piagent exited with {self.proc.returncode}")
            if self.socket.exists():
                with contextlib.suppress(BenchFailed):
                    if self.status()["state"] == "ready":
                        return
            time.sleep(0.01)
        raise BenchFailed("piagent did not become ready in 30 s")

    def wait_status(self, what: str, predicate: Callable[[dict[str, Any]], bool]) -> None:
        deadline = time.monotonic() + WAIT
        while not predicate(status := self.status()):
            if time.monotonic() > deadline:
                raise BenchFailed(f"timed out waiting for {what}: {status}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def wait_record(sim: SimServer, index: int, within: float) -> ConversationRecord:
    """The ``index``-th connection, once it has closed."""
    deadline = time.monotonic() + within
    while len(sim.conversations) <= index or not sim.conversations[index].closed:
        if time.monotonic() > deadline:
            raise BenchFailed(f"conversation {index} did not end within {within:g} s")
        time.sleep(0.02)
    return sim.conversations[index]


@dataclass
class Run:
    """One client's figures for one conversation."""

    client: str
    conversation_s: float
    cpu_s: float
    cpu_system_s: float
    startup_cpu_s: float
    hwm_mb: float
    threads: int | None
    chunk_ms_median: float
    chunk_ms_p95: float
    chunks: int
    pong_ms_median: float | None
    pong_ms_max: float | None
    interruption_to_silence_ms: float | None
    user_turns: int
    agent_turns: int
    interruptions: int
    close_code: int | None
    speaker_start_error_ms: float | None = None  # SDK only: FileGrowth's estimate vs the truth
    idle_cpu_per_minute: float | None = None  # piagent only: the daemon up, no conversation
    main_thread_cpu_s: float = 0.0  # of cpu_s: the main thread's (piagent's event loop)
    wakeups: int = 0  # context switches of all threads over the conversation
    profile: dict[str, float] | None = None  # --profile: share of samples per cost
    sections: dict[str, tuple[float, float, float]] | None = None  # --sections: see section_costs

    @property
    def cpu_per_minute(self) -> float:
        return self.cpu_s / (self.conversation_s / 60)

    def per_minute(self, seconds: float) -> float:
        return seconds / (self.conversation_s / 60)


def figures(
    client: str, rec: ConversationRecord, hwm_kb: int, speaker: Path, start: float | None
) -> Run:
    timeline = TIMELINES[id(rec)]
    if None in (timeline.metadata_at, timeline.closed_at, timeline.cpu_at_metadata) or (
        timeline.cpu_at_close is None
    ):
        raise BenchFailed(f"{client}: the conversation was not timed: {timeline}")
    assert timeline.metadata_at is not None and timeline.closed_at is not None
    assert timeline.cpu_at_metadata is not None
    times = [t for t in timeline.chunk_times if t <= timeline.closed_at]
    gaps_ms = sorted(1000 * (b - a) for a, b in itertools.pairwise(times))
    if not gaps_ms:
        raise BenchFailed(f"{client}: no user audio arrived")
    silence_ms = None
    if timeline.interruptions and start is not None:
        at = timeline.interruptions[0]
        silent = silence_after(speaker, start, at)
        silence_ms = None if silent is None else 1000 * (silent - at)
    rtts = rec.ping_rtts_ms
    before, after = timeline.threads_at_metadata, timeline.threads_by_close
    main_before, main_after = before.get(timeline.pid or 0), after.get(timeline.pid or 0)
    wakeups = sum(s - before.get(tid, (0.0, 0))[1] for tid, (_, s) in after.items())
    return Run(
        main_thread_cpu_s=(
            main_after[0] - main_before[0] if main_before and main_after else float("nan")
        ),
        wakeups=wakeups,
        client=client,
        conversation_s=timeline.closed_at - timeline.metadata_at,
        cpu_s=sum(timeline.cpu_at_close) - sum(timeline.cpu_at_metadata),
        cpu_system_s=timeline.cpu_at_close[1] - timeline.cpu_at_metadata[1],
        startup_cpu_s=sum(timeline.cpu_at_metadata),
        hwm_mb=hwm_kb / 1024,
        threads=timeline.threads_at_close,
        chunk_ms_median=statistics.median(gaps_ms),
        chunk_ms_p95=gaps_ms[min(len(gaps_ms) - 1, int(0.95 * len(gaps_ms)))],
        chunks=len(times),
        pong_ms_median=statistics.median(rtts) if rtts else None,
        pong_ms_max=max(rtts) if rtts else None,
        interruption_to_silence_ms=silence_ms,
        user_turns=len(rec.user_transcripts),
        agent_turns=len(rec.agent_turns),
        interruptions=len(rec.interruptions),
        close_code=rec.close_code,
    )


EPOLL_WAIT = "in epoll_wait: woken, in the kernel or waiting for a core"
# --profile: what the innermost frame of a sample belongs to names its cost (the first match;
# a C function counts where it was called from, so numpy called by piagent's code counts there).
PROFILE_COSTS = (
    ("JSON", ("json/",)),
    ("base64", ("base64.py",)),
    ("numpy", ("numpy/",)),
    ("logging", ("logging/",)),
    ("websockets (framing, parsing)", ("websockets/",)),
    (EPOLL_WAIT, ("EpollSelector.select",)),
    ("socket writes and reads (sendto, recv)", ("_SelectorSocketTransport.write", "_read_ready")),
    ("event loop (asyncio's Python: timers, handles, tasks)", ("asyncio/", "selectors.py")),
)


def profile_costs(raw: Path) -> dict[str, float]:
    """Shares of the busy samples in a ``py-spy record --format raw --threads`` file, by cost:
    ``PROFILE_COSTS``, piagent's modules by name, other threads by thread name."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0].partition(": ")[2] or frames[0]
        if thread != "MainThread":
            counts[f"thread {thread}"] += int(count)
            continue
        innermost = frames[-1]
        cost = next((c for c, marks in PROFILE_COSTS if any(m in innermost for m in marks)), None)
        if cost is None and "piagent/" in innermost:
            where = innermost.rpartition("piagent/")[2].partition(":")[0]
            cost = "piagent " + where.removesuffix(".py").replace("/", ".")
        if cost is None:
            where = innermost.partition(" (")[2].partition(":")[0]
            cost = f"other ({where})" if where else "other"
        counts[cost] += int(count)
    total = sum(counts.values()) or 1
    return {cost: n / total for cost, n in counts.most_common()}


def profile_table(profiles: list[dict[str, float]]) -> list[str]:
    """Markdown: the mean share of each cost over ``profiles``. Samples in epoll_wait are
    set apart: there the thread was woken and waiting for a core, or in the kernel, which the
    CPU figures (system time) count; the table's shares are of the rest."""
    costs = {c for profile in profiles for c in profile}
    shares = {c: statistics.mean(profile.get(c, 0.0) for profile in profiles) for c in costs}
    waiting = shares.pop(EPOLL_WAIT, 0.0)
    lines = [
        f"| where piagent's Python time went (py-spy, {len(profiles)} runs; "
        f"{100 * waiting:.0f} % of busy samples were in epoll_wait, left out) | share |",
        "|---|---|",
    ]
    rest = sum(shares.values()) or 1.0
    for cost, share in sorted(shares.items(), key=lambda item: -item[1]):
        if share / rest >= 0.005:
            lines.append(f"| {cost} | {100 * share / rest:.1f} % |")
    return lines


PY_SPY = Path(sys.executable).with_name("py-spy")


@contextlib.contextmanager
def py_spy(pid: int, raw: Path | None) -> Iterator[None]:
    """``py-spy record`` on ``pid`` while the block runs (nothing when ``raw`` is None): 100
    samples a second, without stopping the process, idle samples left out."""
    if raw is None:
        yield
        return
    spy = subprocess.Popen(
        [
            str(PY_SPY),
            *("record", "--nonblocking", "--threads", "--rate", "100", "--format", "raw"),
            *("--output", str(raw), "--pid", str(pid)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
        spy.wait(30)


def run_piagent(
    sim: SimServer,
    workdir: Path,
    mic: Path,
    script: Script,
    idle_s: float = 5.0,
    profile: Path | None = None,
    sections: bool = False,
) -> Run:
    """One conversation; then ``idle_s`` seconds with none, for the daemon's standby cost;
    with ``profile`` (a directory), py-spy samples the daemon during the conversation; with
    ``sections``, the daemon's hot paths are timed in place (``section_costs``)."""
    index = len(sim.conversations)
    costs = workdir / "costs" if sections else None
    daemon = PiagentDaemon(workdir, sim, mic, "bench", costs)
    if sections:
        SECTIONS_PIDS.add(daemon.proc.pid)
    raw = profile / f"py-spy-{workdir.name}.txt" if profile else None
    if profile:
        profile.mkdir(parents=True, exist_ok=True)
    try:
        CLIENT_PID[0] = daemon.proc.pid
        daemon.wait_ready()
        with FileGrowth(daemon.speaker) as growth, py_spy(daemon.proc.pid, raw):
            daemon.ctl("press")  # held for the whole conversation: an open microphone
            rec = wait_record(sim, index, script.seconds + 30)
            status = proc_status(daemon.proc.pid)
        run = figures("piagent", rec, status.get("VmHWM", 0), daemon.speaker, growth.start)
        if raw is not None:
            run.profile = profile_costs(raw)
        if costs is not None:
            run.sections = section_costs(costs, run.conversation_s / 60)
        # Standby as a user leaves it: the button let go (the microphone then rests), the
        # last answer played out, and the speaker rested after its PARK_AFTER_S of silence.
        daemon.ctl("release")
        daemon.wait_status("standby", lambda status: status.get("state") == "ready")
        time.sleep(PARK_AFTER_S + 0.5)
        before = cpu_seconds(daemon.proc.pid)
        time.sleep(idle_s)
        after = cpu_seconds(daemon.proc.pid)
        if before is not None and after is not None:
            run.idle_cpu_per_minute = (sum(after) - sum(before)) / (idle_s / 60)
        return run
    finally:
        CLIENT_PID[0] = None
        SECTIONS_PIDS.discard(daemon.proc.pid)
        daemon.stop()


DAEMON_COSTS = Path(__file__).resolve().with_name("daemon_costs.py")
REST = "the rest: waking up, the event loop's own work, timers"
MAIN = "the main thread in all"


def section_costs(costs: Path, minutes: float) -> dict[str, tuple[float, float, float]]:
    """Per section of ``scripts/daemon_costs.py`` over the conversation (its two snapshots):
    (CPU seconds per conversation minute, calls per second, microseconds per call); plus the
    whole main thread, and the rest of it, outside the tick and the downlink."""
    snaps = [Path(f"{costs}.{n}.json") for n in (1, 2)]
    deadline = time.monotonic() + 5
    while not all(snap.exists() for snap in snaps):
        if time.monotonic() > deadline:
            raise BenchFailed(f"no section snapshots from the daemon: {snaps}")
        time.sleep(0.05)
    time.sleep(0.05)  # the second one is written whole
    first, second = (json.loads(snap.read_text()) for snap in snaps)
    out: dict[str, tuple[float, float, float]] = {}
    for name, (ns, calls) in second["sections"].items():
        d_ns, d_calls = ns - first["sections"][name][0], calls - first["sections"][name][1]
        per_call = d_ns / d_calls / 1000 if d_calls else 0.0
        out[name] = (d_ns / 1e9 / minutes, d_calls / (minutes * 60), per_call)
    main = (second["main_thread_ns"] - first["main_thread_ns"]) / 1e9 / minutes
    out[MAIN] = (main, 0.0, 0.0)
    tops = out["tick"][0] + out["downlink: read and handle"][0]
    out[REST] = (main - tops, 0.0, 0.0)
    return out


def sections_table(runs: list[Run]) -> list[str]:
    """Markdown: the medians over ``runs`` of each section, nested as daemon_costs.py says."""
    sys.path.insert(0, str(DAEMON_COSTS.parent))
    from daemon_costs import SECTIONS

    parents = {name: parent for name, *_, parent in SECTIONS}
    names = [MAIN, *parents, REST]

    def depth(name: str) -> int:
        return 0 if not parents.get(name) else 1 + depth(parents[name])

    lines = [
        f"| where piagent's main thread spent the conversation (thread CPU time, in place, "
        f"medians of {len(runs)}) | CPU-s per minute | calls per second | us per call |",
        "|---|---|---|---|",
    ]
    for name in names:
        cpu, rate, per_call = (
            statistics.median((r.sections or {})[name][i] for r in runs) for i in range(3)
        )
        label = "&nbsp;&nbsp;" * depth(name) + name
        calls = f"{rate:.1f} | {per_call:.0f}" if rate else "| "
        lines.append(f"| {label} | {cpu:.3f} | {calls} |")
    return lines


def run_sdk(sim: SimServer, workdir: Path, mic: Path, script: Script) -> Run:
    index = len(sim.conversations)
    speaker = workdir / "speaker.wav"
    limit = script.seconds + 30
    with open(workdir / "sdk.log", "wb") as log:
        child = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--sdk-child",
                sim.ws_base,
                "bench",
                str(mic),
                str(speaker),
                str(limit),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        CLIENT_PID[0] = child.pid
        try:
            with FileGrowth(speaker) as growth:
                rec = wait_record(sim, index, limit + 10)
                assert child.stdout is not None and child.stdin is not None
                # The child's summary, printed once its session has ended.
                if not select.select([child.stdout], [], [], WAIT)[0]:
                    raise BenchFailed("the SDK child did not finish its session")
                line = child.stdout.readline()
                status = proc_status(child.pid)
            child.stdin.write(b"\n")
            child.stdin.flush()
            if child.wait(WAIT) != 0:
                raise BenchFailed(f"the SDK child exited with {child.returncode}")
            summary = json.loads(line or b"{}")
            run = figures("sdk", rec, status.get("VmHWM", 0), speaker, growth.start)
            run.speaker_start_error_ms = (
                None
                if growth.start is None or summary.get("speaker_start") is None
                else 1000 * (growth.start - summary["speaker_start"])
            )
            return run
        finally:
            CLIENT_PID[0] = None
            if child.poll() is None:
                child.kill()
                child.wait(5)


def answered(turns: int) -> Callable[[dict[str, Any]], bool]:
    """A status predicate: an answer after ``turns`` has played out."""
    return lambda status: status["turns"] > turns and status["state"] == "ready"


def press_phase(workdir: Path, rounds: int) -> dict[str, list[float]]:
    """Cold and warm press-to-first-chunk latencies of piagent, in ms."""
    mic = workdir / "speech.wav"
    write_wav(mic, continuous_speech(rounds * 12 + 30))
    agent = AgentDefinition(
        agent_id="press", first_message="", ping_interval=1.0, turn_end_silence_ms=200
    )
    cold: list[float] = []
    warm: list[float] = []
    with SimServer([agent]).run_in_thread() as sim:
        daemon = PiagentDaemon(workdir, sim, mic, "press")
        try:
            daemon.wait_ready()
            for _ in range(rounds):
                index = len(sim.conversations)
                for latencies in (cold, warm):
                    turns = daemon.status()["turns"]
                    pressed = time.monotonic()
                    daemon.ctl("press")
                    deadline = pressed + WAIT
                    while True:
                        if len(sim.conversations) > index:
                            onsets = TIMELINES[id(sim.conversations[index])].onsets
                            after = [t for t in onsets if t >= pressed]
                            if after:
                                latencies.append(1000 * (after[0] - pressed))
                                break
                        if time.monotonic() > deadline:
                            raise BenchFailed("press: no speech reached the simulator")
                        time.sleep(0.005)
                    time.sleep(1.0)
                    daemon.ctl("release")
                    daemon.wait_status("the answer", answered(turns))
                daemon.ctl("hangup")
                daemon.wait_status("idle", lambda s: s["conversation_id"] is None)
        finally:
            daemon.stop()
    return {"cold": cold, "warm": warm}


# --------------------------------------------------------------------------------------------
# Output


def machine() -> dict[str, str]:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    system = platform.platform()
    with contextlib.suppress(OSError), open("/etc/os-release") as release:
        for line in release:
            if line.startswith("PRETTY_NAME="):
                system = line.partition("=")[2].strip().strip('"') + f", {platform.release()}"
    return {
        "cpu": f"{model}, {os.cpu_count()} cores",
        "os": system,
        "python": platform.python_version(),
        "piagent": __version__,
        "elevenlabs": version("elevenlabs"),
        "websockets": version("websockets"),
    }


def median_of(runs: list[Run], key: Callable[[Run], float | None]) -> float | None:
    values = [v for v in map(key, runs) if v is not None]
    return statistics.median(values) if values else None


ROWS: list[tuple[str, Callable[[Run], float | None], str]] = [
    ("CPU s per conversation minute", lambda r: r.cpu_per_minute, "{:.2f}"),
    ("  of which system (kernel)", lambda r: r.per_minute(r.cpu_system_s), "{:.2f}"),
    ("  of which the main thread", lambda r: r.per_minute(r.main_thread_cpu_s), "{:.2f}"),
    (
        "  of which other threads (native ones too)",
        lambda r: r.per_minute(max(0.0, r.cpu_s - r.main_thread_cpu_s)),  # 10 ms ticks
        "{:.2f}",
    ),
    ("wake-ups (context switches) per second", lambda r: r.wakeups / r.conversation_s, "{:.0f}"),
    # /proc counts in clock ticks (10 ms): over 5 s of standby this row moves in 0.12 steps;
    # scripts/bench_idle.py measures standby finely.
    (
        "CPU s per minute idle (released, no conversation)",
        lambda r: r.idle_cpu_per_minute,
        "{:.2f}",
    ),
    ("CPU s before the conversation (start-up)", lambda r: r.startup_cpu_s, "{:.2f}"),
    ("peak RSS (VmHWM), MB", lambda r: r.hwm_mb, "{:.1f}"),
    ("threads at the end", lambda r: r.threads, "{:.0f}"),
    ("user chunk period, median ms", lambda r: r.chunk_ms_median, "{:.1f}"),
    ("user chunk period, p95 ms", lambda r: r.chunk_ms_p95, "{:.1f}"),
    ("pong latency, median ms", lambda r: r.pong_ms_median, "{:.1f}"),
    ("pong latency, max ms", lambda r: r.pong_ms_max, "{:.0f}"),
    ("interruption to silence, ms", lambda r: r.interruption_to_silence_ms, "{:.1f}"),
    ("conversation length, s", lambda r: r.conversation_s, "{:.1f}"),
]


def fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def report(
    info: dict[str, str],
    runs: list[Run],
    presses: dict[str, list[float]],
    quick: bool,
    floor: dict[str, list[dict[str, Any]]],
) -> tuple[str, dict[str, Any], bool]:
    ours = [r for r in runs if r.client == "piagent"]
    theirs = [r for r in runs if r.client == "sdk"]
    lines = [
        f"machine: {info['cpu']}; {info['os']}; Python {info['python']}",
        f"versions: piagent {info['piagent']}, elevenlabs {info['elevenlabs']}, "
        f"websockets {info['websockets']}",
        f"runs: {len(ours)} piagent and {len(theirs)} SDK, alternating; medians over runs",
        "",
        "| figure | piagent | SDK | piagent / SDK |",
        "|---|---|---|---|",
    ]
    table: dict[str, Any] = {}
    for label, key, pattern in ROWS:
        a, b = median_of(ours, key), median_of(theirs, key)
        ratio = None if a is None or not b else a / b
        table[label] = {"piagent": a, "sdk": b, "ratio": ratio}
        cells = [label, fmt(a, pattern), fmt(b, pattern), fmt(ratio, "{:.2f}")]
        lines.append("| " + " | ".join(cells) + " |")
    for kind in ("cold", "warm"):
        values = presses[kind]
        value = statistics.median(values) if values else None
        label = f"press to first chunk, {kind} ({len(values)} presses), median ms"
        table[label] = {"piagent": value, "all": values}
        lines.append(f"| {label} | {fmt(value, '{:.1f}')} | - | - |")
    errors = [r.speaker_start_error_ms for r in theirs if r.speaker_start_error_ms is not None]
    if errors:
        lines.append(
            f"\n(speaker timelines are placed in time from their growth; checked against the SDK "
            f"device's own clock, the estimate was off by {max(errors, key=abs):.2f} ms at most)"
        )
    lines += ["", "| run | client | turns (user/agent) | interruptions | close | CPU s/min |"]
    lines.append("|---|---|---|---|---|---|")
    for i, run in enumerate(runs, 1):
        lines.append(
            f"| {i} | {run.client} | {run.user_turns}/{run.agent_turns} | {run.interruptions} "
            f"| {run.close_code} | {run.cpu_per_minute:.2f} |"
        )
    cpu_a, cpu_b = (
        median_of(ours, lambda r: r.cpu_per_minute),
        median_of(theirs, lambda r: r.cpu_per_minute),
    )
    if floor:
        lines += ["", *floor_table(floor, cpu_a, cpu_b)]
    profiled = [r for r in ours if r.profile]
    if profiled:
        lines += ["", *profile_table([r.profile or {} for r in profiled])]
    timed = [r for r in ours if r.sections]
    if timed:
        lines += ["", *sections_table(timed)]
    per_a, per_b = (
        median_of(ours, lambda r: r.chunk_ms_median),
        median_of(theirs, lambda r: r.chunk_ms_median),
    )
    goals = [
        (
            "piagent CPU per conversation minute <= the SDK's",
            cpu_a is not None and cpu_b is not None and cpu_a <= cpu_b,
        ),
        (
            "piagent chunk period <= a tenth of the SDK's",
            per_a is not None and per_b is not None and per_a <= per_b / 10,
        ),
    ]
    lines += ["", "| goal | met |", "|---|---|"]
    for goal, met in goals:
        verdict = ("yes" if met else "no") + (" (not judged: --quick)" if quick else "")
        lines.append(f"| {goal} | {verdict} |")
    data = {
        "machine": info,
        "table": table,
        "runs": [{**vars(r), "cpu_per_minute": r.cpu_per_minute} for r in runs],
        "goals": [{"goal": g, "met": m} for g, m in goals],
        "floor": floor,
    }
    return "\n".join(lines), data, all(met for _, met in goals)


def floor_table(
    floor: dict[str, list[dict[str, Any]]], ours: float | None, theirs: float | None
) -> list[str]:
    """The bare 20 ms clients' figures (scripts/bench_floor.py), and each client's CPU as a
    multiple of them."""
    lines = [
        "| the floor: a bare client with piagent's I/O and no work (scripts/bench_floor.py) "
        "| CPU s per minute, median (runs) | wake-ups per second | piagent / floor "
        "| SDK / floor |",
        "|---|---|---|---|---|",
    ]
    for shape, runs in floor.items():
        cpu = statistics.median(f["cpu_per_minute"] for f in runs)
        each = ", ".join(f"{f['cpu_per_minute']:.2f}" for f in runs)
        wakeups = statistics.median(f["wakeups_per_s"] for f in runs)
        a = fmt(None if ours is None else ours / cpu, "{:.2f}")
        b = fmt(None if theirs is None else theirs / cpu, "{:.2f}")
        lines.append(f"| {shape} | {cpu:.2f} ({each}) | {wakeups:.0f} | {a} | {b} |")
    return lines


def check_run(run: Run, script: Script) -> None:
    """The conversation went as scripted: every turn answered, one interruption, end_call."""
    expected = (script.turns, script.turns + 1, 1, 1000)
    got = (run.user_turns, run.agent_turns, run.interruptions, run.close_code)
    if got != expected:
        raise BenchFailed(
            f"{run.client}: (user turns, agent turns, interruptions, close) = {got}, "
            f"expected {expected}; the script did not play out"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per client (3)")
    parser.add_argument("--turns", type=int, default=6, help="user turns per conversation (6)")
    parser.add_argument("--presses", type=int, default=5, help="press-latency rounds (5)")
    parser.add_argument("--quick", action="store_true", help="one short run each (CI smoke)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument(
        "--only", choices=("piagent", "sdk"), help="run one client only (no ratios then)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample piagent with py-spy during each conversation, keep the samples in DIR, "
        "print where its CPU went",
    )
    parser.add_argument(
        "--sections",
        action="store_true",
        help="time piagent's hot paths in place (scripts/daemon_costs.py) and print where its "
        "conversation CPU went; the timing's own cost then adds to its CPU figures",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the bare 20 ms clients (scripts/bench_floor.py) run after each pair",
    )
    parser.add_argument(
        "--rig",
        action="store_true",
        help="then the same comparison on the rig's clocked ALSA card, with the PyAudio "
        "backend against the SDK's DefaultAudioInterface (scripts/bench_rig_vs_sdk.py; "
        "scripts/rig.sh up first)",
    )
    args = parser.parse_args(argv)
    if args.rig and not rig_is_up():
        parser.error("--rig needs the rig up: scripts/rig.sh up")
    if args.profile is not None and not PY_SPY.exists():
        parser.error(f"--profile needs py-spy ({PY_SPY}): pip install -e '.[bench]'")
    runs_each, turns, rounds = (1, 2, 1) if args.quick else (args.runs, args.turns, args.presses)
    idle_s = 2.0 if args.quick else 5.0

    def log(text: str) -> None:
        print(f"bench: {text}", file=sys.stderr, flush=True)

    script = make_script(turns)
    runs: list[Run] = []
    # The bare clients (scripts/bench_floor.py) after each pair: the floor of each shape.
    floor_runs: dict[str, list[dict[str, Any]]] | None = (
        None if args.only or args.no_floor else {shape: [] for shape in bench_floor.SHAPES}
    )
    with tempfile.TemporaryDirectory(prefix="bench-vs-sdk-") as tmp:
        mic = Path(tmp) / "mic.wav"
        write_wav(mic, script.mic)
        # As on an appliance after its first start: the resampling filters are in the cache,
        # so the daemon neither designs them nor imports scipy.
        filters = Path(tmp) / "filters"
        subprocess.run(
            [sys.executable, "-m", "piagent.audio.filtercache", str(filters)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        FILTER_CACHE[0] = filters
        try:
            bench_sim = SimServer([AgentDefinition(agent_id="bench")], script.scenario)
            with bench_sim.run_in_thread() as sim:
                for i in range(runs_each):
                    for client in [args.only] if args.only else ("piagent", "sdk"):
                        workdir = Path(tmp) / f"{client}-{i + 1}"
                        workdir.mkdir()
                        if client == "piagent":
                            run = run_piagent(
                                sim, workdir, mic, script, idle_s, args.profile, args.sections
                            )
                        else:
                            run = run_sdk(sim, workdir, mic, script)
                        check_run(run, script)
                        runs.append(run)
                        log(
                            f"{client} run {i + 1}: {run.cpu_per_minute:.2f} CPU s/min, "
                            f"chunks every {run.chunk_ms_median:.0f} ms, "
                            f"peak RSS {run.hwm_mb:.0f} MB"
                        )
                    for shape, shape_runs in (floor_runs or {}).items():
                        times = (5.0, 1.0) if args.quick else (40.0, 2.0)
                        shape_runs.append(bench_floor.measure(shape, *times))
                        cpu = shape_runs[-1]["cpu_per_minute"]
                        log(f"floor ({shape}) run {i + 1}: {cpu:.2f} CPU s/min")
            press_dir = Path(tmp) / "press"
            press_dir.mkdir()
            presses = press_phase(press_dir, rounds) if rounds else {"cold": [], "warm": []}
        except BenchFailed as exc:
            print(f"bench failed: {exc}", file=sys.stderr)
            return 2
    text, data, met = report(machine(), runs, presses, args.quick, floor_runs or {})
    print(json.dumps(data, indent=2) if args.json else text)
    if args.rig:  # the same clients on the emulated Pi, after this machine's figures
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bench_rig_vs_sdk

        sys.stdout.flush()
        bench_rig_vs_sdk.main(["--runs", str(runs_each)])
    return 0 if met or args.quick else 1


def rig_is_up() -> bool:
    rig = Path(__file__).resolve().parent / "rig.sh"
    return subprocess.run([str(rig), "status"], capture_output=True, check=False).returncode == 0


if __name__ == "__main__":
    sys.exit(main())
