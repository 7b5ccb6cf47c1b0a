"""Malformed input, both directions: every one raises ``RemoteProtocolError`` whose text names
the JSON path of the offending value (checked exactly)."""

from __future__ import annotations

import json
import re

import pytest

from piagent.errors import RemoteProtocolError
from piagent.protocol.messages import (
    parse_client,
    parse_server,
)

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
