"""The per-conversation override tree: ``conversation_config_override`` (protocol.md §3.2).

Owns one frozen dataclass per object of the tree (``agent`` with its ``prompt``, ``tts``,
``asr``, ``turn``, ``conversation``) and ``REASONING_EFFORTS``, the values of
``agent.prompt.reasoning_effort``. Every field is optional and omitted on the wire when unset:
an agent that does not allow an override rejects the whole conversation (§7.3), so what the
user did not configure must never be sent, not even empty.

Fields beyond the AsyncAPI copy in ``spec/`` (``agent.prompt.reasoning_effort``) follow the
official Python SDK 2.78 types (protocol.md §14). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from piagent.protocol.codec import (
    BOOL,
    NUMBER,
    STR,
    STR_LIST,
    Codec,
    Spec,
    decode_fields,
    fail,
    list_of,
    nested,
    one_of,
    opt,
    req,
)

__all__ = [
    "REASONING_EFFORTS",
    "AgentConfigOverride",
    "AsrConfigOverride",
    "ConversationConfigOverride",
    "ConversationOverride",
    "KnowledgeBaseItem",
    "PromptOverride",
    "TtsConfigOverride",
    "TurnConfigOverride",
]

# ``agent.prompt.reasoning_effort``: how hard a reasoning model thinks (SDK 2.78
# ``LlmReasoningEffort``; only some models take it).
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")


@dataclass(frozen=True, slots=True)
class KnowledgeBaseItem:
    """One knowledge-base document in a prompt override."""

    type: str
    name: str
    id: str
    usage_mode: str | None = None
    SPEC: ClassVar[Spec] = Spec(
        None,
        None,
        (req("type", STR), req("name", STR), req("id", STR), opt("usage_mode", STR)),
    )


@dataclass(frozen=True, slots=True)
class PromptOverride:
    """``conversation_config_override.agent.prompt``."""

    prompt: str | None = None
    llm: str | None = None
    tool_ids: tuple[str, ...] | None = None
    native_mcp_server_ids: tuple[str, ...] | None = None
    knowledge_base: tuple[KnowledgeBaseItem, ...] | None = None
    reasoning_effort: str | None = None  # one of REASONING_EFFORTS (SDK 2.78)
    SPEC: ClassVar[Spec] = Spec(
        None,
        None,
        (
            opt("prompt", STR),
            opt("llm", STR),
            opt("reasoning_effort", one_of(*REASONING_EFFORTS)),
            opt("tool_ids", STR_LIST),
            opt("native_mcp_server_ids", STR_LIST),
            opt("knowledge_base", list_of(nested(KnowledgeBaseItem), "array of objects")),
        ),
    )


@dataclass(frozen=True, slots=True)
class AgentConfigOverride:
    """``conversation_config_override.agent``."""

    prompt: PromptOverride | None = None
    first_message: str | None = None
    language: str | None = None
    max_conversation_duration_message: str | None = None
    SPEC: ClassVar[Spec] = Spec(
        None,
        None,
        (
            opt("prompt", nested(PromptOverride)),
            opt("first_message", STR),
            opt("language", STR),
            opt("max_conversation_duration_message", STR),
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
    SPEC: ClassVar[Spec] = Spec(
        None,
        None,
        (
            opt("voice_id", STR),
            opt("stability", NUMBER),
            opt("speed", NUMBER),
            opt("similarity_boost", NUMBER),
            opt("model_id", STR),
        ),
    )


@dataclass(frozen=True, slots=True)
class AsrConfigOverride:
    """``conversation_config_override.asr``."""

    keywords: tuple[str, ...] | None = None
    SPEC: ClassVar[Spec] = Spec(None, None, (opt("keywords", STR_LIST),))


@dataclass(frozen=True, slots=True)
class _SoftTimeoutConfig:
    message: str | None = None
    SPEC: ClassVar[Spec] = Spec(None, None, (opt("message", STR),))


@dataclass(frozen=True, slots=True)
class TurnConfigOverride:
    """``conversation_config_override.turn``: the filler said while the LLM is slow."""

    soft_timeout_message: str | None = None

    @staticmethod
    def _decode(raw: Any, path: str) -> TurnConfigOverride:
        if not isinstance(raw, dict):
            raise fail(path, "object", raw)
        soft = raw.get("soft_timeout_config")
        if soft is None:
            return TurnConfigOverride()
        config = decode_fields(_SoftTimeoutConfig, soft, f"{path}.soft_timeout_config")
        return TurnConfigOverride(config.message)

    @staticmethod
    def _encode(value: TurnConfigOverride) -> dict[str, Any]:
        if value.soft_timeout_message is None:
            return {}
        return {"soft_timeout_config": {"message": value.soft_timeout_message}}


_TURN_OVERRIDE = Codec(TurnConfigOverride._decode, TurnConfigOverride._encode, True)


@dataclass(frozen=True, slots=True)
class ConversationOverride:
    """``conversation_config_override.conversation``."""

    text_only: bool | None = None
    client_events: tuple[str, ...] | None = None
    SPEC: ClassVar[Spec] = Spec(
        None, None, (opt("text_only", BOOL), opt("client_events", STR_LIST))
    )


@dataclass(frozen=True, slots=True)
class ConversationConfigOverride:
    """``conversation_config_override``: per-conversation overrides (protocol.md §3.2, §7.3)."""

    agent: AgentConfigOverride | None = None
    tts: TtsConfigOverride | None = None
    asr: AsrConfigOverride | None = None
    turn: TurnConfigOverride | None = None
    conversation: ConversationOverride | None = None
    SPEC: ClassVar[Spec] = Spec(
        None,
        None,
        (
            opt("agent", nested(AgentConfigOverride)),
            opt("tts", nested(TtsConfigOverride)),
            opt("asr", nested(AsrConfigOverride)),
            opt("turn", _TURN_OVERRIDE),
            opt("conversation", nested(ConversationOverride)),
        ),
    )
