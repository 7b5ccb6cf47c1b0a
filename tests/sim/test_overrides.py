"""Override permissions (protocol.md §7.3), their effects, and dynamic variables."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from piagent.audio.codecs import decode_audio
from piagent.protocol.messages import (
    AgentResponse,
    AudioFormat,
    ConversationInitiationMetadata,
    ErrorEvent,
)
from piagent.sim.agent import DEFAULT_FIRST_MESSAGE, AgentDefinition
from piagent.sim.overrides import (
    disallowed_overrides,
    find_missing_variables,
    substitute_variables,
)
from piagent.sim.server import SimServer

from .conftest import fast_agent, talk

STRICT = {
    "allowed_overrides": ("agent.first_message", "tts"),
    "allow_custom_llm_extra_body": False,
    "allow_procedure_ids": False,
}


async def refused(initiation: dict[str, Any], **agent: Any) -> tuple[Any, Any, list[Any]]:
    async with (
        SimServer([fast_agent(**{**STRICT, **agent})]) as sim,
        talk(sim, initiate=initiation) as client,
    ):
        code, reason = await client.wait_closed()
        await sim.conversations[0].wait_closed()
    return code, reason, client.events


@pytest.mark.parametrize(
    ("initiation", "field"),
    [
        ({"conversation_config_override": {"agent": {"language": "de"}}}, "language"),
        ({"conversation_config_override": {"agent": {"prompt": {"prompt": "x"}}}}, "prompt"),
        ({"conversation_config_override": {"conversation": {"text_only": True}}}, "text_only"),
        ({"conversation_config_override": {"text_only": True}}, "text_only"),  # Python SDK quirk
        ({"conversation_config_override": {"agent": {"unheard_of": 1}}}, "unheard_of"),
        ({"custom_llm_extra_body": {"temperature": 0.2}}, "custom_llm_extra_body"),
        (
            {"conversation_config_override": {"agent": {"prompt": {"reasoning_effort": "low"}}}},
            "reasoning_effort",
        ),
        ({"procedure_ids": []}, "procedure_ids"),
        ({"start_procedure_ids": ["p1"]}, "start_procedure_ids"),
    ],
)
async def test_disallowed_override_closes_1008_with_the_exact_reason(
    initiation: dict[str, Any], field: str
) -> None:
    code, reason, events = await refused(initiation)
    assert code == 1008
    assert reason == f"Override for field '{field}' is not allowed by config"
    # As observed (protocol.md §2): metadata first, then an error event, then the close.
    assert isinstance(events[0], ConversationInitiationMetadata)
    assert isinstance(events[1], ErrorEvent)
    assert events[1].error_type == "override_error" and events[1].code == 1008
    assert len(events) == 2


async def test_voice_id_needs_the_tts_voice_id_flag() -> None:
    initiation = {"conversation_config_override": {"tts": {"voice_id": "other"}}}
    code, reason, _ = await refused(initiation, allowed_overrides=("agent.first_message",))
    assert (code, reason) == (1008, "Override for field 'voice_id' is not allowed by config")


async def test_refusal_can_come_before_metadata() -> None:
    initiation = {"conversation_config_override": {"agent": {"language": "de"}}}
    code, _, events = await refused(initiation, reject_before_metadata=True)
    assert code == 1008
    assert not any(isinstance(e, ConversationInitiationMetadata) for e in events)


async def test_permitted_overrides_take_effect() -> None:
    override = {
        "agent": {"first_message": "Hej!", "language": "sv", "prompt": {"prompt": "Be brief."}},
        "tts": {"voice_id": "pNInz6obpgDQGcFmaJgB", "speed": 1.1, "stability": 0.3},
    }
    initiation = {
        "conversation_config_override": override,
        "custom_llm_extra_body": {"temperature": 0.1},
        "dynamic_variables": {},
    }
    async with SimServer([fast_agent()]) as sim, talk(sim, initiate=initiation) as client:
        response = await client.wait_for(AgentResponse)
        assert response.text == "Hej!"
    settings = sim.conversations[0].settings
    assert settings is not None
    assert (settings.first_message, settings.language, settings.prompt) == (
        "Hej!",
        "sv",
        "Be brief.",
    )
    assert (settings.voice_id, settings.speed, settings.stability) == (
        "pNInz6obpgDQGcFmaJgB",
        1.1,
        0.3,
    )
    assert settings.custom_llm_extra_body == {"temperature": 0.1}


async def test_the_newer_fields_are_accepted_and_recorded() -> None:
    initiation = {
        "conversation_config_override": {
            "agent": {"prompt": {"reasoning_effort": "xhigh"}},
            "tts": {"speed": 0.9, "stability": 0.6, "similarity_boost": 0.85},
        },
        "procedure_ids": ["proc_a", "proc_b"],
        "start_procedure_ids": ["proc_a"],
    }
    agent = fast_agent(allowed_overrides=("agent.prompt.reasoning_effort", "tts"))
    async with SimServer([agent]) as sim, talk(sim, initiate=initiation) as client:
        await client.wait_for(AgentResponse)
    record = sim.conversations[0]
    settings = record.settings
    assert settings is not None
    assert settings.reasoning_effort == "xhigh"
    assert (settings.speed, settings.stability, settings.similarity_boost) == (0.9, 0.6, 0.85)
    assert (settings.procedure_ids, settings.start_procedure_ids) == (
        ("proc_a", "proc_b"),
        ("proc_a",),
    )
    assert record.initiation is not None and record.initiation.procedure_ids == ("proc_a", "proc_b")


async def test_ignored_procedure_ids_are_dropped() -> None:
    agent = fast_agent(allow_procedure_ids=False, on_disallowed_override="ignore")
    initiation = {"procedure_ids": ["p1"], "start_procedure_ids": ["p1"]}
    async with SimServer([agent]) as sim, talk(sim, initiate=initiation) as client:
        await client.wait_for(AgentResponse)
    settings = sim.conversations[0].settings
    assert settings is not None
    assert (settings.procedure_ids, settings.start_procedure_ids) == (None, None)


async def test_voice_id_changes_the_synthesized_voice() -> None:
    audio = []
    for voice_id in ("21m00Tcm4TlvDq8ikWAM", "pNInz6obpgDQGcFmaJgB"):
        initiation = {"conversation_config_override": {"tts": {"voice_id": voice_id}}}
        async with SimServer([fast_agent()]) as sim, talk(sim, initiate=initiation) as client:
            chunks = await client.turn_audio(1)
            audio.append(decode_audio(b"".join(c.audio for c in chunks), AudioFormat.PCM_16000))
    assert len(audio[0]) == len(audio[1])
    assert not np.array_equal(audio[0], audio[1])


async def test_ignore_policy_drops_disallowed_overrides_silently() -> None:
    override = {"agent": {"first_message": "Nope", "language": "fi"}, "tts": {"voice_id": "v"}}
    agent = fast_agent(
        first_message="Default.",
        allowed_overrides=("tts.voice_id",),
        on_disallowed_override="ignore",
    )
    initiation = {"conversation_config_override": override}
    async with SimServer([agent]) as sim, talk(sim, initiate=initiation) as client:
        response = await client.wait_for(AgentResponse)
        assert response.text == "Default."
    settings = sim.conversations[0].settings
    assert settings is not None
    assert (settings.language, settings.voice_id) == ("en", "v")
    assert sim.conversations[0].close_code in (None, 1000)


async def test_python_sdk_empty_objects_need_no_permission() -> None:
    agent = fast_agent(allowed_overrides=(), allow_custom_llm_extra_body=False)
    initiation = {
        "conversation_config_override": {"tts": {}, "conversation": {}},
        "custom_llm_extra_body": {},
        "dynamic_variables": {"user_name": "Ann"},
        "source_info": {"source": "python_sdk", "version": "2.78.0"},
        "user_id": "u1",
    }
    async with SimServer([agent]) as sim, talk(sim, initiate=initiation) as client:
        await client.wait_for(AgentResponse)
    record = sim.conversations[0]
    assert record.initiation is not None and record.initiation.user_id == "u1"


async def test_dynamic_variables_fill_the_first_message_and_prompt() -> None:
    agent = fast_agent(
        first_message="Hi {{user_name}}, visit {{ visits }} ({{system__agent_id}}).",
        prompt="Talk to {{user_name}}.",
        allowed_overrides=(),
    )
    initiation = {"dynamic_variables": {"user_name": "Ann", "visits": 3}}
    async with SimServer([agent]) as sim, talk(sim, initiate=initiation) as client:
        response = await client.wait_for(AgentResponse)
    assert response.text == "Hi Ann, visit 3 (demo)."
    settings = sim.conversations[0].settings
    assert settings is not None and settings.prompt == "Talk to Ann."


@pytest.mark.parametrize("where", ["first_message", "prompt"])
async def test_missing_dynamic_variable_closes_1008_after_an_error_event(where: str) -> None:
    agent = fast_agent(**{where: "Hello {{user_name}}"})
    async with SimServer([agent]) as sim, talk(sim, initiate={"dynamic_variables": {}}) as client:
        code, reason = await client.wait_closed()
    assert code == 1008
    assert reason == "Missing required dynamic variables: user_name"
    error = client.events[-1]
    assert isinstance(error, ErrorEvent)
    assert (error.code, error.error_type) == (1008, "missing_dynamic_variable")
    assert not any(isinstance(e, AgentResponse) for e in client.events)


def test_permission_paths_and_sections() -> None:
    agent = AgentDefinition(allowed_overrides=("tts", "agent.prompt.prompt"))
    raw = {
        "conversation_config_override": {
            "tts": {"voice_id": "x", "speed": 1.2},
            "agent": {"prompt": {"prompt": "p", "llm": "gpt-4o"}, "first_message": None},
            "asr": {"keywords": ["a"]},
        }
    }
    assert disallowed_overrides(agent, raw) == ["agent.prompt.llm", "asr.keywords"]
    assert disallowed_overrides(AgentDefinition(), raw) == []
    assert AgentDefinition().first_message == DEFAULT_FIRST_MESSAGE


def test_variable_helpers() -> None:
    assert find_missing_variables(["{{a}} {{b}}", "{{a}} {{system__time_utc}}"], {"b": 1}) == ["a"]
    assert substitute_variables("{{x}} {{y}} {{z}}", {"x": True, "y": 2.5}) == "true 2.5 {{z}}"
