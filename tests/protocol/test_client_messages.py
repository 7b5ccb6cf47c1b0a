"""Client messages encoded exactly (protocol.md §3): the initiation data with its overrides
(unset fields omitted, never sent empty), every other client message, and tolerant parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from piagent.protocol.messages import (
    CLIENT_MESSAGE_TYPES,
    AgentConfigOverride,
    AsrConfigOverride,
    ClientToolResult,
    ContextualUpdate,
    ConversationConfigOverride,
    ConversationInitiationClientData,
    ConversationOverride,
    Feedback,
    FileInput,
    KnowledgeBaseItem,
    McpToolApprovalResult,
    MultimodalMessage,
    Pong,
    PromptOverride,
    SourceInfo,
    TtsConfigOverride,
    TurnConfigOverride,
    UserActivity,
    UserAudioChunk,
    UserMessage,
    encode,
    parse_client,
    to_json,
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
