"""The official ElevenLabs Python SDK holds a conversation with ``piagent sim``.

``elevenlabs.conversational_ai.conversation.Conversation`` is a client nobody here wrote. If it
connects to the simulator, gets a conversation id, hears the first message, gets its typed user
messages answered, answers client tool calls and pings, and ends cleanly, then the simulator
speaks the protocol the real service's own client expects (testing.md, "The ElevenLabs side").

Each exchange is checked on both sides: what the SDK reported (its callbacks, its audio
interface, its error log) and what the simulator recorded (its ``ConversationRecord``). The
frames the simulator sent are decoded here with plain ``json``/``base64``, not with piagent's
parser, so the comparison does not depend on piagent's own reading of the protocol.

The SDK is pointed at the simulator the way its users would point it at another region:
``ElevenLabs(base_url=sim.ws_base)``; ``Conversation`` appends ``/v1/convai/conversation?
agent_id=...&source=python_sdk&version=...`` to the base URL.

Three ways to talk: through ``FakeSoundCard``, a fake device implementing the SDK's
``AudioInterface`` (silence in at real-time pace, a recording speaker that keeps real time);
through the SDK's own ``DefaultAudioInterface`` on real PyAudio over the ALSA fake card of
testing.md, in a child process because ``ALSA_CONFIG_PATH`` must be set before PortAudio starts;
and with no audio interface at all (chat mode).
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from elevenlabs.client import ElevenLabs

from piagent.protocol.messages import (
    ClientToolResult,
    ConversationConfigOverride,
    ConversationInitiationClientData,
    Pong,
    SourceInfo,
    UserMessage,
)
from piagent.sim.scenario import Scenario
from piagent.sim.server import SimServer

with warnings.catch_warnings():
    # elevenlabs 2.78.0 annotates ``AsyncConversation._ws`` with
    # ``websockets.WebSocketClientProtocol`` at class-definition time, and websockets >= 14
    # deprecates that alias and the ``websockets.legacy`` package it lives in. Both warnings are
    # raised by the import itself, during collection, which ``pytest.mark.filterwarnings`` does
    # not cover; so exactly these two are ignored, for this import only.
    warnings.filterwarnings(
        "ignore",
        message=r"websockets\.WebSocketClientProtocol is deprecated",
        category=DeprecationWarning,
    )
    warnings.filterwarnings(
        "ignore", message=r"websockets\.legacy is deprecated", category=DeprecationWarning
    )
    from elevenlabs.conversational_ai.conversation import (
        AudioInterface,
        ClientTools,
        Conversation,
        ConversationInitiationData,
        DisconnectionDetails,
    )

SDK_VERSION = version("elevenlabs")
REPO_ROOT = Path(__file__).resolve().parents[2]

# The SDK assumes pcm_16000 both ways (it never reads the formats in the metadata), which is
# also what a parrot agent uses: 16-bit mono at 16 kHz.
SAMPLE_RATE = 16_000
MIC_CHUNK_SAMPLES = 4_000  # the SDK's recommended 250 ms chunk (AudioInterface.start docstring)

WAIT = 10.0  # seconds: the longest any single expected event may take

FIRST_MESSAGE = "Hello from the scenario."
ASK_TIME = "What time is it?"
TOOL_INTRO = "Let me check the time."
TOOL_OUTRO = "Thanks, I have the time and also the weather for you."
BARGE_IN = "Repeat after me"
PARROT_REPLY = f"You wrote: {BARGE_IN}"  # the simulator's parrot, once the steps are done
GOODBYE = "Goodbye."

CONVERSATION_SCENARIO = f"""
agent:
  first_message: "{FIRST_MESSAGE}"
  ping_interval: 0.2
steps:
  - expect: user_turn
  - agent_say: "{TOOL_INTRO}"
  - tool_call: {{name: get_time, parameters: {{tz: UTC}}, expects_response: true, timeout: 5}}
  - tool_call: {{name: get_weather, parameters: {{city: Oslo}}, expects_response: true, timeout: 5}}
  - agent_say: "{TOOL_OUTRO}"
"""

TEXT_SCENARIO = f"""
agent:
  first_message: "{FIRST_MESSAGE}"
steps:
  - expect: user_turn
  - agent_say: "{GOODBYE}"
  - end_call: true
"""

SPEAKER_FIRST_MESSAGE = "Hello from the speaker test."
SPEAKER_GOODBYE = "Goodbye from the speaker test."

SPEAKER_SCENARIO = f"""
agent:
  first_message: "{SPEAKER_FIRST_MESSAGE}"
steps:
  - agent_say: "{SPEAKER_GOODBYE}"
  - end_call: true
"""

# Replaces the whole system ALSA configuration (testing.md): playback writes FAKE_SPK_FILE and
# capture reads FAKE_MIC_FILE, both read when a stream opens. Unlike testing.md's single ``file``
# PCM, capture and playback are two PCMs joined by ``asym``: the file plugin also writes what a
# capture stream reads into its ``file``, so with one PCM the open microphone (as
# DefaultAudioInterface keeps it) overwrites the speaker file with its silence.
ALSA_FAKE_CARD = """
pcm.!default { type asym; playback.pcm "fakespeaker"; capture.pcm "fakemic" }
pcm.fakespeaker {
    type plug
    slave.pcm {
        type file
        slave.pcm { type null }
        format "raw"
        file { @func getenv vars [ FAKE_SPK_FILE ] default "/dev/null" }
    }
}
pcm.fakemic {
    type plug
    slave.pcm {
        type file
        slave.pcm { type null }
        format "raw"
        file "/dev/null"
        infile { @func getenv vars [ FAKE_MIC_FILE ] default "/dev/zero" }
    }
}
"""


# --------------------------------------------------------------------------------------------
# Helpers


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``predicate`` until it holds; fail the test, naming ``what``, after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def call_with_timeout(function: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Run a call that has no timeout of its own (``wait_for_session_end`` joins a thread)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function).result(timeout=timeout)


def sent_frames(sim_frames: list[str], frame_type: str) -> list[dict[str, Any]]:
    """The frames of one ``type`` among those the simulator sent, decoded as plain JSON."""
    frames = (json.loads(frame) for frame in list(sim_frames))
    return [frame for frame in frames if frame.get("type") == frame_type]


def all_audio(sim_frames: list[str]) -> bytes:
    """All agent audio the simulator sent, in order."""
    return b"".join(
        base64.b64decode(frame["audio_event"]["audio_base_64"])
        for frame in sent_frames(sim_frames, "audio")
    )


def audio_to_play(sim_frames: list[str]) -> bytes:
    """The agent audio a client must play: every chunk but those that arrive after an
    ``interruption`` and belong to the interrupted turn or an earlier one (protocol.md §5)."""
    played = bytearray()
    interrupted_up_to = 0
    for frame in map(json.loads, list(sim_frames)):
        if frame.get("type") == "interruption":
            interrupted_up_to = frame["interruption_event"]["event_id"]
        elif frame.get("type") == "audio" and frame["audio_event"]["event_id"] > interrupted_up_to:
            played.extend(base64.b64decode(frame["audio_event"]["audio_base_64"]))
    return bytes(played)


class SdkEvents:
    """What the SDK reported through its callbacks (they run on the SDK's threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.agent_responses: list[str] = []
        self.corrections: list[tuple[str, str]] = []
        self.user_transcripts: list[str] = []
        self.latencies_ms: list[int] = []
        self.disconnects: list[DisconnectionDetails] = []

    def on_agent_response(self, text: str) -> None:
        with self._lock:
            self.agent_responses.append(text)

    def on_correction(self, original: str, corrected: str) -> None:
        with self._lock:
            self.corrections.append((original, corrected))

    def on_user_transcript(self, text: str) -> None:
        with self._lock:
            self.user_transcripts.append(text)

    def on_latency(self, latency_ms: int) -> None:
        with self._lock:
            self.latencies_ms.append(latency_ms)

    def on_disconnect(self, details: DisconnectionDetails) -> None:
        with self._lock:
            self.disconnects.append(details)

    def has_response(self, text: str) -> bool:
        with self._lock:
            return text in self.agent_responses


class FakeSoundCard(AudioInterface):
    """A fake audio device for the SDK: a microphone hearing silence, a speaker that records.

    It honours the SDK's ``AudioInterface`` contract: ``start`` is called once and must then
    call ``input_callback`` regularly with 16-bit mono 16 kHz PCM; ``output`` must return
    quickly; ``interrupt`` drops buffered output; after ``stop`` no more input is delivered.
    Both sides keep real time, as a sound card would: the microphone delivers 250 ms chunks on
    the monotonic clock (protocol.md §8: never faster than real time), and the speaker is busy
    for as long as the audio it was given lasts, until an interruption flushes it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._played = bytearray()
        self._busy_until = 0.0  # monotonic time when the speaker runs out of audio
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.start_calls = 0
        self.stop_calls = 0
        self.chunks_captured = 0
        self.interruptions = 0

    def start(self, input_callback: Callable[[bytes], None]) -> None:
        self.start_calls += 1
        self._thread = threading.Thread(
            target=self._capture, args=(input_callback,), name="fake-mic", daemon=True
        )
        self._thread.start()

    def _capture(self, input_callback: Callable[[bytes], None]) -> None:
        chunk = bytes(2 * MIC_CHUNK_SAMPLES)
        period = MIC_CHUNK_SAMPLES / SAMPLE_RATE
        due = time.monotonic()
        while not self._stopping.is_set():
            input_callback(chunk)
            self.chunks_captured += 1
            due += period
            self._stopping.wait(max(0.0, due - time.monotonic()))

    def stop(self) -> None:
        self.stop_calls += 1
        self._stopping.set()
        # The SDK may call stop() from inside input_callback (a failed send ends the session).
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=WAIT)

    def output(self, audio: bytes) -> None:
        with self._lock:
            self._played.extend(audio)
            start = max(self._busy_until, time.monotonic())
            self._busy_until = start + len(audio) / (2 * SAMPLE_RATE)

    def interrupt(self) -> None:
        with self._lock:
            self.interruptions += 1
            self._busy_until = time.monotonic()

    @property
    def played(self) -> bytes:
        """Every byte given to the speaker so far."""
        with self._lock:
            return bytes(self._played)

    @property
    def is_quiet(self) -> bool:
        """Whether the speaker has played something and finished playing it."""
        with self._lock:
            return bool(self._played) and time.monotonic() >= self._busy_until


def has_played_all(device: FakeSoundCard, sim_frames: list[str]) -> bool:
    """Whether the agent's last turn is over: its final chunk sent, everything the device
    should have got received, and played out in real time. The device starts playing no
    earlier than the simulator starts its clock, so the simulator then no longer counts the
    agent as speaking, and a user message is not a barge-in."""
    audio = sent_frames(sim_frames, "audio")
    return (
        bool(audio)
        and audio[-1]["audio_event"].get("is_final", False)
        and device.played == audio_to_play(sim_frames)
        and device.is_quiet
    )


@contextmanager
def sdk_error_log(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail if the SDK logged an error: it logs, then ends the session, on a frame it rejects."""
    caplog.set_level(logging.WARNING, logger="elevenlabs")
    yield
    errors = [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("elevenlabs") and record.levelno >= logging.ERROR
    ]
    assert errors == [], f"the SDK rejected something the simulator sent: {errors}"


# --------------------------------------------------------------------------------------------
# A whole conversation through the SDK, with a fake audio device


@pytest.mark.timeout(60)
def test_sdk_conversation_with_fake_device(caplog: pytest.LogCaptureFixture) -> None:
    events = SdkEvents()
    device = FakeSoundCard()
    tool_calls: list[dict[str, Any]] = []

    def get_time(parameters: dict[str, Any]) -> str:
        tool_calls.append(parameters)
        return f"12:00 in {parameters['tz']}"

    async def get_weather(parameters: dict[str, Any]) -> str:
        tool_calls.append(parameters)
        return f"Sunny in {parameters['city']}"

    tools = ClientTools()
    tools.register("get_time", get_time)  # runs in the SDK's thread pool
    tools.register("get_weather", get_weather, is_async=True)  # runs on the SDK's tool loop

    scenario = Scenario.from_yaml(CONVERSATION_SCENARIO)
    with (
        sdk_error_log(caplog),
        SimServer(agents=None, scenario=scenario).run_in_thread() as sim,
    ):
        conversation = Conversation(
            ElevenLabs(base_url=sim.ws_base, api_key=None),
            "demo",
            "pi-user-1",
            requires_auth=False,
            audio_interface=device,
            config=ConversationInitiationData(dynamic_variables={"user_name": "Ann", "visits": 3}),
            client_tools=tools,
            callback_agent_response=events.on_agent_response,
            callback_agent_response_correction=events.on_correction,
            callback_user_transcript=events.on_user_transcript,
            callback_latency_measurement=events.on_latency,
            callback_disconnect=events.on_disconnect,
        )
        conversation.start_session()
        try:
            wait_until(lambda: len(sim.conversations) == 1, "the SDK to connect")
            rec = sim.conversations[0]

            # The first message: its text through the callback, its audio through the speaker.
            wait_until(lambda: events.has_response(FIRST_MESSAGE), "the first message")
            wait_until(lambda: has_played_all(device, rec.sent), "the first message to play")

            # A typed message while the agent is silent starts the scripted turn: a sentence,
            # two client tool calls (answered by the SDK's ClientTools), another sentence.
            conversation.send_user_message(ASK_TIME)
            wait_until(lambda: events.has_response(TOOL_OUTRO), "the scripted answer")

            # Typing over that last sentence while it plays is a barge-in: the simulator
            # interrupts it, and then, its script done, answers as the parrot.
            conversation.send_user_message(BARGE_IN)
            wait_until(lambda: events.has_response(PARROT_REPLY), "the parrot's answer")
            wait_until(lambda: has_played_all(device, rec.sent), "the parrot's answer to play")

            # Pings come every 0.2 s.
            wait_until(lambda: len(rec.pongs) >= 3, "three answered pings")
        finally:
            conversation.end_session()
        conversation_id = call_with_timeout(conversation.wait_for_session_end)
        wait_until(lambda: rec.closed, "the simulator to see the close")

    # The connection: the SDK's URL, no sub-protocol, the agent asked for.
    assert rec.agent_id == "demo"
    assert rec.query == {"agent_id": "demo", "source": "python_sdk", "version": SDK_VERSION}
    assert rec.subprotocol is None

    # Metadata: the id the SDK returns is the one the simulator assigned.
    assert conversation_id == rec.conversation_id
    (metadata,) = sent_frames(rec.sent, "conversation_initiation_metadata")
    assert metadata["conversation_initiation_metadata_event"] == {
        "conversation_id": rec.conversation_id,
        "agent_output_audio_format": "pcm_16000",
        "user_input_audio_format": "pcm_16000",
    }
    assert json.loads(rec.sent[0]) == metadata  # the simulator's first frame

    # The SDK's first message: its initiation data, with the empty {} it always sends.
    assert rec.received[0] == rec.initiation
    assert rec.initiation == ConversationInitiationClientData(
        conversation_config_override=rec.initiation.conversation_config_override,
        custom_llm_extra_body={},
        dynamic_variables={"user_name": "Ann", "visits": 3},
        user_id="pi-user-1",
        source_info=SourceInfo(source="python_sdk", version=SDK_VERSION),
    )
    assert rec.initiation.conversation_config_override in (None, ConversationConfigOverride())
    assert rec.settings is not None
    assert not rec.settings.text_only  # an audio interface was given: a voice conversation
    assert rec.settings.first_message == FIRST_MESSAGE

    # Every agent turn, in order, as the simulator sent it and as the SDK reported it.
    sim_responses = [
        frame["agent_response_event"] for frame in sent_frames(rec.sent, "agent_response")
    ]
    assert [r["agent_response"] for r in sim_responses] == [
        FIRST_MESSAGE,
        TOOL_INTRO,
        TOOL_OUTRO,
        PARROT_REPLY,
    ]
    assert events.agent_responses == [r["agent_response"].strip() for r in sim_responses]

    # The typed messages reached the simulator as user messages (not echoed as transcripts).
    assert [m.text for m in rec.received if isinstance(m, UserMessage)] == [ASK_TIME, BARGE_IN]
    sim_transcripts = [
        frame["user_transcription_event"]["user_transcript"]
        for frame in sent_frames(rec.sent, "user_transcript")
    ]
    assert events.user_transcripts == [text.strip() for text in sim_transcripts]

    # Client tools: each handler got the call's parameters (plus the id, as the SDK adds it),
    # and its return value went back, not as an error, under the id the simulator asked with.
    calls = [frame["client_tool_call"] for frame in sent_frames(rec.sent, "client_tool_call")]
    assert [call["tool_name"] for call in calls] == ["get_time", "get_weather"]
    time_id, weather_id = (c["tool_call_id"] for c in calls)
    assert tool_calls == [
        {"tool_call_id": time_id, "tz": "UTC"},
        {"tool_call_id": weather_id, "city": "Oslo"},
    ]
    assert rec.tool_results == [
        ClientToolResult(tool_call_id=time_id, result="12:00 in UTC", is_error=False),
        ClientToolResult(tool_call_id=weather_id, result="Sunny in Oslo", is_error=False),
    ]
    assert rec.tool_timeouts == []

    # The barge-in: the simulator interrupted the playing turn and corrected its text; the SDK
    # flushed the speaker and passed the correction on.
    outro_id = sim_responses[2]["event_id"]
    assert rec.interruptions == [outro_id]
    (interruption,) = sent_frames(rec.sent, "interruption")
    assert interruption["interruption_event"] == {"event_id": outro_id}
    (correction,) = sent_frames(rec.sent, "agent_response_correction")
    corrected = correction["agent_response_correction_event"]["corrected_agent_response"]
    assert TOOL_OUTRO.startswith(corrected)
    assert events.corrections == [(TOOL_OUTRO, corrected.strip())]
    assert device.interruptions == 1

    # Agent audio: the speaker got exactly what the simulator sent, minus the stale chunks
    # after the interruption, which the SDK must drop (protocol.md §5), and there were some.
    expected_audio = audio_to_play(rec.sent)
    assert len(expected_audio) > 0
    assert device.played == expected_audio
    assert len(all_audio(rec.sent)) > len(expected_audio)

    # Pings: every ping the SDK saw was answered once, in order, with its event_id; the first
    # ping's explicit null ping_ms was skipped and the measured ones reached the callback.
    pings = [frame["ping_event"] for frame in sent_frames(rec.sent, "ping")]
    assert rec.pings_sent == len(pings) >= 3
    assert pings[0]["ping_ms"] is None
    assert rec.pongs == [ping["event_id"] for ping in pings[: len(rec.pongs)]]
    answered = pings[: len(rec.pongs)]
    assert events.latencies_ms == [ping["ping_ms"] for ping in answered if ping["ping_ms"]]

    # Nothing else came from the SDK.
    kinds = (ConversationInitiationClientData, UserMessage, Pong, ClientToolResult)
    assert all(isinstance(message, kinds) for message in rec.received)

    # The microphone: every 250 ms chunk of silence it captured reached the simulator.
    assert device.start_calls == device.stop_calls == 1
    assert rec.audio_chunks == device.chunks_captured > 0
    assert rec.user_audio == bytes(2 * MIC_CHUNK_SAMPLES * device.chunks_captured)

    # The end: the user hung up, and the SDK closed normally.
    assert events.disconnects == [DisconnectionDetails(reason="user")]
    assert rec.close_code == 1000
    assert rec.failure is None


@pytest.mark.timeout(30)
def test_sdk_text_only_conversation(caplog: pytest.LogCaptureFixture) -> None:
    """Without an audio interface the SDK asks for chat mode with a top-level ``text_only``
    (its quirk, protocol.md §3.2); the simulator reads it as ``conversation.text_only``."""
    events = SdkEvents()
    scenario = Scenario.from_yaml(TEXT_SCENARIO)
    with (
        sdk_error_log(caplog),
        SimServer(agents=None, scenario=scenario).run_in_thread() as sim,
    ):
        conversation = Conversation(
            ElevenLabs(base_url=sim.http_base, api_key=None),
            "chat-agent",
            requires_auth=False,
            callback_agent_response=events.on_agent_response,
            callback_disconnect=events.on_disconnect,
        )
        conversation.start_session()
        try:
            wait_until(lambda: events.has_response(FIRST_MESSAGE), "the first message")
            conversation.send_contextual_update("The user is at the kitchen table.")
            conversation.register_user_activity()
            conversation.send_user_message("Goodbye")
            wait_until(lambda: len(events.disconnects) == 1, "the agent to hang up")
        finally:
            conversation.end_session()  # a no-op once the agent has ended the session
        conversation_id = call_with_timeout(conversation.wait_for_session_end)
        (rec,) = sim.conversations
        wait_until(lambda: rec.closed, "the simulator to see the close")

    assert conversation_id == rec.conversation_id
    assert rec.agent_id == "chat-agent"
    assert rec.settings is not None
    assert rec.settings.text_only
    assert sent_frames(rec.sent, "audio") == []
    assert events.agent_responses == [FIRST_MESSAGE, GOODBYE]
    assert [update.text for update in rec.contextual_updates] == [
        "The user is at the kitchen table."
    ]
    assert rec.user_activity == 1
    # The agent ended the call: the SDK saw a normal close from the agent's side.
    (end_call,) = sent_frames(rec.sent, "agent_tool_response")
    assert end_call["agent_tool_response"]["tool_name"] == "end_call"
    assert rec.close_code == 1000
    assert events.disconnects == [
        DisconnectionDetails(reason="agent", close_code=1000, close_reason=rec.close_reason)
    ]


# --------------------------------------------------------------------------------------------
# The SDK's own DefaultAudioInterface on PyAudio, over the ALSA fake card


class PacedFifoMicrophone:
    """Feeds silence into a FIFO at real-time pace: the fake card's microphone.

    The fake card has no clock (testing.md), so reading ``/dev/zero`` would flood the
    simulator with audio as fast as the CPU allows. A FIFO written in whole 250 ms periods
    makes the capture stream block like a real one. PortAudio opens and closes the device
    while enumerating, so the writer reopens the FIFO whenever its reader goes away.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._write, name="fifo-mic", daemon=True)

    def __enter__(self) -> PacedFifoMicrophone:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=WAIT)

    def _write(self) -> None:
        period = bytes(2 * MIC_CHUNK_SAMPLES)
        while not self._stopping.is_set():
            try:
                # Non-blocking, so that no reader means ENXIO instead of a hang.
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as error:
                if error.errno != errno.ENXIO:
                    raise
                self._stopping.wait(0.01)
                continue
            os.set_blocking(fd, True)
            try:
                due = time.monotonic()
                while not self._stopping.is_set():
                    os.write(fd, period)
                    due += MIC_CHUNK_SAMPLES / SAMPLE_RATE
                    self._stopping.wait(max(0.0, due - time.monotonic()))
            except BrokenPipeError:
                pass  # the reader closed: reopen for the next one
            finally:
                os.close(fd)


def run_default_audio_child(ws_base: str) -> dict[str, Any]:
    """The child process: one SDK conversation through ``DefaultAudioInterface``.

    Runs with ``ALSA_CONFIG_PATH`` already set by the parent. Listens (to the FIFO's silence)
    while the agent says two sentences and hangs up.
    """
    from elevenlabs.conversational_ai.default_audio_interface import DefaultAudioInterface

    errors: list[str] = []

    class ErrorLog(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record.getMessage())

    def record_thread_error(args: threading.ExceptHookArgs) -> None:
        thread = args.thread.name if args.thread else "?"
        errors.append(f"exception in thread {thread}: {args.exc_value!r}")

    logging.getLogger("elevenlabs").addHandler(ErrorLog(logging.ERROR))
    threading.excepthook = record_thread_error  # the SDK's and PortAudio's threads
    events = SdkEvents()
    conversation = Conversation(
        ElevenLabs(base_url=ws_base, api_key=None),
        "demo",
        requires_auth=False,
        audio_interface=DefaultAudioInterface(),
        callback_agent_response=events.on_agent_response,
        callback_disconnect=events.on_disconnect,
    )
    conversation.start_session()
    try:
        wait_until(lambda: len(events.disconnects) == 1, "the agent to hang up", 2 * WAIT)
    finally:
        conversation.end_session()  # a no-op once the agent has ended the session
    conversation_id = call_with_timeout(conversation.wait_for_session_end)
    (disconnect,) = events.disconnects
    return {
        "conversation_id": conversation_id,
        "agent_responses": events.agent_responses,
        "disconnect": [disconnect.reason, disconnect.close_code, disconnect.close_reason],
        "errors": errors,
    }


CHILD_MAIN = """
import json, sys, warnings
warnings.simplefilter("error")
from tests.sim.test_official_sdk import run_default_audio_child
print("RESULT " + json.dumps(run_default_audio_child(sys.argv[1])), flush=True)
"""


@pytest.mark.timeout(90)
def test_sdk_default_audio_interface_over_fake_card(tmp_path: Path) -> None:
    alsa_config = tmp_path / "asound.conf"
    alsa_config.write_text(ALSA_FAKE_CARD)
    speaker = tmp_path / "speaker.raw"

    scenario = Scenario.from_yaml(SPEAKER_SCENARIO)
    with (
        PacedFifoMicrophone(tmp_path / "mic.fifo") as microphone,
        SimServer(agents=None, scenario=scenario).run_in_thread() as sim,
    ):
        env = {
            **os.environ,
            "ALSA_CONFIG_PATH": str(alsa_config),
            "FAKE_MIC_FILE": str(microphone.path),
            "FAKE_SPK_FILE": str(speaker),
        }
        child = subprocess.run(
            [sys.executable, "-c", CHILD_MAIN, sim.ws_base],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert child.returncode == 0, child.stderr
        (rec,) = sim.conversations
        wait_until(lambda: rec.closed, "the simulator to see the close")

    (line,) = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    assert result["errors"] == []
    assert result["conversation_id"] == rec.conversation_id
    assert result["agent_responses"] == [SPEAKER_FIRST_MESSAGE, SPEAKER_GOODBYE]
    # The agent ended the call: the simulator closed with 1000 and the SDK saw an agent close.
    assert result["disconnect"] == ["agent", 1000, rec.close_reason]
    assert rec.close_code == 1000
    assert rec.failure is None

    # The real capture stream fed the simulator the FIFO's silence, 250 ms at a time.
    assert rec.audio_chunks > 0
    assert len(rec.user_audio) == rec.audio_chunks * 2 * MIC_CHUNK_SAMPLES
    assert not any(rec.user_audio)

    # Both turns went through PyAudio to the fake speaker, in one piece (the output stream
    # first writes silence, so locate the audio rather than compare from byte 0).
    agent_audio = all_audio(rec.sent)
    assert any(agent_audio), "the simulator's agent audio is all silence: nothing to locate"
    assert speaker.read_bytes().find(agent_audio) >= 0
