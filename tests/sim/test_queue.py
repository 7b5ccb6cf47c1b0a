"""The agent's concurrency limit over real sockets: queue_status waiting, admitted, timed_out.

Each test runs the simulator on 127.0.0.1 and talks to it with plain websockets clients, or
with the protocol core's ``Session``; ``Slots`` is tested on its own at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from piagent.audio.codecs import encode_audio
from piagent.errors import ScenarioError
from piagent.protocol.messages import (
    Audio,
    AudioFormat,
    ConversationInitiationMetadata,
    QueueStatus,
)
from piagent.protocol.session import EndReason, Session, SessionState
from piagent.sim.agent import AgentDefinition, parse_agent_file
from piagent.sim.queue import Slots
from piagent.sim.server import SimServer

from .conftest import Client, fast_agent, silence, talk, tone

RATE = AudioFormat.PCM_16000.sample_rate


def busy_agent(**changes: Any) -> AgentDefinition:
    """One conversation at a time; a queued one waits up to 5 s."""
    settings: dict[str, Any] = {"concurrency_limit": 1, "queue_wait_timeout": 5.0}
    settings.update(changes)
    return fast_agent(**settings)


async def started(client: Client) -> None:
    """Metadata and the whole first message: the conversation is under way."""
    await client.wait_for(ConversationInitiationMetadata)
    await client.turn_audio(1)


async def test_over_the_limit_a_conversation_waits_and_is_admitted_when_one_ends() -> None:
    async with SimServer([busy_agent()]) as sim:
        async with talk(sim) as first:
            await started(first)
            async with talk(sim) as second:
                assert isinstance(await second.recv(), ConversationInitiationMetadata)
                assert await second.recv() == QueueStatus("waiting")
                # While waiting, what the client sends is discarded: speech makes no turn.
                await second.send_audio(tone(0.5, RATE))
                await second.send_audio(silence(0.5, RATE))
                await second.send_json({"type": "user_message", "text": "anyone?"})
                await asyncio.sleep(0.3)
                record = sim.conversations[1]
                assert record.discarded_while_queued == 11  # ten chunks and the message
                assert record.user_audio == b"" and record.user_transcripts == []
                await first.ws.close()
                assert await second.recv() == QueueStatus("admitted")
                # Then the conversation starts: the first message, and audio counts again.
                await second.turn_audio(1)
                await second.send_audio(silence(0.2, RATE))
                await asyncio.sleep(0.2)
                assert len(record.user_audio) == 0.2 * RATE * 2
        assert [r.queue_statuses for r in sim.conversations] == [[], ["waiting", "admitted"]]
        assert not any(isinstance(e, QueueStatus) for e in first.events)


async def test_a_wait_that_runs_out_is_timed_out_and_closed_3008() -> None:
    async with SimServer([busy_agent(queue_wait_timeout=0.3)]) as sim, talk(sim) as first:
        await started(first)
        async with talk(sim) as second:
            await second.wait_for(ConversationInitiationMetadata)
            assert await second.recv() == QueueStatus("waiting")
            assert await second.recv() == QueueStatus("timed_out")
            assert await second.wait_closed() == (3008, "too many concurrent connections")
        record = sim.conversations[1]
        await record.wait_closed()
        assert (record.close_code, record.queue_statuses) == (3008, ["waiting", "timed_out"])
        # The conversation that held the slot goes on.
        await first.send_json({"type": "user_message", "text": "still here"})
        await first.wait_for(Audio)


async def test_the_queue_is_first_come_first_served() -> None:
    async with SimServer([busy_agent()]) as sim, talk(sim) as first:
        await started(first)
        async with talk(sim) as second:
            await second.wait_for(QueueStatus)
            async with talk(sim) as third:
                await third.wait_for(QueueStatus)
                await first.ws.close()
                assert await second.recv() == QueueStatus("admitted")
                with pytest.raises(TimeoutError):
                    await third.wait_for(QueueStatus, within=0.3)
                await second.ws.close()
                assert await third.recv() == QueueStatus("admitted")


async def test_a_client_that_leaves_the_queue_leaks_no_slot() -> None:
    async with SimServer([busy_agent(concurrency_limit=2)]) as sim:
        async with talk(sim) as first, talk(sim) as second:
            await started(first)
            await started(second)
            async with talk(sim) as quitter:
                await quitter.wait_for(QueueStatus)
            await sim.conversations[2].wait_closed()
        await sim.conversations[1].wait_closed()
        # Both slots are free again: two newcomers start at once, with no queue_status.
        async with talk(sim) as third, talk(sim) as fourth:
            await started(third)
            await started(fourth)
            assert not any(isinstance(e, QueueStatus) for e in third.events + fourth.events)


async def test_without_queueing_the_limit_refuses_at_once() -> None:
    async with SimServer([busy_agent(queueing=False)]) as sim, talk(sim) as first:
        await started(first)
        async with talk(sim) as second:
            await second.wait_for(ConversationInitiationMetadata)
            assert await second.wait_closed() == (3008, "too many concurrent connections")
            assert not any(isinstance(e, QueueStatus) for e in second.events)


async def test_a_limit_of_zero_queues_everyone_until_the_wait_runs_out() -> None:
    agent = busy_agent(concurrency_limit=0, queue_wait_timeout=0.2)
    async with SimServer([agent]) as sim, talk(sim) as client:
        await client.wait_for(QueueStatus, where=lambda q: q.status == "timed_out")
        assert (await client.wait_closed())[0] == 3008


async def test_the_timers_and_pings_start_at_admission() -> None:
    agent = busy_agent(no_input_timeout=0.5, ping_interval=0.1, first_message="")
    async with SimServer([agent]) as sim, talk(sim) as first:
        await first.wait_for(ConversationInitiationMetadata)
        async with talk(sim) as second:
            await second.wait_for(QueueStatus)
            # Queued longer than no_input_timeout, with no ping: the clock has not started.
            await first.send_audio(silence(0.8, RATE), realtime=1.0)
            queued = sim.conversations[1]
            assert queued.pings_sent == 0 and not queued.closed
            await first.ws.close()
            assert await second.wait_for(QueueStatus) == QueueStatus("admitted")
            started_at = asyncio.get_running_loop().time()
            assert (await second.wait_closed())[0] == 1002  # no input since admission
            assert asyncio.get_running_loop().time() - started_at >= 0.4
            assert queued.pings_sent > 0


async def test_the_protocol_session_goes_queued_then_active_against_the_simulator() -> None:
    async with SimServer([busy_agent(first_message="")]) as sim, talk(sim) as first:
        await first.wait_for(ConversationInitiationMetadata)
        url = f"{sim.ws_base}/v1/convai/conversation?agent_id=demo"
        session = Session()
        states: list[SessionState] = []
        async with connect(url) as ws:
            session.initiate()
            for frame in session.data_to_send():
                await ws.send(frame)
            while session.queue_status != "admitted":
                session.receive_text(await ws.recv())
                states.append(session.state)
                if session.state is SessionState.QUEUED and len(states) == 2:
                    assert not session.can_send_audio
                    await first.ws.close()
            assert states == [SessionState.ACTIVE, SessionState.QUEUED, SessionState.ACTIVE]
            assert session.queue_status == "admitted"
            session.send_audio(encode_audio(silence(0.1, RATE), AudioFormat.PCM_16000))
            for frame in session.data_to_send():
                await ws.send(frame)
            await asyncio.sleep(0.2)
        assert len(sim.conversations[1].user_audio) == 0.1 * RATE * 2


async def test_the_protocol_session_classifies_the_timeout_as_retryable() -> None:
    async with SimServer([busy_agent(queue_wait_timeout=0.2)]) as sim, talk(sim) as first:
        await started(first)
        url = f"{sim.ws_base}/v1/convai/conversation?agent_id=demo"
        session = Session()
        async with connect(url) as ws:
            session.initiate()
            await ws.send(session.data_to_send()[0])
            with contextlib.suppress(ConnectionClosed):
                async for frame in ws:
                    session.receive_text(frame)
            session.receive_close(ws.close_code, ws.close_reason or "")
        ending = session.ending
        assert ending is not None and ending.reason is EndReason.QUEUE_TIMED_OUT
        assert ending.retryable and ending.code == 3008


# --------------------------------------------------------------------------------------------
# The agent file


def test_the_agent_file_sets_the_limit_and_the_wait() -> None:
    (agent,) = parse_agent_file(
        "- {agent_id: a, concurrency_limit: 2, queue_wait_timeout: 5, queueing: false}"
    ).agents
    assert (agent.concurrency_limit, agent.queue_wait_timeout, agent.queueing) == (2, 5.0, False)
    assert AgentDefinition().concurrency_limit is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("concurrency_limit: -1", "agents[0].concurrency_limit: must be >= 0 (null: no limit)"),
        ("queue_wait_timeout: 0", "agents[0].queue_wait_timeout: must be > 0"),
        ("concurrency_limit: 1.5", "agents[0].concurrency_limit: expected an integer, got 1.5"),
    ],
)
def test_bad_limits_are_refused(entry: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_agent_file(f"- {{agent_id: a, {entry}}}")
    assert str(info.value) == message


# --------------------------------------------------------------------------------------------
# Slots on their own


async def test_slots_hand_over_in_order_and_waiters_that_give_up_leave() -> None:
    slots = Slots(1)
    assert slots.try_take() and not slots.try_take()
    first = asyncio.create_task(slots.wait())
    second = asyncio.create_task(slots.wait())
    third = asyncio.create_task(slots.wait())
    await asyncio.sleep(0)
    assert slots.waiting == 3
    second.cancel()
    await asyncio.sleep(0)
    assert slots.waiting == 2
    slots.release()  # to the first in line
    await first
    assert (slots.taken, slots.waiting) == (1, 1)
    slots.release()  # the second gave up: the third gets it
    await third
    slots.release()
    assert (slots.taken, slots.waiting) == (0, 0)
    assert slots.try_take()


async def test_a_slot_handed_over_as_its_waiter_is_cancelled_passes_on() -> None:
    slots = Slots(1)
    assert slots.try_take()
    late = asyncio.create_task(slots.wait())
    nxt = asyncio.create_task(slots.wait())
    await asyncio.sleep(0)
    slots.release()  # ``late`` is handed the slot ...
    late.cancel()  # ... and cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await late
    await nxt  # the slot went on to the next in line
    assert (slots.taken, slots.waiting) == (1, 0)


def test_slots_refuse_a_negative_limit() -> None:
    with pytest.raises(ValueError, match="limit must be >= 0"):
        Slots(-1)
