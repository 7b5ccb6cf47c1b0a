"""Session: the sans-I/O state machine of one agent conversation (one WebSocket connection).

The I/O layer feeds it what arrives (``receive_text``, ``receive_close``), asks it to send
(``initiate``, ``send_audio``, ``send_user_message``, ...), and moves whatever it hands back
(``data_to_send`` frames out, ``events_received`` typed events up). The session does by itself
what the protocol asks of every client, so the I/O layer only moves bytes:

* the initiation message goes first; audio is refused until metadata has fixed the formats;
* every ``ping`` is answered with a ``pong`` of the same ``event_id`` (protocol.md §3.3);
* audio whose ``event_id`` is at or below the last interruption is dropped (protocol.md §5);
* pending client tool calls are tracked, and a result can only answer a pending call;
* agent turns are tracked by ``event_id`` (feedback targets the last one; a turn still
  streaming when the socket closes is reported as cut off);
* ``queue_status`` moves the session into ``QUEUED`` while the agent is at its concurrency
  limit: the server discards what a waiting client sends, so audio and messages are refused
  (``can_send_audio`` is False) until ``admitted``; ``timed_out`` starts the ending, and the
  close that follows (3008) is classified as ``QUEUE_TIMED_OUT``, which is retryable;
* however the conversation ends, ``receive_close`` classifies it into an ``Ending`` (module
  ``endings``): a reason, and whether retrying can help (protocol.md §4.2, §7).

The state is one ``SessionState`` moved only through ``TRANSITIONS``; an illegal transition
raises ``LocalProtocolError`` and leaves the state unchanged.

Pure: no asyncio, websockets, pyaudio or gpiozero. Malformed server frames are logged, counted
and skipped: one bad message never ends a conversation.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from piagent.errors import LocalProtocolError, RemoteProtocolError
from piagent.protocol.endings import Ending, EndReason, ServerErrorEvent, classify_ending
from piagent.protocol.messages import (
    AgentChatResponsePart,
    AgentResponse,
    AgentResponseComplete,
    AgentToolResponse,
    AgentToolResponseFullPayload,
    Audio,
    AudioFormat,
    ClientErrorEvent,
    ClientMessage,
    ClientToolCall,
    ClientToolResult,
    ContextualUpdate,
    ConversationInitiationClientData,
    ConversationInitiationMetadata,
    ErrorEvent,
    Feedback,
    FlatErrorEvent,
    Interruption,
    McpToolApprovalResult,
    Ping,
    Pong,
    QueueState,
    QueueStatus,
    ServerEvent,
    UnknownMessage,
    UserActivity,
    UserAudioChunk,
    UserMessage,
    UserTranscript,
    encode,
    encode_audio_chunk,
    parse_server,
)

logger = logging.getLogger(__name__)


class SessionState(enum.Enum):
    """Where one conversation stands."""

    IDLE = "idle"  # created; the initiation message is not yet sent
    INITIATING = "initiating"  # initiation sent; waiting for conversation_initiation_metadata
    ACTIVE = "active"  # metadata received: formats known, audio may flow both ways
    QUEUED = "queued"  # queue_status waiting: the server discards what the client sends
    ENDING = "ending"  # the server announced the end; the agent's last words may still arrive
    CLOSING = "closing"  # we hung up and wait for the socket to close
    CLOSED = "closed"  # the socket is closed; ``Session.ending`` says how


class Trigger(enum.Enum):
    """What moves a session from one state to another."""

    INITIATE = "initiate"  # we sent conversation_initiation_client_data
    METADATA = "metadata"  # conversation_initiation_metadata arrived
    QUEUE = "queue"  # queue_status waiting: the agent is at its concurrency limit
    ADMIT = "admit"  # queue_status admitted: a slot is free, the conversation goes on
    SERVER_ENDING = "server_ending"  # end_call, an error event, max duration
    HANG_UP = "hang_up"  # we decided to end the conversation
    CLOSED = "closed"  # the WebSocket closed, whoever closed it


S, T = SessionState, Trigger
TRANSITIONS: Mapping[tuple[SessionState, Trigger], SessionState] = {
    (S.IDLE, T.INITIATE): S.INITIATING,
    (S.IDLE, T.HANG_UP): S.CLOSING,
    (S.IDLE, T.CLOSED): S.CLOSED,
    (S.INITIATING, T.METADATA): S.ACTIVE,
    (S.INITIATING, T.SERVER_ENDING): S.ENDING,
    (S.INITIATING, T.HANG_UP): S.CLOSING,
    (S.INITIATING, T.CLOSED): S.CLOSED,
    (S.ACTIVE, T.QUEUE): S.QUEUED,
    (S.ACTIVE, T.SERVER_ENDING): S.ENDING,
    (S.ACTIVE, T.HANG_UP): S.CLOSING,
    (S.ACTIVE, T.CLOSED): S.CLOSED,
    (S.QUEUED, T.ADMIT): S.ACTIVE,
    (S.QUEUED, T.SERVER_ENDING): S.ENDING,  # timed_out, or an error while waiting
    (S.QUEUED, T.HANG_UP): S.CLOSING,
    (S.QUEUED, T.CLOSED): S.CLOSED,
    (S.ENDING, T.HANG_UP): S.CLOSING,
    (S.ENDING, T.CLOSED): S.CLOSED,
    (S.CLOSING, T.CLOSED): S.CLOSED,
}
del S, T

# States in which client messages other than audio may be sent.
_CAN_SEND = frozenset({SessionState.ACTIVE, SessionState.ENDING})
# States in which server frames are still read.
_CAN_RECEIVE = frozenset(
    {
        SessionState.INITIATING,
        SessionState.ACTIVE,
        SessionState.QUEUED,
        SessionState.ENDING,
        SessionState.CLOSING,
    }
)


def state_diagram() -> str:
    """The transition table as a Mermaid state diagram (README.md shows it)."""
    lines = ["stateDiagram-v2", "    [*] --> idle"]
    for (source, trigger), target in TRANSITIONS.items():
        lines.append(f"    {source.value} --> {target.value}: {trigger.value}")
    lines.append("    closed --> [*]")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ConversationEnded:
    """Emitted once, when the socket has closed: how the conversation ended."""

    ending: Ending


SessionEvent: TypeAlias = ServerEvent | ConversationEnded


@dataclass(slots=True)
class SessionStats:
    """Counters of what the session dropped or skipped, for status and logs."""

    stale_audio_chunks: int = 0  # audio of an interrupted turn, dropped
    early_audio_chunks: int = 0  # audio before metadata (format unknown), dropped
    malformed_messages: int = 0
    unknown_messages: int = 0
    pings_answered: int = 0


# --------------------------------------------------------------------------------------------
# The session


@dataclass(slots=True)
class _Turns:
    """Turn bookkeeping by event_id (protocol.md §5)."""

    last_agent_turn: int | None = None  # newest agent turn seen (feedback targets it)
    streaming_turn: int | None = None  # agent turn whose audio is still arriving
    last_interruption: int | None = None  # audio at or below this id is stale
    last_user_turn: int | None = None
    pending_tools: dict[str, ClientToolCall] = field(default_factory=dict)


class Session:
    """One conversation's protocol state. Not thread-safe: use it from one task."""

    def __init__(self, initiation: ConversationInitiationClientData | None = None) -> None:
        self._initiation = initiation or ConversationInitiationClientData()
        self._state = SessionState.IDLE
        self._outgoing: list[str] = []
        self._events: list[SessionEvent] = []
        self._turns = _Turns()
        self._metadata: ConversationInitiationMetadata | None = None
        self._error: ServerErrorEvent | None = None
        self._end_call = False
        self._hung_up = False
        self._queue: QueueState | None = None
        self._ending: Ending | None = None
        self.last_ping_ms: int | None = None
        self.stats = SessionStats()

    # -- state -------------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """The current state."""
        return self._state

    def _transition(self, trigger: Trigger) -> None:
        target = TRANSITIONS.get((self._state, trigger))
        if target is None:
            raise LocalProtocolError(f"cannot {trigger.value} in state {self._state.value}")
        logger.debug("session %s --%s--> %s", self._state.value, trigger.value, target.value)
        self._state = target

    @property
    def conversation_id(self) -> str | None:
        """The server's id for this conversation, once metadata has arrived."""
        return self._metadata.conversation_id if self._metadata else None

    @property
    def input_format(self) -> AudioFormat | None:
        """The format user audio must be sent in (None before metadata)."""
        return self._metadata.user_input_audio_format if self._metadata else None

    @property
    def output_format(self) -> AudioFormat | None:
        """The format of the agent's audio (None before metadata)."""
        return self._metadata.agent_output_audio_format if self._metadata else None

    @property
    def can_send_audio(self) -> bool:
        """True once metadata has named the formats, until the conversation starts ending."""
        return self._state is SessionState.ACTIVE

    @property
    def last_agent_turn(self) -> int | None:
        """Event id of the newest agent turn (the target of feedback)."""
        return self._turns.last_agent_turn

    @property
    def last_interruption(self) -> int | None:
        """Event id of the last interruption; agent audio at or below it is dropped."""
        return self._turns.last_interruption

    @property
    def pending_tool_calls(self) -> Mapping[str, ClientToolCall]:
        """Client tool calls awaiting a result, by tool_call_id."""
        return dict(self._turns.pending_tools)

    @property
    def queue_status(self) -> QueueState | None:
        """The last ``queue_status`` the server sent (None: the conversation was never queued)."""
        return self._queue

    @property
    def ending(self) -> Ending | None:
        """How the conversation ended, once closed."""
        return self._ending

    # -- I/O-facing --------------------------------------------------------------------------

    @property
    def has_data_to_send(self) -> bool:
        """Whether frames wait for ``data_to_send``."""
        return bool(self._outgoing)

    def data_to_send(self) -> list[str]:
        """Text frames to send, in order; each call hands them over once."""
        out, self._outgoing = self._outgoing, []
        return out

    def events_received(self) -> list[SessionEvent]:
        """Events for the application, in order; each call hands them over once."""
        out, self._events = self._events, []
        return out

    def initiate(self) -> None:
        """Queue ``conversation_initiation_client_data``: the first frame on a new socket."""
        self._transition(Trigger.INITIATE)
        self._outgoing.append(encode(self._initiation))

    def receive_text(self, text: str | bytes) -> None:
        """Process one text frame from the server."""
        if self._state not in _CAN_RECEIVE:
            raise LocalProtocolError(f"cannot receive in state {self._state.value}")
        try:
            event = parse_server(text)
        except RemoteProtocolError as exc:
            self.stats.malformed_messages += 1
            logger.warning("skipping malformed server message: %s", exc)
            return
        if self._accept(event):
            self._events.append(event)

    def receive_close(
        self, code: int | None, reason: str = "", *, lost: EndReason | None = None
    ) -> None:
        """The socket closed (``code`` None when no close frame was received).

        ``lost`` names what the I/O layer saw when the connection died without a close frame
        (``STALLED`` after unanswered WebSocket pings, for instance). Emits
        ``ConversationEnded`` once; later calls do nothing."""
        if self._state is SessionState.CLOSED:
            return
        before_metadata = self._metadata is None
        self._transition(Trigger.CLOSED)
        ending = classify_ending(
            code,
            reason,
            error=self._error,
            end_call=self._end_call,
            hung_up=self._hung_up,
            queue_timed_out=self._queue == "timed_out",
            before_metadata=before_metadata,
            cut_turn=self._turns.streaming_turn,
        )
        if code is None and lost is not None and ending.reason is EndReason.CONNECTION_LOST:
            ending = Ending(lost, None, reason, before_metadata, ending.cut_turn)
        self._ending = ending
        self._turns.pending_tools.clear()
        self._events.append(ConversationEnded(self._ending))

    def drop_current_agent_turn(self) -> None:
        """Drop the rest of the agent's current turn, as an interruption would.

        For a barge-in the client detects first (a button press, a typed message): the server's
        own ``interruption`` may follow later, and audio of the old turn arriving before it
        must not play."""
        turn, last = self._turns.last_agent_turn, self._turns.last_interruption
        if turn is not None and (last is None or turn > last):
            self._turns.last_interruption = turn
        self._turns.streaming_turn = None

    def hang_up(self) -> None:
        """We end the conversation; the I/O layer then closes the socket with 1000."""
        self._hung_up = True
        self._transition(Trigger.HANG_UP)

    # -- sending -----------------------------------------------------------------------------

    def send_audio(self, audio: bytes) -> None:
        """Queue one chunk of user audio, already in ``input_format``."""
        self._outgoing.append(self.audio_frame(audio).decode("ascii"))

    def audio_frame(self, audio: bytes) -> bytes:
        """The text frame of one chunk of user audio (UTF-8), checked as ``send_audio`` checks
        it but not queued: for an I/O layer that writes it at once, when nothing is queued
        before it (``has_data_to_send`` false), so that frames keep their order."""
        if self._state is not SessionState.ACTIVE:
            raise LocalProtocolError(f"cannot send audio in state {self._state.value}")
        fmt = self.input_format
        if fmt is not None and len(audio) % fmt.bytes_per_sample:
            raise LocalProtocolError(f"audio chunk of {len(audio)} bytes splits a {fmt} sample")
        return encode_audio_chunk(audio)

    def send(self, message: ClientMessage) -> None:
        """Queue any client message, checked against the state and pending tool calls."""
        match message:
            case UserAudioChunk(audio=audio):
                self.send_audio(audio)
                return
            case ConversationInitiationClientData():
                raise LocalProtocolError("the initiation message is sent by initiate()")
            case ClientToolResult(tool_call_id=call_id):
                self._check_can_send(message)
                if call_id not in self._turns.pending_tools:
                    raise LocalProtocolError(f"no pending client tool call {call_id!r}")
                del self._turns.pending_tools[call_id]
            case _:
                self._check_can_send(message)
        self._outgoing.append(encode(message))

    def _check_can_send(self, message: ClientMessage) -> None:
        if self._state not in _CAN_SEND:
            kind = type(message).__name__
            raise LocalProtocolError(f"cannot send {kind} in state {self._state.value}")

    def send_user_message(self, text: str) -> None:
        """Typed text, treated as if spoken; it interrupts the agent."""
        self.send(UserMessage(text))

    def send_contextual_update(self, text: str, context_id: str | None = None) -> None:
        """A background fact for the agent; no reply expected."""
        self.send(ContextualUpdate(text, context_id))

    def send_user_activity(self) -> None:
        """Tell the server the user is present."""
        self.send(UserActivity())

    def send_feedback(self, score: str | None) -> None:
        """Rate the last agent turn: ``like``, ``dislike`` or ``None`` to clear."""
        turn = self._turns.last_agent_turn
        if turn is None:
            raise LocalProtocolError("no agent turn to give feedback on yet")
        self.send(Feedback(score, turn))

    def send_tool_result(self, tool_call_id: str, result: str, *, is_error: bool = False) -> None:
        """Answer a pending client tool call."""
        self.send(ClientToolResult(tool_call_id, result, is_error))

    def send_mcp_approval(self, tool_call_id: str, *, approved: bool) -> None:
        """Approve or reject an MCP tool call awaiting approval."""
        self.send(McpToolApprovalResult(tool_call_id, approved))

    # -- receiving ---------------------------------------------------------------------------

    def _accept(self, event: ServerEvent) -> bool:
        """Apply one server event to the state; False when it is not passed on."""
        turns = self._turns
        match event:
            case Ping(event_id=event_id, ping_ms=ping_ms):
                if self._state is not SessionState.CLOSING:
                    self._outgoing.append(encode(Pong(event_id)))
                    self.stats.pings_answered += 1
                if ping_ms is not None:
                    self.last_ping_ms = ping_ms
            case ConversationInitiationMetadata():
                if self._state is not SessionState.INITIATING:
                    logger.warning("ignoring conversation metadata in state %s", self._state.value)
                    return False
                self._metadata = event
                self._transition(Trigger.METADATA)
                if self._queue == "waiting":  # queued before the metadata came
                    self._transition(Trigger.QUEUE)
            case QueueStatus(status=status):
                self._accept_queue_status(status)
            case Audio(event_id=event_id, is_final=is_final):
                return self._accept_audio(event_id, is_final)
            case AgentResponse(event_id=event_id) | AgentChatResponsePart(event_id=event_id):
                self._note_agent_turn(event_id)
            case AgentResponseComplete(event_id=event_id):
                if turns.streaming_turn == event_id:
                    turns.streaming_turn = None
            case Interruption(event_id=event_id):
                interrupted = event_id if event_id is not None else turns.last_agent_turn
                if interrupted is not None:
                    previous = turns.last_interruption
                    turns.last_interruption = (
                        interrupted if previous is None else max(previous, interrupted)
                    )
                turns.streaming_turn = None
            case UserTranscript(event_id=event_id):
                turns.last_user_turn = event_id
            case ClientToolCall(tool_call_id=call_id, expects_response=expects):
                if expects:
                    turns.pending_tools[call_id] = event
            case (
                AgentToolResponse(tool_name="end_call")
                | AgentToolResponseFullPayload(tool_name="end_call")
            ):
                self._end_call = True
                self._begin_ending()
            case ErrorEvent() | ClientErrorEvent() | FlatErrorEvent():
                self._error = event
                self._begin_ending()
            case UnknownMessage(type=kind):
                self.stats.unknown_messages += 1
                logger.info("ignoring unknown server message type %r", kind)
            case _:
                pass
        return True

    def _accept_audio(self, event_id: int, is_final: bool) -> bool:
        turns = self._turns
        if self._metadata is None:
            self.stats.early_audio_chunks += 1
            logger.warning("dropping agent audio received before metadata")
            return False
        if turns.last_interruption is not None and event_id <= turns.last_interruption:
            self.stats.stale_audio_chunks += 1
            return False
        self._note_agent_turn(event_id)
        turns.streaming_turn = None if is_final else event_id
        return True

    def _accept_queue_status(self, status: QueueState) -> None:
        """Queue bookkeeping (protocol.md §4): the state moves only once metadata has come;
        before it, the status is kept and applied when the metadata arrives."""
        self._queue = status
        match status:
            case "waiting" if self._state is SessionState.ACTIVE:
                self._transition(Trigger.QUEUE)
            case "admitted" if self._state is SessionState.QUEUED:
                self._transition(Trigger.ADMIT)
            case "timed_out":
                self._begin_ending()
            case _:
                logger.debug("queue_status %s in state %s", status, self._state.value)

    def _note_agent_turn(self, event_id: int) -> None:
        last = self._turns.last_agent_turn
        if last is None or event_id > last:
            self._turns.last_agent_turn = event_id

    def _begin_ending(self) -> None:
        if self._state in (SessionState.INITIATING, SessionState.ACTIVE, SessionState.QUEUED):
            self._transition(Trigger.SERVER_ENDING)


__all__ = [
    "TRANSITIONS",
    "ConversationEnded",
    "EndReason",
    "Ending",
    "ServerErrorEvent",
    "Session",
    "SessionEvent",
    "SessionState",
    "SessionStats",
    "Trigger",
    "classify_ending",
    "state_diagram",
]


if __name__ == "__main__":
    print(state_diagram())
