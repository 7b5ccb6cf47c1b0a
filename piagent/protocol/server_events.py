"""Server -> client events other than tools (protocol.md §4): one frozen dataclass each.

Owns the conversation's start (``conversation_initiation_metadata``, ``asr_initiation_metadata``),
the agent's turn (``audio``, ``agent_response`` and its correction, metadata and completion,
streamed text and reasoning parts), the user's turn (final and tentative transcripts,
``interruption``, ``vad_score``, the turn probability), the keepalive ``ping``, the queue
(``queue_status``), context usage, rich content, guardrails, hand-offs to a human agent, and
the three shapes an error arrives in (``error`` with ``error_event``, ``client_error``, and the
flat ``error`` seen in real traffic), grouped in ``ERROR_EVENTS``.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias

from piagent.protocol.codec import (
    AUDIO_FORMAT,
    BASE64,
    BOOL,
    INT,
    INT_LIST,
    NUMBER,
    OBJECT,
    STR,
    STR_LIST,
    AudioFormat,
    JsonObject,
    Spec,
    fail,
    nested,
    one_of,
    opt,
    req,
)

__all__ = [
    "ERROR_EVENTS",
    "QUEUE_STATES",
    "AgentChatResponsePart",
    "AgentReasoningResponsePart",
    "AgentResponse",
    "AgentResponseComplete",
    "AgentResponseCorrection",
    "AgentResponseMetadata",
    "AgentTyping",
    "Alignment",
    "AsrInitiationMetadata",
    "Audio",
    "ClientErrorEvent",
    "ContextUsage",
    "ConversationInitiationMetadata",
    "ErrorEvent",
    "ExternalAgentConnected",
    "ExternalAgentDisconnected",
    "FlatErrorEvent",
    "GuardrailTriggered",
    "InternalTentativeAgentResponse",
    "InternalTurnProbability",
    "Interruption",
    "Ping",
    "QueueState",
    "QueueStatus",
    "RichContent",
    "TentativeUserTranscript",
    "UserTranscript",
    "VadScore",
]

_PART_TYPE = one_of("start", "delta", "stop")


@dataclass(frozen=True, slots=True)
class ConversationInitiationMetadata:
    """The first server message: conversation id and the audio formats of both directions."""

    conversation_id: str
    agent_output_audio_format: AudioFormat
    user_input_audio_format: AudioFormat
    SPEC: ClassVar[Spec] = Spec(
        "conversation_initiation_metadata",
        "conversation_initiation_metadata_event",
        (
            req("conversation_id", STR),
            req("agent_output_audio_format", AUDIO_FORMAT),
            req("user_input_audio_format", AUDIO_FORMAT),
        ),
    )


@dataclass(frozen=True, slots=True)
class Alignment:
    """Character timings of an audio chunk."""

    chars: tuple[str, ...]
    char_start_times_ms: tuple[int, ...]
    char_durations_ms: tuple[int, ...]
    SPEC: ClassVar[Spec] = Spec(
        None,
        None,
        (
            req("chars", STR_LIST),
            req("char_start_times_ms", INT_LIST),
            req("char_durations_ms", INT_LIST),
        ),
    )


@dataclass(frozen=True, slots=True)
class Audio:
    """A chunk of agent speech in the output format; ``event_id`` is the turn's id."""

    audio: bytes
    event_id: int
    alignment: Alignment | None = None
    is_final: bool = False
    SPEC: ClassVar[Spec] = Spec(
        "audio",
        "audio_event",
        (
            req("audio", BASE64, "audio_base_64"),
            req("event_id", INT),
            opt("alignment", nested(Alignment)),
            opt("is_final", BOOL, default=False),
        ),
    )


@dataclass(frozen=True, slots=True)
class AgentResponse:
    """The full text of an agent turn."""

    text: str
    event_id: int
    SPEC: ClassVar[Spec] = Spec(
        "agent_response",
        "agent_response_event",
        (req("text", STR, "agent_response"), req("event_id", INT)),
    )


@dataclass(frozen=True, slots=True)
class AgentResponseCorrection:
    """After an interruption: what the agent meant to say and what it actually said."""

    original_agent_response: str
    corrected_agent_response: str
    event_id: int
    SPEC: ClassVar[Spec] = Spec(
        "agent_response_correction",
        "agent_response_correction_event",
        (
            req("original_agent_response", STR),
            req("corrected_agent_response", STR),
            req("event_id", INT),
        ),
    )


@dataclass(frozen=True, slots=True)
class AgentResponseMetadata:
    """Metadata of an agent turn (custom LLM metadata, for instance)."""

    metadata: JsonObject
    event_id: int
    SPEC: ClassVar[Spec] = Spec(
        "agent_response_metadata",
        "agent_response_metadata_event",
        (req("metadata", OBJECT), req("event_id", INT)),
    )


@dataclass(frozen=True, slots=True)
class AgentResponseComplete:
    """The agent has finished generating turn ``event_id``."""

    event_id: int
    SPEC: ClassVar[Spec] = Spec(
        "agent_response_complete", "agent_response_complete_event", (req("event_id", INT),)
    )


@dataclass(frozen=True, slots=True)
class AgentChatResponsePart:
    """Streaming agent text: ``start``, ``delta`` parts, ``stop``."""

    text: str
    part_type: str
    event_id: int
    SPEC: ClassVar[Spec] = Spec(
        "agent_chat_response_part",
        "text_response_part",
        (req("text", STR), req("part_type", _PART_TYPE, "type"), req("event_id", INT)),
    )


@dataclass(frozen=True, slots=True)
class AgentReasoningResponsePart:
    """Streaming reasoning text (experimental); its ``event_id`` is a string."""

    text: str
    part_type: str
    event_id: str
    SPEC: ClassVar[Spec] = Spec(
        "agent_reasoning_response_part",
        "reasoning_response_part",
        (req("text", STR), req("part_type", _PART_TYPE, "type"), req("event_id", STR)),
    )


@dataclass(frozen=True, slots=True)
class UserTranscript:
    """Final transcript of a user utterance."""

    text: str
    event_id: int
    SPEC: ClassVar[Spec] = Spec(
        "user_transcript",
        "user_transcription_event",
        (req("text", STR, "user_transcript"), req("event_id", INT)),
    )


@dataclass(frozen=True, slots=True)
class TentativeUserTranscript:
    """Interim transcript of the utterance in progress."""

    text: str
    event_id: int
    SPEC: ClassVar[Spec] = Spec(
        "tentative_user_transcript",
        "tentative_user_transcription_event",
        (req("text", STR, "user_transcript"), req("event_id", INT)),
    )


@dataclass(frozen=True, slots=True)
class InternalTentativeAgentResponse:
    """Internal/debug: the response being prepared."""

    text: str
    SPEC: ClassVar[Spec] = Spec(
        "internal_tentative_agent_response",
        "tentative_agent_response_internal_event",
        (req("text", STR, "tentative_agent_response"),),
    )


@dataclass(frozen=True, slots=True)
class Interruption:
    """The user barged in: drop agent audio with ``event_id`` <= this one (protocol.md §5).

    The schemas give ``event_id``; one docs example gives only ``reason``; either is accepted."""

    event_id: int | None = None
    reason: str | None = None
    SPEC: ClassVar[Spec] = Spec(
        "interruption", "interruption_event", (opt("event_id", INT), opt("reason", STR))
    )


@dataclass(frozen=True, slots=True)
class Ping:
    """Keepalive that must be answered with a ``pong`` of the same ``event_id``."""

    event_id: int
    ping_ms: int | None = None
    SPEC: ClassVar[Spec] = Spec("ping", "ping_event", (req("event_id", INT), opt("ping_ms", INT)))


@dataclass(frozen=True, slots=True)
class VadScore:
    """Probability (0-1) that the user is speaking."""

    vad_score: float
    SPEC: ClassVar[Spec] = Spec("vad_score", "vad_score_event", (req("vad_score", NUMBER),))


@dataclass(frozen=True, slots=True)
class InternalTurnProbability:
    """Internal: probability that the user's turn has ended."""

    turn_probability: float
    SPEC: ClassVar[Spec] = Spec(
        "internal_turn_probability",
        "turn_probability_internal_event",
        (req("turn_probability", NUMBER),),
    )


# Where a conversation stands in the agent's queue (``queue_status_event.status``).
QueueState: TypeAlias = Literal["waiting", "admitted", "timed_out"]
QUEUE_STATES: tuple[QueueState, ...] = ("waiting", "admitted", "timed_out")


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """The agent is at its concurrency limit and holds this conversation in a queue.

    ``waiting``: the server discards everything the client sends until ``admitted``;
    ``timed_out``: the wait is over and the server closes with 3008 (protocol.md §4, §7.1).
    Newer than the AsyncAPI copy in ``spec/`` (ElevenLabs' packages repo, 2026-08)."""

    status: QueueState
    SPEC: ClassVar[Spec] = Spec(
        "queue_status", "queue_status_event", (req("status", one_of(*QUEUE_STATES)),)
    )


@dataclass(frozen=True, slots=True)
class AsrInitiationMetadata:
    """ASR start-up metadata; its contents are unspecified."""

    metadata: JsonObject
    SPEC: ClassVar[Spec] = Spec(
        "asr_initiation_metadata",
        None,
        (req("metadata", OBJECT, "asr_initiation_metadata_event"),),
    )


@dataclass(frozen=True, slots=True)
class ContextUsage:
    """LLM context use after a completed agent turn."""

    event_id: int
    model: str
    context_tokens: int
    context_limit_tokens: int
    SPEC: ClassVar[Spec] = Spec(
        "context_usage",
        "context_usage_event",
        (
            req("event_id", INT),
            req("model", STR),
            req("context_tokens", INT),
            req("context_limit_tokens", INT),
        ),
    )


@dataclass(frozen=True, slots=True)
class RichContent:
    """A UI component to show (experimental); a headless appliance only logs it."""

    rich_content_id: str
    component: str
    props: JsonObject
    event_id: int
    SPEC: ClassVar[Spec] = Spec(
        "rich_content",
        "rich_content",
        (
            req("rich_content_id", STR),
            req("component", STR),
            req("props", OBJECT),
            req("event_id", INT),
        ),
    )


@dataclass(frozen=True, slots=True)
class GuardrailTriggered:
    """A guardrail fired; AA-fern names it in ``guardrail_triggered_event``, AA-pkg sends none."""

    guardrail_name: str | None = None
    SPEC: ClassVar[Spec] = Spec("guardrail_triggered", None, ())

    @staticmethod
    def _decode(data: dict[str, Any]) -> GuardrailTriggered:
        event = data.get("guardrail_triggered_event")
        if event is None:
            return GuardrailTriggered()
        if not isinstance(event, dict):
            raise fail("guardrail_triggered_event", "object", event)
        name = event.get("guardrail_name")
        if name is not None and not isinstance(name, str):
            raise fail("guardrail_triggered_event.guardrail_name", "string", name)
        return GuardrailTriggered(name)

    def _encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "guardrail_triggered"}
        if self.guardrail_name is not None:
            out["guardrail_triggered_event"] = {"guardrail_name": self.guardrail_name}
        return out


@dataclass(frozen=True, slots=True)
class AgentTyping:
    """A human agent (after a hand-off) is typing."""

    is_typing: bool
    duration_ms: int | None = None
    SPEC: ClassVar[Spec] = Spec(
        "agent_typing",
        "agent_typing_event",
        (req("is_typing", BOOL), opt("duration_ms", INT)),
    )


@dataclass(frozen=True, slots=True)
class ExternalAgentConnected:
    """The conversation was handed to a human agent."""

    SPEC: ClassVar[Spec] = Spec("external_agent_connected", "external_agent_connected_event", ())


@dataclass(frozen=True, slots=True)
class ExternalAgentDisconnected:
    """The human agent left."""

    SPEC: ClassVar[Spec] = Spec(
        "external_agent_disconnected", "external_agent_disconnected_event", ()
    )


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """``error`` with ``error_event`` (AA-pkg): sent when the connection closes on an error."""

    code: int
    message: str | None = None
    error_type: str | None = None
    reason: str | None = None
    debug_message: str | None = None
    details: JsonObject | None = None
    SPEC: ClassVar[Spec] = Spec(
        "error",
        "error_event",
        (
            req("code", INT),
            opt("message", STR),
            opt("error_type", STR),
            opt("reason", STR),
            opt("debug_message", STR),
            opt("details", OBJECT),
        ),
    )


@dataclass(frozen=True, slots=True)
class ClientErrorEvent:
    """``client_error`` (AA-fern): code, error name and message."""

    code: int
    error_name: str
    message: str | None = None
    SPEC: ClassVar[Spec] = Spec(
        "client_error",
        "error_event",
        (req("code", INT), req("error_name", STR), opt("message", STR)),
    )


@dataclass(frozen=True, slots=True)
class FlatErrorEvent:
    """``{"type": "error", "message": ...}`` with no ``error_event``, as seen in real traffic."""

    message: str
    SPEC: ClassVar[Spec] = Spec("error", None, (req("message", STR),))


ERROR_EVENTS = (ErrorEvent, ClientErrorEvent, FlatErrorEvent)
