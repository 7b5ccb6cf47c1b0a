"""Scenario files: strict parsing, and the scripted exchanges they drive (tool calls too)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from piagent.errors import ScenarioError
from piagent.protocol.messages import (
    AgentResponse,
    ClientToolCall,
    ClientToolResult,
    ConversationInitiationMetadata,
    UserMessage,
    UserTranscript,
    VadScore,
)
from piagent.sim.agent import AgentDefinition
from piagent.sim.scenario import (
    AgentSay,
    CloseStep,
    EndCall,
    ExpectUserTurn,
    MaxDuration,
    Scenario,
    SendJson,
    SendOversize,
    SendText,
    Sleep,
    Stall,
    ToolCallStep,
    load_scenario,
)
from piagent.sim.server import SimServer

from .conftest import fast_agent, silence, talk, tone

FULL = """
agent:            # optional: agent-definition fields merged over the agent's own
  first_message: "Hello from the scenario."
  output_format: pcm_16000
steps:            # run in order, after the first message has been spoken
  - expect: user_turn
    timeout: 10
  - agent_say: "Let me check the time."
  - tool_call: {name: get_time, parameters: {tz: UTC}, expects_response: true, timeout: 5}
  - send: {type: vad_score, vad_score_event: {vad_score: 0.5}}
  - send_text: "{not json"
  - send_oversize: 2000000
  - sleep: 0.5
  - stall: 20
  - close: {code: 1011, reason: "boom"}
  - end_call: true
  - max_duration: true
"""


def test_the_documented_example_parses() -> None:
    scenario = Scenario.from_yaml(FULL)
    assert scenario.agent == {
        "first_message": "Hello from the scenario.",
        "output_format": "pcm_16000",
    }
    assert scenario.steps == (
        ExpectUserTurn(10.0),
        AgentSay("Let me check the time."),
        ToolCallStep("get_time", {"tz": "UTC"}, True, 5.0),
        SendJson({"type": "vad_score", "vad_score_event": {"vad_score": 0.5}}),
        SendText("{not json"),
        SendOversize(2000000),
        Sleep(0.5),
        Stall(20.0),
        CloseStep(1011, "boom"),
        EndCall(),
        MaxDuration(),
    )
    merged = scenario.apply(AgentDefinition(agent_id="x"))
    assert merged.agent_id == "x" and merged.first_message == "Hello from the scenario."


def test_defaults() -> None:
    scenario = Scenario.from_yaml("steps:\n  - expect: user_turn\n  - tool_call: {name: t}")
    assert scenario.steps == (ExpectUserTurn(30.0), ToolCallStep("t", {}, True, None))
    assert Scenario.from_yaml("") == Scenario()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps:\n  - agent_say: hi\n  - dance: true", "steps[1].dance: unknown step kind"),
        ("steps:\n  - agent_say: hi\n    timeout: 3", "steps[0].timeout: unknown key"),
        ("steps:\n  - tool_call: {nmae: x}", "steps[0].tool_call.nmae: unknown key"),
        ("steps:\n  - tool_call: {parameters: {}}", "steps[0].tool_call.name: required key"),
        ("steps:\n  - tool_call: {name: t, timeout: 0}", "steps[0].tool_call.timeout: must be > 0"),
        ("steps:\n  - expect: agent_turn", "steps[0].expect: only 'user_turn'"),
        ("steps:\n  - expect: user_turn\n    timeout: -1", "steps[0].timeout: must be > 0"),
        ("steps:\n  - sleep: soon", "steps[0].sleep: expected a number"),
        ("steps:\n  - close: {code: 1005}", "steps[0].close.code: 1005 is not a close code"),
        ("steps:\n  - close: {reason: x}", "steps[0].close.code: required key"),
        ("steps:\n  - end_call: false", "steps[0].end_call: expected true"),
        ("steps:\n  - send_oversize: -5", "steps[0].send_oversize: expected a positive"),
        ("steps:\n  - send: [1, 2]", "steps[0].send: expected a JSON object"),
        ("steps:\n  - agent_say: hi\n    close: {code: 1000}", "steps[0].close: one step kind"),
        ("steps:\n  - 5", "steps[0]: expected a mapping"),
        ("steps: {a: 1}", "steps: expected a list"),
        ("agent: {ping_interval: -1}", "agent.ping_interval: must be > 0"),
        ("agent: {output_format: mp3}", "agent.output_format: expected one of"),
        ("agent: {colour: red}", "agent.colour: unknown key"),
        ("agent: {agent_id: other}", "agent.agent_id: a scenario cannot change"),
        ("stepz: []", "unknown key 'stepz'"),
        ("steps: [", "not valid YAML"),
    ],
)
def test_invalid_scenarios_name_the_step_and_key(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as error:
        Scenario.from_yaml(text)
    assert message in str(error.value)


def test_load_scenario_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text("steps:\n  - agent_say: hi\n")
    assert load_scenario(path).steps == (AgentSay("hi"),)
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        load_scenario(tmp_path / "missing.yaml")


def server(text: str, **agent: object) -> SimServer:
    return SimServer([fast_agent(**agent)], Scenario.from_yaml(text))


async def test_scripted_exchange_with_a_tool_call_answered() -> None:
    text = """
agent: {first_message: "Scripted hello."}
steps:
  - expect: user_turn
  - agent_say: "Let me check the time."
  - tool_call: {name: get_time, parameters: {tz: UTC}, timeout: 5}
  - agent_say: "Done."
"""
    async with server(text) as sim, talk(sim) as client:
        assert (await client.wait_for(AgentResponse)).text == "Scripted hello."
        await client.send(UserMessage("What time is it?"))
        said = await client.wait_for(AgentResponse)
        assert said.text == "Let me check the time."
        call = await client.wait_for(ClientToolCall)
        assert (call.tool_name, dict(call.parameters), call.expects_response) == (
            "get_time",
            {"tz": "UTC"},
            True,
        )
        assert call.event_id > said.event_id
        await client.send(ClientToolResult("unrelated", "ignored", False))
        await client.send(ClientToolResult(call.tool_call_id, "12:00", False))
        assert (await client.wait_for(AgentResponse)).text == "Done."
        # After the script, the parrot.
        await client.send(UserMessage("more"))
        assert (await client.wait_for(AgentResponse)).text == "You wrote: more"
    record = sim.conversations[0]
    assert [r.result for r in record.tool_results] == ["ignored", "12:00"]
    assert record.tool_timeouts == []


async def test_tool_call_timeout_is_recorded_and_spoken() -> None:
    text = "steps:\n  - tool_call: {name: slow_tool, timeout: 0.2}\n  - agent_say: After."
    async with server(text, first_message="") as sim, talk(sim) as client:
        call = await client.wait_for(ClientToolCall)
        spoken = await client.wait_for(AgentResponse)
        assert spoken.text == "Sorry, the slow_tool tool did not respond in time."
        await client.send(ClientToolResult(call.tool_call_id, "too late", False))
        await client.send(UserMessage("x"))  # interrupts the apology
        assert (await client.wait_for(AgentResponse)).text == "After."
        assert (await client.wait_for(AgentResponse)).text == "You wrote: x"
    record = sim.conversations[0]
    assert record.tool_timeouts == [call.tool_call_id]
    assert [r.result for r in record.tool_results] == ["too late"]


async def test_tool_call_without_response_does_not_wait() -> None:
    text = "steps:\n  - tool_call: {name: notify, expects_response: false}\n  - agent_say: Next."
    async with server(text, first_message="", response_timeout_secs=30) as sim, talk(sim) as c:
        call = await c.wait_for(ClientToolCall)
        assert call.expects_response is False
        assert (await c.wait_for(AgentResponse, within=1.0)).text == "Next."


async def test_tool_call_timeout_defaults_to_the_agents_response_timeout() -> None:
    text = "steps:\n  - tool_call: {name: slow}"
    async with server(text, first_message="", response_timeout_secs=0.2) as sim, talk(sim) as c:
        await c.wait_for(ClientToolCall)
        response = await c.wait_for(AgentResponse, within=1.0)
        assert "did not respond" in response.text


async def test_user_turn_arriving_early_is_kept_for_the_next_expect() -> None:
    text = """
steps:
  - sleep: 0.5
  - expect: user_turn
    timeout: 0.2
  - agent_say: "Answered by the scenario."
"""
    async with server(text, first_message="") as sim, talk(sim) as client:
        await client.wait_for(ConversationInitiationMetadata)
        await client.send_audio(np.concatenate((tone(0.4, 16000), silence(0.3, 16000))))
        transcript = await client.wait_for(UserTranscript)  # at once, not when expected
        response = await client.wait_for(AgentResponse)
        assert response.text == "Answered by the scenario."
        assert response.event_id == transcript.event_id + 1
        with pytest.raises(TimeoutError):  # the parrot does not answer it a second time
            await client.wait_for(AgentResponse, within=0.5)


async def test_expect_timeout_fails_the_scenario_with_1011() -> None:
    text = "steps:\n  - expect: user_turn\n    timeout: 0.2"
    async with server(text, first_message="") as sim, talk(sim) as client:
        assert await client.wait_closed() == (1011, "scenario timeout")
    record = sim.conversations[0]
    assert record.failure == "steps[0]: no user turn within 0.2 s"


async def test_send_step_sends_any_json_as_is() -> None:
    text = "steps:\n  - send: {type: vad_score, vad_score_event: {vad_score: 0.5}}"
    async with server(text, first_message="") as sim, talk(sim) as client:
        score = await client.wait_for(VadScore)
        assert score.vad_score == 0.5
    assert (
        sim.conversations[0].sent[1] == '{"type":"vad_score","vad_score_event":{"vad_score":0.5}}'
    )


async def test_max_duration_step() -> None:
    text = """
agent: {max_conversation_duration_message: "Time."}
steps:
  - max_duration: true
"""
    async with server(text, first_message="") as sim, talk(sim) as client:
        assert await client.wait_closed() == (1000, "Maximum conversation duration exceeded")
    responses = [e.text for e in client.events if isinstance(e, AgentResponse)]
    assert responses == ["Time."]


async def test_each_connection_runs_the_scenario_from_the_start() -> None:
    text = "steps:\n  - agent_say: Scripted."
    async with server(text, first_message="") as sim:
        for _ in range(2):
            async with talk(sim) as client:
                assert (await client.wait_for(AgentResponse)).text == "Scripted."
        await sim.wait_for_conversations(2)
        await asyncio.gather(*(rec.wait_closed() for rec in sim.conversations))
