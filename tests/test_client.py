"""AgentClient against the real simulator on 127.0.0.1: every behaviour of the conversation
client (issue: connection, on-demand sessions, reconnect, text, client tools, endings, latency).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from piagent import __version__
from piagent.audio.codecs import decode_audio, decode_ulaw, encode_pcm16, encode_ulaw
from piagent.audio.resample import StreamResampler
from piagent.client import (
    AgentClient,
    ClientOptions,
    ClientState,
    NotConnected,
    endpoint_from_config,
    initiation_from_config,
    options_from_config,
)
from piagent.config import Secret, parse_config
from piagent.logs import FIELD_CONVERSATION_ID, FIELD_TURN
from piagent.protocol.messages import (
    AgentConfigOverride,
    AudioFormat,
    ClientToolCall,
    ClientToolResult,
    ContextualUpdate,
    ConversationConfigOverride,
    ConversationInitiationClientData,
    Feedback,
    TtsConfigOverride,
    UserActivity,
    UserMessage,
    to_json,
)
from piagent.protocol.session import EndReason
from piagent.sim.agent import AgentDefinition, FaultClose
from piagent.sim.scenario import Scenario
from piagent.sim.server import SimServer
from piagent.transport import Endpoint
from tests.fakes import PacedSink

pytestmark = pytest.mark.timeout(60)

RATE = 16000
FRAME = RATE // 50  # 20 ms


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 45))  # type: ignore[arg-type]


def speech(seconds: float, seed: int = 1, level: int = 6000) -> np.ndarray:
    """Loud noise: unmistakable speech to the simulator's energy VAD, unique sample by sample."""
    rng = np.random.default_rng(seed)
    return rng.integers(-level, level, int(seconds * RATE), dtype=np.int16)


class Rig:
    """A client, its fake speaker, and a paced microphone, running on one loop."""

    def __init__(self, client: AgentClient, sink: PacedSink) -> None:
        self.client = client
        self.sink = sink

    async def talk(self, samples: np.ndarray) -> None:
        """Feed frames in real time (20 ms each), paced by the loop clock."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(0, len(samples), FRAME):
            self.client.feed(samples[i : i + FRAME])
            await asyncio.sleep(max(0.0, start + (i + FRAME) / RATE - loop.time()))

    async def silence(self, seconds: float) -> None:
        await self.talk(np.zeros(int(seconds * RATE), dtype=np.int16))

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait, with the microphone streaming silence, until ``predicate`` holds."""
        async with asyncio.timeout(within):
            while not predicate():
                await self.silence(0.02)

    async def wait_state(self, state: ClientState, within: float = 10.0) -> None:
        await self.wait_for(lambda: self.client.state is state, within)


@contextlib.asynccontextmanager
async def rig(
    sim: SimServer,
    *,
    agent_id: str = "demo",
    api_key: str | None = None,
    initiation: ConversationInitiationClientData | None = None,
    tools: Any = None,
    **options: Any,
) -> AsyncIterator[Rig]:
    defaults: dict[str, Any] = {"backoff_initial": 0.05, "backoff_max": 0.2, "stall_timeout": 2.0}
    defaults.update(options)
    sink = PacedSink(RATE)
    client = AgentClient(
        Endpoint(agent_id, sim.ws_base, sim.http_base, api_key),
        initiation or ConversationInitiationClientData(),
        ClientOptions(**defaults),
        source_rate=RATE,
        sink=sink,
        tools=tools,
        rng=random.Random(7),
    )
    async with asyncio.TaskGroup() as tasks:
        runner = tasks.create_task(client.run())
        try:
            yield Rig(client, sink)
        finally:
            runner.cancel()


def user_messages(rec: Any) -> list[Any]:
    return [m for m in rec.received if isinstance(m, UserMessage)]


# --- what the config sends ---------------------------------------------------------------------


def test_initiation_carries_what_the_config_sets_and_nothing_else() -> None:
    config = parse_config(
        {
            "agent": {
                "agent_id": "a1",
                "prompt": "You are terse.",
                "first_message": "",
                "language": "pt-br",
                "voice_id": "v1",
                "tts": {"stability": 0.4, "similarity_boost": 0.9, "speed": 1.1},
                "reasoning_effort": "low",
                "procedure_ids": ["proc_1", "proc_2"],
                "llm": {"temperature": 0.7, "max_tokens": 150},
                "dynamic_variables": {"user_name": "Ann", "visits": 3, "ratio": 0.5, "vip": True},
                "user_id": "kitchen",
            }
        }
    )
    wire = to_json(initiation_from_config(config.agent))
    assert wire == {
        "type": "conversation_initiation_client_data",
        "conversation_config_override": {
            "agent": {
                "prompt": {"prompt": "You are terse.", "reasoning_effort": "low"},
                "first_message": "",
                "language": "pt-br",
            },
            "tts": {"voice_id": "v1", "stability": 0.4, "speed": 1.1, "similarity_boost": 0.9},
        },
        "custom_llm_extra_body": {"temperature": 0.7, "max_tokens": 150},
        "dynamic_variables": {"user_name": "Ann", "visits": 3, "ratio": 0.5, "vip": True},
        "user_id": "kitchen",
        "source_info": {"source": "unknown", "version": f"piagent/{__version__}"},
        "procedure_ids": ["proc_1", "proc_2"],
    }


def test_an_unconfigured_agent_sends_no_overrides() -> None:
    config = parse_config({"agent": {"agent_id": "a1"}})
    wire = to_json(initiation_from_config(config.agent))
    assert set(wire) == {"type", "source_info"}
    options = options_from_config(config)
    assert (options.idle_timeout, options.stall_timeout, options.chunk_ms) == (30.0, 15.0, 20)
    policy = ClientOptions(idle_timeout=7.0, backoff_max=3.0, half_duplex=False).policy()
    assert (policy.idle_timeout, policy.backoff_max, policy.half_duplex) == (7.0, 3.0, False)
    endpoint = endpoint_from_config(config.agent, Secret("sk_hidden"))
    assert endpoint.api_key == "sk_hidden"
    assert "sk_hidden" not in repr(endpoint)


# --- connection ---------------------------------------------------------------------------------


def test_press_opens_a_conversation_with_the_initiation_first() -> None:
    initiation = ConversationInitiationClientData(
        conversation_config_override=ConversationConfigOverride(
            agent=AgentConfigOverride(first_message="Hi there", language="en"),
            tts=TtsConfigOverride(voice_id="voice_x"),
        ),
        custom_llm_extra_body={"temperature": 0.5, "max_tokens": 40},
        dynamic_variables={"user_name": "Ann", "visits": 3, "vip": True},
        user_id="kitchen",
    )

    async def main() -> None:
        async with SimServer() as sim, rig(sim, initiation=initiation) as r:
            assert r.client.state is ClientState.READY
            await r.silence(0.3)
            assert sim.conversations == []  # nothing happens before the press
            r.client.press()
            await sim.wait_for_conversations(1)
            await r.wait_for(lambda: r.client.status().conversation_id is not None)
            rec = sim.conversations[0]
            assert rec.initiation == initiation
            assert r.client.status().conversation_id == rec.conversation_id
            first_frame = json.loads(rec.sent[0])
            assert first_frame["type"] == "conversation_initiation_metadata"

    run(main())


def test_audio_flows_only_after_metadata_in_its_format() -> None:
    """A mu-law agent: the 16 kHz microphone reaches it as 8 kHz mu-law, complete."""
    agent = AgentDefinition(
        input_format=AudioFormat.ULAW_8000,
        metadata_delay=0.3,
        first_message="",
        strict_initiation=True,
    )

    async def main() -> None:
        async with SimServer([agent]) as sim, rig(sim) as r:
            r.client.press()
            signal = speech(0.6, seed=3, level=3000)
            await r.talk(signal)
            r.client.release()
            await r.silence(0.3)
            rec = sim.conversations[0]
            assert rec.close_code is None  # initiation came first: a strict agent accepted it
            received = decode_audio(bytes(rec.user_audio), AudioFormat.ULAW_8000)
            reference = StreamResampler(RATE, 8000).process(signal)
            head = received[: len(reference)].astype(float)
            error = head - decode_ulaw(encode_ulaw(reference)).astype(float)
            snr = 10 * np.log10(np.sum(head**2) / max(np.sum(error**2), 1.0))
            assert snr > 30, f"held audio arrived altered (SNR {snr:.1f} dB)"

    run(main())


def test_every_sample_held_during_a_slow_connect_reaches_the_server() -> None:
    agent = AgentDefinition(connect_delay=0.3, first_message="")

    async def main() -> None:
        async with SimServer([agent]) as sim, rig(sim) as r:
            await r.silence(0.1)
            r.client.press()
            assert r.client.state is ClientState.CONNECTING
            signal = speech(1.0, seed=5)
            await r.talk(signal)
            r.client.release()
            await r.silence(0.4)
            rec = sim.conversations[0]
            got = bytes(rec.user_audio)
            want = encode_pcm16(signal)
            assert got.startswith(want), "the held audio must open the stream, complete"
            assert len(got) >= len(want) + 2 * FRAME  # then silence keeps flowing

    run(main())


def test_signed_url_fetched_before_every_connection() -> None:
    agent = AgentDefinition(agent_id="private_1", private=True, api_keys=("sk_test_123",))

    async def main() -> None:
        async with SimServer([agent]) as sim:
            async with rig(sim, agent_id="private_1", api_key="sk_test_123") as r:
                for n in (1, 2):
                    r.client.say(f"message {n}")
                    await sim.wait_for_conversations(n)
                    await r.wait_for(lambda: len(user_messages(sim.conversations[-1])) == 1)
                    r.client.hang_up()
                    await r.wait_for(lambda: sim.conversations[-1].close_code is not None)
            assert [rec.close_code for rec in sim.conversations] == [1000, 1000]
            assert [user_messages(rec)[0].text for rec in sim.conversations] == [
                "message 1",
                "message 2",
            ]

    run(main())


# --- sessions on demand -------------------------------------------------------------------------


def test_idle_timeout_hangs_up_and_next_press_opens_a_fresh_conversation() -> None:
    agent = AgentDefinition(first_message="Hi.")

    async def main() -> None:
        async with SimServer([agent]) as sim, rig(sim, idle_timeout=1.0) as r:
            r.client.press()
            r.client.release()
            await sim.wait_for_conversations(1)
            await r.wait_for(lambda: sim.conversations[0].close_code is not None, within=8)
            assert sim.conversations[0].close_code == 1000
            assert r.client.status().last_ending is not None
            assert r.client.status().last_ending.reason is EndReason.CLIENT_HANGUP
            await r.wait_state(ClientState.READY)
            r.client.press()
            await sim.wait_for_conversations(2)
            first, second = sim.conversations
            assert first.conversation_id != second.conversation_id

    run(main())


def test_max_duration_ends_a_conversation() -> None:
    async def main() -> None:
        async with SimServer() as sim, rig(sim, max_duration=1.0, idle_timeout=60) as r:
            r.client.set_hands_free(True)
            await sim.wait_for_conversations(1)
            await r.wait_for(lambda: sim.conversations[0].close_code is not None, within=6)
            assert sim.conversations[0].close_code == 1000
            r.client.set_hands_free(False)

    run(main())


def test_always_connected_reconnects_after_a_normal_end() -> None:
    agent = AgentDefinition(max_duration=0.5, first_message="")

    async def main() -> None:
        async with SimServer([agent]) as sim, rig(sim, always_connected=True) as r:
            await r.wait_for(lambda: len(sim.conversations) >= 3, within=10)
            assert all(rec.close_code == 1000 for rec in sim.conversations[:2])

    run(main())


# --- text and control ---------------------------------------------------------------------------


def test_text_and_control_messages_reach_the_agent() -> None:
    async def main() -> None:
        async with SimServer() as sim, rig(sim) as r:
            with pytest.raises(NotConnected):
                r.client.send_feedback("like")
            r.client.send_context("kitchen pi, 21 C", context_id="room")  # held until connected
            r.client.say("hello")
            await sim.wait_for_conversations(1)
            rec = sim.conversations[0]
            await r.wait_for(lambda: r.client.status().turns >= 1)
            r.client.send_activity()
            r.client.send_feedback("like")
            await r.wait_for(lambda: any(isinstance(m, Feedback) for m in rec.received))
            kinds = [type(m) for m in rec.received]
            assert kinds.index(ContextualUpdate) < kinds.index(UserMessage)
            assert ContextualUpdate("kitchen pi, 21 C", "room") in rec.received
            assert UserActivity() in rec.received
            feedback = next(m for m in rec.received if isinstance(m, Feedback))
            assert feedback.score == "like"
            assert feedback.event_id == r.client._conv.link.session.last_agent_turn  # type: ignore[union-attr]
            r.client.hang_up()
            await r.wait_for(lambda: rec.close_code is not None)
            assert rec.close_code == 1000

    run(main())


def test_a_typed_message_silences_the_agent_at_once() -> None:
    agent = AgentDefinition(first_message="This is a rather long greeting. " * 6)

    async def main() -> None:
        async with SimServer([agent]) as sim, rig(sim) as r:
            r.client.press()
            r.client.release()
            await r.wait_state(ClientState.SPEAKING)
            r.client.say("stop talking")
            assert not r.sink.is_playing  # silenced in the same call, before any network
            assert r.sink.flushes >= 1
            await r.wait_for(lambda: len(user_messages(sim.conversations[0])) == 1)

    run(main())


def test_barge_in_press_flushes_and_drops_the_old_turn() -> None:
    agent = AgentDefinition(first_message="A long greeting that goes on and on. " * 6, audio_pace=4)

    async def main() -> None:
        async with SimServer([agent]) as sim, rig(sim) as r:
            r.client.say("hi")
            await r.wait_state(ClientState.SPEAKING)
            r.client.press()
            assert not r.sink.is_playing
            await r.talk(speech(0.6, seed=9))
            r.client.release()
            stale_before = r.client._conv.link.session.stats.stale_audio_chunks  # type: ignore[union-attr]
            await r.wait_for(lambda: r.client.status().latency is not None, within=10)
            assert stale_before >= 0
            assert sim.conversations[0].close_code is None

    run(main())


# --- reconnect ----------------------------------------------------------------------------------


def test_transient_close_is_retried_with_a_new_conversation() -> None:
    agent = AgentDefinition(fault_close=FaultClose("first_audio", 1011, "boom"))

    async def main() -> None:
        async with SimServer([agent]) as sim, rig(sim, always_connected=True) as r:
            await r.wait_for(lambda: len(sim.conversations) >= 3)
            ids = {rec.conversation_id for rec in sim.conversations}
            assert len(ids) == len(sim.conversations)
            assert r.client.status().last_ending is not None

    run(main())


def test_override_rejection_is_fatal_until_the_next_press(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = AgentDefinition(allowed_overrides=("agent.first_message",))
    initiation = ConversationInitiationClientData(
        conversation_config_override=ConversationConfigOverride(
            tts=TtsConfigOverride(voice_id="not_allowed")
        )
    )

    async def main() -> None:
        async with SimServer([agent]) as sim, rig(sim, initiation=initiation) as r:
            r.client.press()
            await r.wait_state(ClientState.ERROR)
            await r.silence(0.6)  # several backoff bounds: no retry
            assert len(sim.conversations) == 1
            assert sim.conversations[0].close_code == 1008
            ending = r.client.status().last_ending
            assert ending is not None and ending.reason is EndReason.OVERRIDE_REJECTED
            r.client.press()  # the user tries again: one more attempt
            await sim.wait_for_conversations(2)
            await r.wait_state(ClientState.ERROR)

    with caplog.at_level(logging.ERROR):
        run(main())
    fatal_lines = [r for r in caplog.records if "not retrying" in r.getMessage()]
    assert len(fatal_lines) == 2
    assert "Security" in fatal_lines[0].getMessage()


def test_rejected_api_key_is_fatal_and_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    agent = AgentDefinition(agent_id="private_2", private=True, api_keys=("sk_right",))

    async def main() -> None:
        async with (
            SimServer([agent]) as sim,
            rig(sim, agent_id="private_2", api_key="sk_wrong_secret") as r,
        ):
            r.client.press()
            await r.wait_state(ClientState.ERROR)
            await r.silence(0.5)
            assert sim.conversations == []
            ending = r.client.status().last_ending
            assert ending is not None
            assert ending.reason is EndReason.AUTH_REJECTED
            assert ending.code == 401

    with caplog.at_level(logging.DEBUG):
        run(main())
    assert "sk_wrong_secret" not in caplog.text


def test_stalled_server_is_detected_within_the_bound() -> None:
    scenario = Scenario.from_yaml('agent: {first_message: ""}\nsteps:\n  - stall: 30\n')

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with (
            SimServer(scenario=scenario) as sim,
            rig(sim, stall_timeout=1.0, always_connected=True) as r,
        ):
            await sim.wait_for_conversations(1)
            await r.wait_for(lambda: r.client.status().conversation_id is not None)
            stalled_at = loop.time()
            await r.wait_for(lambda: len(sim.conversations) >= 2, within=8)
            # the stall bound, then a backoff delay (cap 0.2 s) and a reconnect; slack for CI
            assert loop.time() - stalled_at < 1.0 + 0.2 + 0.8
            ending = r.client.status().last_ending
            assert ending is not None and ending.reason is EndReason.STALLED

    run(main())


# --- client tools -------------------------------------------------------------------------------


class EchoTools:
    """A minimal ``ToolRunner``: answers ``echo`` with its parameters; anything else errs."""

    def __init__(self) -> None:
        self.calls: list[ClientToolCall] = []

    async def run(self, call: ClientToolCall) -> ClientToolResult | None:
        self.calls.append(call)
        if not call.expects_response:
            return None
        if call.tool_name != "echo":
            return ClientToolResult(call.tool_call_id, f"unknown tool {call.tool_name}", True)
        return ClientToolResult(call.tool_call_id, json.dumps(call.parameters), False)


def test_client_tool_calls_are_answered() -> None:
    scenario = Scenario.from_yaml(
        """
steps:
  - tool_call: {name: echo, parameters: {x: 1}, expects_response: true, timeout: 5}
  - tool_call: {name: nope, parameters: {}, expects_response: true, timeout: 5}
  - tool_call: {name: echo, parameters: {y: 2}, expects_response: false}
  - agent_say: "done"
"""
    )

    async def main() -> None:
        tools = EchoTools()
        async with SimServer(scenario=scenario) as sim, rig(sim, tools=tools) as r:
            r.client.press()
            r.client.release()
            await r.wait_for(lambda: len(tools.calls) == 3)
            await r.silence(0.3)
            results = sim.conversations[0].tool_results
            assert [(res.result, res.is_error) for res in results] == [
                ('{"x": 1}', False),
                ("unknown tool nope", True),
            ]

    run(main())


# --- endings and latency ------------------------------------------------------------------------


async def press_and_hear_out(sim: SimServer, r: Rig) -> None:
    """A press and release, then wait for the server to close and the speaker to go quiet."""
    r.client.press()
    r.client.release()
    await r.wait_for(lambda: bool(sim.conversations and sim.conversations[0].close_code), 10)
    await r.sink.wait_drained()


def test_end_call_lets_the_last_words_play_out() -> None:
    scenario = Scenario.from_yaml(
        'steps:\n  - agent_say: "Goodbye then, have a nice day."\n  - end_call: true\n'
    )
    agent = AgentDefinition(first_message="", audio_pace=8)

    async def main() -> None:
        async with SimServer([agent], scenario=scenario) as sim, rig(sim) as r:
            await press_and_hear_out(sim, r)  # the socket closes, the agent's words play on
            assert r.sink.flushed_samples == 0
            assert len(r.sink.heard()) > RATE  # over a second of goodbye
            ending = r.client.status().last_ending
            assert ending is not None and ending.reason is EndReason.AGENT_ENDED_CALL

    run(main())


@pytest.mark.parametrize("mark_final", [True, False], ids=["is_final", "no_is_final"])
def test_every_resampled_sample_of_every_turn_is_heard(mark_final: bool) -> None:
    """24 kHz agent audio on a 16 kHz speaker: each turn's last samples, still inside the
    resampler's filter when its audio stops, are played whether or not the server marks the
    turn's last chunk with is_final (it is optional)."""
    scenario = Scenario.from_yaml(
        'steps:\n  - agent_say: "One, two, three."\n  - agent_say: "Four, five."\n'
        "  - end_call: true\n"
    )
    agent = AgentDefinition(
        first_message="",
        audio_pace=8,
        output_format=AudioFormat.PCM_24000,
        mark_final_audio=mark_final,
    )

    async def main() -> None:
        async with SimServer([agent], scenario=scenario) as sim, rig(sim) as r:
            await press_and_hear_out(sim, r)
            sent: dict[int, int] = {}  # event_id -> samples the agent sent
            for frame in sim.conversations[0].sent:
                message = json.loads(frame)
                if message["type"] == "audio":
                    event = message["audio_event"]
                    assert ("is_final" in event) is (mark_final and event.get("is_final", False))
                    audio = base64.b64decode(event["audio_base_64"])
                    pcm = decode_audio(audio, AudioFormat.PCM_24000)
                    sent[event["event_id"]] = sent.get(event["event_id"], 0) + len(pcm)
            assert len(sent) == 2
            # Each turn on its own: ceil(n * 16000 / 24000) samples, none lost, none extra.
            expected = sum(-(-n * 2 // 3) for n in sent.values())
            assert r.sink.flushed_samples == 0
            assert len(r.sink.heard()) == expected

    run(main())


def test_latency_is_measured_per_turn(caplog: pytest.LogCaptureFixture) -> None:
    agent = AgentDefinition(first_message="", turn_end_silence_ms=300)

    async def main() -> None:
        async with SimServer([agent]) as sim, rig(sim) as r:
            r.client.press()
            await sim.wait_for_conversations(1)
            await r.talk(speech(0.5, seed=11))
            r.client.release()
            await r.wait_state(ClientState.THINKING, within=2)
            await r.wait_for(lambda: r.client.status().latency is not None)
            latency = r.client.status().latency
            assert latency is not None
            assert latency.reply_ms is not None and 250 < latency.reply_ms < 5000

    with caplog.at_level(logging.INFO, logger="piagent.client"):
        run(main())
    # One summary line per turn, with the fields journald indexes under systemd.
    (line,) = [rec for rec in caplog.records if rec.getMessage().startswith("turn ")]
    assert line.__dict__[FIELD_TURN] == str(line.args[0])  # type: ignore[index]
    assert line.__dict__[FIELD_CONVERSATION_ID].startswith("conv_")


def test_a_turn_cut_off_midway_is_reported_and_the_next_press_is_fresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = AgentDefinition(
        fault_close=FaultClose("first_audio", 1011, "internal"), first_message="A long hello. " * 5
    )

    async def main() -> None:
        async with SimServer([agent]) as sim, rig(sim) as r:
            r.client.press()
            r.client.release()
            await r.wait_for(lambda: r.client.status().last_ending is not None)
            ending = r.client.status().last_ending
            assert ending is not None
            assert ending.reason is EndReason.SERVER_ERROR
            assert ending.cut_turn is not None
            await r.wait_state(ClientState.READY)  # nobody is talking: no automatic redial
            assert len(sim.conversations) == 1
            r.client.press()
            await sim.wait_for_conversations(2)
            assert sim.conversations[1].conversation_id != sim.conversations[0].conversation_id

    with caplog.at_level(logging.WARNING, logger="piagent.client"):
        run(main())
    assert "was cut off" in caplog.text


def test_api_key_and_signed_urls_never_reach_a_log(caplog: pytest.LogCaptureFixture) -> None:
    key = "sk_live_do_not_log_me_4f2a"
    agent = AgentDefinition(
        agent_id="private_3",
        private=True,
        api_keys=(key,),
        fault_close=FaultClose("first_audio", 1011, "boom"),
    )

    async def main() -> None:
        async with (
            SimServer([agent]) as sim,
            rig(sim, agent_id="private_3", api_key=key, always_connected=True) as r,
        ):
            await r.wait_for(lambda: len(sim.conversations) >= 3)
            assert all(rec.agent_id == "private_3" for rec in sim.conversations)
            status = r.client.status()
            assert key not in repr(status)

    with caplog.at_level(logging.DEBUG):
        run(main())
    ours = [rec for rec in caplog.records if not rec.name.startswith("piagent.sim")]
    assert ours, "the client logged nothing at all"
    text = "\n".join(f"{rec.name} {rec.getMessage()} {rec.exc_text or ''}" for rec in ours)
    assert key not in text
    assert "conversation_signature" not in text
    assert "connecting to ws://127.0.0.1" in text  # the URL is logged, redacted


def test_max_duration_lets_the_closing_words_play_out() -> None:
    agent = AgentDefinition(
        first_message="",
        max_conversation_duration_message="Our time is up, goodbye for now.",
        audio_pace=8,
    )
    scenario = Scenario.from_yaml("steps:\n  - max_duration: true\n")

    async def main() -> None:
        async with SimServer([agent], scenario=scenario) as sim, rig(sim) as r:
            r.client.press()
            r.client.release()
            await r.wait_for(lambda: bool(sim.conversations) and sim.conversations[0].close_code)
            assert sim.conversations[0].close_code == 1000
            await r.sink.wait_drained()
            assert r.sink.flushed_samples == 0
            assert len(r.sink.heard()) > RATE  # the whole closing sentence was heard
            ending = r.client.status().last_ending
            assert ending is not None and ending.reason is EndReason.MAX_DURATION
            assert not ending.reason.is_error

    run(main())
