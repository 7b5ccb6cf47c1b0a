"""Server events from concrete wire examples (protocol.md §4.1 and the shapes of the official
spec): each parsed to its class, and encoded back exactly where the example is canonical."""

from __future__ import annotations

import json
from typing import Any

import pytest

from piagent.protocol.messages import (
    ERROR_EVENTS,
    SERVER_EVENT_TYPES,
    AgentChatResponsePart,
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
    AsrInitiationMetadata,
    Audio,
    AudioFormat,
    ClientErrorEvent,
    ClientToolCall,
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
    McpConnectionStatus,
    McpIntegration,
    McpToolCall,
    Ping,
    QueueStatus,
    RichContent,
    TentativeUserTranscript,
    UserTranscript,
    VadScore,
    encode,
    parse_server,
    to_json,
)

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
