"""What a user expects when the service drops, stalls or queues, in the daemon process: a drop
while waiting for the answer is answered in a new conversation; a stall is ``offline`` until the
service answers again, checked without opening a conversation; a queued conversation is
``waiting`` and the held question arrives once admitted. WAV backend, mock pins, ``piagent
ctl``, the simulator on 127.0.0.1 (behind a TCP relay the test can freeze, for the stall)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from websockets.sync.client import connect

from piagent.sim.agent import AgentDefinition
from piagent.sim.scenario import Scenario
from piagent.sim.server import SimServer
from tests.e2e.harness import (
    Daemon,
    WavTimeline,
    base_config,
    best_match,
    mic_wav,
    record,
    sleep_until,
    speech_like,
    wait_closed,
)

pytestmark = pytest.mark.timeout(90)

RATE = 16000
SPEECH_AT = 3.0  # seconds into the microphone's file
SPEECH_S = 1.5


def start(tmp: Path, config: dict[str, object], daemons: list[Daemon]) -> tuple[Daemon, float]:
    """The daemon, and the moment its microphone file started (its speaker's did too)."""
    daemon = Daemon(tmp, config)
    daemons.append(daemon)
    timeline = WavTimeline(tmp / "speaker.wav", RATE)
    try:
        daemon.wait_ready()
        timeline.wait_started()
        return daemon, timeline.start
    finally:
        timeline.close()


def pcm(data: bytes | bytearray) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype="<i2").astype(np.int16)


def ask(daemon: Daemon, started: float) -> None:
    """Press before the question in the microphone's file, release after it."""
    sleep_until(started + SPEECH_AT - 0.5)
    daemon.ctl("press")
    sleep_until(started + SPEECH_AT + SPEECH_S + 0.1)
    daemon.ctl("release")


# ----------------------------------------------------------------------------------------------
# A drop while the user waits for the answer


def test_a_drop_while_waiting_is_answered_in_a_new_conversation(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    speech = speech_like(SPEECH_S, RATE, seed=5)
    mic_wav(tmp_path / "mic.wav", RATE, 40.0, [(SPEECH_AT, speech)])
    # The first conversation hears the question, then the service fails (1011) before it
    # answers; the next one is the healthy parrot, which plays the question back.
    scenario = Scenario.from_yaml(
        "steps:\n  - expect: user_turn\n    timeout: 30\n  - close: {code: 1011, reason: boom}\n"
    )
    agents = [AgentDefinition(agent_id="flaky", first_message="")]
    with SimServer(agents, scenario=scenario).run_in_thread() as sim:
        daemon, started = start(tmp_path, base_config(tmp_path, sim, "flaky"), daemons)
        ask(daemon, started)
        first = record(sim, 0, daemon)
        sim.scenario = None  # conversations from now on are healthy
        daemon.check(wait_closed(sim, first, daemon) == 1011, "the first did not close 1011")
        daemon.check(bool(first.user_transcripts), "the first conversation never heard the turn")
        daemon.check(not first.agent_turns, f"the first answered: {first.agent_turns}")
        second = record(sim, 1, daemon)
        daemon.wait_for("the answer in the new conversation", lambda: second.agent_turns or None)
        status = daemon.wait_status("the turn timed", lambda s: s["turns"] >= 1)
        daemon.check(status["conversation_id"] == second.conversation_id, f"status {status}")
        tail = speech[-int(0.6 * RATE) :]  # surely inside the press, however late it came
        for rec in (first, second):
            _, score = best_match(pcm(rec.user_audio), tail)
            daemon.check(score > 0.95, f"{rec.conversation_id} missed the question ({score:.2f})")
        daemon.check(bool(second.user_transcripts), "the new conversation heard no turn")
        daemon.check(daemon.log().count("; retrying in") == 1, "the drop not said once")
        daemon.check(len(sim.conversations) == 2, f"{len(sim.conversations)} conversations")
        assert daemon.stop() == 0


# ----------------------------------------------------------------------------------------------
# A stalled service


@dataclass
class Relay:
    """A TCP relay to the simulator that the test can freeze: while frozen nothing passes
    either way (connections are accepted and then hang, as with a stalled service)."""

    target: int

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.frozen = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = source.recv(65536)
                while self.frozen.is_set() and not self._closed.is_set():
                    time.sleep(0.02)
                if not data or self._closed.is_set():
                    break
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


def test_a_stall_is_offline_until_the_service_answers_without_a_new_conversation(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    mic_wav(tmp_path / "mic.wav", RATE, 1.0, [])
    with SimServer([AgentDefinition(agent_id="steady")]).run_in_thread() as sim:
        relay = Relay(sim.port)
        try:
            session = {
                "stall_timeout": 3.0,
                "connect_timeout": 1.5,
                "backoff_initial": 0.5,
                "backoff_max": 1.0,
            }
            config = base_config(tmp_path, relay, "steady", session=session)
            daemon, _ = start(tmp_path, config, daemons)
            daemon.ctl("say", "hello")
            first = record(sim, 0, daemon)
            daemon.wait_status("the answer", lambda s: s["turns"] >= 1)
            relay.frozen.set()
            frozen = time.monotonic()
            daemon.wait_status("offline", lambda s: s["state"] == "offline", within=10)
            stalled_after = time.monotonic() - frozen
            daemon.check(stalled_after < 6.0, f"the stall was noticed after {stalled_after:.1f} s")
            time.sleep(4.0)  # several probes go unanswered
            status = daemon.status()
            daemon.check(status["state"] == "offline", f"state {status['state']} while stalled")
            daemon.check("connection stalled" in (status["last_ending"] or ""), f"{status}")
            relay.frozen.clear()
            thawed = time.monotonic()
            daemon.wait_status("ready again", lambda s: s["state"] == "ready", within=10)
            daemon.check(time.monotonic() - thawed < 5.0, "ready too late after the thaw")
            daemon.check(len(sim.conversations) == 1, "a conversation was opened to check")
            statuses = [(t, m) for t, m in daemon.notify.messages if m.startswith("STATUS=")]
            offline = [t for t, m in statuses if m.startswith("STATUS=offline")]
            daemon.check(bool(offline), f"no offline STATUS: {statuses}")
            early = [m for t, m in statuses if offline[0] < t < thawed and "ready" in m]
            daemon.check(not early, f"ready while stalled: {early}")
            daemon.wait_for("the stalled conversation closed", lambda: first.closed or None)
            assert daemon.stop() == 0
        finally:
            relay.close()


# ----------------------------------------------------------------------------------------------
# The agent's queue


def test_a_queued_conversation_waits_and_the_held_question_arrives_once_admitted(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    speech = speech_like(SPEECH_S, RATE, seed=9)
    mic_wav(tmp_path / "mic.wav", RATE, 40.0, [(SPEECH_AT, speech)])
    agents = [AgentDefinition(agent_id="busy", first_message="", concurrency_limit=1)]
    with SimServer(agents).run_in_thread() as sim:
        daemon, started = start(tmp_path, base_config(tmp_path, sim, "busy"), daemons)
        # Someone else holds the agent's one slot.
        with connect(f"{sim.ws_base}/v1/convai/conversation?agent_id=busy") as other:
            other.send(json.dumps({"type": "conversation_initiation_client_data"}))
            daemon.wait_for("the other conversation", lambda: sim.conversations or None)
            ask(daemon, started)
            mine = record(sim, 1, daemon)
            status = daemon.wait_status("waiting", lambda s: s["state"] == "waiting")
            daemon.check(status["conversation_id"] == mine.conversation_id, f"{status}")
            time.sleep(1.0)
            daemon.check(daemon.status()["state"] == "waiting", "not waiting while queued")
            # What the daemon sent before "waiting" reached it (a frame or two at most) was
            # thrown away by the service; what it captured since is held, not sent.
            daemon.check(mine.discarded_while_queued <= 5, f"{mine.discarded_while_queued} lost")
            daemon.check(not mine.user_audio, "audio counted while queued")
        # The other conversation has ended: its slot is free.
        daemon.wait_for("admitted", lambda: "admitted" in mine.queue_statuses or None)
        daemon.wait_for("the answer", lambda: mine.agent_turns or None, within=20)
        _, score = best_match(pcm(mine.user_audio), speech[-int(0.6 * RATE) :])
        daemon.check(score > 0.95, f"the held question did not arrive ({score:.2f})")
        daemon.check(mine.queue_statuses == ["waiting", "admitted"], f"{mine.queue_statuses}")
        daemon.wait_status("the turn timed", lambda s: s["turns"] >= 1)
        assert daemon.stop() == 0
