"""The typed message model: every wire shape parsed and encoded, every malformed input rejected.

Wire examples come from protocol.md §3 and §4.1 and the shapes of the official spec. Errors are
checked for their exact text, which names the JSON path of the offending value.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from piagent.errors import RemoteProtocolError
from piagent.protocol.messages import (
    CLIENT_MESSAGE_TYPES,
    ERROR_EVENTS,
    SERVER_EVENT_TYPES,
    AgentChatResponsePart,
    AgentConfigOverride,
    AgentReasoningResponsePart,
    AgentResponse,
    AgentResponseComplete,
    AgentResponseCorrection,
    AgentResponseMetadata,
    AgentToolRequest,
    AgentToolResponse,
    AgentToolResponseFullPayload,
    AgentTyping,
    Alignment,
    AsrConfigOverride,
    AsrInitiationMetadata,
    Audio,
    AudioFormat,
    ClientErrorEvent,
    ClientToolCall,
    ClientToolResult,
    ContextualUpdate,
    ContextUsage,
    ConversationConfigOverride,
    ConversationInitiationClientData,
    ConversationInitiationMetadata,
    ConversationOverride,
    ErrorEvent,
    ExternalAgentConnected,
    ExternalAgentDisconnected,
    Feedback,
    FileInput,
    FlatErrorEvent,
    GuardrailTriggered,
    InternalTentativeAgentResponse,
    InternalTurnProbability,
    Interruption,
    KnowledgeBaseItem,
    McpConnectionStatus,
    McpIntegration,
    McpToolApprovalResult,
    McpToolCall,
    MultimodalMessage,
    Ping,
    Pong,
    PromptOverride,
    QueueStatus,
    RichContent,
    SourceInfo,
    TentativeUserTranscript,
    TtsConfigOverride,
    TurnConfigOverride,
    UnknownMessage,
    UserActivity,
    UserAudioChunk,
    UserMessage,
    UserTranscript,
    VadScore,
    encode,
    parse_client,
    parse_server,
    to_json,
)
from tests.protocol.strategies import client_messages, server_events, unknown_messages

ROUND_TRIP = settings(max_examples=300, deadline=None)

# --------------------------------------------------------------------------------------------
# AudioFormat


@pytest.mark.parametrize(
    ("fmt", "rate", "ulaw", "width", "silence"),
    [
        (AudioFormat.PCM_8000, 8000, False, 2, 0x00),
        (AudioFormat.PCM_16000, 16000, False, 2, 0x00),
        (AudioFormat.PCM_22050, 22050, False, 2, 0x00),
        (AudioFormat.PCM_24000, 24000, False, 2, 0x00),
        (AudioFormat.PCM_44100, 44100, False, 2, 0x00),
        (AudioFormat.PCM_48000, 48000, False, 2, 0x00),
        (AudioFormat.ULAW_8000, 8000, True, 1, 0xFF),
    ],
)
def test_audio_format_properties(
    fmt: AudioFormat, rate: int, ulaw: bool, width: int, silence: int
) -> None:
    assert fmt.sample_rate == rate
    assert fmt.is_ulaw is ulaw
    assert fmt.bytes_per_sample == width
    assert fmt.silence_byte == silence


def test_audio_formats_are_the_seven_of_the_protocol() -> None:
    assert {f.value for f in AudioFormat} == {
        "pcm_8000",
        "pcm_16000",
        "pcm_22050",
        "pcm_24000",
        "pcm_44100",
        "pcm_48000",
        "ulaw_8000",
    }


# --------------------------------------------------------------------------------------------
# Server events from concrete wire examples (protocol.md §4.1 and the spec's shapes).
# ``canonical``: the example is exactly what ``encode`` produces (no defaults written out).

SERVER_EXAMPLES: list[tuple[str, str, Any, bool]] = [
    (
        "conversation_initiation_metadata",
        '{"type":"conversation_initiation_metadata","conversation_initiation_metadata_event":'
        '{"conversation_id":"conv_123456789","agent_output_audio_format":"pcm_16000",'
        '"user_input_audio_format":"pcm_16000"}}',
        ConversationInitiationMetadata(
            "conv_123456789", AudioFormat.PCM_16000, AudioFormat.PCM_16000
        ),
        True,
    ),
    (
        "conversation_initiation_metadata-ulaw",
        '{"type":"conversation_initiation_metadata","conversation_initiation_metadata_event":'
        '{"conversation_id":"c","agent_output_audio_format":"pcm_44100",'
        '"user_input_audio_format":"ulaw_8000"}}',
        ConversationInitiationMetadata("c", AudioFormat.PCM_44100, AudioFormat.ULAW_8000),
        True,
    ),
    (
        "audio-alignment",
        '{"type":"audio","audio_event":{"audio_base_64":"AAECAw==","event_id":1,"alignment":'
        '{"chars":["H","e","l","l","o"],"char_start_times_ms":[0,50,80,120,160],'
        '"char_durations_ms":[50,30,40,40,60]}}}',
        Audio(
            b"\x00\x01\x02\x03",
            1,
            Alignment(("H", "e", "l", "l", "o"), (0, 50, 80, 120, 160), (50, 30, 40, 40, 60)),
        ),
        True,
    ),
    (
        "audio-final",
        '{"type":"audio","audio_event":{"audio_base_64":"","event_id":7,"is_final":true}}',
        Audio(b"", 7, None, is_final=True),
        True,
    ),
    (
        "audio-nulls-mean-defaults",
        '{"type":"audio","audio_event":{"audio_base_64":"/w==","event_id":7,"alignment":null,'
        '"is_final":null}}',
        Audio(b"\xff", 7),
        False,
    ),
    (
        "audio-unknown-keys-ignored",
        '{"type":"audio","audio_event":{"audio_base_64":"AA==","event_id":2,"extra":[1]},'
        '"future":true}',
        Audio(b"\x00", 2),
        False,
    ),
    (
        "user_transcript",
        '{"type":"user_transcript","user_transcription_event":'
        '{"user_transcript":"I need help with my voice cloning project.","event_id":42}}',
        UserTranscript("I need help with my voice cloning project.", 42),
        True,
    ),
    (
        "tentative_user_transcript",
        '{"type":"tentative_user_transcript","tentative_user_transcription_event":'
        '{"user_transcript":"I need","event_id":42}}',
        TentativeUserTranscript("I need", 42),
        True,
    ),
    (
        "agent_response",
        '{"type":"agent_response","agent_response_event":'
        '{"agent_response":"I\'d be happy to help…","event_id":43}}',
        AgentResponse("I'd be happy to help…", 43),
        True,
    ),
    (
        "agent_response_correction",
        '{"type":"agent_response_correction","agent_response_correction_event":'
        '{"original_agent_response":"Let me tell you about the complete history...",'
        '"corrected_agent_response":"Let me tell you about...","event_id":43}}',
        AgentResponseCorrection(
            "Let me tell you about the complete history...", "Let me tell you about...", 43
        ),
        True,
    ),
    (
        "agent_response_metadata",
        '{"type":"agent_response_metadata","agent_response_metadata_event":'
        '{"metadata":{"llm":"custom","tokens":[1,2]},"event_id":43}}',
        AgentResponseMetadata({"llm": "custom", "tokens": [1, 2]}, 43),
        True,
    ),
    (
        "agent_response_complete",
        '{"type":"agent_response_complete","agent_response_complete_event":{"event_id":43}}',
        AgentResponseComplete(43),
        True,
    ),
    (
        "agent_chat_response_part-start",
        '{"type":"agent_chat_response_part","text_response_part":'
        '{"text":"","type":"start","event_id":1}}',
        AgentChatResponsePart("", "start", 1),
        True,
    ),
    (
        "agent_chat_response_part-delta",
        '{"type":"agent_chat_response_part","text_response_part":'
        '{"text":"Hel","type":"delta","event_id":1}}',
        AgentChatResponsePart("Hel", "delta", 1),
        True,
    ),
    (
        "agent_reasoning_response_part",
        '{"type":"agent_reasoning_response_part","reasoning_response_part":'
        '{"text":"thinking","type":"stop","event_id":"r-1"}}',
        AgentReasoningResponsePart("thinking", "stop", "r-1"),
        True,
    ),
    (
        "internal_tentative_agent_response",
        '{"type":"internal_tentative_agent_response","tentative_agent_response_internal_event":'
        '{"tentative_agent_response":"I\'m thinking…"}}',
        InternalTentativeAgentResponse("I'm thinking…"),
        True,
    ),
    (
        "interruption",
        '{"type":"interruption","interruption_event":{"event_id":54321}}',
        Interruption(54321),
        True,
    ),
    (
        "interruption-reason",
        '{"type":"interruption","interruption_event":{"reason":"user_speech"}}',
        Interruption(None, "user_speech"),
        True,
    ),
    (
        "interruption-both",
        '{"type":"interruption","interruption_event":{"event_id":9,"reason":"x"}}',
        Interruption(9, "x"),
        True,
    ),
    (
        "interruption-empty",
        '{"type":"interruption","interruption_event":{}}',
        Interruption(),
        True,
    ),
    (
        "ping",
        '{"type":"ping","ping_event":{"event_id":12345,"ping_ms":50}}',
        Ping(12345, 50),
        True,
    ),
    (
        "ping-ms-null",
        '{"type":"ping","ping_event":{"event_id":1,"ping_ms":null}}',
        Ping(1, None),
        False,
    ),
    ("ping-ms-absent", '{"type":"ping","ping_event":{"event_id":1}}', Ping(1), True),
    (
        "vad_score",
        '{"type":"vad_score","vad_score_event":{"vad_score":0.95}}',
        VadScore(0.95),
        True,
    ),
    (
        "internal_turn_probability",
        '{"type":"internal_turn_probability","turn_probability_internal_event":'
        '{"turn_probability":0.25}}',
        InternalTurnProbability(0.25),
        True,
    ),
    (
        "queue_status-waiting",
        '{"type":"queue_status","queue_status_event":{"status":"waiting"}}',
        QueueStatus("waiting"),
        True,
    ),
    (
        "queue_status-admitted",
        '{"type":"queue_status","queue_status_event":{"status":"admitted"}}',
        QueueStatus("admitted"),
        True,
    ),
    (
        "queue_status-timed_out",
        '{"type":"queue_status","queue_status_event":{"status":"timed_out","position":3}}',
        QueueStatus("timed_out"),
        False,
    ),
    (
        "client_tool_call",
        '{"type":"client_tool_call","client_tool_call":{"tool_name":"check_account_status",'
        '"tool_call_id":"tool_call_123","parameters":{"user_id":"user_123"},"event_id":44,'
        '"expects_response":true}}',
        ClientToolCall("check_account_status", "tool_call_123", {"user_id": "user_123"}, 44),
        True,
    ),
    (
        # AA-pkg omits the field; AA-fern requires it, so piagent's own encoder always sends it.
        "client_tool_call-no-expects-response",
        '{"type":"client_tool_call","client_tool_call":{"tool_name":"t","tool_call_id":"c",'
        '"parameters":{},"event_id":1}}',
        ClientToolCall("t", "c", {}, 1, expects_response=True),
        False,
    ),
    (
        "client_tool_call-fire-and-forget",
        '{"type":"client_tool_call","client_tool_call":{"tool_name":"t","tool_call_id":"c",'
        '"parameters":{"a":[1,{"b":null}]},"event_id":1,"expects_response":false}}',
        ClientToolCall("t", "c", {"a": [1, {"b": None}]}, 1, expects_response=False),
        True,
    ),
    (
        "agent_tool_request",
        '{"type":"agent_tool_request","agent_tool_request":{"tool_name":"lookup",'
        '"tool_call_id":"tc1","tool_type":"webhook","event_id":12}}',
        AgentToolRequest("lookup", "tc1", "webhook", 12),
        True,
    ),
    (
        "agent_tool_response",
        '{"type":"agent_tool_response","agent_tool_response":{"tool_name":"skip_turn",'
        '"tool_call_id":"skip_turn_c82ca5…","tool_type":"system","is_error":false,'
        '"is_called":true,"event_id":12}}',
        AgentToolResponse("skip_turn", "skip_turn_c82ca5…", "system", False, True, 12),
        True,
    ),
    (
        "agent_tool_response-end-call-blocked",
        '{"type":"agent_tool_response","agent_tool_response":{"tool_name":"end_call",'
        '"tool_call_id":"e","tool_type":"system","is_error":true,"is_called":false,'
        '"event_id":13,"is_blocked":true}}',
        AgentToolResponse("end_call", "e", "system", True, False, 13, is_blocked=True),
        True,
    ),
    (
        "agent_tool_response_full_payload",
        '{"type":"agent_tool_response_full_payload","agent_tool_response_full_payload":'
        '{"tool_name":"lookup","tool_call_id":"tc1","tool_type":"webhook","is_error":false,'
        '"is_called":true,"event_id":12,"full_tool_result":"{\\"ok\\":1}","truncated":true}}',
        AgentToolResponseFullPayload(
            "lookup", "tc1", "webhook", False, True, 12, '{"ok":1}', truncated=True
        ),
        True,
    ),
    (
        "mcp_tool_call-loading",
        '{"type":"mcp_tool_call","mcp_tool_call":{"service_id":"svc","tool_call_id":"m1",'
        '"tool_name":"search","parameters":{"q":"x"},"state":"loading",'
        '"timestamp":"2026-01-02T03:04:05Z","tool_description":null}}',
        McpToolCall("svc", "m1", "search", {"q": "x"}, "loading", "2026-01-02T03:04:05Z"),
        False,
    ),
    (
        "mcp_tool_call-awaiting_approval",
        '{"type":"mcp_tool_call","mcp_tool_call":{"service_id":"svc","tool_call_id":"m1",'
        '"tool_name":"search","parameters":{},"state":"awaiting_approval",'
        '"tool_description":"Searches","approval_timeout_secs":300}}',
        McpToolCall(
            "svc",
            "m1",
            "search",
            {},
            "awaiting_approval",
            tool_description="Searches",
            approval_timeout_secs=300,
        ),
        True,
    ),
    (
        "mcp_tool_call-success",
        '{"type":"mcp_tool_call","mcp_tool_call":{"service_id":"svc","tool_call_id":"m1",'
        '"tool_name":"search","parameters":{},"state":"success",'
        '"result":[{"type":"text","text":"found"}]}}',
        McpToolCall(
            "svc", "m1", "search", {}, "success", result=({"type": "text", "text": "found"},)
        ),
        True,
    ),
    (
        "mcp_tool_call-failure",
        '{"type":"mcp_tool_call","mcp_tool_call":{"service_id":"svc","tool_call_id":"m1",'
        '"tool_name":"search","parameters":{},"state":"failure","error_message":"boom"}}',
        McpToolCall("svc", "m1", "search", {}, "failure", error_message="boom"),
        True,
    ),
    (
        "mcp_connection_status",
        '{"type":"mcp_connection_status","mcp_connection_status":{"integrations":['
        '{"integration_id":"i1","integration_type":"mcp_server","is_connected":true,'
        '"tool_count":3},{"integration_id":"i2","integration_type":"mcp_integration",'
        '"is_connected":false,"tool_count":0}]}}',
        McpConnectionStatus(
            (
                McpIntegration("i1", "mcp_server", True, 3),
                McpIntegration("i2", "mcp_integration", False, 0),
            )
        ),
        True,
    ),
    (
        "mcp_connection_status-tool_count-missing",
        '{"type":"mcp_connection_status","mcp_connection_status":{"integrations":['
        '{"integration_id":"i1","integration_type":"mcp_server","is_connected":true}]}}',
        McpConnectionStatus((McpIntegration("i1", "mcp_server", True),)),
        False,
    ),
    (
        "mcp_connection_status-empty",
        '{"type":"mcp_connection_status","mcp_connection_status":{"integrations":[]}}',
        McpConnectionStatus(()),
        True,
    ),
    (
        "asr_initiation_metadata",
        '{"type":"asr_initiation_metadata","asr_initiation_metadata_event":{"model":"x"}}',
        AsrInitiationMetadata({"model": "x"}),
        True,
    ),
    (
        "context_usage",
        '{"type":"context_usage","context_usage_event":{"event_id":43,"model":"gpt-4o-mini",'
        '"context_tokens":1200,"context_limit_tokens":128000}}',
        ContextUsage(43, "gpt-4o-mini", 1200, 128000),
        True,
    ),
    (
        "rich_content",
        '{"type":"rich_content","rich_content":{"rich_content_id":"rc1","component":"item_card",'
        '"props":{"title":"A"},"event_id":44}}',
        RichContent("rc1", "item_card", {"title": "A"}, 44),
        True,
    ),
    (
        "guardrail_triggered-aa-pkg",
        '{"type":"guardrail_triggered"}',
        GuardrailTriggered(),
        True,
    ),
    (
        "guardrail_triggered-aa-fern",
        '{"type":"guardrail_triggered","guardrail_triggered_event":{"guardrail_name":"pii"}}',
        GuardrailTriggered("pii"),
        True,
    ),
    (
        "guardrail_triggered-null-event",
        '{"type":"guardrail_triggered","guardrail_triggered_event":null}',
        GuardrailTriggered(),
        False,
    ),
    (
        "guardrail_triggered-event-without-name",
        '{"type":"guardrail_triggered","guardrail_triggered_event":{}}',
        GuardrailTriggered(),
        False,
    ),
    (
        "agent_typing",
        '{"type":"agent_typing","agent_typing_event":{"is_typing":true,"duration_ms":1500}}',
        AgentTyping(True, 1500),
        True,
    ),
    (
        "agent_typing-null-duration",
        '{"type":"agent_typing","agent_typing_event":{"is_typing":false,"duration_ms":null}}',
        AgentTyping(False),
        False,
    ),
    (
        "external_agent_connected",
        '{"type":"external_agent_connected","external_agent_connected_event":{}}',
        ExternalAgentConnected(),
        True,
    ),
    (
        "external_agent_connected-no-payload",
        '{"type":"external_agent_connected"}',
        ExternalAgentConnected(),
        False,
    ),
    (
        "external_agent_disconnected",
        '{"type":"external_agent_disconnected","external_agent_disconnected_event":{}}',
        ExternalAgentDisconnected(),
        True,
    ),
    (
        "external_agent_disconnected-no-payload",
        '{"type":"external_agent_disconnected"}',
        ExternalAgentDisconnected(),
        False,
    ),
    (
        "error-aa-pkg",
        '{"type":"error","error_event":{"code":1000,"message":"Max duration reached",'
        '"error_type":"max_duration_exceeded","reason":"ended","debug_message":"600 s",'
        '"details":{"limit":600}}}',
        ErrorEvent(
            1000, "Max duration reached", "max_duration_exceeded", "ended", "600 s", {"limit": 600}
        ),
        True,
    ),
    (
        "error-aa-pkg-code-only",
        '{"type":"error","error_event":{"code":1011}}',
        ErrorEvent(1011),
        True,
    ),
    (
        "error-aa-pkg-nulls",
        '{"type":"error","error_event":{"code":1002,"error_type":null,"details":null}}',
        ErrorEvent(1002),
        False,
    ),
    (
        "client_error-aa-fern",
        '{"type":"client_error","error_event":{"code":1008,"error_name":"override_error",'
        '"message":"Override for field \'voice_id\' is not allowed by config"}}',
        ClientErrorEvent(
            1008, "override_error", "Override for field 'voice_id' is not allowed by config"
        ),
        True,
    ),
    (
        "error-flat",
        '{"type":"error","message":"received 1002 (protocol error) This request exceeds your '
        'quota limit."}',
        FlatErrorEvent("received 1002 (protocol error) This request exceeds your quota limit."),
        True,
    ),
]


@pytest.mark.parametrize(
    ("wire", "expected"), [pytest.param(w, e, id=i) for i, w, e, _ in SERVER_EXAMPLES]
)
def test_parse_server_example(wire: str, expected: Any) -> None:
    assert parse_server(wire) == expected
    assert parse_server(wire.encode("utf-8")) == expected  # a bytes frame parses the same


@pytest.mark.parametrize(
    ("wire", "event"),
    [pytest.param(w, e, id=i) for i, w, e, canonical in SERVER_EXAMPLES if canonical],
)
def test_encode_server_event_exactly(wire: str, event: Any) -> None:
    assert encode(event) == wire
    assert to_json(event) == json.loads(wire)


def test_server_examples_cover_every_server_event_class() -> None:
    classes = {type(expected) for _, _, expected, _ in SERVER_EXAMPLES}
    assert classes == set(SERVER_EVENT_TYPES.values()) | {FlatErrorEvent}


def test_parsed_values_have_the_model_types() -> None:
    vad = parse_server('{"type":"vad_score","vad_score_event":{"vad_score":1}}')
    assert isinstance(vad, VadScore)
    assert type(vad.vad_score) is float  # an integral JSON number is still a float
    audio = parse_server(SERVER_EXAMPLES[2][1])
    assert isinstance(audio, Audio)
    assert audio.alignment is not None
    assert isinstance(audio.alignment.chars, tuple)  # lists become tuples: the event is hashable
    hash(audio)
    meta = parse_server(SERVER_EXAMPLES[0][1])
    assert isinstance(meta, ConversationInitiationMetadata)
    assert meta.user_input_audio_format is AudioFormat.PCM_16000


def test_error_event_classes() -> None:
    assert (ErrorEvent, ClientErrorEvent, FlatErrorEvent) == ERROR_EVENTS
    assert SERVER_EVENT_TYPES["error"] is ErrorEvent
    assert SERVER_EVENT_TYPES["client_error"] is ClientErrorEvent


def test_mcp_tool_count_is_always_sent() -> None:
    # AA-pkg lists tool_count as required; a default of 0 must still go on the wire.
    status = McpConnectionStatus((McpIntegration("i", "mcp_server", False),))
    assert to_json(status)["mcp_connection_status"]["integrations"][0]["tool_count"] == 0


# --------------------------------------------------------------------------------------------
# Unknown types


def test_unknown_server_type_is_kept_whole() -> None:
    wire = '{"type":"dtmf_request","dtmf_request_event":{"digits":"12#"},"extra":[1,2.5,null]}'
    event = parse_server(wire)
    assert event == UnknownMessage(
        "dtmf_request",
        {"type": "dtmf_request", "dtmf_request_event": {"digits": "12#"}, "extra": [1, 2.5, None]},
    )
    assert encode(event) == wire  # the simulator can replay it unchanged
    assert to_json(event) == json.loads(wire)


def test_unknown_client_type_is_kept_whole() -> None:
    wire = '{"type":"enclave_setup_config","config":{"a":1}}'
    message = parse_client(wire)
    assert message == UnknownMessage("enclave_setup_config", json.loads(wire))
    assert encode(message) == wire


def test_server_type_is_unknown_to_parse_client_and_vice_versa() -> None:
    # The two directions have separate catalogues: a ping is not a client message.
    assert parse_client('{"type":"ping","ping_event":{"event_id":1}}') == UnknownMessage(
        "ping", {"type": "ping", "ping_event": {"event_id": 1}}
    )
    assert parse_server('{"type":"pong","event_id":1}') == UnknownMessage(
        "pong", {"type": "pong", "event_id": 1}
    )


# --------------------------------------------------------------------------------------------
# Client messages, encoded exactly


FULL_INITIATION = ConversationInitiationClientData(
    conversation_config_override=ConversationConfigOverride(
        agent=AgentConfigOverride(
            prompt=PromptOverride(
                prompt="You are a kitchen assistant.",
                llm="gemini-2.0-flash-001",
                tool_ids=("t1", "t2"),
                native_mcp_server_ids=("mcp1",),
                knowledge_base=(
                    KnowledgeBaseItem("file", "manual.pdf", "kb1", "auto"),
                    KnowledgeBaseItem("url", "faq", "kb2"),
                ),
            ),
            first_message="Hi!",
            language="en",
            max_conversation_duration_message="Time is up.",
        ),
        tts=TtsConfigOverride(
            voice_id="v1",
            stability=0.5,
            speed=1.0,
            similarity_boost=0.8,
            model_id="eleven_flash_v2_5",
        ),
        asr=AsrConfigOverride(keywords=("hello", "world")),
        turn=TurnConfigOverride(soft_timeout_message="Hhmmmm...yeah."),
        conversation=ConversationOverride(text_only=True, client_events=("audio", "ping")),
    ),
    custom_llm_extra_body={"temperature": 0.7, "max_tokens": 150},
    dynamic_variables={"user_name": "John", "age": 42, "score": 9.5, "vip": True},
    user_id="end-user-123",
    source_info=SourceInfo("python_sdk", "2.59.0"),
    branch_id="b1",
    environment="production",
    starting_workflow_node_id="node1",
    tool_mock_config={"mocking_strategy": "none", "mocked_tool_names": []},
)

FULL_INITIATION_WIRE = (
    '{"type":"conversation_initiation_client_data","conversation_config_override":{'
    '"agent":{"prompt":{"prompt":"You are a kitchen assistant.","llm":"gemini-2.0-flash-001",'
    '"tool_ids":["t1","t2"],"native_mcp_server_ids":["mcp1"],"knowledge_base":['
    '{"type":"file","name":"manual.pdf","id":"kb1","usage_mode":"auto"},'
    '{"type":"url","name":"faq","id":"kb2"}]},"first_message":"Hi!","language":"en",'
    '"max_conversation_duration_message":"Time is up."},'
    '"tts":{"voice_id":"v1","stability":0.5,"speed":1.0,"similarity_boost":0.8,'
    '"model_id":"eleven_flash_v2_5"},'
    '"asr":{"keywords":["hello","world"]},'
    '"turn":{"soft_timeout_config":{"message":"Hhmmmm...yeah."}},'
    '"conversation":{"text_only":true,"client_events":["audio","ping"]}},'
    '"custom_llm_extra_body":{"temperature":0.7,"max_tokens":150},'
    '"dynamic_variables":{"user_name":"John","age":42,"score":9.5,"vip":true},'
    '"user_id":"end-user-123","source_info":{"source":"python_sdk","version":"2.59.0"},'
    '"branch_id":"b1","environment":"production","starting_workflow_node_id":"node1",'
    '"tool_mock_config":{"mocking_strategy":"none","mocked_tool_names":[]}}'
)

CLIENT_EXAMPLES: list[tuple[str, Any, str]] = [
    ("user_audio_chunk", UserAudioChunk(b"\x00\x01\x02\x03"), '{"user_audio_chunk":"AAECAw=="}'),
    ("user_audio_chunk-empty", UserAudioChunk(b""), '{"user_audio_chunk":""}'),
    (
        "initiation-nothing-set",
        ConversationInitiationClientData(),
        '{"type":"conversation_initiation_client_data"}',
    ),
    (
        "initiation-voice-only",
        ConversationInitiationClientData(
            conversation_config_override=ConversationConfigOverride(
                tts=TtsConfigOverride(voice_id="21m00Tcm4TlvDq8ikWAM")
            )
        ),
        '{"type":"conversation_initiation_client_data","conversation_config_override":'
        '{"tts":{"voice_id":"21m00Tcm4TlvDq8ikWAM"}}}',
    ),
    ("initiation-full", FULL_INITIATION, FULL_INITIATION_WIRE),
    (
        "initiation-newer-fields",
        ConversationInitiationClientData(
            conversation_config_override=ConversationConfigOverride(
                agent=AgentConfigOverride(prompt=PromptOverride(reasoning_effort="xhigh")),
                tts=TtsConfigOverride(stability=0.3, speed=1.2, similarity_boost=0.9),
            ),
            procedure_ids=("proc_a", "proc_b"),
            start_procedure_ids=("proc_a",),
        ),
        '{"type":"conversation_initiation_client_data","conversation_config_override":'
        '{"agent":{"prompt":{"reasoning_effort":"xhigh"}},'
        '"tts":{"stability":0.3,"speed":1.2,"similarity_boost":0.9}},'
        '"procedure_ids":["proc_a","proc_b"],"start_procedure_ids":["proc_a"]}',
    ),
    (
        # An empty list is meaningful: none of the agent's procedures (SDK 2.78).
        "initiation-no-procedures",
        ConversationInitiationClientData(procedure_ids=()),
        '{"type":"conversation_initiation_client_data","procedure_ids":[]}',
    ),
    (
        "initiation-empty-objects-are-sent",
        ConversationInitiationClientData(custom_llm_extra_body={}, dynamic_variables={}),
        '{"type":"conversation_initiation_client_data","custom_llm_extra_body":{},'
        '"dynamic_variables":{}}',
    ),
    ("pong", Pong(12345), '{"type":"pong","event_id":12345}'),
    (
        "client_tool_result",
        ClientToolResult("tool_call_123", "Account is active", False),
        '{"type":"client_tool_result","tool_call_id":"tool_call_123","result":"Account is active",'
        '"is_error":false}',
    ),
    (
        "client_tool_result-error",
        ClientToolResult("c", "Denied by user", True, "user_rejected"),
        '{"type":"client_tool_result","tool_call_id":"c","result":"Denied by user",'
        '"is_error":true,"error_type":"user_rejected"}',
    ),
    (
        "contextual_update",
        ContextualUpdate("User is viewing the pricing page", "page"),
        '{"type":"contextual_update","text":"User is viewing the pricing page",'
        '"context_id":"page"}',
    ),
    ("contextual_update-bare", ContextualUpdate("x"), '{"type":"contextual_update","text":"x"}'),
    (
        "user_message",
        UserMessage("I would like to upgrade my account"),
        '{"type":"user_message","text":"I would like to upgrade my account"}',
    ),
    ("user_message-null-text", UserMessage(None), '{"type":"user_message","text":null}'),
    (
        "user_message-extras",
        UserMessage("Größe?", "u1", "row7"),
        '{"type":"user_message","text":"Größe?","user_identifier":"u1","rich_content_id":"row7"}',
    ),
    ("user_activity", UserActivity(), '{"type":"user_activity"}'),
    ("feedback-like", Feedback("like", 43), '{"type":"feedback","score":"like","event_id":43}'),
    (
        "feedback-dislike",
        Feedback("dislike", 1),
        '{"type":"feedback","score":"dislike","event_id":1}',
    ),
    ("feedback-clear", Feedback(None, 43), '{"type":"feedback","score":null,"event_id":43}'),
    (
        "mcp_tool_approval_result",
        McpToolApprovalResult("m1", True),
        '{"type":"mcp_tool_approval_result","tool_call_id":"m1","is_approved":true}',
    ),
    (
        "multimodal_message",
        MultimodalMessage("What is this file?", FileInput("file_12345")),
        '{"type":"multimodal_message","text":{"type":"user_message","text":"What is this file?"},'
        '"file":{"type":"file_input","file_id":"file_12345"}}',
    ),
    (
        "multimodal_message-file-only",
        MultimodalMessage(file=FileInput("f")),
        '{"type":"multimodal_message","file":{"type":"file_input","file_id":"f"}}',
    ),
    ("multimodal_message-empty", MultimodalMessage(), '{"type":"multimodal_message"}'),
]


@pytest.mark.parametrize(
    ("message", "wire"), [pytest.param(msg, w, id=i) for i, msg, w in CLIENT_EXAMPLES]
)
def test_encode_client_message_exactly(message: Any, wire: str) -> None:
    assert encode(message) == wire
    assert to_json(message) == json.loads(wire)
    assert parse_client(wire) == message


def test_client_examples_cover_every_client_message_class() -> None:
    classes = {type(msg) for _, msg, _ in CLIENT_EXAMPLES}
    assert classes == set(CLIENT_MESSAGE_TYPES.values()) | {UserAudioChunk}


def test_audio_chunk_fast_path_matches_the_generic_codec() -> None:
    chunk = UserAudioChunk(bytes(range(256)) * 3)
    assert json.loads(encode(chunk)) == to_json(chunk)
    assert json.dumps(to_json(chunk), separators=(",", ":")) == encode(chunk)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        pytest.param(ConversationConfigOverride(), None, id="all-unset"),
        pytest.param(
            ConversationConfigOverride(
                agent=AgentConfigOverride(prompt=PromptOverride()),
                tts=TtsConfigOverride(),
                asr=AsrConfigOverride(),
                turn=TurnConfigOverride(),
                conversation=ConversationOverride(),
            ),
            None,
            id="every-branch-empty",
        ),
        pytest.param(
            ConversationConfigOverride(
                agent=AgentConfigOverride(prompt=PromptOverride(), language="de"),
                tts=TtsConfigOverride(),
            ),
            {"agent": {"language": "de"}},
            id="only-set-leaves",
        ),
        pytest.param(
            ConversationConfigOverride(asr=AsrConfigOverride(keywords=())),
            {"asr": {"keywords": []}},
            id="empty-list-is-set",
        ),
        pytest.param(
            ConversationConfigOverride(conversation=ConversationOverride(text_only=False)),
            {"conversation": {"text_only": False}},
            id="false-is-set",
        ),
    ],
)
def test_unset_overrides_are_omitted(
    override: ConversationConfigOverride, expected: dict[str, Any] | None
) -> None:
    wire = to_json(ConversationInitiationClientData(conversation_config_override=override))
    if expected is None:
        assert wire == {"type": "conversation_initiation_client_data"}
    else:
        assert wire["conversation_config_override"] == expected


def test_unset_source_info_is_omitted() -> None:
    wire = to_json(ConversationInitiationClientData(source_info=SourceInfo(), user_id="u"))
    assert wire == {"type": "conversation_initiation_client_data", "user_id": "u"}


def test_only_tts_voice_id_appears() -> None:
    message = ConversationInitiationClientData(
        conversation_config_override=ConversationConfigOverride(
            tts=TtsConfigOverride(voice_id="abc")
        )
    )
    assert json.loads(encode(message)) == {
        "type": "conversation_initiation_client_data",
        "conversation_config_override": {"tts": {"voice_id": "abc"}},
    }


# --------------------------------------------------------------------------------------------
# Client messages: tolerant parsing


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param(
            '{"user_audio_chunk":"AAECAw==","extra":1}',
            UserAudioChunk(b"\x00\x01\x02\x03"),
            id="audio-chunk-extra-key",
        ),
        pytest.param(
            '{"type":"pong","event_id":3,"user_audio_chunk":"AA=="}',
            Pong(3),
            id="type-wins-over-audio-key",
        ),
        pytest.param(
            '{"type":"conversation_initiation_client_data","conversation_config_override":'
            '{"turn":{}}}',
            ConversationInitiationClientData(
                conversation_config_override=ConversationConfigOverride(turn=TurnConfigOverride())
            ),
            id="turn-empty",
        ),
        pytest.param(
            '{"type":"conversation_initiation_client_data","conversation_config_override":'
            '{"turn":{"soft_timeout_config":null}}}',
            ConversationInitiationClientData(
                conversation_config_override=ConversationConfigOverride(turn=TurnConfigOverride())
            ),
            id="turn-soft-timeout-null",
        ),
        pytest.param(
            '{"type":"conversation_initiation_client_data","conversation_config_override":'
            '{"turn":{"soft_timeout_config":{"timeout_seconds":3}}}}',
            ConversationInitiationClientData(
                conversation_config_override=ConversationConfigOverride(
                    turn=TurnConfigOverride(None)
                )
            ),
            id="turn-soft-timeout-without-message",
        ),
        pytest.param(
            '{"type":"conversation_initiation_client_data","conversation_config_override":null,'
            '"user_id":null}',
            ConversationInitiationClientData(),
            id="nulls-mean-unset",
        ),
        pytest.param(
            '{"type":"multimodal_message","file":{"file_id":"f"}}',
            MultimodalMessage(file=FileInput("f")),
            id="multimodal-file-without-type",
        ),
        pytest.param(
            '{"type":"multimodal_message","text":{"type":"user_message","text":null}}',
            MultimodalMessage(text=None),
            id="multimodal-null-text",
        ),
        pytest.param(
            '{"type":"multimodal_message","text":null,"file":null}',
            MultimodalMessage(),
            id="multimodal-null-parts",
        ),
        pytest.param('{"type":"user_activity","x":1}', UserActivity(), id="extra-keys-ignored"),
    ],
)
def test_parse_client_tolerates(wire: str, expected: Any) -> None:
    assert parse_client(wire) == expected


# --------------------------------------------------------------------------------------------
# Malformed input: RemoteProtocolError naming the JSON path

DEEP = "[" * 100_000 + "]" * 100_000
DEEP_IN_PAYLOAD = '{"type":"ping","ping_event":' + '{"a":' * 50_000 + "1" + "}" * 50_001 + "}"
HUGE_INT = "1" + "0" * 400
FORMATS = "pcm_8000, pcm_16000, pcm_22050, pcm_24000, pcm_44100, pcm_48000, ulaw_8000"
META = (
    '{"type":"conversation_initiation_metadata","conversation_initiation_metadata_event":'
    '{"conversation_id":"c","agent_output_audio_format":%s,"user_input_audio_format":"pcm_16000"}}'
)
AUDIO = '{"type":"audio","audio_event":{"audio_base_64":"AA==","event_id":1,%s}}'
ALIGN = AUDIO % '"alignment":{"chars":%s,"char_start_times_ms":%s,"char_durations_ms":[]}'
MCP = (
    '{"type":"mcp_tool_call","mcp_tool_call":{"service_id":"s","tool_call_id":"t",'
    '"tool_name":"n","parameters":{},"state":"success",%s}}'
)
STATUS = '{"type":"mcp_connection_status","mcp_connection_status":{"integrations":%s}}'

# (id, wire, exact message, or a regex that must match from the start when it begins with ^)
SERVER_MALFORMED: list[tuple[str, str | bytes, str]] = [
    ("not-json", "hello", "^not valid JSON: "),
    ("empty", "", "^not valid JSON: "),
    ("truncated", '{"type":"ping","ping_event":{"event_id":1', "^not valid JSON: "),
    ("trailing-garbage", '{"type":"user_activity"} x', "^not valid JSON: "),
    ("bad-utf8", b'{"type":"\xff"}', "^not valid JSON: "),
    ("nan", '{"type":"vad_score","vad_score_event":{"vad_score":NaN}}', "invalid JSON number NaN"),
    (
        "infinity",
        '{"type":"vad_score","vad_score_event":{"vad_score":Infinity}}',
        "invalid JSON number Infinity",
    ),
    (
        "minus-infinity",
        '{"type":"ping","ping_event":{"event_id":-Infinity}}',
        "invalid JSON number -Infinity",
    ),
    (
        "overflowing-float",
        '{"type":"vad_score","vad_score_event":{"vad_score":1e400}}',
        "JSON number out of range: 1e400",
    ),
    (
        "overflowing-float-anywhere",
        '{"type":"some_future_event","x":[-2.5E+999]}',
        "JSON number out of range: -2.5E+999",
    ),
    ("deep-nesting", DEEP, "^not valid JSON: maximum recursion depth exceeded"),
    ("deep-nesting-in-payload", DEEP_IN_PAYLOAD, "^not valid JSON: maximum recursion depth"),
    ("array", "[]", "message: expected JSON object, got array"),
    ("string", '"ping"', "message: expected JSON object, got string"),
    ("number", "12", "message: expected JSON object, got number"),
    ("null", "null", "message: expected JSON object, got null"),
    ("boolean", "true", "message: expected JSON object, got boolean"),
    ("no-type", '{"ping_event":{"event_id":1}}', "type: expected string, got null"),
    ("type-number", '{"type":5}', "type: expected string, got number"),
    ("type-array", '{"type":["ping"]}', "type: expected string, got array"),
    ("type-object", '{"type":{}}', "type: expected string, got object"),
    ("payload-missing", '{"type":"ping"}', "ping_event: required field missing"),
    ("payload-array", '{"type":"ping","ping_event":[]}', "ping_event: expected object, got array"),
    ("payload-null", '{"type":"ping","ping_event":null}', "ping_event: expected object, got null"),
    (
        "field-missing",
        '{"type":"ping","ping_event":{}}',
        "ping_event.event_id: required field missing",
    ),
    (
        "bool-for-int",
        '{"type":"ping","ping_event":{"event_id":true}}',
        "ping_event.event_id: expected integer, got boolean",
    ),
    (
        "float-for-int",
        '{"type":"ping","ping_event":{"event_id":1.0}}',
        "ping_event.event_id: expected integer, got number",
    ),
    (
        "string-for-int",
        '{"type":"ping","ping_event":{"event_id":"1"}}',
        "ping_event.event_id: expected integer, got string",
    ),
    (
        "optional-int-wrong",
        '{"type":"ping","ping_event":{"event_id":1,"ping_ms":"50"}}',
        "ping_event.ping_ms: expected integer, got string",
    ),
    (
        "null-for-required-string",
        '{"type":"agent_response","agent_response_event":{"agent_response":null,"event_id":1}}',
        "agent_response_event.agent_response: expected string, got null",
    ),
    (
        "bool-for-number",
        '{"type":"vad_score","vad_score_event":{"vad_score":false}}',
        "vad_score_event.vad_score: expected number, got boolean",
    ),
    (
        "string-for-number",
        '{"type":"internal_turn_probability","turn_probability_internal_event":'
        '{"turn_probability":"0.5"}}',
        "turn_probability_internal_event.turn_probability: expected number, got string",
    ),
    (
        "integer-too-large-for-float",
        '{"type":"vad_score","vad_score_event":{"vad_score":' + HUGE_INT + "}}",
        "vad_score_event.vad_score: number out of range",
    ),
    (
        "integer-too-long-for-python",
        '{"type":"ping","ping_event":{"event_id":' + "9" * 5000 + "}}",
        "^not valid JSON: ",
    ),
    (
        "object-for-bool",
        AUDIO % '"is_final":{}',
        "audio_event.is_final: expected boolean, got object",
    ),
    (
        "int-for-bool",
        '{"type":"agent_typing","agent_typing_event":{"is_typing":1}}',
        "agent_typing_event.is_typing: expected boolean, got number",
    ),
    (
        "base64-not-string",
        '{"type":"audio","audio_event":{"audio_base_64":123,"event_id":1}}',
        "audio_event.audio_base_64: expected base64 string, got number",
    ),
    (
        "base64-bad-padding",
        '{"type":"audio","audio_event":{"audio_base_64":"AAE","event_id":1}}',
        "^audio_event.audio_base_64: invalid base64 ",
    ),
    (
        "base64-bad-alphabet",
        '{"type":"audio","audio_event":{"audio_base_64":"AA-_","event_id":1}}',
        "^audio_event.audio_base_64: invalid base64 ",
    ),
    (
        "base64-non-ascii",
        '{"type":"audio","audio_event":{"audio_base_64":"ÄÄ==","event_id":1}}',
        "^audio_event.audio_base_64: invalid base64 ",
    ),
    (
        "audio-format-unknown",
        META % '"pcm_12345"',
        "conversation_initiation_metadata_event.agent_output_audio_format: expected one of "
        f"{FORMATS}, got string",
    ),
    (
        "audio-format-case",
        META % '"PCM_16000"',
        "conversation_initiation_metadata_event.agent_output_audio_format: expected one of "
        f"{FORMATS}, got string",
    ),
    (
        "audio-format-number",
        META % "16000",
        "conversation_initiation_metadata_event.agent_output_audio_format: expected one of "
        f"{FORMATS}, got number",
    ),
    (
        "audio-format-array",
        META % '["pcm_16000"]',
        "conversation_initiation_metadata_event.agent_output_audio_format: expected one of "
        f"{FORMATS}, got array",
    ),
    (
        "enum-part-type",
        '{"type":"agent_chat_response_part","text_response_part":'
        '{"text":"","type":"middle","event_id":1}}',
        "text_response_part.type: expected 'start' | 'delta' | 'stop', got string",
    ),
    (
        "enum-part-type-not-string",
        '{"type":"agent_reasoning_response_part","reasoning_response_part":'
        '{"text":"","type":1,"event_id":"e"}}',
        "reasoning_response_part.type: expected 'start' | 'delta' | 'stop', got number",
    ),
    (
        "reasoning-event-id-is-a-string",
        '{"type":"agent_reasoning_response_part","reasoning_response_part":'
        '{"text":"","type":"start","event_id":1}}',
        "reasoning_response_part.event_id: expected string, got number",
    ),
    (
        "enum-mcp-state",
        MCP.replace('"success"', '"done"') % '"result":[]',
        "mcp_tool_call.state: expected 'loading' | 'awaiting_approval' | 'success' | 'failure', "
        "got string",
    ),
    (
        "nested-not-object",
        AUDIO % '"alignment":"HELLO"',
        "audio_event.alignment: expected object, got string",
    ),
    (
        "nested-field-missing",
        AUDIO % '"alignment":{"chars":[],"char_start_times_ms":[]}',
        "audio_event.alignment.char_durations_ms: required field missing",
    ),
    (
        "list-not-list",
        ALIGN % ('"abc"', "[]"),
        "audio_event.alignment.chars: expected array of strings, got string",
    ),
    (
        "list-item-wrong",
        ALIGN % ('["a",1]', "[]"),
        "audio_event.alignment.chars[1]: expected string, got number",
    ),
    (
        "int-list-item-bool",
        ALIGN % ("[]", "[0,true]"),
        "audio_event.alignment.char_start_times_ms[1]: expected integer, got boolean",
    ),
    (
        "int-list-not-list",
        ALIGN % ("[]", "{}"),
        "audio_event.alignment.char_start_times_ms: expected array of integers, got object",
    ),
    (
        "object-list-item",
        MCP % '"result":[{"type":"text"},[]]',
        "mcp_tool_call.result[1]: expected object, got array",
    ),
    (
        "object-list-not-list",
        MCP % '"result":{"type":"text"}',
        "mcp_tool_call.result: expected array of objects, got object",
    ),
    (
        "parameters-not-object",
        MCP.replace('"parameters":{}', '"parameters":[]') % '"result":[]',
        "mcp_tool_call.parameters: expected object, got array",
    ),
    (
        "nested-list-not-list",
        STATUS % "{}",
        "mcp_connection_status.integrations: expected array of objects, got object",
    ),
    (
        "nested-list-item-not-object",
        STATUS % "[7]",
        "mcp_connection_status.integrations[0]: expected object, got number",
    ),
    (
        "nested-list-item-field-missing",
        STATUS % '[{"integration_id":"i","integration_type":"mcp_server"}]',
        "mcp_connection_status.integrations[0].is_connected: required field missing",
    ),
    (
        "nested-list-item-null-default",
        STATUS
        % '[{"integration_id":"i","integration_type":"t","is_connected":true,"tool_count":null}]',
        "mcp_connection_status.integrations[0].tool_count: expected integer, got null",
    ),
    (
        "tool-call-parameters-null",
        '{"type":"client_tool_call","client_tool_call":{"tool_name":"t","tool_call_id":"c",'
        '"parameters":null,"event_id":1}}',
        "client_tool_call.parameters: expected object, got null",
    ),
    (
        "asr-metadata-missing",
        '{"type":"asr_initiation_metadata"}',
        "asr_initiation_metadata_event: required field missing",
    ),
    (
        "asr-metadata-not-object",
        '{"type":"asr_initiation_metadata","asr_initiation_metadata_event":"x"}',
        "asr_initiation_metadata_event: expected object, got string",
    ),
    (
        "empty-payload-not-object",
        '{"type":"external_agent_connected","external_agent_connected_event":3}',
        "external_agent_connected_event: expected object, got number",
    ),
    (
        "guardrail-event-not-object",
        '{"type":"guardrail_triggered","guardrail_triggered_event":["pii"]}',
        "guardrail_triggered_event: expected object, got array",
    ),
    (
        "guardrail-name-not-string",
        '{"type":"guardrail_triggered","guardrail_triggered_event":{"guardrail_name":1}}',
        "guardrail_triggered_event.guardrail_name: expected string, got number",
    ),
    ("error-flat-no-message", '{"type":"error"}', "message: required field missing"),
    (
        "error-flat-message-not-string",
        '{"type":"error","message":{"text":"x"}}',
        "message: expected string, got object",
    ),
    (
        "error-event-null",
        '{"type":"error","error_event":null}',
        "error_event: expected object, got null",
    ),
    (
        "error-event-no-code",
        '{"type":"error","error_event":{}}',
        "error_event.code: required field missing",
    ),
    (
        "error-event-details-not-object",
        '{"type":"error","error_event":{"code":1002,"details":"x"}}',
        "error_event.details: expected object, got string",
    ),
    (
        "client-error-no-name",
        '{"type":"client_error","error_event":{"code":1008}}',
        "error_event.error_name: required field missing",
    ),
    (
        "interruption-event-id-string",
        '{"type":"interruption","interruption_event":{"event_id":"5"}}',
        "interruption_event.event_id: expected integer, got string",
    ),
    (
        "queue-status-unknown-status",
        '{"type":"queue_status","queue_status_event":{"status":"queued"}}',
        "queue_status_event.status: expected 'waiting' | 'admitted' | 'timed_out', got string",
    ),
    (
        "queue-status-no-payload",
        '{"type":"queue_status"}',
        "queue_status_event: required field missing",
    ),
    (
        "queue-status-no-status",
        '{"type":"queue_status","queue_status_event":{}}',
        "queue_status_event.status: required field missing",
    ),
]


def _assert_error(exc: pytest.ExceptionInfo[RemoteProtocolError], expected: str) -> None:
    text = str(exc.value)
    if expected.startswith("^"):
        assert re.match(expected, text), text
    else:
        assert text == expected


@pytest.mark.parametrize(
    ("wire", "expected"), [pytest.param(w, e, id=i) for i, w, e in SERVER_MALFORMED]
)
def test_parse_server_rejects(wire: str | bytes, expected: str) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        parse_server(wire)
    _assert_error(exc, expected)


INIT = '{"type":"conversation_initiation_client_data",%s}'
OVR = INIT % '"conversation_config_override":%s'

CLIENT_MALFORMED: list[tuple[str, str | bytes, str]] = [
    ("not-json", "{", "^not valid JSON: "),
    ("nan", '{"type":"pong","event_id":NaN}', "invalid JSON number NaN"),
    ("deep-nesting", DEEP, "^not valid JSON: maximum recursion depth exceeded"),
    ("array", "[1]", "message: expected JSON object, got array"),
    ("no-type", '{"text":"hi"}', "type: expected string, got null"),
    (
        "type-null-with-audio",
        '{"type":null,"user_audio_chunk":"AA=="}',
        "type: expected string, got null",
    ),
    ("type-bool", '{"type":true}', "type: expected string, got boolean"),
    (
        "audio-chunk-not-string",
        '{"user_audio_chunk":[0,1]}',
        "user_audio_chunk: expected base64 string, got array",
    ),
    (
        "audio-chunk-null",
        '{"user_audio_chunk":null}',
        "user_audio_chunk: expected base64 string, got null",
    ),
    ("audio-chunk-bad-base64", '{"user_audio_chunk":"A"}', "^user_audio_chunk: invalid base64 "),
    ("field-missing", '{"type":"pong"}', "event_id: required field missing"),
    ("bool-for-int", '{"type":"pong","event_id":false}', "event_id: expected integer, got boolean"),
    ("text-missing", '{"type":"user_message"}', "text: required field missing"),
    ("text-wrong", '{"type":"user_message","text":5}', "text: expected string, got number"),
    (
        "reasoning-effort-unknown",
        OVR % '{"agent":{"prompt":{"reasoning_effort":"extreme"}}}',
        "conversation_config_override.agent.prompt.reasoning_effort: expected 'none' | "
        "'minimal' | 'low' | 'medium' | 'high' | 'xhigh' | 'max', got string",
    ),
    (
        "procedure-ids-not-a-list",
        INIT % '"procedure_ids":"proc_a"',
        "procedure_ids: expected array of strings, got string",
    ),
    (
        "start-procedure-id-not-a-string",
        INIT % '"start_procedure_ids":[1]',
        "start_procedure_ids[0]: expected string, got number",
    ),
    (
        "bool-wrong",
        '{"type":"client_tool_result","tool_call_id":"c","result":"r","is_error":"no"}',
        "is_error: expected boolean, got string",
    ),
    (
        "tool-error-type-enum",
        '{"type":"client_tool_result","tool_call_id":"c","result":"r","is_error":true,'
        '"error_type":"oops"}',
        "error_type: expected 'user_rejected' | 'external_server' | 'external_client' | "
        "'customer_auth' | 'client_timeout' | 'unknown', got string",
    ),
    (
        "score-enum",
        '{"type":"feedback","score":"meh","event_id":1}',
        "score: expected 'like' | 'dislike', got string",
    ),
    ("score-missing", '{"type":"feedback","event_id":1}', "score: required field missing"),
    (
        "approval-bool",
        '{"type":"mcp_tool_approval_result","tool_call_id":"m","is_approved":null}',
        "is_approved: expected boolean, got null",
    ),
    (
        "context-id-wrong",
        '{"type":"contextual_update","text":"t","context_id":7}',
        "context_id: expected string, got number",
    ),
    ("override-not-object", OVR % "[]", "conversation_config_override: expected object, got array"),
    (
        "override-branch-not-object",
        OVR % '{"tts":"v1"}',
        "conversation_config_override.tts: expected object, got string",
    ),
    (
        "override-number-wrong",
        OVR % '{"tts":{"stability":"high"}}',
        "conversation_config_override.tts.stability: expected number, got string",
    ),
    (
        "override-number-bool",
        OVR % '{"tts":{"speed":true}}',
        "conversation_config_override.tts.speed: expected number, got boolean",
    ),
    (
        "override-nested-prompt",
        OVR % '{"agent":{"prompt":{"tool_ids":"t1"}}}',
        "conversation_config_override.agent.prompt.tool_ids: expected array of strings, got string",
    ),
    (
        "override-knowledge-base-item",
        OVR % '{"agent":{"prompt":{"knowledge_base":[{"type":"file","name":"n"}]}}}',
        "conversation_config_override.agent.prompt.knowledge_base[0].id: required field missing",
    ),
    (
        "override-knowledge-base-not-list",
        OVR % '{"agent":{"prompt":{"knowledge_base":{}}}}',
        "conversation_config_override.agent.prompt.knowledge_base: expected array of objects, "
        "got object",
    ),
    (
        "override-keywords-item",
        OVR % '{"asr":{"keywords":["a",null]}}',
        "conversation_config_override.asr.keywords[1]: expected string, got null",
    ),
    (
        "override-turn-not-object",
        OVR % '{"turn":"soon"}',
        "conversation_config_override.turn: expected object, got string",
    ),
    (
        "override-soft-timeout-not-object",
        OVR % '{"turn":{"soft_timeout_config":true}}',
        "conversation_config_override.turn.soft_timeout_config: expected object, got boolean",
    ),
    (
        "override-soft-timeout-message",
        OVR % '{"turn":{"soft_timeout_config":{"message":5}}}',
        "conversation_config_override.turn.soft_timeout_config.message: expected string, "
        "got number",
    ),
    (
        "override-text-only",
        OVR % '{"conversation":{"text_only":"yes"}}',
        "conversation_config_override.conversation.text_only: expected boolean, got string",
    ),
    (
        "dynamic-variables-not-object",
        INIT % '"dynamic_variables":[["a",1]]',
        "dynamic_variables: expected object, got array",
    ),
    (
        "source-info-version",
        INIT % '"source_info":{"version":2}',
        "source_info.version: expected string, got number",
    ),
    ("user-id-wrong", INIT % '"user_id":42', "user_id: expected string, got number"),
    (
        "multimodal-file-type",
        '{"type":"multimodal_message","file":{"type":"image","file_id":"f"}}',
        "file.type: expected 'file_input', got string",
    ),
    (
        "multimodal-file-not-object",
        '{"type":"multimodal_message","file":"f"}',
        "file: expected object, got string",
    ),
    (
        "multimodal-file-id-missing",
        '{"type":"multimodal_message","file":{"type":"file_input"}}',
        "file.file_id: required field missing",
    ),
    (
        "multimodal-text-not-object",
        '{"type":"multimodal_message","text":"hi"}',
        "text: expected object, got string",
    ),
    (
        "multimodal-text-missing",
        '{"type":"multimodal_message","text":{"type":"user_message"}}',
        "text.text: required field missing",
    ),
]


@pytest.mark.parametrize(
    ("wire", "expected"), [pytest.param(w, e, id=i) for i, w, e in CLIENT_MALFORMED]
)
def test_parse_client_rejects(wire: str | bytes, expected: str) -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        parse_client(wire)
    _assert_error(exc, expected)


def test_json_errors_chain_their_cause() -> None:
    with pytest.raises(RemoteProtocolError) as exc:
        parse_server("{")
    assert isinstance(exc.value.__cause__, json.JSONDecodeError)
    with pytest.raises(RemoteProtocolError) as exc:
        parse_server(DEEP)
    assert isinstance(exc.value.__cause__, RecursionError)


# --------------------------------------------------------------------------------------------
# Round trips over generated messages


@ROUND_TRIP
@given(client_messages())
def test_client_round_trip(message: Any) -> None:
    wire = encode(message)
    assert parse_client(wire) == message
    assert json.loads(wire) == to_json(message)


@ROUND_TRIP
@given(server_events())
def test_server_round_trip(event: Any) -> None:
    wire = encode(event)
    assert parse_server(wire) == event
    assert json.loads(wire) == to_json(event)


@settings(max_examples=50, deadline=None)
@given(unknown_messages())
def test_unknown_round_trip_both_directions(message: UnknownMessage) -> None:
    wire = encode(message)
    assert parse_server(wire) == message
    assert parse_client(wire) == message


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=512))
def test_audio_chunk_round_trip(audio: bytes) -> None:
    assert parse_client(encode(UserAudioChunk(audio))) == UserAudioChunk(audio)
