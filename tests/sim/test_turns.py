"""User turns: VAD end of turn, the parrot's replay, silence, vad_score, interruptions, text."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from piagent.audio.codecs import decode_audio, encode_audio
from piagent.protocol.messages import (
    AgentResponse,
    AgentResponseCorrection,
    Audio,
    AudioFormat,
    ConversationInitiationMetadata,
    Interruption,
    UserAudioChunk,
    UserMessage,
    UserTranscript,
    VadScore,
)
from piagent.sim.server import SimServer

from .conftest import Client, fast_agent, silence, talk, tone

LONG_TEXT = "This is a rather long first message, so that there is time to interrupt it."


async def ready(client: Client) -> None:
    """Wait for the metadata and the end of the first message's audio."""
    await client.wait_for(ConversationInitiationMetadata)
    await client.turn_audio(1)


async def test_end_of_speech_gives_transcript_then_parrot_replay() -> None:
    agent = fast_agent()
    async with SimServer([agent]) as sim, talk(sim) as client:
        await ready(client)
        speech = tone(0.6, 16000)
        await client.send_audio(np.concatenate((speech, silence(0.4, 16000))))
        transcript = await client.wait_for(UserTranscript)
        assert transcript.text == "(0.6 s of speech)"
        response = await client.wait_for(AgentResponse)
        assert response.text == "You said 0.6 seconds of audio."
        assert response.event_id == transcript.event_id + 1  # protocol.md's 42/43
        chunks = await client.turn_audio(response.event_id)
        replay = decode_audio(b"".join(c.audio for c in chunks), AudioFormat.PCM_16000)
        assert np.array_equal(replay, speech)
        chars = "".join("".join(c.alignment.chars) for c in chunks if c.alignment)
        assert chars == response.text
    record = sim.conversations[0]
    assert record.user_transcripts == ["(0.6 s of speech)"]
    assert record.user_audio == bytearray(
        encode_audio(np.concatenate((speech, silence(0.4, 16000))), AudioFormat.PCM_16000)
    )
    assert record.audio_chunks == 10
    assert not any(isinstance(m, UserAudioChunk) for m in record.received)


@pytest.mark.parametrize(
    ("input_format", "output_format"),
    [
        (AudioFormat.ULAW_8000, AudioFormat.PCM_16000),
        (AudioFormat.PCM_48000, AudioFormat.ULAW_8000),
        (AudioFormat.PCM_22050, AudioFormat.PCM_44100),
    ],
)
async def test_replay_is_converted_to_the_output_format(
    input_format: AudioFormat, output_format: AudioFormat
) -> None:
    agent = fast_agent(input_format=input_format, output_format=output_format)
    async with SimServer([agent]) as sim, talk(sim) as client:
        await ready(client)
        rate = input_format.sample_rate
        speech = tone(0.5, rate, freq=300)
        await client.send_audio(np.concatenate((speech, silence(0.4, rate))), input_format)
        response = await client.wait_for(AgentResponse, where=lambda r: r.event_id > 1)
        chunks = await client.turn_audio(response.event_id)
        replay = decode_audio(b"".join(c.audio for c in chunks), output_format)
        expected = tone(0.5, output_format.sample_rate, freq=300).astype(float)
        assert abs(len(replay) - len(expected)) <= 2
        n = min(len(replay), len(expected))
        middle = slice(n // 10, n - n // 10)  # the resampler's edges ramp in and out
        error = replay[:n].astype(float)[middle] - expected[:n][middle]
        assert np.sqrt(np.mean(error**2)) < 0.05 * 8000
    assert sim.conversations[0].user_transcripts == ["(0.5 s of speech)"]


@pytest.mark.parametrize("audio_format", [AudioFormat.PCM_16000, AudioFormat.ULAW_8000])
async def test_digital_silence_is_never_speech(audio_format: AudioFormat) -> None:
    agent = fast_agent(input_format=audio_format, turn_timeout=None)
    async with SimServer([agent]) as sim, talk(sim) as client:
        await ready(client)
        data = bytes([audio_format.silence_byte]) * (audio_format.sample_rate // 5)
        if not audio_format.is_ulaw:
            data = data * 2
        for _ in range(15):  # 3 s of silence in 200 ms chunks
            await client.send(UserAudioChunk(data))
        with pytest.raises(TimeoutError):
            await client.recv(within=0.5)
    record = sim.conversations[0]
    assert record.user_transcripts == []
    assert record.audio_chunks == 15


async def test_quiet_noise_below_the_threshold_is_not_speech() -> None:
    agent = fast_agent(vad_threshold_db=-40.0)
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(16000 * 2) * 100).astype(np.int16)  # about -50 dBFS
    async with SimServer([agent]) as sim, talk(sim) as client:
        await ready(client)
        await client.send_audio(noise)
        with pytest.raises(TimeoutError):
            await client.wait_for(UserTranscript, within=0.5)
    assert sim.conversations[0].user_transcripts == []


async def test_vad_scores_follow_the_audio_and_can_be_disabled() -> None:
    async with SimServer([fast_agent()]) as sim, talk(sim) as client:
        await ready(client)
        await client.send_audio(np.concatenate((tone(0.5, 16000), silence(0.4, 16000))))
        await client.wait_for(UserTranscript)
        scores = [e.vad_score for e in client.events if isinstance(e, VadScore)]
        # One score per 100 ms of audio: five loud ones, then one zero as silence returns.
        assert scores[:5] == [pytest.approx(1.0, abs=0.01)] * 5
        assert scores[5:] == [0.0]
    events = tuple(e for e in fast_agent().client_events if e != "vad_score")
    async with SimServer([fast_agent(client_events=events)]) as sim, talk(sim) as client:
        await ready(client)
        await client.send_audio(np.concatenate((tone(0.5, 16000), silence(0.4, 16000))))
        await client.wait_for(UserTranscript)
        assert not any(isinstance(e, VadScore) for e in client.events)


async def interrupt_with_speech(client: Client) -> Interruption:
    await client.send_audio(tone(0.3, 16000))
    return await client.wait_for(Interruption)


async def test_speech_during_playback_interrupts_with_correction_and_stale_chunks() -> None:
    agent = fast_agent(first_message=LONG_TEXT, audio_pace=1.0, stale_chunks=3)
    async with SimServer([agent]) as sim, talk(sim) as client:
        await client.wait_for(ConversationInitiationMetadata)
        for _ in range(4):
            await client.wait_for(Audio)
        interruption = await interrupt_with_speech(client)
        assert interruption.event_id == 1
        after = [await client.recv() for _ in range(4)]
        correction = after[0]
        assert isinstance(correction, AgentResponseCorrection)
        assert correction.event_id == 1
        assert correction.original_agent_response == LONG_TEXT
        spoken = correction.corrected_agent_response
        assert 0 < len(spoken) < len(LONG_TEXT) // 2
        assert LONG_TEXT.startswith(spoken)
        stale = after[1:]
        assert all(isinstance(e, Audio) and e.event_id == 1 for e in stale)
        await client.send_audio(silence(0.4, 16000))
        transcript = await client.wait_for(UserTranscript)
        response = await client.wait_for(AgentResponse)
        assert response.event_id == transcript.event_id + 1 > interruption.event_id
        old = [e for e in client.events if isinstance(e, Audio) and e.event_id == 1]
        index = client.events.index(interruption)
        late = [e for e in client.events[index:] if isinstance(e, Audio) and e.event_id == 1]
        assert len(late) == 3  # exactly the stale chunks; the turn stopped
        assert not old[-1].is_final
    record = sim.conversations[0]
    assert record.interruptions == [1]


async def test_interruption_during_playback_after_all_chunks_were_sent() -> None:
    # At 20x real time the chunks are all out quickly, but the client plays for ~5 s.
    agent = fast_agent(first_message=LONG_TEXT, audio_pace=20.0, stale_chunks=2)
    async with SimServer([agent]) as sim, talk(sim) as client:
        await client.wait_for(ConversationInitiationMetadata)
        final = (await client.turn_audio(1))[-1]
        interruption = await interrupt_with_speech(client)
        assert interruption.event_id == 1
        correction = await client.recv()
        assert isinstance(correction, AgentResponseCorrection)
        stale = [await client.recv(), await client.recv()]
        assert all(isinstance(e, Audio) and e.event_id == 1 for e in stale)
        assert [e.audio for e in stale if isinstance(e, Audio)] == [final.audio] * 2


async def test_no_interruption_once_playback_is_over() -> None:
    agent = fast_agent(first_message="Hi.", audio_pace=20.0)
    async with SimServer([agent]) as sim, talk(sim) as client:
        await ready(client)
        await asyncio.sleep(0.4)  # "Hi." plays for about 0.25 s
        await client.send_audio(np.concatenate((tone(0.3, 16000), silence(0.3, 16000))))
        await client.wait_for(AgentResponse, where=lambda r: r.event_id > 1)
        assert not any(isinstance(e, Interruption) for e in client.events)


async def test_interruptions_disabled_by_client_events() -> None:
    events = tuple(e for e in fast_agent().client_events if e != "interruption")
    agent = fast_agent(first_message="One two three four.", audio_pace=2.0, client_events=events)
    async with SimServer([agent]) as sim, talk(sim) as client:
        await client.wait_for(Audio)
        await client.send_audio(np.concatenate((tone(0.3, 16000), silence(0.3, 16000))))
        await client.turn_audio(1)  # the first message plays to the end
        await client.wait_for(AgentResponse, where=lambda r: r.event_id > 1)
        assert not any(isinstance(e, Interruption) for e in client.events)
    assert sim.conversations[0].interruptions == []


async def test_user_message_interrupts_and_gets_a_written_answer() -> None:
    agent = fast_agent(first_message=LONG_TEXT, audio_pace=1.0)
    async with SimServer([agent]) as sim, talk(sim) as client:
        await client.wait_for(Audio)
        await client.send(UserMessage("What time is it?"))
        interruption = await client.wait_for(Interruption)
        assert interruption.event_id == 1
        response = await client.wait_for(AgentResponse, where=lambda r: r.event_id > 1)
        assert response.text == "You wrote: What time is it?"
        for _ in range(2):  # spoken too (at real-time pace here, so not waited out)
            await client.wait_for(Audio, where=lambda a: a.event_id == response.event_id)
        # Not echoed by default (protocol.md §13.8): no user_transcript for typed text.
        assert not any(isinstance(e, UserTranscript) for e in client.events)
    record = sim.conversations[0]
    assert record.user_transcripts == ["What time is it?"]
    assert UserMessage("What time is it?") in record.received


async def test_user_message_can_be_echoed_as_transcript() -> None:
    agent = fast_agent(echo_user_message=True)
    async with SimServer([agent]) as sim, talk(sim) as client:
        await ready(client)
        await client.send(UserMessage("hello"))
        transcript = await client.wait_for(UserTranscript)
        response = await client.wait_for(AgentResponse, where=lambda r: r.event_id > 1)
        assert transcript.text == "hello"
        assert response.event_id == transcript.event_id + 1


async def test_event_ids_increase_over_the_conversation() -> None:
    async with SimServer([fast_agent()]) as sim, talk(sim) as client:
        await ready(client)
        ids = []
        for text in ("one", "two", "three"):
            await client.send(UserMessage(text))
            response = await client.wait_for(
                AgentResponse, where=lambda r, text=text: r.text.endswith(text)
            )
            await client.turn_audio(response.event_id)
            ids.append(response.event_id)
        assert ids == sorted(ids) and len(set(ids)) == 3


async def test_text_only_override_sends_no_audio() -> None:
    initiation = {"conversation_config_override": {"conversation": {"text_only": True}}}
    async with SimServer([fast_agent()]) as sim, talk(sim, initiate=initiation) as client:
        first = await client.wait_for(AgentResponse)
        assert first.text == "Hi."
        await client.send_audio(np.concatenate((tone(0.5, 16000), silence(0.5, 16000))))
        await client.send(UserMessage("typed"))
        reply = await client.wait_for(AgentResponse)
        assert reply.text == "You wrote: typed"
        assert not any(isinstance(e, Audio | UserTranscript) for e in client.events)
    record = sim.conversations[0]
    assert record.settings is not None and record.settings.text_only
    assert record.audio_chunks == 10  # audio is received and recorded, not processed
