"""One simulated conversation: everything the agent does on one accepted WebSocket.

Owns ``Conversation``, run once per connection by the server. It opens one ``TaskGroup`` with
five tasks and nothing else:

* ``_receive``: reads frames, parses them with ``parse_client`` (malformed: close 1008
  ``invalid_message``), records them, feeds user audio to the VAD, sends ``vad_score`` and
  ``user_transcript``, has the ``Speaker`` interrupt the agent, and queues user turns (a
  bounded queue);
* ``_drive``: initiation data, overrides, metadata, a slot under the agent's concurrency
  limit (waiting in its queue if need be: ``queue_status``, with every client frame discarded
  meanwhile), the first message, the scenario steps, then the parrot; it is the only task that
  starts agent turns (played by the ``Speaker``);
* ``_send_pings``: the ``Keepalive`` (``ping`` every ``ping_interval``), once admitted;
* ``_watch_timers``: max duration and the no-input timeout, from admission on;
* ``_watch_shutdown``: ends the conversation when the server stops.

A task ends the conversation by raising ``EndConversation`` with an ``Ending`` (what to say,
which events to send, which close code); the group cancels the others and ``run`` carries the
ending out after the group is gone, so endings never race with the tasks. Every frame goes out
through ``_send_text``, which a stall holds back (protocol.md §12 fault injection).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from itertools import count

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from piagent.audio.codecs import decode_audio
from piagent.errors import RemoteProtocolError
from piagent.protocol.messages import (
    ClientMessage,
    ClientToolResult,
    ContextualUpdate,
    ConversationInitiationClientData,
    ConversationInitiationMetadata,
    ErrorEvent,
    Feedback,
    McpToolApprovalResult,
    MultimodalMessage,
    Pong,
    QueueState,
    QueueStatus,
    ServerEvent,
    UnknownMessage,
    UserActivity,
    UserAudioChunk,
    UserMessage,
    UserTranscript,
    VadScore,
    encode,
    parse_client,
)
from piagent.sim.agent import AgentDefinition
from piagent.sim.endings import (
    EndConversation,
    Ending,
    close_info,
    conversations_refused,
    invalid_message,
    max_duration_exceeded,
    no_input,
    queue_timed_out,
)
from piagent.sim.keepalive import Keepalive
from piagent.sim.overrides import SessionSettings, raw_object, resolve_session
from piagent.sim.queue import Slots
from piagent.sim.record import ConversationRecord
from piagent.sim.scenario import (
    Scenario,
)
from piagent.sim.speaker import Speaker
from piagent.sim.steps import run_steps
from piagent.sim.tool_calls import ToolCalls
from piagent.sim.turns import AgentTurn
from piagent.sim.vad import EnergyVad, SpeechEnded, SpeechStarted, VadLevel

__all__ = ["Conversation"]

logger = logging.getLogger(__name__)

USER_TURN_QUEUE = 8  # user turns waiting for an answer; when full the oldest is dropped
FINISH_TIMEOUT = 30.0  # the ending (a spoken message, events, the close) gets this long


@dataclass(frozen=True, slots=True)
class _UserTurn:
    """A finished user turn waiting for an answer. ``reply_id`` is reserved for the answer so
    that transcript and reply carry consecutive ids (protocol.md §4.1: 42, then 43)."""

    transcript_id: int
    reply_id: int
    speech: SpeechEnded | None = None
    text: str | None = None


class Conversation:
    """The agent's side of one connection; ``await run()`` returns when it is closed."""

    def __init__(
        self,
        ws: ServerConnection,
        agent: AgentDefinition,
        scenario: Scenario | None,
        record: ConversationRecord,
        *,
        record_traffic: bool = True,
        slots: Slots | None = None,
    ) -> None:
        self.ws = ws
        self._slots = slots  # the agent's concurrency limit; None: no limit
        self._holding_slot = False
        self._queued = False  # waiting for a slot: client frames are discarded
        self._admitted = asyncio.Event()  # the conversation holds a slot (or needs none)
        self._record_traffic = record_traffic
        self.agent = agent
        self.scenario = scenario
        self.record = record
        self.conversation_id = f"conv_{secrets.token_hex(12)}"
        self._loop = asyncio.get_running_loop()
        self._ids = count(1)
        self._unstalled = asyncio.Event()
        self._unstalled.set()
        self._shutdown = asyncio.Event()
        self._initiated = asyncio.Event()
        self._initiation: tuple[ConversationInitiationClientData, str] | None = None
        self._metadata_sent = asyncio.Event()
        self._turns: asyncio.Queue[_UserTurn] = asyncio.Queue(USER_TURN_QUEUE)
        self._speaker = Speaker(agent, self._emit, record)
        self.tools = ToolCalls(record, self._emit)
        self._keepalive = Keepalive(agent, record, self._ids, self._send_text)
        self._reply_id: int | None = None
        now = self._loop.time()
        self._started = self._last_input = self._last_activity = now
        self.settings = SessionSettings(
            agent.first_message,
            agent.prompt,
            agent.language,
            agent.voice_id,
            agent.text_only,
            agent.max_conversation_duration_message,
        )
        self._vad = EnergyVad(
            agent.input_format.sample_rate,
            threshold_db=agent.vad_threshold_db,
            min_speech_ms=agent.min_speech_ms,
            end_silence_ms=agent.turn_end_silence_ms,
            score_interval_ms=agent.vad_score_interval_ms,
            max_utterance_ms=agent.max_utterance_ms,
        )

    def request_shutdown(self) -> None:
        """End the conversation (close 1001) because the server is stopping."""
        self._shutdown.set()

    async def run(self) -> None:
        """Hold the conversation until it ends, then close the socket and the record."""
        try:
            await self._run()
        finally:
            if self._holding_slot:
                assert self._slots is not None
                self._slots.release()

    async def _run(self) -> None:
        ending: Ending | None = None
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._receive())
                group.create_task(self._drive())
                group.create_task(self._send_pings())
                group.create_task(self._watch_timers())
                group.create_task(self._watch_shutdown())
        except* EndConversation as ended:
            first = ended.exceptions[0]
            assert isinstance(first, EndConversation)
            ending = first.ending
        except* ConnectionClosed:
            ending = Ending(None)
        except* Exception as failed:
            logger.error("conversation %s failed", self.conversation_id, exc_info=failed)
            self.record.failure = f"internal error: {failed.exceptions[0]!r}"
            event = ErrorEvent(1011, "Internal error", "unknown_websocket_crash")
            ending = Ending(1011, "Internal error", (event,))
        await self._finish(ending or Ending(None))

    # ----------------------------------------------------------------------------------------
    # Sending

    async def _send_text(self, text: str) -> None:
        await self._unstalled.wait()
        if self._record_traffic:
            self.record.sent.append(text)
        await self.ws.send(text)

    async def _emit(self, event: ServerEvent) -> None:
        """Send ``event`` unless it is an optional event the agent's client_events omit."""
        if self.agent.sends_event(event):
            await self._send_text(encode(event))

    async def _finish(self, ending: Ending) -> None:
        if ending.code is not None:
            self._unstalled.set()
            try:
                async with asyncio.timeout(FINISH_TIMEOUT), asyncio.TaskGroup() as tasks:
                    # The client keeps streaming while the agent says its last words: go on
                    # reading, as a real server does, or the socket's queue fills, reading
                    # pauses and the client's WebSocket pings go unanswered.
                    reader = tasks.create_task(self._drain())
                    try:
                        if ending.speak:
                            turn = await self._speaker.prepare(
                                ending.speak, next(self._ids), self.settings
                            )
                            await self._speaker.play(turn)
                        for event in ending.events:
                            await self._emit(event)
                    finally:
                        reader.cancel()
                await self.ws.close(ending.code, ending.reason)
            except* (ConnectionClosed, TimeoutError):
                pass
            logger.info(
                "conversation %s closed by the agent: %d %s",
                self.conversation_id,
                ending.code,
                ending.reason,
            )
        await self.ws.wait_closed()
        self.record.mark_closed(*close_info(self.ws))

    async def _drain(self) -> None:
        """Read and record client frames until cancelled or the socket closes (the end)."""
        try:
            while True:
                frame = await self.ws.recv()
                if isinstance(frame, bytes):
                    continue
                try:
                    message = parse_client(frame)
                except RemoteProtocolError:
                    continue
                if isinstance(message, UserAudioChunk):
                    self.record.audio_chunks += 1
                    if self._record_traffic:
                        self.record.user_audio.extend(message.audio)
                else:
                    self.record.received.append(message)
        except ConnectionClosed:
            return

    # ----------------------------------------------------------------------------------------
    # Receiving

    async def _receive(self) -> None:
        while True:
            try:
                frame = await self.ws.recv()
            except ConnectionClosed:
                raise EndConversation(Ending(None)) from None
            await self._unstalled.wait()  # a frame read just before a stall waits it out
            if isinstance(frame, bytes):
                raise EndConversation(invalid_message("binary frames are not part of the protocol"))
            try:
                message = parse_client(frame)
            except RemoteProtocolError as exc:
                logger.warning("conversation %s: malformed frame: %s", self.conversation_id, exc)
                raise EndConversation(invalid_message(str(exc))) from None
            if not isinstance(message, UserAudioChunk):
                self.record.received.append(message)
            if not self._initiated.is_set():
                if isinstance(message, ConversationInitiationClientData):
                    self._initiation = (message, frame)
                    self._initiated.set()
                    continue
                if self.agent.strict_initiation:
                    raise EndConversation(
                        invalid_message("expected conversation_initiation_client_data first")
                    )
                self._initiated.set()  # no overrides
            await self._metadata_sent.wait()  # nothing is answered before the metadata
            if self._queued:
                self.record.discarded_while_queued += 1  # the platform discards it too (§4)
                continue
            await self._dispatch(message)

    async def _dispatch(self, message: ClientMessage | UnknownMessage) -> None:
        now = self._loop.time()
        match message:
            case UserAudioChunk():
                await self._receive_audio(message.audio, now)
            case Pong(event_id=event_id):
                self._keepalive.receive_pong(event_id, now)
            case UserMessage(text=text):
                await self._receive_user_text(text or "", now)
            case MultimodalMessage(text=text):
                await self._receive_user_text(text or "", now)
            case ContextualUpdate():
                self.record.contextual_updates.append(message)
                self.record.context[message.context_id] = message.text
            case UserActivity():
                self.record.user_activity += 1
                self._last_activity = now
            case Feedback(event_id=event_id):
                if event_id in self.record.agent_turns:
                    self.record.feedback.append(message)
                elif self.agent.strict_messages:
                    raise EndConversation(
                        invalid_message(f"feedback names no agent turn: event_id {event_id}")
                    )
                else:
                    logger.warning("feedback for event_id %d, not an agent turn", event_id)
            case ClientToolResult():
                self.tools.receive_result(message)
            case McpToolApprovalResult():
                self.record.mcp_approvals.append(message)
            case ConversationInitiationClientData():
                logger.warning("conversation_initiation_client_data after the start: ignored")
            case UnknownMessage(type=kind):
                if self.agent.strict_messages:
                    raise EndConversation(invalid_message(f"unknown message type {kind!r}"))
                logger.info("ignoring client message of unknown type %r", kind)

    async def _receive_audio(self, audio: bytes, now: float) -> None:
        self.record.audio_chunks += 1
        if self._record_traffic:
            self.record.user_audio.extend(audio)
        self._last_input = now
        if self.settings.text_only:
            return  # chat mode: no audio is processed (protocol.md §3.2, D-chat)
        try:
            samples = decode_audio(audio, self.agent.input_format)
        except ValueError as exc:
            raise EndConversation(invalid_message(f"user_audio_chunk: {exc}")) from None
        for event in self._vad.feed(samples):
            match event:
                case SpeechStarted():
                    self._last_activity = now
                    await self._speaker.interrupt(now)
                case VadLevel(score=score):
                    await self._emit(VadScore(score))
                case SpeechEnded(duration_s=seconds):
                    transcript = f"({seconds:.1f} s of speech)"
                    await self._queue_user_turn(transcript, now, speech=event)

    async def _receive_user_text(self, text: str, now: float) -> None:
        self._last_input = now
        await self._speaker.interrupt(now)
        await self._queue_user_turn(text, now, text=text, echo=self.agent.echo_user_message)

    async def _queue_user_turn(
        self,
        transcript: str,
        now: float,
        *,
        speech: SpeechEnded | None = None,
        text: str | None = None,
        echo: bool = True,
    ) -> None:
        turn = _UserTurn(next(self._ids), next(self._ids), speech, text)
        self._last_activity = now
        self.record.user_transcripts.append(transcript)
        if echo:
            await self._emit(UserTranscript(transcript, turn.transcript_id))
        if self._turns.full():
            dropped = self._turns.get_nowait()
            logger.warning("user turn %d dropped: too many unanswered", dropped.transcript_id)
        self._turns.put_nowait(turn)

    # ----------------------------------------------------------------------------------------
    # The agent's side

    async def _drive(self) -> None:
        fault = self.agent.fault_close
        if fault is not None and fault.at == "connect":
            raise EndConversation(Ending(fault.code, fault.reason))
        await self._start_session()
        if fault is not None and fault.at in ("initiation", "metadata"):
            raise EndConversation(Ending(fault.code, fault.reason))
        if self.settings.first_message:
            stop_after = 1 if fault is not None and fault.at == "first_audio" else None
            await self.say(self.settings.first_message, stop_after_chunks=stop_after)
        if fault is not None and fault.at == "first_audio":
            raise EndConversation(Ending(fault.code, fault.reason))
        if self.scenario is not None:
            await run_steps(self, self.scenario.steps)
        await self._parrot()

    async def _start_session(self) -> None:
        """Initiation data (or its absence), overrides, ``conversation_initiation_metadata``."""
        fault = self.agent.fault_close
        try:
            async with asyncio.timeout(self.agent.initiation_timeout):
                await self._initiated.wait()
        except TimeoutError:
            logger.info("no conversation_initiation_client_data: starting without overrides")
            self._initiated.set()
        initiation, frame = self._initiation or (None, "")
        self.record.initiation = initiation
        system = {
            "system__agent_id": self.agent.agent_id,
            "system__conversation_id": self.conversation_id,
            "system__time_utc": "1970-01-01T00:00:00Z",
            "system__call_duration_secs": 0,
        }
        raw = raw_object(frame) if initiation is not None else None
        self.settings, problem = resolve_session(self.agent, initiation, raw, system)
        self.record.settings = self.settings
        if fault is not None and fault.at == "initiation":
            raise EndConversation(Ending(fault.code, fault.reason))
        rejection = None
        if problem is not None:
            logger.info("refusing conversation: %s", problem.reason)
            error = ErrorEvent(problem.code, problem.message, problem.error_type, problem.reason)
            rejection = Ending(problem.code, problem.reason, (error,))
            if self.agent.reject_before_metadata:
                raise EndConversation(rejection)
        if self.agent.metadata_delay:
            await asyncio.sleep(self.agent.metadata_delay)
        metadata = ConversationInitiationMetadata(
            self.conversation_id, self.agent.output_format, self.agent.input_format
        )
        await self._send_text(encode(metadata))
        self.record.conversation_id = self.conversation_id
        self._started = self._last_input = self._last_activity = self._loop.time()
        self._metadata_sent.set()
        if rejection is not None:
            raise EndConversation(rejection)  # observed: metadata first, then the close (§2)
        await self._take_slot()
        self._started = self._last_input = self._last_activity = self._loop.time()
        self._admitted.set()

    async def _take_slot(self) -> None:
        """A slot under the agent's concurrency limit, or a place in its queue (protocol.md §4
        ``queue_status``): metadata first, then ``waiting``; everything the client sends is
        discarded until ``admitted``. A wait longer than ``queue_wait_timeout`` ends with
        ``timed_out`` and close 3008."""
        slots = self._slots
        if slots is None:
            return
        if slots.try_take():
            self._holding_slot = True
            return
        if not self.agent.queueing:
            raise EndConversation(conversations_refused())
        self._queued = True  # before any await: no client frame slips through
        await self._send_queue_status("waiting")
        try:
            async with asyncio.timeout(self.agent.queue_wait_timeout):
                await slots.wait()
                self._holding_slot = True
        except TimeoutError:
            self.record.queue_statuses.append("timed_out")
            raise EndConversation(queue_timed_out()) from None
        self._queued = False
        await self._send_queue_status("admitted")

    async def _send_queue_status(self, status: QueueState) -> None:
        self.record.queue_statuses.append(status)
        await self._emit(QueueStatus(status))

    def _take_reply_id(self) -> int:
        reply_id, self._reply_id = self._reply_id, None
        return reply_id if reply_id is not None else next(self._ids)

    async def say(self, text: str, *, stop_after_chunks: int | None = None) -> None:
        turn = await self._speaker.prepare(text, self._take_reply_id(), self.settings)
        await self._play(turn, stop_after_chunks)

    async def _play(self, turn: AgentTurn, stop_after_chunks: int | None = None) -> None:
        try:
            await self._speaker.play(turn, stop_after_chunks)
        finally:
            self._last_activity = self._loop.time()

    async def _parrot(self) -> None:
        """After the scenario: answer every user turn by repeating it."""
        while True:
            turn = await self._wait_for_user_turn()
            if turn is None:
                await self.say(self.agent.turn_timeout_message)
                continue
            self._reply_id = turn.reply_id
            if turn.speech is not None:
                seconds = turn.speech.duration_s
                text = f"You said {seconds:.1f} seconds of audio."
                reply = await self._speaker.prepare_replay(
                    turn.speech, text, self._take_reply_id(), self.settings
                )
                await self._play(reply)
            else:
                await self.say(f"You wrote: {turn.text}")

    async def _wait_for_user_turn(self) -> _UserTurn | None:
        """The next user turn; None when ``turn_timeout`` passed with no sign of the user
        (speech, a user message or ``user_activity`` all count)."""
        timeout = self.agent.turn_timeout
        if timeout is None:
            return await self._turns.get()
        while True:
            try:
                async with asyncio.timeout_at(self._last_activity + timeout):
                    return await self._turns.get()
            except TimeoutError:
                now = self._loop.time()
                if self._vad.in_speech:
                    self._last_activity = now
                elif now >= self._last_activity + timeout:
                    self._last_activity = now
                    return None

    # ----------------------------------------------------------------------------------------
    # What scenario steps use (``steps.StepHost``)

    def next_id(self) -> int:
        """A fresh event id."""
        return next(self._ids)

    async def send_text(self, text: str) -> None:
        """One text frame, as it is (through ``_send_text``, as every frame)."""
        await self._send_text(text)

    async def take_user_turn(self) -> None:
        """Wait for the user's next turn; the agent's next words answer it."""
        turn = await self._turns.get()
        self._reply_id = turn.reply_id

    async def stall(self, seconds: float) -> None:
        """Stop reading (so WebSocket pings go unanswered too) and writing for ``seconds``."""
        transport = self.ws.transport
        self._unstalled.clear()
        transport.pause_reading()
        logger.info("stalling for %.1f s", seconds)
        try:
            await asyncio.sleep(seconds)
        finally:
            if not transport.is_closing():
                transport.resume_reading()
            self._unstalled.set()

    # ----------------------------------------------------------------------------------------
    # Pings and timers

    async def _send_pings(self) -> None:
        await self._admitted.wait()  # a queued client's pongs would be discarded
        await self._keepalive.run()

    async def _watch_timers(self) -> None:
        """Max duration and the no-input timeout (protocol.md §8, §12), from admission on."""
        await self._admitted.wait()
        while True:
            now = self._loop.time()
            duration_end = self._started + self.agent.max_duration
            input_end = self._last_input + self.agent.no_input_timeout
            if now >= duration_end:
                raise EndConversation(
                    max_duration_exceeded(self.settings.max_conversation_duration_message)
                )
            if now >= input_end:
                raise EndConversation(no_input(self.agent.no_input_timeout))
            await asyncio.sleep(min(duration_end, input_end) - now)

    async def _watch_shutdown(self) -> None:
        await self._shutdown.wait()
        raise EndConversation(Ending(1001, "Server shutting down"))
