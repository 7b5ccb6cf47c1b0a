"""Fault injection: closes at chosen points, stalls, bad frames, oversize, delays, refusals."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from piagent.errors import RemoteProtocolError
from piagent.protocol.messages import (
    AgentChatResponsePart,
    AgentResponse,
    AgentToolResponse,
    Audio,
    ConversationInitiationMetadata,
    FlatErrorEvent,
    Ping,
    UnknownMessage,
    UserMessage,
    parse_server,
)
from piagent.sim.agent import FaultClose
from piagent.sim.scenario import Scenario
from piagent.sim.server import SimServer

from .conftest import Client, fast_agent, talk


def scripted(steps: str, first_message: str = "") -> SimServer:
    text = f"agent: {{first_message: {json.dumps(first_message)}}}\nsteps:\n{steps}"
    return SimServer([fast_agent()], Scenario.from_yaml(text))


@pytest.mark.parametrize("code", [1002, 1008, 1011, 3000])
@pytest.mark.parametrize("at", ["connect", "initiation", "metadata", "first_audio"])
async def test_close_with_a_chosen_code_at_a_chosen_point(code: int, at: str) -> None:
    agent = fast_agent(fault_close=FaultClose(at, code, "Request error"))  # type: ignore[arg-type]
    async with SimServer([agent]) as sim, talk(sim) as client:
        assert await client.wait_closed() == (code, "Request error")
    kinds = [type(e) for e in client.events]
    expected: dict[str, list[type[Any]]] = {
        "connect": [],
        "initiation": [],
        "metadata": [ConversationInitiationMetadata],
        "first_audio": [ConversationInitiationMetadata]
        + [AgentChatResponsePart] * 3
        + [Audio, AgentResponse],
    }
    assert kinds == expected[at]
    record = sim.conversations[0]
    await record.wait_closed()
    assert (record.close_code, record.close_reason) == (code, "Request error")


async def test_quota_close_after_a_flat_error_event() -> None:
    reason = "This request exceeds your quota limit."
    steps = f"""
  - send: {{type: error, message: "received 1002 (protocol error) {reason}"}}
  - close: {{code: 1002, reason: "{reason}"}}
"""
    async with scripted(steps, "Hello.") as sim, talk(sim) as client:
        assert await client.wait_closed() == (1002, reason)
    flat = client.events[-1]
    assert isinstance(flat, FlatErrorEvent) and reason in flat.message
    assert any(isinstance(e, AgentResponse) for e in client.events)


async def test_stall_stops_reading_writing_and_ws_pongs() -> None:
    sim = SimServer(
        [fast_agent(first_message="", ping_interval=0.05)],
        Scenario.from_yaml("steps:\n  - sleep: 0.2\n  - stall: 1.0"),
    )
    async with sim, talk(sim, ping_interval=None) as client:
        await client.wait_for(Ping)
        await asyncio.sleep(0.3)  # the stall has begun
        with pytest.raises(TimeoutError):
            while True:  # what was sent before the stall
                await client.recv(within=0.05)
        pong = await client.ws.ping()
        with pytest.raises(TimeoutError):
            await client.recv(within=0.5)  # no JSON pings either
        assert not pong.done()  # the WebSocket ping is not answered during the stall
        await asyncio.wait_for(pong, 1.5)  # ... but is once the stall is over
        await client.wait_for(Ping)
        await client.send(UserMessage("back"))
        await client.wait_for(AgentResponse, where=lambda r: r.text == "You wrote: back")


async def test_stall_makes_a_keepalive_client_give_up() -> None:
    sim = SimServer([fast_agent(first_message="")], Scenario.from_yaml("steps:\n  - stall: 3"))
    async with sim:
        url = f"{sim.ws_base}/v1/convai/conversation?agent_id=demo"
        async with connect(url, ping_interval=0.1, ping_timeout=0.3, close_timeout=0.3) as ws:
            client = Client(ws)
            await client.initiate()
            await client.wait_for(ConversationInitiationMetadata)
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv(within=2.0)
        assert closed.value.sent is not None
        assert (closed.value.sent.code, closed.value.sent.reason) == (
            1011,
            "keepalive ping timeout",
        )


async def test_malformed_frames_and_wrong_field_types_reach_the_client() -> None:
    steps = """
  - send_text: "{not json"
  - send: {type: audio, audio_event: {audio_base_64: 5, event_id: "x"}}
  - send: {type: brand_new_event, brand_new_event: {x: 1}}
  - agent_say: "Still here."
"""
    async with scripted(steps) as sim, talk(sim) as client:
        frames = [await client.ws.recv() for _ in range(4)]
        assert frames[1] == "{not json"
        for frame in frames[1:3]:
            with pytest.raises(RemoteProtocolError):
                parse_server(frame)
        unknown = parse_server(frames[3])
        assert isinstance(unknown, UnknownMessage) and unknown.type == "brand_new_event"
        await client.wait_for(AgentResponse, where=lambda r: r.text == "Still here.")


async def test_oversize_frame_is_delivered_or_closes_a_small_client() -> None:
    steps = "  - send_oversize: 2000000\n  - agent_say: After."
    async with scripted(steps) as sim, talk(sim) as client:
        frame = await client.ws.recv()  # the metadata
        frame = await client.ws.recv()
        assert len(frame) >= 2_000_000
        event = parse_server(frame)
        assert isinstance(event, Audio) and len(event.audio) >= 1_500_000
        await client.wait_for(AgentResponse)
    async with scripted(steps) as sim, talk(sim, max_size=2**20) as client:
        with pytest.raises(ConnectionClosed) as closed:
            await client.wait_for(AgentResponse)
        assert closed.value.sent is not None and closed.value.sent.code == 1009
    record = sim.conversations[0]
    await record.wait_closed()
    assert record.close_code == 1009


async def test_connect_delay_holds_the_upgrade() -> None:
    async with SimServer([fast_agent(connect_delay=0.3)]) as sim:
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with talk(sim) as client:
            assert loop.time() - start >= 0.3
            await client.wait_for(ConversationInitiationMetadata)


async def test_metadata_delay_holds_the_metadata() -> None:
    async with SimServer([fast_agent(metadata_delay=0.3)]) as sim, talk(sim) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await client.wait_for(ConversationInitiationMetadata)
        assert loop.time() - start >= 0.25


@pytest.mark.parametrize("status", [503, 403])
async def test_upgrade_refused_with_an_http_status(status: int) -> None:
    async with SimServer([fast_agent(refuse_upgrade=status)]) as sim:
        url = f"{sim.ws_base}/v1/convai/conversation?agent_id=demo"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url):
                pass
        response = refused.value.response
        assert response.status_code == status
        assert response.headers["Content-Type"] == "application/json"
        assert json.loads(response.body)["detail"]["status"] == "upgrade_refused"
        assert sim.conversations == []


async def test_upgrade_refused_a_number_of_times_then_accepted() -> None:
    agent = fast_agent(refuse_upgrade=503, refuse_upgrade_times=2)
    async with SimServer([agent]) as sim:
        url = f"{sim.ws_base}/v1/convai/conversation?agent_id=demo"
        for _ in range(2):
            with pytest.raises(InvalidStatus):
                async with connect(url):
                    pass
        async with talk(sim) as client:
            await client.wait_for(ConversationInitiationMetadata)


async def test_end_call_sends_the_system_tool_response_and_closes_1000() -> None:
    async with scripted("  - agent_say: Bye.\n  - end_call: true") as sim, talk(sim) as client:
        assert await client.wait_closed() == (1000, "end_call")
    tool = client.events[-1]
    assert isinstance(tool, AgentToolResponse)
    assert (tool.tool_name, tool.tool_type, tool.is_called, tool.is_error) == (
        "end_call",
        "system",
        True,
        False,
    )
    said = next(e for e in client.events if isinstance(e, AgentResponse))
    assert tool.event_id > said.event_id
