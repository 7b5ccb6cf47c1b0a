"""``piagent sim`` as a real subprocess, and ``SimServer.run_in_thread`` for sync callers."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

from piagent.protocol.messages import (
    AgentResponse,
    ConversationInitiationMetadata,
    UserMessage,
    encode,
    parse_server,
)
from piagent.sim.server import SimServer

from .conftest import fast_agent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sim(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "piagent", "sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def first_answer(url: str) -> list[object]:
    """Connect, type a message, return the events up to the parrot's answer."""
    events: list[object] = []
    with connect(url, max_size=None) as ws:
        ws.send(json.dumps({"type": "conversation_initiation_client_data"}))
        ws.send(encode(UserMessage("hello")))
        while True:
            event = parse_server(ws.recv(timeout=10))
            events.append(event)
            if isinstance(event, AgentResponse) and event.text == "You wrote: hello":
                return events


@pytest.mark.timeout(60)
def test_piagent_sim_serves_until_sigterm(tmp_path: Path) -> None:
    agents = tmp_path / "agents.yaml"
    agents.write_text("- agent_id: cli_agent\n  first_message: Hi.\n  audio_pace: 20\n")
    port = free_port()
    process = start_sim("--port", str(port), "--agent", str(agents))
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == f"piagent sim: listening on ws://127.0.0.1:{port}"
        events = first_answer(f"ws://127.0.0.1:{port}/v1/convai/conversation?agent_id=cli_agent")
        assert isinstance(events[0], ConversationInitiationMetadata)
        assert isinstance(events[-1], AgentResponse)
        assert events[-1].text == "You wrote: hello"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr


@pytest.mark.timeout(60)
def test_piagent_sim_stops_on_sigint_with_a_scenario(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("agent: {first_message: ''}\nsteps:\n  - agent_say: Scripted.\n")
    port = free_port()
    process = start_sim("--port", str(port), "--scenario", str(scenario))
    try:
        assert process.stdout is not None
        process.stdout.readline()
        with connect(f"ws://127.0.0.1:{port}/v1/convai/conversation?agent_id=x") as ws:
            ws.send(json.dumps({"type": "conversation_initiation_client_data"}))
            texts = []
            while not texts:
                event = parse_server(ws.recv(timeout=10))
                if isinstance(event, AgentResponse):
                    texts.append(event.text)
        assert texts == ["Scripted."]
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=15)
    assert process.returncode == 0


@pytest.mark.parametrize(
    ("option", "content", "message"),
    [
        ("--agent", "- agent_id: a\n  colour: red\n", "agents[0].colour: unknown key"),
        ("--scenario", "steps:\n  - dance: true\n", "steps[0].dance: unknown step kind"),
        ("--agent", None, "cannot read agent file"),
    ],
)
def test_bad_files_exit_78_with_one_clear_line(
    tmp_path: Path, option: str, content: str | None, message: str
) -> None:
    path = tmp_path / "file.yaml"
    if content is not None:
        path.write_text(content)
    result = subprocess.run(
        [sys.executable, "-m", "piagent", "sim", option, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("piagent sim: ")


def test_run_in_thread_serves_synchronous_clients() -> None:
    sim = SimServer([fast_agent()])
    with sim.run_in_thread() as running:
        assert running is sim
        url = f"{sim.ws_base}/v1/convai/conversation?agent_id=demo"
        events = first_answer(url)
        assert isinstance(events[0], ConversationInitiationMetadata)
        records = sim.run_coroutine(sim.wait_for_conversations(1))
        sim.run_coroutine(records[0].wait_closed())
        assert records[0].close_code == 1000
    deadline = time.monotonic() + 5
    with pytest.raises(OSError):  # stopped: nothing listens any more
        while time.monotonic() < deadline:
            socket.create_connection(("127.0.0.1", sim.port), timeout=1).close()
            time.sleep(0.05)


def test_run_in_thread_reports_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        sim = SimServer(port=taken.getsockname()[1])
        with pytest.raises(OSError), sim.run_in_thread():
            pass
