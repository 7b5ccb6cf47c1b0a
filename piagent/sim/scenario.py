"""Scenario files: a YAML script of what the simulated agent does, step by step.

Owns the format (one frozen dataclass per step kind) and its strict loader::

    agent: {first_message: "Hello from the scenario.", output_format: pcm_16000}
    steps:
      - expect: user_turn          # wait for the user's next turn (timeout: 30 s by default)
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

``agent`` holds agent-definition fields merged over the connected agent's own. The steps run in
order after the first message; afterwards the agent goes on as the parrot. An unknown step kind
or key raises ``ScenarioError`` naming the step index and key (``steps[3].tool_call.nmae``).
How the steps are carried out lives in ``conversation``.

Pure: no I/O except reading the file in ``load_scenario``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import yaml

from piagent.errors import RemoteProtocolError, ScenarioError
from piagent.protocol.messages import UnknownMessage, encode
from piagent.sim.agent import AgentDefinition, check_close_code

__all__ = [
    "AgentSay",
    "CloseStep",
    "EndCall",
    "ExpectUserTurn",
    "MaxDuration",
    "Scenario",
    "SendJson",
    "SendOversize",
    "SendText",
    "Sleep",
    "Stall",
    "Step",
    "ToolCallStep",
    "load_scenario",
]


@dataclass(frozen=True, slots=True)
class ExpectUserTurn:
    """Wait for the user's next turn (end of speech or a user_message), up to ``timeout`` s."""

    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class AgentSay:
    """An agent turn: text parts, audio, agent_response."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStep:
    """Send ``client_tool_call``; if ``expects_response``, wait for the result up to
    ``timeout`` seconds (None: the agent's ``response_timeout_secs``)."""

    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    expects_response: bool = True
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class SendJson:
    """Send any JSON object as is."""

    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SendText:
    """Send a raw text frame (need not be JSON)."""

    text: str


@dataclass(frozen=True, slots=True)
class SendOversize:
    """Send an ``audio`` event whose frame is at least ``size`` bytes."""

    size: int


@dataclass(frozen=True, slots=True)
class Sleep:
    """Do nothing for ``seconds`` (the conversation goes on: pings, user audio)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Stall:
    """Stop reading, writing and answering WebSocket pings for ``seconds``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class CloseStep:
    """Close the socket with ``code`` and ``reason``."""

    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class EndCall:
    """The agent hangs up: ``agent_tool_response`` for the ``end_call`` system tool, close 1000."""


@dataclass(frozen=True, slots=True)
class MaxDuration:
    """The max-duration ending: its message, an ``error`` event, close 1000."""


Step: TypeAlias = (
    ExpectUserTurn
    | AgentSay
    | ToolCallStep
    | SendJson
    | SendText
    | SendOversize
    | Sleep
    | Stall
    | CloseStep
    | EndCall
    | MaxDuration
)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A parsed scenario: agent-field changes and the steps."""

    agent: Mapping[str, Any] = field(default_factory=dict)
    steps: tuple[Step, ...] = ()

    def apply(self, agent: AgentDefinition) -> AgentDefinition:
        """``agent`` with the scenario's agent fields merged over it."""
        return agent.merged(self.agent, "scenario agent") if self.agent else agent

    @classmethod
    def from_yaml(cls, text: str, source: str = "scenario") -> Scenario:
        """Parse and validate scenario YAML; ``ScenarioError`` names the step and key."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ScenarioError(f"{source}: not valid YAML ({exc})") from exc
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ScenarioError(f"{source}: expected a mapping with agent: and steps:")
        unknown = sorted(set(data) - {"agent", "steps"})
        if unknown:
            raise ScenarioError(f"{source}: unknown key {unknown[0]!r}")
        agent = data.get("agent") or {}
        if not isinstance(agent, Mapping):
            raise ScenarioError("agent: expected a mapping of agent fields")
        if "agent_id" in agent:
            raise ScenarioError("agent.agent_id: a scenario cannot change the agent id")
        AgentDefinition().merged(agent, "agent")  # validates every key and value now
        steps = data.get("steps") or []
        if not isinstance(steps, list):
            raise ScenarioError("steps: expected a list of steps")
        return cls(dict(agent), tuple(_parse_step(i, step) for i, step in enumerate(steps)))


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario ({exc.strerror})") from exc
    return Scenario.from_yaml(text, str(path))


# --------------------------------------------------------------------------------------------
# Step parsing


def _number(value: Any, where: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{where}: expected a number of seconds, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ScenarioError(f"{where}: must be {'> 0' if positive else '>= 0'}")
    return float(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ScenarioError(f"{where}: expected a string, got {value!r}")
    return value


def _true(value: Any, where: str) -> None:
    if value is not True:
        raise ScenarioError(f"{where}: expected true")


def _mapping(value: Any, where: str, allowed: set[str], required: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ScenarioError(f"{where}: expected a mapping")
    for key in value:
        if key not in allowed:
            raise ScenarioError(f"{where}.{key}: unknown key")
    for key in sorted(required):
        if key not in value:
            raise ScenarioError(f"{where}.{key}: required key missing")
    return value


def _parse_tool_call(value: Any, where: str) -> ToolCallStep:
    spec = _mapping(value, where, {"name", "parameters", "expects_response", "timeout"}, {"name"})
    parameters = spec.get("parameters", {})
    if not isinstance(parameters, Mapping):
        raise ScenarioError(f"{where}.parameters: expected a mapping")
    expects = spec.get("expects_response", True)
    if not isinstance(expects, bool):
        raise ScenarioError(f"{where}.expects_response: expected true or false")
    timeout = spec.get("timeout")
    return ToolCallStep(
        name=_text(spec["name"], f"{where}.name"),
        parameters=dict(parameters),
        expects_response=expects,
        timeout=None if timeout is None else _number(timeout, f"{where}.timeout", positive=True),
    )


def _parse_send(value: Any, where: str) -> SendJson:
    if not isinstance(value, Mapping):
        raise ScenarioError(f"{where}: expected a JSON object (a mapping)")
    try:
        encode(UnknownMessage(str(value.get("type", "")), dict(value)))
    except (TypeError, ValueError, RemoteProtocolError) as exc:
        raise ScenarioError(f"{where}: not representable as JSON ({exc})") from exc
    return SendJson(dict(value))


def _parse_close(value: Any, where: str) -> CloseStep:
    spec = _mapping(value, where, {"code", "reason"}, {"code"})
    code = spec["code"]
    if isinstance(code, bool) or not isinstance(code, int):
        raise ScenarioError(f"{where}.code: expected an integer close code")
    check_close_code(code, f"{where}.code")
    reason = _text(spec.get("reason", ""), f"{where}.reason")
    if len(reason.encode()) > 123:
        raise ScenarioError(f"{where}.reason: at most 123 bytes")
    return CloseStep(code, reason)


def _parse_oversize(value: Any, where: str) -> SendOversize:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ScenarioError(f"{where}: expected a positive number of bytes")
    return SendOversize(value)


def _parse_step(index: int, raw: Any) -> Step:
    where = f"steps[{index}]"
    if not isinstance(raw, Mapping) or not raw:
        raise ScenarioError(f"{where}: expected a mapping such as {{agent_say: text}}")
    kinds = [key for key in raw if key in _PARSERS or key == "expect"]
    if not kinds:
        raise ScenarioError(f"{where}.{next(iter(raw))}: unknown step kind")
    if len(kinds) > 1:
        raise ScenarioError(f"{where}.{kinds[1]}: one step kind per step")
    kind = kinds[0]
    extra = [key for key in raw if key != kind and not (kind == "expect" and key == "timeout")]
    if extra:
        raise ScenarioError(f"{where}.{extra[0]}: unknown key")
    value = raw[kind]
    if kind == "expect":
        if value != "user_turn":
            raise ScenarioError(f"{where}.expect: only 'user_turn' can be expected")
        timeout = raw.get("timeout", 30.0)
        return ExpectUserTurn(_number(timeout, f"{where}.timeout", positive=True))
    return _PARSERS[kind](value, f"{where}.{kind}")


def _parse_end_call(value: Any, where: str) -> EndCall:
    _true(value, where)
    return EndCall()


def _parse_max_duration(value: Any, where: str) -> MaxDuration:
    _true(value, where)
    return MaxDuration()


_PARSERS: dict[str, Callable[[Any, str], Step]] = {
    "agent_say": lambda value, where: AgentSay(_text(value, where)),
    "tool_call": _parse_tool_call,
    "send": _parse_send,
    "send_text": lambda value, where: SendText(_text(value, where)),
    "send_oversize": _parse_oversize,
    "sleep": lambda value, where: Sleep(_number(value, where)),
    "stall": lambda value, where: Stall(_number(value, where)),
    "close": _parse_close,
    "end_call": _parse_end_call,
    "max_duration": _parse_max_duration,
}
