"""Typed model of every ElevenLabs agent WebSocket message, both directions (protocol.md §3, §4).

This module owns the wire format: it is the only place where JSON and base64 appear. Each message
is a frozen dataclass; ``parse_server`` / ``parse_client`` turn a text frame into one, and
``encode`` turns one back into a text frame. Parsing is strict where the protocol is strict (types
of required fields, base64, audio format names, NaN) and tolerant where it is loose (unknown keys
are ignored, ``interruption`` may carry ``reason`` instead of ``event_id``, ``ping_ms`` may be null,
an unknown ``type`` becomes an ``UnknownMessage``). Malformed input raises ``RemoteProtocolError``.

Each class describes its wire shape declaratively (``SPEC``: the ``type`` string, the key of the
payload object, and one ``_Field`` per attribute), and one generic codec reads and writes them all.
Optional fields left at their default are omitted on encoding, so an override that is not
configured is never sent (protocol.md §3.2: "omit fields you do not want to override").

Pure: imports nothing that does I/O (no asyncio, websockets, pyaudio, gpiozero).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from piagent.errors import RemoteProtocolError

JsonObject: TypeAlias = Mapping[str, Any]

__all__ = [
    "CLIENT_MESSAGE_TYPES",
    "ERROR_EVENTS",
    "SERVER_EVENT_TYPES",
    "AgentChatResponsePart",
    "AgentConfigOverride",
    "AgentReasoningResponsePart",
    "AgentResponse",
    "AgentResponseComplete",
    "AgentResponseCorrection",
    "AgentResponseMetadata",
    "AgentToolRequest",
    "AgentToolResponse",
    "AgentToolResponseFullPayload",
    "AgentTyping",
    "Alignment",
    "AsrConfigOverride",
    "AsrInitiationMetadata",
    "Audio",
    "AudioFormat",
    "ClientErrorEvent",
    "ClientMessage",
    "ClientToolCall",
    "ClientToolResult",
    "ContextUsage",
    "ContextualUpdate",
    "ConversationConfigOverride",
    "ConversationInitiationClientData",
    "ConversationInitiationMetadata",
    "ConversationOverride",
    "ErrorEvent",
    "ExternalAgentConnected",
    "ExternalAgentDisconnected",
    "Feedback",
    "FileInput",
    "FlatErrorEvent",
    "GuardrailTriggered",
    "InternalTentativeAgentResponse",
    "InternalTurnProbability",
    "Interruption",
    "KnowledgeBaseItem",
    "McpConnectionStatus",
    "McpIntegration",
    "McpToolApprovalResult",
    "McpToolCall",
    "MultimodalMessage",
    "Ping",
    "Pong",
    "PromptOverride",
    "RichContent",
    "ServerEvent",
    "SourceInfo",
    "TentativeUserTranscript",
    "TtsConfigOverride",
    "TurnConfigOverride",
    "UnknownMessage",
    "UserActivity",
    "UserAudioChunk",
    "UserMessage",
    "UserTranscript",
    "VadScore",
    "encode",
    "parse_client",
    "parse_server",
    "to_json",
]


class AudioFormat(enum.StrEnum):
    """The seven audio formats, identical for both directions (protocol.md §6)."""

    PCM_8000 = "pcm_8000"
    PCM_16000 = "pcm_16000"
    PCM_22050 = "pcm_22050"
    PCM_24000 = "pcm_24000"
    PCM_44100 = "pcm_44100"
    PCM_48000 = "pcm_48000"
    ULAW_8000 = "ulaw_8000"

    @property
    def sample_rate(self) -> int:
        """Samples per second."""
        return int(self.value.rsplit("_", 1)[1])

    @property
    def is_ulaw(self) -> bool:
        """True for G.711 mu-law (one byte a sample), False for little-endian int16 PCM."""
        return self is AudioFormat.ULAW_8000

    @property
    def bytes_per_sample(self) -> int:
        """1 for mu-law, 2 for 16-bit PCM."""
        return 1 if self.is_ulaw else 2

    @property
    def silence_byte(self) -> int:
        """The byte that, repeated, is digital silence: 0xFF is mu-law's code for zero."""
        return 0xFF if self.is_ulaw else 0x00


# --------------------------------------------------------------------------------------------
# The generic codec: a value codec per JSON kind, a field spec per attribute.


@dataclass(frozen=True, slots=True)
class _Codec:
    """How one JSON value becomes a Python value (``decode(raw, path)``) and back."""

    decode: Callable[[Any, str], Any]
    encode: Callable[[Any], Any]
    drop_empty: bool = False  # an optional value that encodes to {} is omitted


def _fail(path: str, expected: str, raw: Any) -> RemoteProtocolError:
    return RemoteProtocolError(f"{path}: expected {expected}, got {_describe(raw)}")


def _describe(raw: Any) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "boolean"
    if isinstance(raw, int | float):
        return "number"
    if isinstance(raw, str):
        return "string"
    if isinstance(raw, list):
        return "array"
    return "object"


def _identity(value: Any) -> Any:
    return value


def _checked(expected: str, test: Callable[[Any], bool], convert: Callable[[Any], Any]) -> _Codec:
    def decode(raw: Any, path: str) -> Any:
        if not test(raw):
            raise _fail(path, expected, raw)
        return convert(raw)

    return _Codec(decode, _identity)


def _is_int(raw: Any) -> bool:
    return isinstance(raw, int) and not isinstance(raw, bool)


def _is_number(raw: Any) -> bool:
    return isinstance(raw, int | float) and not isinstance(raw, bool)


STR = _checked("string", lambda raw: isinstance(raw, str), _identity)
INT = _checked("integer", _is_int, _identity)


def _decode_number(raw: Any, path: str) -> float:
    if not _is_number(raw):
        raise _fail(path, "number", raw)
    try:
        return float(raw)
    except OverflowError:
        # JSON integers are unbounded; one too large for a float must not escape as OverflowError.
        raise RemoteProtocolError(f"{path}: number out of range") from None


NUMBER = _Codec(_decode_number, _identity)
BOOL = _checked("boolean", lambda raw: isinstance(raw, bool), _identity)
OBJECT = _checked("object", lambda raw: isinstance(raw, dict), dict)


def _list_of(item: _Codec, expected: str) -> _Codec:
    def decode(raw: Any, path: str) -> tuple[Any, ...]:
        if not isinstance(raw, list):
            raise _fail(path, expected, raw)
        return tuple(item.decode(value, f"{path}[{i}]") for i, value in enumerate(raw))

    return _Codec(decode, lambda value: [item.encode(v) for v in value])


STR_LIST = _list_of(STR, "array of strings")
INT_LIST = _list_of(INT, "array of integers")
OBJECT_LIST = _list_of(OBJECT, "array of objects")


def _one_of(*choices: str) -> _Codec:
    expected = " | ".join(repr(c) for c in choices)
    return _checked(expected, lambda raw: isinstance(raw, str) and raw in choices, _identity)


def _decode_base64(raw: Any, path: str) -> bytes:
    if not isinstance(raw, str):
        raise _fail(path, "base64 string", raw)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RemoteProtocolError(f"{path}: invalid base64 ({exc})") from exc


BASE64 = _Codec(_decode_base64, lambda value: base64.b64encode(value).decode("ascii"))


def _decode_format(raw: Any, path: str) -> AudioFormat:
    try:
        return AudioFormat(raw)
    except ValueError:
        raise _fail(path, f"one of {', '.join(f.value for f in AudioFormat)}", raw) from None


AUDIO_FORMAT = _Codec(_decode_format, str)

_REQUIRED: Any = object()


@dataclass(frozen=True, slots=True)
class _Field:
    """One attribute: its wire key, codec, default (``_REQUIRED`` if none) and nullability.

    ``send_default``: encode the field even at its default, for fields the spec requires on the
    wire although readers may assume the default when it is missing."""

    attr: str
    key: str
    codec: _Codec
    default: Any = _REQUIRED
    nullable: bool = False
    send_default: bool = False


def _req(attr: str, codec: _Codec, key: str | None = None, *, nullable: bool = False) -> _Field:
    return _Field(attr, key or attr, codec, _REQUIRED, nullable)


def _opt(attr: str, codec: _Codec, key: str | None = None, default: Any = None) -> _Field:
    return _Field(attr, key or attr, codec, default, nullable=True)


@dataclass(frozen=True, slots=True)
class _Spec:
    """Wire shape of a message: ``type`` (None for the untyped audio chunk and nested objects)
    and the key under which the fields sit (None: beside ``type`` at the top level)."""

    type: str | None
    payload_key: str | None
    fields: tuple[_Field, ...]


def _decode_fields(cls: type[Any], data: Any, path: str) -> Any:
    spec: _Spec = cls.SPEC
    if not isinstance(data, dict):
        raise _fail(path or "message", "object", data)
    kwargs: dict[str, Any] = {}
    prefix = f"{path}." if path else ""
    for f in spec.fields:
        if f.key not in data:
            if f.default is _REQUIRED:
                raise RemoteProtocolError(f"{prefix}{f.key}: required field missing")
            kwargs[f.attr] = f.default
            continue
        raw = data[f.key]
        if raw is None and f.nullable:
            kwargs[f.attr] = None if f.default is _REQUIRED else f.default
        else:
            kwargs[f.attr] = f.codec.decode(raw, prefix + f.key)
    return cls(**kwargs)


def _encode_fields(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in obj.SPEC.fields:
        value = getattr(obj, f.attr)
        if f.default is not _REQUIRED and value == f.default and not f.send_default:
            continue  # unset optional field: omitted, never sent empty (protocol.md §3.2)
        encoded = None if value is None else f.codec.encode(value)
        if f.codec.drop_empty and encoded == {}:
            continue  # an override object with nothing set is not sent either
        out[f.key] = encoded
    return out


def _nested(cls: type[Any]) -> _Codec:
    """A codec for a nested object described by ``cls.SPEC``. One whose fields are all unset
    is omitted by its parent, so an override tree with nothing set sends nothing at all."""
    return _Codec(lambda raw, path: _decode_fields(cls, raw, path), _encode_fields, True)


# --------------------------------------------------------------------------------------------
# Client -> server (protocol.md §3)


@dataclass(frozen=True, slots=True)
class UserAudioChunk:
    """``{"user_audio_chunk": base64}``: raw audio in the session's input format, no ``type``."""

    audio: bytes
    SPEC: ClassVar[_Spec] = _Spec(None, None, (_req("audio", BASE64, "user_audio_chunk"),))


@dataclass(frozen=True, slots=True)
class KnowledgeBaseItem:
    """One knowledge-base document in a prompt override."""

    type: str
    name: str
    id: str
    usage_mode: str | None = None
    SPEC: ClassVar[_Spec] = _Spec(
        None,
        None,
        (_req("type", STR), _req("name", STR), _req("id", STR), _opt("usage_mode", STR)),
    )


@dataclass(frozen=True, slots=True)
class PromptOverride:
    """``conversation_config_override.agent.prompt``."""

    prompt: str | None = None
    llm: str | None = None
    tool_ids: tuple[str, ...] | None = None
    native_mcp_server_ids: tuple[str, ...] | None = None
    knowledge_base: tuple[KnowledgeBaseItem, ...] | None = None
    SPEC: ClassVar[_Spec] = _Spec(
        None,
        None,
        (
            _opt("prompt", STR),
            _opt("llm", STR),
            _opt("tool_ids", STR_LIST),
            _opt("native_mcp_server_ids", STR_LIST),
            _opt("knowledge_base", _list_of(_nested(KnowledgeBaseItem), "array of objects")),
        ),
    )


@dataclass(frozen=True, slots=True)
class AgentConfigOverride:
    """``conversation_config_override.agent``."""

    prompt: PromptOverride | None = None
    first_message: str | None = None
    language: str | None = None
    max_conversation_duration_message: str | None = None
    SPEC: ClassVar[_Spec] = _Spec(
        None,
        None,
        (
            _opt("prompt", _nested(PromptOverride)),
            _opt("first_message", STR),
            _opt("language", STR),
            _opt("max_conversation_duration_message", STR),
        ),
    )


@dataclass(frozen=True, slots=True)
class TtsConfigOverride:
    """``conversation_config_override.tts``: voice and voice settings."""

    voice_id: str | None = None
    stability: float | None = None
    speed: float | None = None
    similarity_boost: float | None = None
    model_id: str | None = None
    SPEC: ClassVar[_Spec] = _Spec(
        None,
        None,
        (
            _opt("voice_id", STR),
            _opt("stability", NUMBER),
            _opt("speed", NUMBER),
            _opt("similarity_boost", NUMBER),
            _opt("model_id", STR),
        ),
    )


@dataclass(frozen=True, slots=True)
class AsrConfigOverride:
    """``conversation_config_override.asr``."""

    keywords: tuple[str, ...] | None = None
    SPEC: ClassVar[_Spec] = _Spec(None, None, (_opt("keywords", STR_LIST),))


@dataclass(frozen=True, slots=True)
class _SoftTimeoutConfig:
    message: str | None = None
    SPEC: ClassVar[_Spec] = _Spec(None, None, (_opt("message", STR),))


@dataclass(frozen=True, slots=True)
class TurnConfigOverride:
    """``conversation_config_override.turn``: the filler said while the LLM is slow."""

    soft_timeout_message: str | None = None

    @staticmethod
    def _decode(raw: Any, path: str) -> TurnConfigOverride:
        if not isinstance(raw, dict):
            raise _fail(path, "object", raw)
        soft = raw.get("soft_timeout_config")
        if soft is None:
            return TurnConfigOverride()
        config = _decode_fields(_SoftTimeoutConfig, soft, f"{path}.soft_timeout_config")
        return TurnConfigOverride(config.message)

    @staticmethod
    def _encode(value: TurnConfigOverride) -> dict[str, Any]:
        if value.soft_timeout_message is None:
            return {}
        return {"soft_timeout_config": {"message": value.soft_timeout_message}}


_TURN_OVERRIDE = _Codec(TurnConfigOverride._decode, TurnConfigOverride._encode, True)


@dataclass(frozen=True, slots=True)
class ConversationOverride:
    """``conversation_config_override.conversation``."""

    text_only: bool | None = None
    client_events: tuple[str, ...] | None = None
    SPEC: ClassVar[_Spec] = _Spec(
        None, None, (_opt("text_only", BOOL), _opt("client_events", STR_LIST))
    )


@dataclass(frozen=True, slots=True)
class ConversationConfigOverride:
    """``conversation_config_override``: per-conversation overrides (protocol.md §3.2, §7.3)."""

    agent: AgentConfigOverride | None = None
    tts: TtsConfigOverride | None = None
    asr: AsrConfigOverride | None = None
    turn: TurnConfigOverride | None = None
    conversation: ConversationOverride | None = None
    SPEC: ClassVar[_Spec] = _Spec(
        None,
        None,
        (
            _opt("agent", _nested(AgentConfigOverride)),
            _opt("tts", _nested(TtsConfigOverride)),
            _opt("asr", _nested(AsrConfigOverride)),
            _opt("turn", _TURN_OVERRIDE),
            _opt("conversation", _nested(ConversationOverride)),
        ),
    )


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """Client identification: ``source`` (an SDK name or ``unknown``) and ``version``."""

    source: str | None = None
    version: str | None = None
    SPEC: ClassVar[_Spec] = _Spec(None, None, (_opt("source", STR), _opt("version", STR)))


@dataclass(frozen=True, slots=True)
class ConversationInitiationClientData:
    """The first client message: overrides, dynamic variables, LLM extras, user id."""

    conversation_config_override: ConversationConfigOverride | None = None
    custom_llm_extra_body: JsonObject | None = None
    dynamic_variables: JsonObject | None = None
    user_id: str | None = None
    source_info: SourceInfo | None = None
    branch_id: str | None = None
    environment: str | None = None
    starting_workflow_node_id: str | None = None
    tool_mock_config: JsonObject | None = None
    SPEC: ClassVar[_Spec] = _Spec(
        "conversation_initiation_client_data",
        None,
        (
            _opt("conversation_config_override", _nested(ConversationConfigOverride)),
            _opt("custom_llm_extra_body", OBJECT),
            _opt("dynamic_variables", OBJECT),
            _opt("user_id", STR),
            _opt("source_info", _nested(SourceInfo)),
            _opt("branch_id", STR),
            _opt("environment", STR),
            _opt("starting_workflow_node_id", STR),
            _opt("tool_mock_config", OBJECT),
        ),
    )


@dataclass(frozen=True, slots=True)
class Pong:
    """Answer to a ``ping``; echoes its ``event_id``."""

    event_id: int
    SPEC: ClassVar[_Spec] = _Spec("pong", None, (_req("event_id", INT),))


TOOL_ERROR_TYPES = (
    "user_rejected",
    "external_server",
    "external_client",
    "customer_auth",
    "client_timeout",
    "unknown",
)


@dataclass(frozen=True, slots=True)
class ClientToolResult:
    """Result of a ``client_tool_call`` that expects a response."""

    tool_call_id: str
    result: str
    is_error: bool
    error_type: str | None = None
    SPEC: ClassVar[_Spec] = _Spec(
        "client_tool_result",
        None,
        (
            _req("tool_call_id", STR),
            _req("result", STR),
            _req("is_error", BOOL),
            _opt("error_type", _one_of(*TOOL_ERROR_TYPES)),
        ),
    )


@dataclass(frozen=True, slots=True)
class ContextualUpdate:
    """A background fact for the LLM; a newer one with the same ``context_id`` supersedes."""

    text: str
    context_id: str | None = None
    SPEC: ClassVar[_Spec] = _Spec(
        "contextual_update", None, (_req("text", STR), _opt("context_id", STR))
    )


@dataclass(frozen=True, slots=True)
class UserMessage:
    """Typed text treated as if spoken; it starts an agent turn (and interrupts the agent)."""

    text: str | None
    user_identifier: str | None = None
    rich_content_id: str | None = None
    SPEC: ClassVar[_Spec] = _Spec(
        "user_message",
        None,
        (
            _req("text", STR, nullable=True),
            _opt("user_identifier", STR),
            _opt("rich_content_id", STR),
        ),
    )


@dataclass(frozen=True, slots=True)
class UserActivity:
    """The user is present: resets the server's turn timeout."""

    SPEC: ClassVar[_Spec] = _Spec("user_activity", None, ())


@dataclass(frozen=True, slots=True)
class Feedback:
    """Rates the agent turn ``event_id``: ``like``, ``dislike``, or ``None`` to clear."""

    score: str | None
    event_id: int
    SPEC: ClassVar[_Spec] = _Spec(
        "feedback",
        None,
        (_req("score", _one_of("like", "dislike"), nullable=True), _req("event_id", INT)),
    )


@dataclass(frozen=True, slots=True)
class McpToolApprovalResult:
    """Approves or rejects an ``mcp_tool_call`` in state ``awaiting_approval``."""

    tool_call_id: str
    is_approved: bool
    SPEC: ClassVar[_Spec] = _Spec(
        "mcp_tool_approval_result",
        None,
        (_req("tool_call_id", STR), _req("is_approved", BOOL)),
    )


@dataclass(frozen=True, slots=True)
class FileInput:
    """The file part of a ``multimodal_message``."""

    file_id: str
    SPEC: ClassVar[_Spec] = _Spec(None, None, (_req("file_id", STR),))

    @staticmethod
    def _decode(raw: Any, path: str) -> FileInput:
        if isinstance(raw, dict) and raw.get("type", "file_input") != "file_input":
            raise _fail(f"{path}.type", "'file_input'", raw["type"])
        result: FileInput = _decode_fields(FileInput, raw, path)
        return result

    @staticmethod
    def _encode(value: FileInput) -> dict[str, Any]:
        return {"type": "file_input", "file_id": value.file_id}


@dataclass(frozen=True, slots=True)
class _MultimodalText:
    text: str | None
    SPEC: ClassVar[_Spec] = _Spec(None, None, (_req("text", STR, nullable=True),))


def _decode_multimodal_text(raw: Any, path: str) -> str | None:
    text: str | None = _decode_fields(_MultimodalText, raw, path).text
    return text


_MULTIMODAL_TEXT = _Codec(
    _decode_multimodal_text, lambda value: {"type": "user_message", "text": value}
)


@dataclass(frozen=True, slots=True)
class MultimodalMessage:
    """A user message with an uploaded file (either part may be absent)."""

    text: str | None = None
    file: FileInput | None = None
    SPEC: ClassVar[_Spec] = _Spec(
        "multimodal_message",
        None,
        (
            _opt("text", _MULTIMODAL_TEXT),
            _opt("file", _Codec(FileInput._decode, FileInput._encode)),
        ),
    )


ClientMessage: TypeAlias = (
    UserAudioChunk
    | ConversationInitiationClientData
    | Pong
    | ClientToolResult
    | ContextualUpdate
    | UserMessage
    | UserActivity
    | Feedback
    | McpToolApprovalResult
    | MultimodalMessage
)

# --------------------------------------------------------------------------------------------
# Server -> client (protocol.md §4)

_PART_TYPE = _one_of("start", "delta", "stop")


@dataclass(frozen=True, slots=True)
class ConversationInitiationMetadata:
    """The first server message: conversation id and the audio formats of both directions."""

    conversation_id: str
    agent_output_audio_format: AudioFormat
    user_input_audio_format: AudioFormat
    SPEC: ClassVar[_Spec] = _Spec(
        "conversation_initiation_metadata",
        "conversation_initiation_metadata_event",
        (
            _req("conversation_id", STR),
            _req("agent_output_audio_format", AUDIO_FORMAT),
            _req("user_input_audio_format", AUDIO_FORMAT),
        ),
    )


@dataclass(frozen=True, slots=True)
class Alignment:
    """Character timings of an audio chunk."""

    chars: tuple[str, ...]
    char_start_times_ms: tuple[int, ...]
    char_durations_ms: tuple[int, ...]
    SPEC: ClassVar[_Spec] = _Spec(
        None,
        None,
        (
            _req("chars", STR_LIST),
            _req("char_start_times_ms", INT_LIST),
            _req("char_durations_ms", INT_LIST),
        ),
    )


@dataclass(frozen=True, slots=True)
class Audio:
    """A chunk of agent speech in the output format; ``event_id`` is the turn's id."""

    audio: bytes
    event_id: int
    alignment: Alignment | None = None
    is_final: bool = False
    SPEC: ClassVar[_Spec] = _Spec(
        "audio",
        "audio_event",
        (
            _req("audio", BASE64, "audio_base_64"),
            _req("event_id", INT),
            _opt("alignment", _nested(Alignment)),
            _opt("is_final", BOOL, default=False),
        ),
    )


@dataclass(frozen=True, slots=True)
class AgentResponse:
    """The full text of an agent turn."""

    text: str
    event_id: int
    SPEC: ClassVar[_Spec] = _Spec(
        "agent_response",
        "agent_response_event",
        (_req("text", STR, "agent_response"), _req("event_id", INT)),
    )


@dataclass(frozen=True, slots=True)
class AgentResponseCorrection:
    """After an interruption: what the agent meant to say and what it actually said."""

    original_agent_response: str
    corrected_agent_response: str
    event_id: int
    SPEC: ClassVar[_Spec] = _Spec(
        "agent_response_correction",
        "agent_response_correction_event",
        (
            _req("original_agent_response", STR),
            _req("corrected_agent_response", STR),
            _req("event_id", INT),
        ),
    )


@dataclass(frozen=True, slots=True)
class AgentResponseMetadata:
    """Metadata of an agent turn (custom LLM metadata, for instance)."""

    metadata: JsonObject
    event_id: int
    SPEC: ClassVar[_Spec] = _Spec(
        "agent_response_metadata",
        "agent_response_metadata_event",
        (_req("metadata", OBJECT), _req("event_id", INT)),
    )


@dataclass(frozen=True, slots=True)
class AgentResponseComplete:
    """The agent has finished generating turn ``event_id``."""

    event_id: int
    SPEC: ClassVar[_Spec] = _Spec(
        "agent_response_complete", "agent_response_complete_event", (_req("event_id", INT),)
    )


@dataclass(frozen=True, slots=True)
class AgentChatResponsePart:
    """Streaming agent text: ``start``, ``delta`` parts, ``stop``."""

    text: str
    part_type: str
    event_id: int
    SPEC: ClassVar[_Spec] = _Spec(
        "agent_chat_response_part",
        "text_response_part",
        (_req("text", STR), _req("part_type", _PART_TYPE, "type"), _req("event_id", INT)),
    )


@dataclass(frozen=True, slots=True)
class AgentReasoningResponsePart:
    """Streaming reasoning text (experimental); its ``event_id`` is a string."""

    text: str
    part_type: str
    event_id: str
    SPEC: ClassVar[_Spec] = _Spec(
        "agent_reasoning_response_part",
        "reasoning_response_part",
        (_req("text", STR), _req("part_type", _PART_TYPE, "type"), _req("event_id", STR)),
    )


@dataclass(frozen=True, slots=True)
class UserTranscript:
    """Final transcript of a user utterance."""

    text: str
    event_id: int
    SPEC: ClassVar[_Spec] = _Spec(
        "user_transcript",
        "user_transcription_event",
        (_req("text", STR, "user_transcript"), _req("event_id", INT)),
    )


@dataclass(frozen=True, slots=True)
class TentativeUserTranscript:
    """Interim transcript of the utterance in progress."""

    text: str
    event_id: int
    SPEC: ClassVar[_Spec] = _Spec(
        "tentative_user_transcript",
        "tentative_user_transcription_event",
        (_req("text", STR, "user_transcript"), _req("event_id", INT)),
    )


@dataclass(frozen=True, slots=True)
class InternalTentativeAgentResponse:
    """Internal/debug: the response being prepared."""

    text: str
    SPEC: ClassVar[_Spec] = _Spec(
        "internal_tentative_agent_response",
        "tentative_agent_response_internal_event",
        (_req("text", STR, "tentative_agent_response"),),
    )


@dataclass(frozen=True, slots=True)
class Interruption:
    """The user barged in: drop agent audio with ``event_id`` <= this one (protocol.md §5).

    The schemas give ``event_id``; one docs example gives only ``reason``; either is accepted."""

    event_id: int | None = None
    reason: str | None = None
    SPEC: ClassVar[_Spec] = _Spec(
        "interruption", "interruption_event", (_opt("event_id", INT), _opt("reason", STR))
    )


@dataclass(frozen=True, slots=True)
class Ping:
    """Keepalive that must be answered with a ``pong`` of the same ``event_id``."""

    event_id: int
    ping_ms: int | None = None
    SPEC: ClassVar[_Spec] = _Spec(
        "ping", "ping_event", (_req("event_id", INT), _opt("ping_ms", INT))
    )


@dataclass(frozen=True, slots=True)
class VadScore:
    """Probability (0-1) that the user is speaking."""

    vad_score: float
    SPEC: ClassVar[_Spec] = _Spec("vad_score", "vad_score_event", (_req("vad_score", NUMBER),))


@dataclass(frozen=True, slots=True)
class InternalTurnProbability:
    """Internal: probability that the user's turn has ended."""

    turn_probability: float
    SPEC: ClassVar[_Spec] = _Spec(
        "internal_turn_probability",
        "turn_probability_internal_event",
        (_req("turn_probability", NUMBER),),
    )


@dataclass(frozen=True, slots=True)
class ClientToolCall:
    """The agent asks the client to run a tool; answer only if ``expects_response``.

    AA-pkg omits ``expects_response``; a call without it is taken to expect a response, as the
    official SDKs answer every call."""

    tool_name: str
    tool_call_id: str
    parameters: JsonObject
    event_id: int
    expects_response: bool = True
    SPEC: ClassVar[_Spec] = _Spec(
        "client_tool_call",
        "client_tool_call",
        (
            _req("tool_name", STR),
            _req("tool_call_id", STR),
            _req("parameters", OBJECT),
            _req("event_id", INT),
            _Field(
                "expects_response", "expects_response", BOOL, True, nullable=True, send_default=True
            ),
        ),
    )


@dataclass(frozen=True, slots=True)
class AgentToolRequest:
    """The agent is about to call a tool (client, webhook, mcp or system)."""

    tool_name: str
    tool_call_id: str
    tool_type: str
    event_id: int
    SPEC: ClassVar[_Spec] = _Spec(
        "agent_tool_request",
        "agent_tool_request",
        (
            _req("tool_name", STR),
            _req("tool_call_id", STR),
            _req("tool_type", STR),
            _req("event_id", INT),
        ),
    )


_TOOL_RESPONSE_FIELDS = (
    _req("tool_name", STR),
    _req("tool_call_id", STR),
    _req("tool_type", STR),
    _req("is_error", BOOL),
    _req("is_called", BOOL),
    _req("event_id", INT),
    _opt("is_blocked", BOOL, default=False),
)


@dataclass(frozen=True, slots=True)
class AgentToolResponse:
    """A tool ran; ``tool_name == "end_call"`` means the agent hung up (protocol.md §4.2)."""

    tool_name: str
    tool_call_id: str
    tool_type: str
    is_error: bool
    is_called: bool
    event_id: int
    is_blocked: bool = False
    SPEC: ClassVar[_Spec] = _Spec(
        "agent_tool_response", "agent_tool_response", _TOOL_RESPONSE_FIELDS
    )


@dataclass(frozen=True, slots=True)
class AgentToolResponseFullPayload:
    """``agent_tool_response`` with the tool's full result."""

    tool_name: str
    tool_call_id: str
    tool_type: str
    is_error: bool
    is_called: bool
    event_id: int
    full_tool_result: str
    is_blocked: bool = False
    truncated: bool = False
    SPEC: ClassVar[_Spec] = _Spec(
        "agent_tool_response_full_payload",
        "agent_tool_response_full_payload",
        (
            *_TOOL_RESPONSE_FIELDS,
            _req("full_tool_result", STR),
            _opt("truncated", BOOL, default=False),
        ),
    )


@dataclass(frozen=True, slots=True)
class McpToolCall:
    """Progress of an MCP tool call; ``awaiting_approval`` needs an ``McpToolApprovalResult``."""

    service_id: str
    tool_call_id: str
    tool_name: str
    parameters: JsonObject
    state: str
    timestamp: str | None = None
    tool_description: str | None = None
    approval_timeout_secs: int | None = None
    result: tuple[JsonObject, ...] | None = None
    error_message: str | None = None
    SPEC: ClassVar[_Spec] = _Spec(
        "mcp_tool_call",
        "mcp_tool_call",
        (
            _req("service_id", STR),
            _req("tool_call_id", STR),
            _req("tool_name", STR),
            _req("parameters", OBJECT),
            _req("state", _one_of("loading", "awaiting_approval", "success", "failure")),
            _opt("timestamp", STR),
            _opt("tool_description", STR),
            _opt("approval_timeout_secs", INT),
            _opt("result", OBJECT_LIST),
            _opt("error_message", STR),
        ),
    )


@dataclass(frozen=True, slots=True)
class McpIntegration:
    """Connection status of one MCP integration."""

    integration_id: str
    integration_type: str
    is_connected: bool
    tool_count: int = 0
    SPEC: ClassVar[_Spec] = _Spec(
        None,
        None,
        (
            _req("integration_id", STR),
            _req("integration_type", STR),
            _req("is_connected", BOOL),
            # AA-pkg requires tool_count (default 0): accept it missing, always send it.
            _Field("tool_count", "tool_count", INT, default=0, send_default=True),
        ),
    )


@dataclass(frozen=True, slots=True)
class McpConnectionStatus:
    """Which MCP integrations are connected."""

    integrations: tuple[McpIntegration, ...]
    SPEC: ClassVar[_Spec] = _Spec(
        "mcp_connection_status",
        "mcp_connection_status",
        (_req("integrations", _list_of(_nested(McpIntegration), "array of objects")),),
    )


@dataclass(frozen=True, slots=True)
class AsrInitiationMetadata:
    """ASR start-up metadata; its contents are unspecified."""

    metadata: JsonObject
    SPEC: ClassVar[_Spec] = _Spec(
        "asr_initiation_metadata",
        None,
        (_req("metadata", OBJECT, "asr_initiation_metadata_event"),),
    )


@dataclass(frozen=True, slots=True)
class ContextUsage:
    """LLM context use after a completed agent turn."""

    event_id: int
    model: str
    context_tokens: int
    context_limit_tokens: int
    SPEC: ClassVar[_Spec] = _Spec(
        "context_usage",
        "context_usage_event",
        (
            _req("event_id", INT),
            _req("model", STR),
            _req("context_tokens", INT),
            _req("context_limit_tokens", INT),
        ),
    )


@dataclass(frozen=True, slots=True)
class RichContent:
    """A UI component to show (experimental); a headless appliance only logs it."""

    rich_content_id: str
    component: str
    props: JsonObject
    event_id: int
    SPEC: ClassVar[_Spec] = _Spec(
        "rich_content",
        "rich_content",
        (
            _req("rich_content_id", STR),
            _req("component", STR),
            _req("props", OBJECT),
            _req("event_id", INT),
        ),
    )


@dataclass(frozen=True, slots=True)
class GuardrailTriggered:
    """A guardrail fired; AA-fern names it in ``guardrail_triggered_event``, AA-pkg sends none."""

    guardrail_name: str | None = None
    SPEC: ClassVar[_Spec] = _Spec("guardrail_triggered", None, ())

    @staticmethod
    def _decode(data: dict[str, Any]) -> GuardrailTriggered:
        event = data.get("guardrail_triggered_event")
        if event is None:
            return GuardrailTriggered()
        if not isinstance(event, dict):
            raise _fail("guardrail_triggered_event", "object", event)
        name = event.get("guardrail_name")
        if name is not None and not isinstance(name, str):
            raise _fail("guardrail_triggered_event.guardrail_name", "string", name)
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
    SPEC: ClassVar[_Spec] = _Spec(
        "agent_typing",
        "agent_typing_event",
        (_req("is_typing", BOOL), _opt("duration_ms", INT)),
    )


@dataclass(frozen=True, slots=True)
class ExternalAgentConnected:
    """The conversation was handed to a human agent."""

    SPEC: ClassVar[_Spec] = _Spec("external_agent_connected", "external_agent_connected_event", ())


@dataclass(frozen=True, slots=True)
class ExternalAgentDisconnected:
    """The human agent left."""

    SPEC: ClassVar[_Spec] = _Spec(
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
    SPEC: ClassVar[_Spec] = _Spec(
        "error",
        "error_event",
        (
            _req("code", INT),
            _opt("message", STR),
            _opt("error_type", STR),
            _opt("reason", STR),
            _opt("debug_message", STR),
            _opt("details", OBJECT),
        ),
    )


@dataclass(frozen=True, slots=True)
class ClientErrorEvent:
    """``client_error`` (AA-fern): code, error name and message."""

    code: int
    error_name: str
    message: str | None = None
    SPEC: ClassVar[_Spec] = _Spec(
        "client_error",
        "error_event",
        (_req("code", INT), _req("error_name", STR), _opt("message", STR)),
    )


@dataclass(frozen=True, slots=True)
class FlatErrorEvent:
    """``{"type": "error", "message": ...}`` with no ``error_event``, as seen in real traffic."""

    message: str
    SPEC: ClassVar[_Spec] = _Spec("error", None, (_req("message", STR),))


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    """A server message whose ``type`` piagent does not know; kept whole, logged, ignored."""

    type: str
    data: JsonObject


ServerEvent: TypeAlias = (
    ConversationInitiationMetadata
    | Audio
    | AgentResponse
    | AgentResponseCorrection
    | AgentResponseMetadata
    | AgentResponseComplete
    | AgentChatResponsePart
    | AgentReasoningResponsePart
    | UserTranscript
    | TentativeUserTranscript
    | InternalTentativeAgentResponse
    | Interruption
    | Ping
    | VadScore
    | InternalTurnProbability
    | ClientToolCall
    | AgentToolRequest
    | AgentToolResponse
    | AgentToolResponseFullPayload
    | McpToolCall
    | McpConnectionStatus
    | AsrInitiationMetadata
    | ContextUsage
    | RichContent
    | GuardrailTriggered
    | AgentTyping
    | ExternalAgentConnected
    | ExternalAgentDisconnected
    | ErrorEvent
    | ClientErrorEvent
    | FlatErrorEvent
    | UnknownMessage
)

ERROR_EVENTS = (ErrorEvent, ClientErrorEvent, FlatErrorEvent)


def _registry(*classes: type[Any]) -> dict[str, type[Any]]:
    """Message classes by their wire ``type``."""
    return {cls.SPEC.type: cls for cls in classes if cls.SPEC.type is not None}


SERVER_EVENT_TYPES: dict[str, type[Any]] = _registry(
    ConversationInitiationMetadata,
    Audio,
    AgentResponse,
    AgentResponseCorrection,
    AgentResponseMetadata,
    AgentResponseComplete,
    AgentChatResponsePart,
    AgentReasoningResponsePart,
    UserTranscript,
    TentativeUserTranscript,
    InternalTentativeAgentResponse,
    Interruption,
    Ping,
    VadScore,
    InternalTurnProbability,
    ClientToolCall,
    AgentToolRequest,
    AgentToolResponse,
    AgentToolResponseFullPayload,
    McpToolCall,
    McpConnectionStatus,
    AsrInitiationMetadata,
    ContextUsage,
    RichContent,
    GuardrailTriggered,
    AgentTyping,
    ExternalAgentConnected,
    ExternalAgentDisconnected,
    ErrorEvent,
    ClientErrorEvent,
)

CLIENT_MESSAGE_TYPES: dict[str, type[Any]] = _registry(
    ConversationInitiationClientData,
    Pong,
    ClientToolResult,
    ContextualUpdate,
    UserMessage,
    UserActivity,
    Feedback,
    McpToolApprovalResult,
    MultimodalMessage,
)

# --------------------------------------------------------------------------------------------
# Entry points


def _reject_constant(name: str) -> Any:
    raise RemoteProtocolError(f"invalid JSON number {name}")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        # json would turn 1e400 into inf, which is no more JSON than Infinity is.
        raise RemoteProtocolError(f"JSON number out of range: {text[:40]}")
    return value


def _load_object(text: str | bytes) -> dict[str, Any]:
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float)
    except (ValueError, RecursionError) as exc:
        # JSONDecodeError and UnicodeDecodeError are ValueErrors; deep nesting is RecursionError.
        raise RemoteProtocolError(f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _fail("message", "JSON object", data)
    return data


def _decode_typed(cls: type[Any], data: dict[str, Any]) -> Any:
    key = cls.SPEC.payload_key
    if key is None:
        return _decode_fields(cls, data, "")
    if key not in data:
        if not cls.SPEC.fields:
            return cls()  # payload-less events may omit their empty payload object
        raise RemoteProtocolError(f"{key}: required field missing")
    return _decode_fields(cls, data[key], key)


def parse_server(text: str | bytes) -> ServerEvent:
    """Parse one server text frame into a typed event.

    Raises ``RemoteProtocolError`` for malformed frames. An unknown ``type`` is not an error: it
    returns ``UnknownMessage`` so the caller can log it and go on (newer events are opt-in)."""
    data = _load_object(text)
    kind = data.get("type")
    if not isinstance(kind, str):
        raise _fail("type", "string", kind)
    if kind == "error" and "error_event" not in data:
        result: ServerEvent = _decode_fields(FlatErrorEvent, data, "")
        return result
    if kind == "guardrail_triggered":
        return GuardrailTriggered._decode(data)
    cls = SERVER_EVENT_TYPES.get(kind)
    if cls is None:
        return UnknownMessage(kind, data)
    event: ServerEvent = _decode_typed(cls, data)
    return event


def parse_client(text: str | bytes) -> ClientMessage | UnknownMessage:
    """Parse one client text frame (the simulator's side). The audio chunk has no ``type``."""
    data = _load_object(text)
    if "type" not in data and "user_audio_chunk" in data:
        chunk: UserAudioChunk = _decode_fields(UserAudioChunk, data, "")
        return chunk
    kind = data.get("type")
    if not isinstance(kind, str):
        raise _fail("type", "string", kind)
    cls = CLIENT_MESSAGE_TYPES.get(kind)
    if cls is None:
        return UnknownMessage(kind, data)
    message: ClientMessage = _decode_fields(cls, data, "")
    return message


def to_json(message: ClientMessage | ServerEvent) -> dict[str, Any]:
    """The JSON object of a message, as it goes on the wire."""
    if isinstance(message, UnknownMessage):
        return dict(message.data)
    if isinstance(message, GuardrailTriggered):
        return message._encode()
    spec: _Spec = message.SPEC
    fields = _encode_fields(message)
    if spec.type is None:
        return fields
    if spec.payload_key is None:
        return {"type": spec.type, **fields}
    return {"type": spec.type, spec.payload_key: fields}


def encode(message: ClientMessage | ServerEvent) -> str:
    """One text frame for ``message``."""
    if isinstance(message, UserAudioChunk):
        # The hot path (every 20 ms): base64 needs no JSON escaping, so skip the generic codec.
        return '{"user_audio_chunk":"' + base64.b64encode(message.audio).decode("ascii") + '"}'
    return json.dumps(to_json(message), separators=(",", ":"), ensure_ascii=False)
