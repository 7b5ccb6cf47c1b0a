"""Fault injection: the client against a simulator that fails on purpose, over and over.

Transient faults must be recovered from within the backoff bound, fatal ones must stop the
retries, faults that are not failures must not disturb the conversation, and nothing may leak
(tasks, threads, file descriptors) once the client has stopped.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from piagent.appliance.commands import StateEntered
from piagent.client import AgentClient, Announcement, ClientOptions, ClientState, Line
from piagent.protocol.messages import (
    ConversationConfigOverride,
    ConversationInitiationClientData,
    TtsConfigOverride,
)
from piagent.protocol.session import EndReason
from piagent.sim.agent import AgentDefinition, FaultClose
from piagent.sim.scenario import Scenario
from piagent.sim.server import SimServer
from piagent.transport import Endpoint
from tests.fakes import PacedSink

pytestmark = pytest.mark.timeout(240)

RATE = 16000
FRAME = np.zeros(RATE // 50, dtype=np.int16)
BACKOFF_MAX = 0.2
CONNECT_SLACK = 1.0  # a reconnect may take this long beyond its backoff delay on a busy machine


@dataclass
class Tally:
    """What one fault kind did."""

    kind: str
    faults: int = 0
    gaps: list[float] = field(default_factory=list)
    reasons: set[EndReason] = field(default_factory=set)


def open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def drive(
    client: AgentClient,
    until: Any,
    *,
    within: float,
) -> None:
    """Feed silent microphone frames in real time until ``until()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not until():
        if loop.time() > deadline:
            status = client.status()
            raise AssertionError(
                f"not reached in {within} s: state {status.state}, last {status.last_ending}"
            )
        client.feed(FRAME)
        await asyncio.sleep(0.02)


def listen(client: AgentClient) -> list[Announcement]:
    """Everything the client announces from now on, in order."""
    heard: list[Announcement] = []
    client.subscribe(heard.append)
    return heard


def make_client(
    endpoint: Endpoint,
    *,
    initiation: ConversationInitiationClientData | None = None,
    always_connected: bool = True,
    stall_timeout: float = 2.0,
) -> AgentClient:
    return AgentClient(
        endpoint,
        initiation or ConversationInitiationClientData(),
        ClientOptions(
            always_connected=always_connected,
            backoff_initial=0.02,
            backoff_max=BACKOFF_MAX,
            stall_timeout=stall_timeout,
            connect_timeout=2.0,
        ),
        source_rate=RATE,
        sink=PacedSink(RATE),
        rng=random.Random(3),
    )


async def observe(client: AgentClient, tally: Tally, count: int, within: float) -> None:
    """Stream silence while counting the client's endings, and time each one to the start of
    the next connection attempt (the ``connecting`` state notice)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last = client.status().last_ending
    ended_at: float | None = None
    heard = listen(client)
    while tally.faults < count or ended_at is not None:
        assert loop.time() < deadline, f"{tally.kind}: only {tally.faults} faults in {within} s"
        client.feed(FRAME)
        await asyncio.sleep(0.02)
        now = loop.time()
        ending = client.status().last_ending
        if ending is not last and ending is not None:
            last = ending
            tally.faults += 1
            tally.reasons.add(ending.reason)
            assert ending.reason.retryable, (tally.kind, ending)
            ended_at = now
        while heard:
            announcement = heard.pop(0)
            connecting = isinstance(announcement, StateEntered) and announcement.state is (
                ClientState.CONNECTING
            )
            if connecting and ended_at is not None:
                tally.gaps.append(now - ended_at)
                ended_at = None


async def transient_with_sim(
    kind: str,
    count: int,
    agent: AgentDefinition,
    scenario: Scenario | None = None,
    stall_timeout: float = 2.0,
) -> Tally:
    """An always-connected client against an agent that fails every connection the same way."""
    tally = Tally(kind)
    async with SimServer([agent], scenario=scenario) as sim:
        client = make_client(
            Endpoint(agent.agent_id, sim.ws_base, sim.http_base), stall_timeout=stall_timeout
        )
        async with asyncio.TaskGroup() as tasks:
            runner = tasks.create_task(client.run())
            await observe(client, tally, count, within=count * (stall_timeout + 3))
            runner.cancel()
        if agent.refuse_upgrade is None:
            assert len(sim.conversations) >= count  # each failure was followed by a new one
    return tally


async def transient_without_server(count: int) -> Tally:
    """Nothing listens on the port: TCP connection refused, every time."""
    tally = Tally("tcp_refused")
    port = free_port()
    client = make_client(Endpoint("demo", f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"))
    async with asyncio.TaskGroup() as tasks:
        runner = tasks.create_task(client.run())
        await observe(client, tally, count, within=count * 3)
        assert tally.reasons == {EndReason.CONNECT_FAILED}
        runner.cancel()
    return tally


async def fatal(kind: str, agent: AgentDefinition, **client_args: Any) -> Tally:
    """A fatal fault: one attempt, ERROR, and no retry until pressed again."""
    tally = Tally(kind)
    async with SimServer([agent]) as sim:
        api_key = client_args.pop("api_key", None)
        agent_id = client_args.pop("agent_id", agent.agent_id)
        client = make_client(
            Endpoint(agent_id, sim.ws_base, sim.http_base, api_key),
            always_connected=False,
            **client_args,
        )
        async with asyncio.TaskGroup() as tasks:
            runner = tasks.create_task(client.run())
            for attempt in (1, 2):
                client.press()
                await drive(client, lambda: client.state is ClientState.ERROR, within=10)
                tally.faults += 1
                ending = client.status().last_ending
                assert ending is not None and not ending.reason.retryable, (kind, ending)
                tally.reasons.add(ending.reason)
                before = len(sim.conversations)
                await asyncio.sleep(4 * BACKOFF_MAX)
                assert len(sim.conversations) == before, f"{kind}: retried after a fatal fault"
                assert client.state is ClientState.ERROR
                assert attempt == tally.faults
            runner.cancel()
    return tally


async def survivable(kind: str, steps: str) -> Tally:
    """Faults that are not failures: the conversation goes on, and nothing reconnects."""
    tally = Tally(kind)
    scenario = Scenario.from_yaml(f"steps:\n{steps}  - agent_say: after the fault\n")
    async with SimServer([AgentDefinition(first_message="")], scenario=scenario) as sim:
        client = make_client(Endpoint("demo", sim.ws_base, sim.http_base))
        async with asyncio.TaskGroup() as tasks:
            runner = tasks.create_task(client.run())
            announced = listen(client)

            def agent_spoke_after_the_faults() -> bool:
                said = [a.text for a in announced if isinstance(a, Line) and a.kind == "agent"]
                return "after the fault" in said

            # The oversize frame is a minute of real audio: the turn after it still arrives.
            await drive(client, agent_spoke_after_the_faults, within=10)
            assert _said(sim)
            assert len(sim.conversations) == 1
            assert sim.conversations[0].close_code is None
            tally.faults += steps.count("- ")
            runner.cancel()
    return tally


def _said(sim: SimServer) -> bool:
    """The agent's turn after the faults has been sent: the conversation survived them."""
    if not sim.conversations:
        return False
    return any('"after the fault"' in frame for frame in sim.conversations[0].sent)


async def suite() -> list[Tally]:
    return [
        await transient_with_sim(
            "close_1011_first_audio",
            14,
            AgentDefinition(fault_close=FaultClose("first_audio", 1011, "internal")),
        ),
        await transient_with_sim(
            "close_1002_after_metadata",
            14,
            AgentDefinition(fault_close=FaultClose("metadata", 1002, "Request timed out")),
        ),
        await transient_with_sim(
            "close_3000_before_metadata",
            14,
            AgentDefinition(fault_close=FaultClose("initiation", 3000, "Request error")),
        ),
        await transient_with_sim(
            "close_1011_at_connect",
            14,
            AgentDefinition(fault_close=FaultClose("connect", 1011, "")),
        ),
        await transient_with_sim(
            "close_1001_going_away",
            14,
            AgentDefinition(fault_close=FaultClose("metadata", 1001, "going away")),
        ),
        await transient_with_sim("http_503_on_upgrade", 14, AgentDefinition(refuse_upgrade=503)),
        await transient_without_server(14),
        await transient_with_sim(
            "stall",
            4,
            AgentDefinition(first_message="hi"),
            Scenario.from_yaml("steps:\n  - stall: 30\n"),
            stall_timeout=0.6,
        ),
        await survivable(
            "malformed_oversize_unknown",
            '  - send_text: "{not json"\n'
            "  - send: {type: a_new_event_type, payload: 1}\n"
            "  - send_oversize: 2000000\n"
            '  - send: {type: audio, audio_event: {audio_base_64: "!!", event_id: 1}}\n'
            "  - send: {type: ping}\n",
        ),
        await fatal(
            "override_rejected",
            AgentDefinition(allowed_overrides=("agent.first_message",)),
            initiation=ConversationInitiationClientData(
                conversation_config_override=ConversationConfigOverride(
                    tts=TtsConfigOverride(voice_id="v")
                )
            ),
        ),
        await fatal("unknown_agent", AgentDefinition(agent_id="known"), agent_id="unknown"),
        await fatal(
            "bad_api_key",
            AgentDefinition(agent_id="p", private=True, api_keys=("right",)),
            api_key="wrong",
        ),
        await fatal(
            "quota_exceeded",
            AgentDefinition(
                fault_close=FaultClose("metadata", 1002, "This request exceeds your quota limit.")
            ),
        ),
    ]


def test_fault_suite_recovers_from_transient_stops_on_fatal_and_leaks_nothing() -> None:
    threads_before = threading.active_count()
    fds_before = open_fds()

    async def main() -> list[Tally]:
        tallies = await suite()
        await asyncio.sleep(0.05)
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert leftover == [], f"tasks left running: {leftover}"
        return tallies

    tallies = asyncio.run(main())
    total = sum(t.faults for t in tallies)
    print(f"\n{total} faults of {len(tallies)} kinds")
    for tally in tallies:
        worst = max(tally.gaps, default=0.0)
        print(f"  {tally.kind:28} {tally.faults:3}  worst recovery {worst:.2f} s  {tally.reasons}")
        assert worst <= BACKOFF_MAX + CONNECT_SLACK, (tally.kind, worst)
    assert total >= 100
    assert len(tallies) >= 8
    assert threading.active_count() <= threads_before
    assert open_fds() <= fds_before
