"""Typed model of every ElevenLabs agent WebSocket message, both directions (protocol.md §3, §4).

This module is the protocol's front door: ``parse_server`` / ``parse_client`` turn a text frame
into one frozen dataclass, and ``encode`` / ``to_json`` turn one back into a text frame. It owns
those entry points, the registries of message classes by wire ``type``, ``ServerEvent`` (the
union of every server event) and ``UnknownMessage`` (a server or client message of a ``type``
piagent does not know, kept whole so the caller can log it and go on). JSON appears here and in
``codec`` only.

The message classes live beside it, by direction and topic, and are re-exported here so that
``from piagent.protocol.messages import X`` is the one import path the application uses:

* ``codec``: the generic codec every class is described with, and ``AudioFormat``;
* ``overrides``: the ``conversation_config_override`` tree;
* ``client_messages``: what the client sends;
* ``server_events``: what the server sends, tools apart, errors and ``queue_status`` included;
* ``tool_events``: client tool calls, the agent's tools, MCP.

Parsing is strict where the protocol is strict (types of required fields, base64, audio format
names, NaN) and tolerant where it is loose (unknown keys are ignored, ``interruption`` may carry
``reason`` instead of ``event_id``, ``ping_ms`` may be null, an unknown ``type`` becomes an
``UnknownMessage``). Malformed input raises ``RemoteProtocolError``.

Pure: imports nothing that does I/O (no asyncio, websockets, pyaudio, gpiozero).
"""

from __future__ import annotations

import binascii
import json
import math
from dataclasses import dataclass
from typing import Any, TypeAlias

from piagent.errors import RemoteProtocolError
from piagent.protocol.client_messages import (
    TOOL_ERROR_TYPES,
    ClientMessage,
    ClientToolResult,
    ContextualUpdate,
    ConversationInitiationClientData,
    Feedback,
    FileInput,
    McpToolApprovalResult,
    MultimodalMessage,
    Pong,
    SourceInfo,
    UserActivity,
    UserAudioChunk,
    UserMessage,
)
from piagent.protocol.codec import (
    AudioFormat,
    JsonObject,
    Spec,
    decode_fields,
    encode_fields,
    fail,
)
from piagent.protocol.overrides import (
    REASONING_EFFORTS,
    AgentConfigOverride,
    AsrConfigOverride,
    ConversationConfigOverride,
    ConversationOverride,
    KnowledgeBaseItem,
    PromptOverride,
    TtsConfigOverride,
    TurnConfigOverride,
)
from piagent.protocol.server_events import (
    ERROR_EVENTS,
    QUEUE_STATES,
    AgentChatResponsePart,
    AgentReasoningResponsePart,
    AgentResponse,
    AgentResponseComplete,
    AgentResponseCorrection,
    AgentResponseMetadata,
    AgentTyping,
    Alignment,
    AsrInitiationMetadata,
    Audio,
    ClientErrorEvent,
    ContextUsage,
    ConversationInitiationMetadata,
    ErrorEvent,
    ExternalAgentConnected,
    ExternalAgentDisconnected,
    FlatErrorEvent,
    GuardrailTriggered,
    InternalTentativeAgentResponse,
    InternalTurnProbability,
    Interruption,
    Ping,
    QueueState,
    QueueStatus,
    RichContent,
    TentativeUserTranscript,
    UserTranscript,
    VadScore,
)
from piagent.protocol.tool_events import (
    AgentToolRequest,
    AgentToolResponse,
    AgentToolResponseFullPayload,
    ClientToolCall,
    McpConnectionStatus,
    McpIntegration,
    McpToolCall,
)

__all__ = [
    "CLIENT_MESSAGE_TYPES",
    "ERROR_EVENTS",
    "QUEUE_STATES",
    "REASONING_EFFORTS",
    "SERVER_EVENT_TYPES",
    "TOOL_ERROR_TYPES",
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
    "JsonObject",
    "KnowledgeBaseItem",
    "McpConnectionStatus",
    "McpIntegration",
    "McpToolApprovalResult",
    "McpToolCall",
    "MultimodalMessage",
    "Ping",
    "Pong",
    "PromptOverride",
    "QueueState",
    "QueueStatus",
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
    "encode_audio_chunk",
    "parse_client",
    "parse_server",
    "to_json",
]


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
    | QueueStatus
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
    QueueStatus,
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
        raise fail("message", "JSON object", data)
    return data


def _decode_typed(cls: type[Any], data: dict[str, Any]) -> Any:
    key = cls.SPEC.payload_key
    if key is None:
        return decode_fields(cls, data, "")
    if key not in data:
        if not cls.SPEC.fields:
            return cls()  # payload-less events may omit their empty payload object
        raise RemoteProtocolError(f"{key}: required field missing")
    return decode_fields(cls, data[key], key)


def parse_server(text: str | bytes) -> ServerEvent:
    """Parse one server text frame into a typed event.

    Raises ``RemoteProtocolError`` for malformed frames. An unknown ``type`` is not an error: it
    returns ``UnknownMessage`` so the caller can log it and go on (newer events are opt-in)."""
    data = _load_object(text)
    kind = data.get("type")
    if not isinstance(kind, str):
        raise fail("type", "string", kind)
    if kind == "error" and "error_event" not in data:
        result: ServerEvent = decode_fields(FlatErrorEvent, data, "")
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
        chunk: UserAudioChunk = decode_fields(UserAudioChunk, data, "")
        return chunk
    kind = data.get("type")
    if not isinstance(kind, str):
        raise fail("type", "string", kind)
    cls = CLIENT_MESSAGE_TYPES.get(kind)
    if cls is None:
        return UnknownMessage(kind, data)
    message: ClientMessage = decode_fields(cls, data, "")
    return message


def to_json(message: ClientMessage | ServerEvent) -> dict[str, Any]:
    """The JSON object of a message, as it goes on the wire."""
    if isinstance(message, UnknownMessage):
        return dict(message.data)
    if isinstance(message, GuardrailTriggered):
        return message._encode()
    spec: Spec = message.SPEC
    fields = encode_fields(message)
    if spec.type is None:
        return fields
    if spec.payload_key is None:
        return {"type": spec.type, **fields}
    return {"type": spec.type, spec.payload_key: fields}


def encode(message: ClientMessage | ServerEvent) -> str:
    """One text frame for ``message``."""
    if isinstance(message, UserAudioChunk):
        return encode_audio_chunk(message.audio).decode("ascii")
    return json.dumps(to_json(message), separators=(",", ":"), ensure_ascii=False)


def encode_audio_chunk(audio: bytes) -> bytes:
    """The text frame of ``UserAudioChunk(audio)``, as UTF-8 bytes: the hot path (every 20 ms)
    skips the generic codec, since base64 needs no JSON escaping, and the ``str`` a socket
    would only encode again."""
    return b'{"user_audio_chunk":"' + binascii.b2a_base64(audio, newline=False) + b'"}'
