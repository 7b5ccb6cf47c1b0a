"""Pings and pongs, max duration, the no-input timeout and the turn timeout."""

from __future__ import annotations

import asyncio
import json

import pytest

from piagent.protocol.messages import (
    AgentResponse,
    Audio,
    ConversationInitiationMetadata,
    ErrorEvent,
    Ping,
    UserActivity,
    UserAudioChunk,
)
from piagent.sim.server import SimServer

from .conftest import fast_agent, talk


async def test_pings_start_with_null_then_carry_the_measured_round_trip() -> None:
    agent = fast_agent(ping_interval=0.05)
    async with SimServer([agent]) as sim, talk(sim) as client:
        pings = [await client.wait_for(Ping) for _ in range(4)]
    assert pings[0].ping_ms is None
    assert all(isinstance(p.ping_ms, int) and p.ping_ms >= 0 for p in pings[1:])
    ids = [p.event_id for p in pings]
    assert ids == sorted(ids) and len(set(ids)) == 4
    record = sim.conversations[0]
    first = next(json.loads(f) for f in record.sent if f.startswith('{"type":"ping"'))
    assert first["ping_event"] == {"event_id": ids[0], "ping_ms": None}  # explicit null
    assert record.pongs[:3] == ids[:3]
    assert record.pings_sent >= 4
    assert len(record.ping_rtts_ms) >= 3
    assert record.pongs_missed == 0


async def test_missed_pongs_are_counted_and_can_close_the_socket() -> None:
    agent = fast_agent(ping_interval=0.05, max_missed_pongs=3)
    async with SimServer([agent]) as sim, talk(sim) as client:
        client.auto_pong = False
        code, reason = await client.wait_closed()
    assert (code, reason) == (1002, "Ping timeout")
    record = sim.conversations[0]
    assert record.pongs == []
    assert record.pongs_missed == 3


async def test_pings_can_be_disabled() -> None:
    async with SimServer([fast_agent(ping_interval=None)]) as sim, talk(sim) as client:
        await client.turn_audio(1)
        await asyncio.sleep(0.2)
    assert sim.conversations[0].pings_sent == 0


async def test_max_duration_speaks_its_message_then_errors_and_closes_1000() -> None:
    agent = fast_agent(max_duration=0.4, max_conversation_duration_message="Time is up.")
    async with SimServer([agent]) as sim, talk(sim) as client:
        code, reason = await client.wait_closed()
    assert code == 1000
    assert reason == "Maximum conversation duration exceeded"
    responses = [e.text for e in client.events if isinstance(e, AgentResponse)]
    assert responses == ["Hi.", "Time is up."]
    last_turn = next(e for e in client.events if isinstance(e, AgentResponse) and e.text[0] == "T")
    assert any(isinstance(e, Audio) and e.event_id == last_turn.event_id for e in client.events)
    error = client.events[-1]
    assert isinstance(error, ErrorEvent)
    assert (error.code, error.error_type) == (1000, "max_duration_exceeded")
    record = sim.conversations[0]
    await record.wait_closed()
    assert record.close_code == 1000


async def test_max_duration_message_can_be_overridden() -> None:
    agent = fast_agent(max_duration=0.3)
    override = {"agent": {"max_conversation_duration_message": "Bye {{user_name}}."}}
    initiation = {
        "conversation_config_override": override,
        "dynamic_variables": {"user_name": "Ann"},
    }
    async with SimServer([agent]) as sim, talk(sim, initiate=initiation) as client:
        code, _ = await client.wait_closed()
    assert code == 1000
    assert [e.text for e in client.events if isinstance(e, AgentResponse)][-1] == "Bye Ann."


async def test_no_input_timeout_closes_1002() -> None:
    agent = fast_agent(no_input_timeout=0.3)
    async with SimServer([agent]) as sim, talk(sim) as client:
        loop = asyncio.get_running_loop()
        await client.wait_for(ConversationInitiationMetadata)
        start = loop.time()
        code, reason = await client.wait_closed()
        elapsed = loop.time() - start
    assert code == 1002
    assert reason == "No user input received"
    assert 0.25 < elapsed < 1.5
    error = client.events[-1]
    assert isinstance(error, ErrorEvent)
    assert (error.code, error.error_type) == (1002, "transport_receive_timeout")


async def test_streamed_silence_counts_as_input() -> None:
    agent = fast_agent(no_input_timeout=0.3)
    async with SimServer([agent]) as sim, talk(sim) as client:
        for _ in range(8):  # 0.8 s of streaming: longer than the timeout
            await client.send(UserAudioChunk(bytes(3200)))
            await asyncio.sleep(0.1)
        assert sim.conversations[0].close_code is None
        code, _ = await client.wait_closed()  # then the silence stops, and so does the call
    assert code == 1002


async def test_turn_timeout_reprompts_and_user_activity_resets_it() -> None:
    agent = fast_agent(turn_timeout=0.4, turn_timeout_message="Still there?")
    async with SimServer([agent]) as sim, talk(sim) as client:
        await client.turn_audio(1)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(6):  # activity every 0.15 s for 0.9 s: no re-prompt meanwhile
            await client.send(UserActivity())
            await asyncio.sleep(0.15)
        assert not any(
            isinstance(e, AgentResponse) and e.text == "Still there?" for e in client.events
        )
        prompt = await client.wait_for(AgentResponse, within=2.0)
        assert prompt.text == "Still there?"
        assert loop.time() - start > 0.9
    assert sim.conversations[0].user_activity == 6


@pytest.mark.parametrize("key", ["max_duration", "no_input_timeout"])
async def test_timers_do_not_fire_early(key: str) -> None:
    agent = fast_agent(**{key: 5.0})
    async with SimServer([agent]) as sim, talk(sim) as client:
        await client.turn_audio(1)
        await asyncio.sleep(0.3)
        assert sim.conversations[0].close_code is None


async def test_a_missed_pong_is_counted_once() -> None:
    agent = fast_agent(ping_interval=0.1)
    async with SimServer([agent]) as sim, talk(sim) as client:
        client.auto_pong = False
        await client.wait_for(Ping)  # left unanswered
        client.auto_pong = True
        for _ in range(4):
            await client.wait_for(Ping)
    record = sim.conversations[0]
    assert record.pongs_missed == 1
    assert len(record.pongs) >= 3
