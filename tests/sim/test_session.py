"""Session start: upgrade, sub-protocol, initiation data, metadata, the first message's turn."""

from __future__ import annotations

import asyncio
import base64

import pytest
from websockets.asyncio.client import connect

from piagent.audio.codecs import decode_audio
from piagent.protocol.messages import (
    AgentChatResponsePart,
    AgentResponse,
    Audio,
    AudioFormat,
    ConversationInitiationMetadata,
    UserAudioChunk,
    parse_server,
)
from piagent.sim.agent import DEFAULT_FIRST_MESSAGE, AgentDefinition
from piagent.sim.server import SimServer

from .conftest import fast_agent, silence, talk


@pytest.mark.parametrize("output_format", list(AudioFormat))
@pytest.mark.parametrize("input_format", [AudioFormat.PCM_16000, AudioFormat.ULAW_8000])
async def test_metadata_comes_first_with_the_agents_formats(
    input_format: AudioFormat, output_format: AudioFormat
) -> None:
    agent = fast_agent(input_format=input_format, output_format=output_format)
    async with SimServer([agent]) as sim, talk(sim) as client:
        metadata = await client.recv()
        assert isinstance(metadata, ConversationInitiationMetadata)
        assert metadata.agent_output_audio_format is output_format
        assert metadata.user_input_audio_format is input_format
        assert metadata.conversation_id.startswith("conv_")
        chunks = await client.turn_audio(1)
        audio = b"".join(chunk.audio for chunk in chunks)
        assert len(audio) % output_format.bytes_per_sample == 0
        samples = decode_audio(audio, output_format)
        # "Hi." is about 250 ms of speech at the format's own rate, and not silent.
        assert 0.15 < len(samples) / output_format.sample_rate < 0.5
        assert abs(samples.astype(float)).max() > 1000
    assert sim.conversations[0].conversation_id == metadata.conversation_id


async def test_every_input_format_in_metadata() -> None:
    for input_format in AudioFormat:
        async with SimServer([fast_agent(input_format=input_format)]) as sim, talk(sim) as c:
            metadata = await c.wait_for(ConversationInitiationMetadata)
            assert metadata.user_input_audio_format is input_format


async def test_first_message_turn_structure() -> None:
    text = "Hello there, how are you today?"
    agent = fast_agent(first_message=text)
    async with SimServer([agent]) as sim, talk(sim) as client:
        await client.wait_for(ConversationInitiationMetadata)
        events = []
        while not (events and isinstance(events[-1], Audio) and events[-1].is_final):
            events.append(await client.recv())
        parts = [e for e in events if isinstance(e, AgentChatResponsePart)]
        assert parts[0].part_type == "start" and parts[-1].part_type == "stop"
        assert "".join(p.text for p in parts if p.part_type == "delta") == text
        chunks = [e for e in events if isinstance(e, Audio)]
        assert len(chunks) > 3
        assert [c.is_final for c in chunks] == [False] * (len(chunks) - 1) + [True]
        # agent_response comes right after the first audio chunk by default.
        first_audio = events.index(chunks[0])
        response = events[first_audio + 1]
        assert isinstance(response, AgentResponse) and response.text == text
        ids = {e.event_id for e in events if not isinstance(e, ConversationInitiationMetadata)}
        assert ids == {1}
        # Alignment: every character exactly once, in order, times inside each chunk.
        chars = "".join("".join(c.alignment.chars) for c in chunks if c.alignment)
        assert chars == text
        for chunk in chunks[:-1]:
            assert chunk.alignment is not None
            assert all(0 <= t < 100 for t in chunk.alignment.char_start_times_ms)
            assert len(chunk.alignment.char_durations_ms) == len(chunk.alignment.chars)
    record = sim.conversations[0]
    assert record.agent_turns == {1: text}
    sent = record.sent_events()
    assert isinstance(sent[0], ConversationInitiationMetadata)
    assert [e for e in sent if isinstance(e, Audio)] == chunks


@pytest.mark.parametrize("order", ["before_audio", "after_audio"])
async def test_agent_response_order_is_configurable(order: str) -> None:
    agent = fast_agent(agent_response_order=order)
    async with SimServer([agent]) as sim, talk(sim) as client:
        await client.wait_for(AgentResponse)
        audio_before = [e for e in client.events if isinstance(e, Audio)]
        if order == "before_audio":
            assert audio_before == []
        else:
            assert audio_before and audio_before[-1].is_final


async def test_audio_is_paced_and_agent_speaks_until_playback_ends() -> None:
    # About 1.3 s of speech at 4x real time: chunks take about 0.33 s to send.
    agent = fast_agent(first_message="Paced speech here.", audio_pace=4.0)
    async with SimServer([agent]) as sim, talk(sim) as client:
        await client.wait_for(ConversationInitiationMetadata)
        loop = asyncio.get_running_loop()
        start = loop.time()
        chunks = await client.turn_audio(1)
        elapsed = loop.time() - start
        duration = sum(len(c.audio) for c in chunks) / 32000
        assert duration / 4.0 * 0.7 < elapsed < duration / 4.0 + 0.5


async def test_default_agent_accepts_any_id_and_subprotocol_convai() -> None:
    async with SimServer() as sim:
        url = f"{sim.ws_base}/v1/convai/conversation?agent_id=anything&source=js_sdk&version=1.0"
        url += "&environment=production&branch_id=b1"
        offered = ["convai", "bearer.secret-token"]
        async with connect(url, subprotocols=offered, max_queue=None) as ws:
            assert ws.subprotocol == "convai"
            await ws.send('{"type": "conversation_initiation_client_data"}')
            metadata = parse_server(await ws.recv())
            assert isinstance(metadata, ConversationInitiationMetadata)
            assert metadata.agent_output_audio_format is AudioFormat.PCM_16000
            parts = parse_server(await ws.recv())
            assert isinstance(parts, AgentChatResponsePart)
        record = (await sim.wait_for_conversations(1))[0]
        assert record.agent_id == "anything"
        assert record.subprotocol == "convai"
        assert record.query["source"] == "js_sdk"
        assert record.initiation is not None
        await record.wait_closed()
        assert record.close_code == 1000
    assert AgentDefinition().first_message == DEFAULT_FIRST_MESSAGE
    assert set(AgentDefinition().client_events) >= {
        "audio",
        "interruption",
        "agent_response",
        "agent_response_correction",
        "agent_chat_response_part",
        "user_transcript",
        "vad_score",
        "client_tool_call",
        "agent_tool_response",
        "ping",
    }


async def test_no_subprotocol_when_none_offered() -> None:
    async with SimServer([fast_agent()]) as sim, talk(sim) as client:
        assert client.ws.subprotocol is None
        await client.wait_for(ConversationInitiationMetadata)


async def test_metadata_waits_for_initiation_data() -> None:
    agent = fast_agent(initiation_timeout=5.0, first_message="Hello")
    async with SimServer([agent]) as sim, talk(sim, send_initiation=False) as client:
        await sim.wait_for_conversations(1)
        with pytest.raises(TimeoutError):
            await client.recv(within=0.3)
        await client.initiate(
            conversation_config_override={"agent": {"first_message": "Overridden"}}
        )
        await client.wait_for(ConversationInitiationMetadata)
        response = await client.wait_for(AgentResponse)
        assert response.text == "Overridden"


async def test_without_initiation_data_metadata_follows_a_wait() -> None:
    agent = fast_agent(initiation_timeout=0.3)
    async with SimServer([agent]) as sim, talk(sim, send_initiation=False) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await client.wait_for(ConversationInitiationMetadata)
        assert loop.time() - start >= 0.25
    assert sim.conversations[0].initiation is None


async def test_audio_before_initiation_means_no_overrides() -> None:
    agent = fast_agent(initiation_timeout=5.0)
    async with SimServer([agent]) as sim, talk(sim, send_initiation=False) as client:
        await client.send(UserAudioChunk(bytes(3200)))
        await client.wait_for(ConversationInitiationMetadata, within=1.0)
        await client.wait_for(AgentResponse)
    record = sim.conversations[0]
    assert record.initiation is None
    assert record.audio_chunks == 1


async def test_strict_initiation_closes_1008_when_audio_comes_first() -> None:
    agent = fast_agent(initiation_timeout=5.0, strict_initiation=True)
    async with SimServer([agent]) as sim, talk(sim, send_initiation=False) as client:
        await client.send(UserAudioChunk(base64.b64decode("AAAA")))
        code, reason = await client.wait_closed()
        assert code == 1008
        assert reason is not None and reason.startswith("Invalid message")
    assert not any(isinstance(e, ConversationInitiationMetadata) for e in client.events)


async def test_empty_first_message_waits_for_the_user() -> None:
    agent = fast_agent(first_message="")
    async with SimServer([agent]) as sim, talk(sim) as client:
        await client.wait_for(ConversationInitiationMetadata)
        await client.send_audio(silence(0.5, 16000))
        with pytest.raises(TimeoutError):
            await client.recv(within=0.4)
