"""Agent definitions and agent files: defaults, loading, strict validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from piagent.errors import ScenarioError
from piagent.protocol.messages import AudioFormat
from piagent.sim.agent import (
    AgentDefinition,
    FaultClose,
    ServerSettings,
    load_agent_file,
    parse_agent_file,
)
from piagent.sim.scenario import Scenario

AGENTS = """
agents:
  - agent_id: agent_private
    first_message: "Welcome back, {{user_name}}."
    prompt: "You are terse."
    language: de
    voice_id: pNInz6obpgDQGcFmaJgB
    input_format: ulaw_8000
    output_format: pcm_44100
    private: true
    api_keys: [sk_one, sk_two]
    allowed_overrides: [agent.first_message, tts.voice_id]
    allow_custom_llm_extra_body: false
    on_disallowed_override: ignore
    client_events: [audio, agent_response, ping]
    max_duration: 120
    no_input_timeout: 20
    ping_interval: 1.5
    turn_end_silence_ms: 800
    vad_threshold_db: -35
    connect_delay: 0.3
    audio_pace: 1.2
    stale_chunks: 5
    max_conversation_duration_message: "Out of time."
    fault_close: {at: metadata, code: 3000, reason: "Request error"}
  - agent_id: plain
server:
  unknown_agent: http_404
"""


def test_defaults_are_the_public_demo_parrot() -> None:
    agent = AgentDefinition()
    assert agent.agent_id == "demo"
    assert not agent.private and agent.api_keys == ()
    assert agent.allows_override("tts.voice_id") and agent.allow_custom_llm_extra_body
    assert agent.input_format is agent.output_format is AudioFormat.PCM_16000
    assert agent.max_duration == 600 and agent.no_input_timeout == 60
    assert agent.response_timeout_secs == 20 and agent.stale_chunks == 3
    assert agent.turn_end_silence_ms == 600
    assert 1.0 <= agent.audio_pace <= 2.0


def test_agent_file_loads_every_field(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text(AGENTS)
    loaded = load_agent_file(path)
    first, plain = loaded.agents
    assert first.agent_id == "agent_private" and plain.agent_id == "plain"
    assert first.input_format is AudioFormat.ULAW_8000
    assert first.output_format is AudioFormat.PCM_44100
    assert first.api_keys == ("sk_one", "sk_two") and first.private
    assert first.allows_override("agent.first_message")
    assert not first.allows_override("agent.language")
    assert first.on_disallowed_override == "ignore"
    assert first.max_duration == 120.0 and isinstance(first.max_duration, float)
    assert first.fault_close == FaultClose("metadata", 3000, "Request error")
    assert first.accepts_api_key("sk_two") and not first.accepts_api_key("sk_three")
    assert plain == AgentDefinition(agent_id="plain")
    assert loaded.server == ServerSettings(unknown_agent="http_404")


def test_a_plain_list_is_accepted() -> None:
    loaded = parse_agent_file("- agent_id: a\n- agent_id: b\n  first_message: ''\n")
    assert [a.agent_id for a in loaded.agents] == ["a", "b"]
    assert loaded.agents[1].first_message == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- agent_id: a\n  colour: red", "agents[0].colour: unknown key"),
        ("- agent_id: a\n- first_message: hi", "agents[1]: expected a mapping with an agent_id"),
        ("- agent_id: a\n- agent_id: a", "agents[1].agent_id: duplicate agent_id 'a'"),
        ("- agent_id: a\n  output_format: mp3_44100", "agents[0].output_format: expected one of"),
        ("- agent_id: a\n  max_duration: 0", "agents[0].max_duration: must be > 0"),
        ("- agent_id: a\n  max_duration: soon", "agents[0].max_duration: expected a number"),
        ("- agent_id: a\n  private: yes please", "agents[0].private: expected a boolean"),
        ("- agent_id: a\n  stale_chunks: 1.5", "agents[0].stale_chunks: expected an integer"),
        ("- agent_id: a\n  api_keys: sk", "agents[0].api_keys: expected a list of strings"),
        ("- agent_id: a\n  client_events: [audio, beeps]", "unknown client event 'beeps'"),
        ("- agent_id: a\n  allowed_overrides: [tts.colour]", "unknown override field 'tts.colour'"),
        ("- agent_id: a\n  on_disallowed_override: shout", "expected one of close, ignore"),
        ("- agent_id: a\n  refuse_upgrade: 200", "refuse_upgrade: must be an HTTP error"),
        ("- agent_id: a\n  vad_threshold_db: 3", "vad_threshold_db: must be between"),
        ("- agent_id: a\n  fault_close: {at: later}", "agents[0].fault_close.at: expected one of"),
        ("- agent_id: a\n  fault_close: {at: connect, code: 999}", "fault_close.code: 999"),
        ("- agent_id: a\n  fault_close: {code: 1011}", "agents[0].fault_close:"),
        ("- agent_id: ''", "agents[0].agent_id: must not be empty"),
        ("agents: []", "expected a non-empty list"),
        ("agents: [{agent_id: a}]\nextra: 1", "unknown key 'extra'"),
        ("agents: [{agent_id: a}]\nserver: {unknown_agent: maybe}", "server.unknown_agent"),
        ("agents: [", "not valid YAML"),
    ],
)
def test_invalid_agent_files_name_the_entry_and_key(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as error:
        parse_agent_file(text)
    assert message in str(error.value)


def test_missing_file_is_a_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read agent file"):
        load_agent_file(tmp_path / "nope.yaml")


def test_programmatic_definitions_accept_plain_values_and_are_validated() -> None:
    agent = AgentDefinition(output_format="ulaw_8000", client_events=["audio"])  # type: ignore[arg-type]
    assert agent.output_format is AudioFormat.ULAW_8000 and agent.client_events == ("audio",)
    with pytest.raises(ScenarioError, match="audio_pace: must be > 0"):
        AgentDefinition(audio_pace=0)
    merged = agent.merged({"first_message": "x"})
    assert merged.first_message == "x" and merged.output_format is AudioFormat.ULAW_8000


def readme_yaml_blocks() -> list[str]:
    readme = Path(__file__).resolve().parents[2] / "piagent" / "sim" / "README.md"
    parts = readme.read_text().split("```yaml\n")[1:]
    return [part.split("```")[0] for part in parts]


def test_readme_agent_file_lists_the_defaults() -> None:
    agent_block, scenario_block = readme_yaml_blocks()
    loaded = parse_agent_file(agent_block)
    (agent,) = loaded.agents
    assert agent == AgentDefinition(
        agent_id="agent_123", first_message="Hi {{user_name}}!", prompt="You are ..."
    )
    assert loaded.server == ServerSettings()
    assert len(Scenario.from_yaml(scenario_block).steps) == 11
