"""What piagent encodes validates against the official contract (AA-pkg, ``../shared/spec``).

Client messages are what the daemon sends; server events are what the simulator sends. Both are
checked through ``tests.spec``, whose own behaviour (nullable, the ``allOf`` repair, formats,
type selection) is pinned down first, so a validator that accepts everything cannot pass.

The model is deliberately looser than the spec in value domains (language codes, ``tts`` ranges,
close codes, ``error_type`` names, ``vad_score`` range, one shape per ``mcp_tool_call`` state,
an ``interruption`` with only ``reason``) and in a few types the spec lacks (``client_error``,
``agent_response_metadata``, ``agent_response_complete``, the flat ``error``): the generated
messages here keep to the spec's domains (``conformant=True``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings

from piagent.protocol.messages import (
    CLIENT_MESSAGE_TYPES,
    ERROR_EVENTS,
    SERVER_EVENT_TYPES,
    AgentChatResponsePart,
    AgentConfigOverride,
    AgentReasoningResponsePart,
    AgentResponse,
    AgentResponseCorrection,
    AgentToolRequest,
    AgentToolResponse,
    AgentToolResponseFullPayload,
    AgentTyping,
    Alignment,
    AsrConfigOverride,
    AsrInitiationMetadata,
    Audio,
    AudioFormat,
    ClientToolCall,
    ContextUsage,
    ConversationConfigOverride,
    ConversationInitiationClientData,
    ConversationInitiationMetadata,
    ConversationOverride,
    ErrorEvent,
    ExternalAgentConnected,
    ExternalAgentDisconnected,
    FlatErrorEvent,
    GuardrailTriggered,
    InternalTentativeAgentResponse,
    InternalTurnProbability,
    Interruption,
    KnowledgeBaseItem,
    McpConnectionStatus,
    McpIntegration,
    McpToolCall,
    Ping,
    PromptOverride,
    RichContent,
    SourceInfo,
    TentativeUserTranscript,
    TtsConfigOverride,
    TurnConfigOverride,
    UserAudioChunk,
    UserTranscript,
    VadScore,
    encode,
    to_json,
)
from tests.protocol.strategies import client_messages, server_events
from tests.protocol.test_client_messages import CLIENT_EXAMPLES
from tests.spec import (
    client_types_in_spec,
    requires_spec,
    server_types_in_spec,
    validate_client_message,
    validate_server_message,
)

pytestmark = requires_spec

GENERATED = settings(max_examples=300, deadline=None)

# Types piagent models that AA-pkg does not define (AA-fern or observed traffic has them).
SERVER_TYPES_BEYOND_SPEC = {
    "client_error",
    "agent_response_metadata",
    "agent_response_complete",
    "queue_status",
}

MCP_BASE = {
    "service_id": "svc",
    "tool_call_id": "m1",
    "tool_name": "search",
    "parameters": {"q": "x"},
    "timestamp": "2026-01-02T03:04:05Z",
}


# --------------------------------------------------------------------------------------------
# The validator itself


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param({"user_audio_chunk": "AAECAw=="}, id="audio-chunk"),
        pytest.param({"type": "user_message", "text": None}, id="nullable-string"),
        pytest.param({"type": "multimodal_message", "text": None, "file": None}, id="nullable-ref"),
        pytest.param({"type": "feedback", "score": None, "event_id": 1}, id="oneof-null"),
        pytest.param(
            {"type": "conversation_initiation_client_data", "user_id": None}, id="nullable-top"
        ),
        pytest.param(
            {
                "type": "conversation_initiation_client_data",
                "conversation_config_override": {"agent": {"language": "no"}},
            },
            id="norwegian-is-not-false",
        ),
        pytest.param(
            {
                "type": "conversation_initiation_client_data",
                "conversation_config_override": {"tts": {"speed": None}, "asr": {"keywords": None}},
            },
            id="nullable-with-range-and-items",
        ),
    ],
)
def test_validator_accepts(obj: dict[str, Any]) -> None:
    validate_client_message(obj)


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        pytest.param({"user_audio_chunk": "AAE"}, "is not a 'base64'", id="audio-bad-base64"),
        pytest.param({"user_audio_chunk": 5}, "is not of type 'string'", id="audio-not-string"),
        pytest.param({"type": "user_message", "text": 5}, "$.text", id="nullable-keeps-type"),
        pytest.param({"type": "pong"}, "'event_id' is a required property", id="required"),
        pytest.param({"type": "pong", "event_id": True}, "is not of type 'integer'", id="bool"),
        pytest.param(
            {"type": "feedback", "score": "meh", "event_id": 1}, "$.score", id="enum-or-null"
        ),
        pytest.param(
            {"type": "conversation_initiation_client_data", "user_id": 5}, "$.user_id", id="top"
        ),
        pytest.param(
            {
                "type": "conversation_initiation_client_data",
                "conversation_config_override": {"tts": {"speed": 9.0}},
            },
            "$.conversation_config_override.tts.speed",
            id="nullable-keeps-range",
        ),
        pytest.param(
            {
                "type": "conversation_initiation_client_data",
                "conversation_config_override": {"agent": {"language": False}},
            },
            "$.conversation_config_override.agent.language",
            id="language-enum",
        ),
        pytest.param(
            {"type": "multimodal_message", "file": {"type": "image", "file_id": "f"}},
            "$.file",
            id="nullable-ref-keeps-schema",
        ),
        pytest.param({"type": "ping"}, "has no schema", id="server-type-on-client-side"),
        pytest.param({"type": "teleport"}, "has no schema", id="unknown-type"),
        pytest.param({"text": "hi"}, "type None has no schema", id="no-type"),
    ],
)
def test_validator_rejects_client(obj: dict[str, Any], fragment: str) -> None:
    with pytest.raises(AssertionError) as exc:
        validate_client_message(obj)
    assert fragment in str(exc.value)


def test_validator_rejects_non_objects() -> None:
    with pytest.raises(AssertionError, match="must be a JSON object"):
        validate_client_message(["user_audio_chunk"])  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="must be a JSON object"):
        validate_server_message("ping")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "state",
    [
        {"state": "loading"},
        {"state": "loading", "tool_description": None},
        {"state": "awaiting_approval", "approval_timeout_secs": 300},
        {"state": "success", "result": [{"type": "text", "text": "hi"}]},
        {"state": "failure", "error_message": "boom", "tool_description": "Searches"},
    ],
)
def test_validator_accepts_each_mcp_state(state: dict[str, Any]) -> None:
    # Only possible with the allOf repair: as written, MCPToolCallBase rejects ``state`` and the
    # state schema rejects the base's keys, since both say additionalProperties: false.
    validate_server_message({"type": "mcp_tool_call", "mcp_tool_call": {**MCP_BASE, **state}})


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"state": "loading", "error_message": "x"}, id="key-of-another-state"),
        pytest.param({"state": "loading", "bogus": 1}, id="unknown-key"),
        pytest.param({"state": "success"}, id="success-without-result"),
        pytest.param({"state": "awaiting_approval"}, id="approval-without-timeout"),
        pytest.param({"state": "done"}, id="unknown-state"),
        pytest.param({"state": "loading", "timestamp": "yesterday"}, id="bad-date-time"),
        pytest.param({"state": "loading", "timestamp": "2026-02-30T00:00:00Z"}, id="bad-date"),
        pytest.param({"state": "loading", "timestamp": "2026-01-02 03:04:05"}, id="no-offset"),
        pytest.param({"state": "loading", "timestamp": 1767322800}, id="timestamp-number"),
    ],
)
def test_validator_rejects_bad_mcp_calls(change: dict[str, Any]) -> None:
    with pytest.raises(AssertionError, match=r"MCPToolCall"):
        validate_server_message({"type": "mcp_tool_call", "mcp_tool_call": {**MCP_BASE, **change}})


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        pytest.param(
            to_json(FlatErrorEvent("quota")),
            "'error_event' is a required property",
            id="flat-error-is-observed-only",
        ),
        pytest.param(to_json(ErrorEvent(4000)), "$.error_event.code", id="close-code-enum"),
        pytest.param(
            to_json(ErrorEvent(1002, error_type="oops")),
            "$.error_event.error_type",
            id="error-type",
        ),
        pytest.param(to_json(VadScore(1.5)), "maximum", id="vad-range"),
        pytest.param(to_json(Interruption(reason="x")), "'event_id' is a required", id="reason"),
        pytest.param(
            to_json(McpToolCall("s", "t", "n", {}, "loading")), "MCPToolCall", id="no-timestamp"
        ),
        pytest.param({"type": "pong", "event_id": 1}, "has no schema", id="client-type"),
        pytest.param({"type": "agent_response_complete"}, "has no schema", id="beyond-spec"),
        pytest.param(
            {"type": "audio", "audio_event": {"audio_base_64": "AA==", "event_id": "1"}},
            "$.audio_event.event_id",
            id="nested-type",
        ),
    ],
)
def test_validator_rejects_server(obj: dict[str, Any], fragment: str) -> None:
    with pytest.raises(AssertionError) as exc:
        validate_server_message(obj)
    assert fragment in str(exc.value)


def test_validator_error_names_the_message_and_the_path() -> None:
    with pytest.raises(AssertionError) as exc:
        validate_server_message({"type": "ping", "ping_event": {"event_id": True, "ping_ms": "5"}})
    text = str(exc.value)
    assert "does not match Ping (type 'ping')" in text
    assert "at $.ping_event.event_id: True is not of type 'integer'" in text
    assert "at $.ping_event.ping_ms" in text


# --------------------------------------------------------------------------------------------
# The model covers the spec


def test_every_server_type_in_the_spec_has_a_class() -> None:
    spec_types = server_types_in_spec()
    assert "audio" in spec_types and "error" in spec_types  # the spec was really read
    assert spec_types - set(SERVER_EVENT_TYPES) == set()
    assert set(SERVER_EVENT_TYPES) - spec_types == SERVER_TYPES_BEYOND_SPEC
    # ``error`` has two shapes: the spec's (ErrorEvent) and the flat one seen in real traffic.
    assert SERVER_EVENT_TYPES["error"] is ErrorEvent
    assert FlatErrorEvent in ERROR_EVENTS
    assert FlatErrorEvent.SPEC.type == "error"


def test_every_client_type_in_the_spec_has_a_class() -> None:
    spec_types = client_types_in_spec()
    assert "pong" in spec_types
    assert spec_types == set(CLIENT_MESSAGE_TYPES)
    # ...plus the untyped audio chunk, which the spec recognises by its key.
    validate_client_message(to_json(UserAudioChunk(b"\x00\x00")))


# --------------------------------------------------------------------------------------------
# Client messages: what the daemon sends

FULL_INITIATION = ConversationInitiationClientData(
    conversation_config_override=ConversationConfigOverride(
        agent=AgentConfigOverride(
            prompt=PromptOverride(
                prompt="You are a kitchen assistant.",
                llm="gpt-4o-mini",
                tool_ids=("t1",),
                native_mcp_server_ids=("mcp1", "mcp2"),
                knowledge_base=(KnowledgeBaseItem("file", "manual.pdf", "kb1", "auto"),),
            ),
            first_message="",
            language="pt-br",
            max_conversation_duration_message="Time is up.",
        ),
        tts=TtsConfigOverride(
            voice_id="21m00Tcm4TlvDq8ikWAM",
            stability=0.0,
            speed=5.0,
            similarity_boost=1.0,
            model_id="eleven_flash_v2_5",
        ),
        asr=AsrConfigOverride(keywords=("piagent", "Raspberry")),
        turn=TurnConfigOverride(soft_timeout_message="Hmm..."),
        conversation=ConversationOverride(
            text_only=False, client_events=("audio", "interruption", "agent_response", "ping")
        ),
    ),
    custom_llm_extra_body={"temperature": 0.7, "max_tokens": 150, "stop": ["\n"], "x": None},
    dynamic_variables={"user_name": "John", "age": 42, "balance": 12.5, "vip": True},
    user_id="end-user-123",
    source_info=SourceInfo("python_sdk", "0.1.0"),
    branch_id="main",
    environment="production",
    starting_workflow_node_id="start",
    tool_mock_config={
        "mocking_strategy": "selected",
        "mocked_tool_names": ["lookup"],
        "fallback_strategy": "call_real_tool",
    },
)

CLIENT_FULL_EXAMPLES = [
    pytest.param(FULL_INITIATION, id="initiation-full-tree"),
    pytest.param(
        ConversationInitiationClientData(dynamic_variables={"s": "x"}), id="dynamic-string"
    ),
    pytest.param(ConversationInitiationClientData(dynamic_variables={"i": -3}), id="dynamic-int"),
    pytest.param(
        ConversationInitiationClientData(dynamic_variables={"f": 0.25}), id="dynamic-float"
    ),
    pytest.param(
        ConversationInitiationClientData(dynamic_variables={"b": False}), id="dynamic-bool"
    ),
    pytest.param(
        ConversationInitiationClientData(custom_llm_extra_body={"top_p": 0.9}), id="llm-extra"
    ),
    pytest.param(ConversationInitiationClientData(user_id="u-1"), id="user-id"),
    pytest.param(ConversationInitiationClientData(source_info=SourceInfo("unknown")), id="source"),
    pytest.param(
        ConversationInitiationClientData(source_info=SourceInfo(version="1.2.3")), id="version"
    ),
    pytest.param(ConversationInitiationClientData(tool_mock_config={}), id="tool-mock-empty"),
    *(pytest.param(message, id=name) for name, message, _ in CLIENT_EXAMPLES),
]


@pytest.mark.parametrize("message", CLIENT_FULL_EXAMPLES)
def test_client_example_conforms(message: Any) -> None:
    validate_client_message(to_json(message))
    validate_client_message(json.loads(encode(message)))


@GENERATED
@given(client_messages(conformant=True))
def test_generated_client_message_conforms(message: Any) -> None:
    validate_client_message(to_json(message))


# --------------------------------------------------------------------------------------------
# Server events: what the simulator sends

SERVER_SPEC_EXAMPLES = [
    ConversationInitiationMetadata("conv_1", AudioFormat.PCM_44100, AudioFormat.ULAW_8000),
    Audio(b"\x01\x02", 1),
    Audio(b"\x01\x02", 2, Alignment(("h", "i"), (0, 50), (50, 60)), is_final=True),
    AgentResponse("Hello", 1),
    AgentResponseCorrection("Hello there, how", "Hello", 1),
    AgentChatResponsePart("", "start", 1),
    AgentChatResponsePart("Hel", "delta", 1),
    AgentReasoningResponsePart("because", "delta", "r1"),
    UserTranscript("hi", 2),
    TentativeUserTranscript("h", 2),
    InternalTentativeAgentResponse("maybe"),
    Interruption(3),
    Interruption(3, "user_speech"),
    Ping(4),
    Ping(5, 42),
    VadScore(0.0),
    VadScore(1.0),
    InternalTurnProbability(0.5),
    ClientToolCall("open_door", "tc1", {"door": "front"}, 6),
    ClientToolCall("log", "tc2", {}, 6, expects_response=False),
    AgentToolRequest("lookup", "tc3", "webhook", 7),
    AgentToolResponse("end_call", "tc4", "system", False, True, 8, is_blocked=True),
    AgentToolResponseFullPayload("lookup", "tc3", "webhook", False, True, 7, "{}", True, True),
    McpToolCall("svc", "m1", "search", {}, "loading", "2026-01-02T03:04:05Z", "Searches"),
    McpToolCall(
        "svc", "m1", "search", {}, "awaiting_approval", "2026-01-02T03:04:05+02:00", None, 300
    ),
    McpToolCall(
        "svc", "m1", "search", {}, "success", "2026-01-02T03:04:05.123Z", result=({"a": 1},)
    ),
    McpToolCall("svc", "m1", "search", {}, "failure", "2026-01-02T03:04:05Z", error_message="x"),
    McpConnectionStatus(
        (
            McpIntegration("i1", "mcp_server", True, 4),
            McpIntegration("i2", "mcp_integration", False),
        )
    ),
    AsrInitiationMetadata({}),
    ContextUsage(9, "gpt-4o-mini", 1200, 128000),
    RichContent("rc1", "item_card", {"title": "A"}, 10),
    GuardrailTriggered(),
    GuardrailTriggered("pii"),
    AgentTyping(True),
    AgentTyping(False, 1500),
    ExternalAgentConnected(),
    ExternalAgentDisconnected(),
    ErrorEvent(1000, "Max duration", "max_duration_exceeded", "ended", "600 s", {"limit": 600}),
    ErrorEvent(1011),
]


def test_server_examples_cover_every_type_in_the_spec() -> None:
    assert {to_json(event)["type"] for event in SERVER_SPEC_EXAMPLES} == server_types_in_spec()


@pytest.mark.parametrize(
    "event", [pytest.param(e, id=type(e).__name__) for e in SERVER_SPEC_EXAMPLES]
)
def test_server_example_conforms(event: Any) -> None:
    validate_server_message(to_json(event))
    validate_server_message(json.loads(encode(event)))


@GENERATED
@given(server_events(conformant=True))
def test_generated_server_event_conforms(event: Any) -> None:
    validate_server_message(to_json(event))
