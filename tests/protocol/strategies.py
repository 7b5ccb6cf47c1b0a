"""Hypothesis strategies for every message class in ``piagent.protocol.messages``.

``client_messages()`` and ``server_events()`` draw any message the model can represent and
round-trip. With ``conformant=True`` they keep to the value domains of the official spec
(language codes, ``tts`` ranges, close codes, ``vad_score`` in 0..1, one consistent shape per
``mcp_tool_call`` state ...) and to the types the spec defines, for the conformance tests: the
model itself checks types, not these domains.

Nested override objects are either ``None`` or have at least one field set: an override with
nothing set is omitted on encoding, so it would come back as ``None``.
"""

from __future__ import annotations

from datetime import UTC, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from piagent.protocol import messages as m

__all__ = [
    "ERROR_TYPES",
    "LANGUAGES",
    "client_messages",
    "json_objects",
    "json_values",
    "server_events",
]

# --------------------------------------------------------------------------------------------
# Leaves

texts = st.text(max_size=16)
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12)
event_ids = st.integers(min_value=-(2**63), max_value=2**63 - 1)
small_ints = st.integers(min_value=0, max_value=10_000)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
unit_floats = st.floats(min_value=0.0, max_value=1.0)
audio_formats = st.sampled_from(list(m.AudioFormat))

json_scalars = st.none() | st.booleans() | event_ids | finite_floats | texts
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)
json_objects: st.SearchStrategy[dict[str, Any]] = st.dictionaries(texts, json_values, max_size=4)

#: AA-pkg ``Language`` (a sample; the spec lists about 70).
LANGUAGES = ("en", "de", "fr", "es", "pt-br", "ja", "zh", "cy", "no", "uk")
#: AA-pkg ``ErrorType`` (protocol.md §7.2).
ERROR_TYPES = (
    "unknown",
    "invalid_message",
    "telephony_agent_error",
    "mcp_tool_error",
    "mcp_https_error",
    "value_error",
    "missing_fields",
    "override_error",
    "missing_dynamic_variable_transfer",
    "missing_dynamic_variable",
    "websocket_disconnect",
    "safety_violation",
    "llm_timeout",
    "transport_receive_timeout",
    "asyncio_timeout",
    "http_exception",
    "max_duration_exceeded",
    "llm_error",
    "custom_llm_error",
    "cascade_brain_error",
    "asr_transcription_error",
    "vad_error",
    "turn_probability_error",
    "tts_cascade_error",
    "redis_timeout_error",
    "unknown_websocket_crash",
)
#: AA-pkg ``ClientEvent``: the server events an override may ask for.
SPEC_CLIENT_EVENTS = (
    "audio",
    "agent_response",
    "agent_response_correction",
    "agent_chat_response_part",
    "interruption",
    "user_transcript",
    "tentative_user_transcript",
    "conversation_initiation_metadata",
    "client_tool_call",
    "ping",
    "vad_score",
    "mcp_tool_call",
)
CLOSE_CODES = (1000, 1002, 1008, 1011)
# RFC 3339 offsets are whole minutes; historical zones (LMT -00:16:08) are not.
_OFFSETS = [UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=9, minutes=30))]
date_times = st.builds(
    lambda moment, spec: moment.isoformat(timespec=spec),
    st.datetimes(timezones=st.sampled_from(_OFFSETS)),
    st.sampled_from(["seconds", "milliseconds", "microseconds"]),
)


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def _tuples(strategy: st.SearchStrategy[Any], max_size: int = 3) -> st.SearchStrategy[Any]:
    return st.lists(strategy, max_size=max_size).map(tuple)


@st.composite
def _some_set(draw: st.DrawFn, cls: type[Any], fields: dict[str, st.SearchStrategy[Any]]) -> Any:
    """``cls`` with a non-empty subset of ``fields`` set, the others at their default."""
    chosen = draw(st.sets(st.sampled_from(sorted(fields)), min_size=1))
    return cls(**{name: draw(fields[name]) for name in sorted(chosen)})


# --------------------------------------------------------------------------------------------
# Client -> server


def _overrides(conformant: bool) -> st.SearchStrategy[m.ConversationConfigOverride]:
    knowledge_base_items = st.builds(
        m.KnowledgeBaseItem,
        type=st.sampled_from(["file", "url", "text"]),
        name=texts,
        id=ids,
        usage_mode=_optional(st.sampled_from(["auto", "prompt"])),
    )
    prompt = _some_set(
        m.PromptOverride,
        {
            "prompt": texts,
            "llm": st.sampled_from(["gpt-4o-mini", "gemini-2.0-flash", "custom-llm"]),
            "tool_ids": _tuples(ids),
            "native_mcp_server_ids": _tuples(ids),
            "knowledge_base": _tuples(knowledge_base_items),
            "reasoning_effort": st.sampled_from(m.REASONING_EFFORTS),
        },
    )
    agent = _some_set(
        m.AgentConfigOverride,
        {
            "prompt": prompt,
            "first_message": texts,
            "language": st.sampled_from(LANGUAGES) if conformant else texts,
            "max_conversation_duration_message": texts,
        },
    )
    tts = _some_set(
        m.TtsConfigOverride,
        {
            "voice_id": ids,
            "stability": unit_floats if conformant else finite_floats,
            "speed": st.floats(min_value=0.7, max_value=5.0) if conformant else finite_floats,
            "similarity_boost": unit_floats if conformant else finite_floats,
            "model_id": st.sampled_from(["eleven_flash_v2_5", "eleven_turbo_v2"]),
        },
    )
    asr = st.builds(m.AsrConfigOverride, keywords=_tuples(texts))
    turn = st.builds(m.TurnConfigOverride, soft_timeout_message=texts)
    if conformant:  # ClientEvent names, and the spec's minItems: 1
        client_events = st.lists(st.sampled_from(SPEC_CLIENT_EVENTS), min_size=1, max_size=4)
    else:
        client_events = st.lists(ids, max_size=3)
    conversation = _some_set(
        m.ConversationOverride,
        {"text_only": st.booleans(), "client_events": client_events.map(tuple)},
    )
    return _some_set(
        m.ConversationConfigOverride,
        {"agent": agent, "tts": tts, "asr": asr, "turn": turn, "conversation": conversation},
    )


dynamic_variables = st.dictionaries(
    ids, st.one_of(texts, event_ids, finite_floats, st.booleans()), max_size=4
)


def _tool_mock_configs(conformant: bool) -> st.SearchStrategy[dict[str, Any]]:
    if not conformant:
        return json_objects
    return st.fixed_dictionaries(
        {},
        optional={
            "mocking_strategy": st.sampled_from(["none", "all", "selected"]),
            "mocked_tool_names": st.lists(ids, max_size=3),
            "fallback_strategy": st.sampled_from(["raise_error", "call_real_tool"]),
        },
    )


def _initiations(conformant: bool) -> st.SearchStrategy[m.ConversationInitiationClientData]:
    source_info = _some_set(
        m.SourceInfo,
        {"source": st.sampled_from(["unknown", "python_sdk", "js_sdk"]), "version": ids},
    )
    return st.builds(
        m.ConversationInitiationClientData,
        conversation_config_override=_optional(_overrides(conformant)),
        custom_llm_extra_body=_optional(json_objects),
        dynamic_variables=_optional(dynamic_variables),
        user_id=_optional(ids),
        source_info=_optional(source_info),
        branch_id=_optional(ids),
        environment=_optional(st.sampled_from(["production", "staging"])),
        starting_workflow_node_id=_optional(ids),
        tool_mock_config=_optional(_tool_mock_configs(conformant)),
        procedure_ids=_optional(_tuples(ids)),
        start_procedure_ids=_optional(_tuples(ids, max_size=5)),
    )


def client_messages(*, conformant: bool = False) -> st.SearchStrategy[m.ClientMessage]:
    """Every client message class (``UserAudioChunk`` included)."""
    return st.one_of(client_message_strategies(conformant=conformant))


def client_message_strategies(*, conformant: bool = False) -> list[st.SearchStrategy[Any]]:
    """One strategy per client message class."""
    return [
        st.builds(m.UserAudioChunk, audio=st.binary(max_size=48)),
        _initiations(conformant),
        st.builds(m.Pong, event_id=event_ids),
        st.builds(
            m.ClientToolResult,
            tool_call_id=ids,
            result=texts,
            is_error=st.booleans(),
            error_type=_optional(st.sampled_from(m.TOOL_ERROR_TYPES)),
        ),
        st.builds(m.ContextualUpdate, text=texts, context_id=_optional(ids)),
        st.builds(
            m.UserMessage,
            text=_optional(texts),
            user_identifier=_optional(ids),
            rich_content_id=_optional(ids),
        ),
        st.just(m.UserActivity()),
        st.builds(m.Feedback, score=st.sampled_from([None, "like", "dislike"]), event_id=event_ids),
        st.builds(m.McpToolApprovalResult, tool_call_id=ids, is_approved=st.booleans()),
        st.builds(
            m.MultimodalMessage,
            text=_optional(texts),
            file=_optional(st.builds(m.FileInput, file_id=ids)),
        ),
    ]


# --------------------------------------------------------------------------------------------
# Server -> client


def _alignments() -> st.SearchStrategy[m.Alignment]:
    return st.integers(min_value=0, max_value=4).flatmap(
        lambda n: st.builds(
            m.Alignment,
            chars=st.lists(st.characters(), min_size=n, max_size=n).map(tuple),
            char_start_times_ms=st.lists(small_ints, min_size=n, max_size=n).map(tuple),
            char_durations_ms=st.lists(small_ints, min_size=n, max_size=n).map(tuple),
        )
    )


@st.composite
def _mcp_tool_calls(draw: st.DrawFn, conformant: bool) -> m.McpToolCall:
    state = draw(st.sampled_from(["loading", "awaiting_approval", "success", "failure"]))
    common = {
        "service_id": draw(ids),
        "tool_call_id": draw(ids),
        "tool_name": draw(ids),
        "parameters": draw(json_objects),
        "state": state,
        "tool_description": draw(_optional(texts)),
    }
    if not conformant:
        return m.McpToolCall(
            **common,
            timestamp=draw(_optional(texts)),
            approval_timeout_secs=draw(_optional(small_ints)),
            result=draw(_optional(_tuples(json_objects))),
            error_message=draw(_optional(texts)),
        )
    # The spec: timestamp always, and exactly the fields of the state (one oneOf branch each).
    extra: dict[str, Any] = {}
    if state == "awaiting_approval":
        extra["approval_timeout_secs"] = draw(small_ints)
    elif state == "success":
        extra["result"] = draw(_tuples(json_objects))
    elif state == "failure":
        extra["error_message"] = draw(texts)
    return m.McpToolCall(**common, timestamp=draw(date_times), **extra)


def _tool_response_fields() -> dict[str, st.SearchStrategy[Any]]:
    return {
        "tool_name": ids,
        "tool_call_id": ids,
        "tool_type": st.sampled_from(["client", "webhook", "mcp", "system"]),
        "is_error": st.booleans(),
        "is_called": st.booleans(),
        "event_id": event_ids,
        "is_blocked": st.booleans(),
    }


def _spec_server_events(conformant: bool) -> list[st.SearchStrategy[Any]]:
    """Strategies for the server events whose ``type`` AA-pkg defines."""
    probability = unit_floats if conformant else finite_floats
    part_types = st.sampled_from(["start", "delta", "stop"])
    return [
        st.builds(
            m.ConversationInitiationMetadata,
            conversation_id=ids,
            agent_output_audio_format=audio_formats,
            user_input_audio_format=audio_formats,
        ),
        st.builds(
            m.Audio,
            audio=st.binary(max_size=48),
            event_id=event_ids,
            alignment=_optional(_alignments()),
            is_final=st.booleans(),
        ),
        st.builds(m.AgentResponse, text=texts, event_id=event_ids),
        st.builds(
            m.AgentResponseCorrection,
            original_agent_response=texts,
            corrected_agent_response=texts,
            event_id=event_ids,
        ),
        st.builds(m.AgentChatResponsePart, text=texts, part_type=part_types, event_id=event_ids),
        st.builds(m.AgentReasoningResponsePart, text=texts, part_type=part_types, event_id=ids),
        st.builds(m.UserTranscript, text=texts, event_id=event_ids),
        st.builds(m.TentativeUserTranscript, text=texts, event_id=event_ids),
        st.builds(m.InternalTentativeAgentResponse, text=texts),
        st.builds(
            m.Interruption,
            # The spec requires event_id; the model also takes a docs example's bare reason.
            event_id=event_ids if conformant else _optional(event_ids),
            reason=_optional(texts),
        ),
        st.builds(m.Ping, event_id=event_ids, ping_ms=_optional(small_ints)),
        st.builds(m.VadScore, vad_score=probability),
        st.builds(m.InternalTurnProbability, turn_probability=probability),
        st.builds(
            m.ClientToolCall,
            tool_name=ids,
            tool_call_id=ids,
            parameters=json_objects,
            event_id=event_ids,
            expects_response=st.booleans(),
        ),
        st.builds(
            m.AgentToolRequest,
            tool_name=ids,
            tool_call_id=ids,
            tool_type=st.sampled_from(["client", "webhook", "mcp", "system"]),
            event_id=event_ids,
        ),
        st.builds(m.AgentToolResponse, **_tool_response_fields()),
        st.builds(
            m.AgentToolResponseFullPayload,
            **_tool_response_fields(),
            full_tool_result=texts,
            truncated=st.booleans(),
        ),
        _mcp_tool_calls(conformant),
        st.builds(
            m.McpConnectionStatus,
            integrations=_tuples(
                st.builds(
                    m.McpIntegration,
                    integration_id=ids,
                    integration_type=(
                        st.sampled_from(["mcp_server", "mcp_integration"]) if conformant else ids
                    ),
                    is_connected=st.booleans(),
                    tool_count=small_ints,
                )
            ),
        ),
        st.builds(m.AsrInitiationMetadata, metadata=json_objects),
        st.builds(
            m.ContextUsage,
            event_id=event_ids,
            model=ids,
            context_tokens=small_ints,
            context_limit_tokens=small_ints,
        ),
        st.builds(
            m.RichContent,
            rich_content_id=ids,
            component=ids,
            props=json_objects,
            event_id=event_ids,
        ),
        st.builds(m.GuardrailTriggered, guardrail_name=_optional(texts)),
        st.builds(m.AgentTyping, is_typing=st.booleans(), duration_ms=_optional(small_ints)),
        st.just(m.ExternalAgentConnected()),
        st.just(m.ExternalAgentDisconnected()),
        st.builds(
            m.ErrorEvent,
            code=st.sampled_from(CLOSE_CODES) if conformant else event_ids,
            message=_optional(texts),
            error_type=_optional(st.sampled_from(ERROR_TYPES) if conformant else texts),
            reason=_optional(texts),
            debug_message=_optional(texts),
            details=_optional(json_objects),
        ),
    ]


_KNOWN_TYPES = frozenset(m.SERVER_EVENT_TYPES) | frozenset(m.CLIENT_MESSAGE_TYPES)


@st.composite
def unknown_messages(draw: st.DrawFn) -> m.UnknownMessage:
    """An ``UnknownMessage`` as ``parse_server`` / ``parse_client`` would return it."""
    kind = draw(texts.filter(lambda t: t not in _KNOWN_TYPES))
    data = draw(json_objects)
    data["type"] = kind
    return m.UnknownMessage(kind, data)


def server_event_strategies(*, conformant: bool = False) -> list[st.SearchStrategy[Any]]:
    """One strategy per server event class (and one for unknown types, unless ``conformant``)."""
    strategies = _spec_server_events(conformant)
    if not conformant:
        strategies += [
            st.builds(m.AgentResponseMetadata, metadata=json_objects, event_id=event_ids),
            st.builds(m.AgentResponseComplete, event_id=event_ids),
            st.builds(m.ClientErrorEvent, code=event_ids, error_name=ids, message=_optional(texts)),
            st.builds(m.FlatErrorEvent, message=texts),
            st.builds(m.QueueStatus, status=st.sampled_from(m.QUEUE_STATES)),
            unknown_messages(),
        ]
    return strategies


def server_events(*, conformant: bool = False) -> st.SearchStrategy[m.ServerEvent]:
    """Every server event class; with ``conformant``, only those the spec defines."""
    return st.one_of(server_event_strategies(conformant=conformant))
