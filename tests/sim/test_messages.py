"""Client messages other than audio: recorded, matched, and rejected when malformed."""

from __future__ import annotations

import pytest

from piagent.protocol.messages import (
    AgentResponse,
    ContextualUpdate,
    ConversationInitiationMetadata,
    ErrorEvent,
    Feedback,
    FileInput,
    McpToolApprovalResult,
    MultimodalMessage,
    Ping,
    Pong,
    UnknownMessage,
    UserActivity,
    UserAudioChunk,
    UserMessage,
)
from piagent.sim.server import SimServer

from .conftest import Client, fast_agent, talk


async def ready(client: Client) -> None:
    await client.wait_for(ConversationInitiationMetadata)
    await client.turn_audio(1)


async def test_context_activity_feedback_and_mcp_are_recorded() -> None:
    async with SimServer([fast_agent()]) as sim, talk(sim) as client:
        await ready(client)
        await client.send(ContextualUpdate("User is on the pricing page", "page"))
        await client.send(ContextualUpdate("User is on the help page", "page"))
        await client.send(ContextualUpdate("It is raining"))
        await client.send(UserActivity())
        await client.send(UserActivity())
        await client.send(Feedback("like", 1))
        await client.send(Feedback(None, 1))
        await client.send(Feedback("dislike", 999))  # names no agent turn: logged, dropped
        await client.send(McpToolApprovalResult("call_1", True))
        await client.send(UserMessage("sync"))
        await client.wait_for(AgentResponse, where=lambda r: r.text == "You wrote: sync")
    record = sim.conversations[0]
    assert [u.text for u in record.contextual_updates] == [
        "User is on the pricing page",
        "User is on the help page",
        "It is raining",
    ]
    assert record.context == {"page": "User is on the help page", None: "It is raining"}
    assert record.user_activity == 2
    assert record.feedback == [Feedback("like", 1), Feedback(None, 1)]
    assert record.mcp_approvals == [McpToolApprovalResult("call_1", True)]
    assert Feedback("dislike", 999) in record.received
    assert record.close_code is None or record.close_code == 1000


async def test_unknown_client_types_are_ignored() -> None:
    async with SimServer([fast_agent()]) as sim, talk(sim) as client:
        await ready(client)
        await client.send_json({"type": "some_future_message", "x": 1})
        await client.send(UserMessage("still here"))
        await client.wait_for(AgentResponse, where=lambda r: r.text == "You wrote: still here")
    unknown = [m for m in sim.conversations[0].received if isinstance(m, UnknownMessage)]
    assert [m.type for m in unknown] == ["some_future_message"]


async def test_strict_messages_close_1008_on_unknown_types_and_bad_feedback() -> None:
    agent = fast_agent(strict_messages=True)
    async with SimServer([agent]) as sim, talk(sim) as client:
        await ready(client)
        await client.send_json({"type": "some_future_message"})
        code, reason = await client.wait_closed()
        assert code == 1008
        assert reason == "Invalid message: unknown message type 'some_future_message'"
        error = next(e for e in client.events if isinstance(e, ErrorEvent))
        assert error.code == 1008 and error.error_type == "invalid_message"
    async with SimServer([agent]) as sim, talk(sim) as client:
        await ready(client)
        await client.send(Feedback("like", 77))
        code, _ = await client.wait_closed()
        assert code == 1008


@pytest.mark.parametrize(
    ("frame", "detail"),
    [
        ("{not json", "not valid JSON"),
        ('{"type": "pong", "event_id": "seven"}', "event_id: expected integer"),
        ('{"type": "user_message"}', "text: required field missing"),
        ('{"user_audio_chunk": "***"}', "invalid base64"),
        ("[1, 2]", "expected JSON object"),
        ('{"type": 5}', "type: expected string"),
    ],
)
async def test_malformed_frames_close_1008_with_invalid_message(frame: str, detail: str) -> None:
    async with SimServer([fast_agent()]) as sim, talk(sim) as client:
        await ready(client)
        await client.send(frame)
        code, reason = await client.wait_closed()
    assert code == 1008
    assert reason is not None and reason.startswith("Invalid message: ")
    errors = [e for e in client.events if isinstance(e, ErrorEvent)]
    assert len(errors) == 1
    assert errors[0].error_type == "invalid_message" and errors[0].code == 1008
    assert errors[0].message is not None and detail in errors[0].message
    record = sim.conversations[0]
    await record.wait_closed()
    assert record.close_code == 1008


async def test_odd_length_pcm_and_binary_frames_are_invalid() -> None:
    async with SimServer([fast_agent()]) as sim, talk(sim) as client:
        await ready(client)
        await client.send(UserAudioChunk(b"\x00\x01\x02"))
        code, reason = await client.wait_closed()
        assert code == 1008 and reason is not None and "even number of bytes" in reason
    async with SimServer([fast_agent()]) as sim, talk(sim) as client:
        await ready(client)
        await client.ws.send(b"\x00\x01")
        code, reason = await client.wait_closed()
        assert code == 1008 and reason is not None and "binary" in reason


async def test_mu_law_chunks_may_have_any_length() -> None:
    agent = fast_agent(input_format="ulaw_8000")
    async with SimServer([agent]) as sim, talk(sim) as client:
        await ready(client)
        await client.send(UserAudioChunk(b"\xff" * 333))
        await client.send(UserMessage("ok"))
        await client.wait_for(AgentResponse, where=lambda r: r.text == "You wrote: ok")
    assert bytes(sim.conversations[0].user_audio) == b"\xff" * 333


async def test_pongs_are_recorded_in_received() -> None:
    async with SimServer([fast_agent(ping_interval=0.05)]) as sim, talk(sim) as client:
        await ready(client)
        for _ in range(3):
            await client.wait_for(Ping)
        await client.send(UserMessage("sync"))
        await client.wait_for(AgentResponse, where=lambda r: r.text == "You wrote: sync")
    record = sim.conversations[0]
    assert len(record.pongs) >= 3
    assert [m.event_id for m in record.received if isinstance(m, Pong)] == record.pongs


async def test_multimodal_message_text_is_a_user_turn() -> None:
    async with SimServer([fast_agent()]) as sim, talk(sim) as client:
        await ready(client)
        await client.send(MultimodalMessage("What is this?", FileInput("file_1")))
        await client.wait_for(AgentResponse, where=lambda r: r.text == "You wrote: What is this?")
    assert MultimodalMessage("What is this?", FileInput("file_1")) in sim.conversations[0].received
