"""Client -> server messages (protocol.md §3): one frozen dataclass per wire shape.

Owns what piagent sends: the untyped ``user_audio_chunk``, ``conversation_initiation_client_data``
(with the override tree from ``overrides``, dynamic variables, LLM extras, user id, source
info, branch, environment, workflow node, tool mocks and, from SDK 2.78, ``procedure_ids`` and
``start_procedure_ids``), ``pong``, ``client_tool_result``, ``contextual_update``,
``user_message``, ``user_activity``, ``feedback``, ``mcp_tool_approval_result`` and
``multimodal_message``, and ``ClientMessage``, their union. The simulator parses them too.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from piagent.protocol.codec import (
    BASE64,
    BOOL,
    INT,
    OBJECT,
    STR,
    STR_LIST,
    Codec,
    JsonObject,
    Spec,
    decode_fields,
    fail,
    nested,
    one_of,
    opt,
    req,
)
from piagent.protocol.overrides import ConversationConfigOverride

__all__ = [
    "TOOL_ERROR_TYPES",
    "ClientMessage",
    "ClientToolResult",
    "ContextualUpdate",
    "ConversationInitiationClientData",
    "Feedback",
    "FileInput",
    "McpToolApprovalResult",
    "MultimodalMessage",
    "Pong",
    "SourceInfo",
    "UserActivity",
    "UserAudioChunk",
    "UserMessage",
]


@dataclass(frozen=True, slots=True)
class UserAudioChunk:
    """``{"user_audio_chunk": base64}``: raw audio in the session's input format, no ``type``."""

    audio: bytes
    SPEC: ClassVar[Spec] = Spec(None, None, (req("audio", BASE64, "user_audio_chunk"),))


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """Client identification: ``source`` (an SDK name or ``unknown``) and ``version``."""

    source: str | None = None
    version: str | None = None
    SPEC: ClassVar[Spec] = Spec(None, None, (opt("source", STR), opt("version", STR)))


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
    # Which of the agent's procedures are available (an empty tuple: none of them), and which
    # free-form ones start at once (at most five). Both need the agent's
    # enable_procedure_ids_from_client; an unknown ID fails the conversation's start.
    procedure_ids: tuple[str, ...] | None = None
    start_procedure_ids: tuple[str, ...] | None = None
    SPEC: ClassVar[Spec] = Spec(
        "conversation_initiation_client_data",
        None,
        (
            opt("conversation_config_override", nested(ConversationConfigOverride)),
            opt("custom_llm_extra_body", OBJECT),
            opt("dynamic_variables", OBJECT),
            opt("user_id", STR),
            opt("source_info", nested(SourceInfo)),
            opt("branch_id", STR),
            opt("environment", STR),
            opt("starting_workflow_node_id", STR),
            opt("tool_mock_config", OBJECT),
            opt("procedure_ids", STR_LIST),
            opt("start_procedure_ids", STR_LIST),
        ),
    )


@dataclass(frozen=True, slots=True)
class Pong:
    """Answer to a ``ping``; echoes its ``event_id``."""

    event_id: int
    SPEC: ClassVar[Spec] = Spec("pong", None, (req("event_id", INT),))


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
    SPEC: ClassVar[Spec] = Spec(
        "client_tool_result",
        None,
        (
            req("tool_call_id", STR),
            req("result", STR),
            req("is_error", BOOL),
            opt("error_type", one_of(*TOOL_ERROR_TYPES)),
        ),
    )


@dataclass(frozen=True, slots=True)
class ContextualUpdate:
    """A background fact for the LLM; a newer one with the same ``context_id`` supersedes."""

    text: str
    context_id: str | None = None
    SPEC: ClassVar[Spec] = Spec(
        "contextual_update", None, (req("text", STR), opt("context_id", STR))
    )


@dataclass(frozen=True, slots=True)
class UserMessage:
    """Typed text treated as if spoken; it starts an agent turn (and interrupts the agent)."""

    text: str | None
    user_identifier: str | None = None
    rich_content_id: str | None = None
    SPEC: ClassVar[Spec] = Spec(
        "user_message",
        None,
        (
            req("text", STR, nullable=True),
            opt("user_identifier", STR),
            opt("rich_content_id", STR),
        ),
    )


@dataclass(frozen=True, slots=True)
class UserActivity:
    """The user is present: resets the server's turn timeout."""

    SPEC: ClassVar[Spec] = Spec("user_activity", None, ())


@dataclass(frozen=True, slots=True)
class Feedback:
    """Rates the agent turn ``event_id``: ``like``, ``dislike``, or ``None`` to clear."""

    score: str | None
    event_id: int
    SPEC: ClassVar[Spec] = Spec(
        "feedback",
        None,
        (req("score", one_of("like", "dislike"), nullable=True), req("event_id", INT)),
    )


@dataclass(frozen=True, slots=True)
class McpToolApprovalResult:
    """Approves or rejects an ``mcp_tool_call`` in state ``awaiting_approval``."""

    tool_call_id: str
    is_approved: bool
    SPEC: ClassVar[Spec] = Spec(
        "mcp_tool_approval_result",
        None,
        (req("tool_call_id", STR), req("is_approved", BOOL)),
    )


@dataclass(frozen=True, slots=True)
class FileInput:
    """The file part of a ``multimodal_message``."""

    file_id: str
    SPEC: ClassVar[Spec] = Spec(None, None, (req("file_id", STR),))

    @staticmethod
    def _decode(raw: Any, path: str) -> FileInput:
        if isinstance(raw, dict) and raw.get("type", "file_input") != "file_input":
            raise fail(f"{path}.type", "'file_input'", raw["type"])
        result: FileInput = decode_fields(FileInput, raw, path)
        return result

    @staticmethod
    def _encode(value: FileInput) -> dict[str, Any]:
        return {"type": "file_input", "file_id": value.file_id}


@dataclass(frozen=True, slots=True)
class _MultimodalText:
    text: str | None
    SPEC: ClassVar[Spec] = Spec(None, None, (req("text", STR, nullable=True),))


def _decode_multimodal_text(raw: Any, path: str) -> str | None:
    text: str | None = decode_fields(_MultimodalText, raw, path).text
    return text


_MULTIMODAL_TEXT = Codec(
    _decode_multimodal_text, lambda value: {"type": "user_message", "text": value}
)


@dataclass(frozen=True, slots=True)
class MultimodalMessage:
    """A user message with an uploaded file (either part may be absent)."""

    text: str | None = None
    file: FileInput | None = None
    SPEC: ClassVar[Spec] = Spec(
        "multimodal_message",
        None,
        (
            opt("text", _MULTIMODAL_TEXT),
            opt("file", Codec(FileInput._decode, FileInput._encode)),
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
