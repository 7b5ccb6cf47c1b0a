"""What a conversation's initiation data does to its agent: overrides and dynamic variables.

Owns the permission check of ``conversation_config_override`` (protocol.md §7.3), which judges
the *raw* JSON object so that keys the typed model does not know (such as the Python SDK's
top-level ``text_only``, §3.2) are judged too, the ``{{var}}`` substitution of dynamic variables,
and ``SessionSettings``: the agent's settings after the permitted overrides.

Pure: no I/O, no asyncio.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from piagent.protocol.messages import ConversationInitiationClientData
from piagent.sim.agent import AgentDefinition

__all__ = [
    "InitiationProblem",
    "SessionSettings",
    "disallowed_overrides",
    "find_missing_variables",
    "raw_object",
    "resolve_session",
    "substitute_variables",
]

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")

# Built-in dynamic variables the platform fills itself (protocol.md §3.2).
SYSTEM_VARIABLES = (
    "system__agent_id",
    "system__conversation_id",
    "system__time_utc",
    "system__call_duration_secs",
)


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """The agent's settings for one conversation, after permitted overrides."""

    first_message: str
    prompt: str
    language: str
    voice_id: str
    text_only: bool
    max_conversation_duration_message: str
    speed: float = 1.0
    stability: float | None = None
    similarity_boost: float | None = None
    llm: str | None = None
    reasoning_effort: str | None = None
    dynamic_variables: Mapping[str, Any] | None = None
    custom_llm_extra_body: Mapping[str, Any] | None = None
    procedure_ids: tuple[str, ...] | None = None  # None: the agent's own (all of them)
    start_procedure_ids: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class InitiationProblem:
    """A reason to refuse the conversation: close code, reason and the ``error`` type."""

    code: int
    reason: str
    error_type: str
    message: str


def raw_object(frame: str) -> Mapping[str, Any]:
    """The raw JSON object of an initiation frame that ``parse_client`` already accepted.

    The typed model drops keys it does not know; the permission check must see them all."""
    data = json.loads(frame)
    return data if isinstance(data, dict) else {}


def _leaves(raw: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of every value set in ``raw``; empty objects and nulls set nothing."""
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if value is None:
            continue
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{path}.")
        else:
            yield path


def _permission_path(path: str) -> str:
    # The Python SDK puts text_only at the top level of the override (§3.2): judge it as the
    # conversation.text_only flag, which is what it means.
    return "conversation.text_only" if path == "text_only" else path


def disallowed_overrides(agent: AgentDefinition, raw_initiation: Mapping[str, Any]) -> list[str]:
    """Dotted paths of overrides in the raw initiation message that ``agent`` does not allow.

    ``custom_llm_extra_body`` has its own flag; an empty object sets nothing (the Python SDK
    always sends ``{}``). ``procedure_ids`` and ``start_procedure_ids`` share the agent's
    ``allow_procedure_ids`` (enable_procedure_ids_from_client); an empty list is a value."""
    refused: list[str] = []
    override = raw_initiation.get("conversation_config_override")
    if isinstance(override, Mapping):
        refused.extend(
            path for path in _leaves(override) if not agent.allows_override(_permission_path(path))
        )
    extra = raw_initiation.get("custom_llm_extra_body")
    if isinstance(extra, Mapping) and extra and not agent.allow_custom_llm_extra_body:
        refused.append("custom_llm_extra_body")
    if not agent.allow_procedure_ids:
        refused.extend(key for key in _PROCEDURE_KEYS if raw_initiation.get(key) is not None)
    return refused


_PROCEDURE_KEYS = ("procedure_ids", "start_procedure_ids")


def override_reason(path: str) -> str:
    """The close reason the platform gives for a refused override (protocol.md §7.1)."""
    return f"Override for field '{path.rsplit('.', 1)[-1]}' is not allowed by config"


def find_missing_variables(texts: list[str], provided: Mapping[str, Any]) -> list[str]:
    """Names used as ``{{name}}`` in ``texts`` that neither ``provided`` nor the system fills."""
    missing: list[str] = []
    for text in texts:
        for name in _VARIABLE.findall(text):
            if name not in provided and name not in SYSTEM_VARIABLES and name not in missing:
                missing.append(name)
    return missing


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def substitute_variables(text: str, values: Mapping[str, Any]) -> str:
    """``text`` with each ``{{name}}`` replaced; unknown names are left as they are."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return _as_text(values[name]) if name in values else match.group(0)

    return _VARIABLE.sub(replace, text)


def resolve_session(
    agent: AgentDefinition,
    initiation: ConversationInitiationClientData | None,
    raw_initiation: Mapping[str, Any] | None,
    system_values: Mapping[str, Any],
) -> tuple[SessionSettings, InitiationProblem | None]:
    """The conversation's settings and, if the initiation data must be refused, why.

    Disallowed overrides refuse the conversation (``on_disallowed_override: close``) or are
    dropped (``ignore``); permitted ones take effect. A ``{{var}}`` in the prompt or first
    message that no dynamic variable fills refuses it too."""
    problem: InitiationProblem | None = None
    refused = disallowed_overrides(agent, raw_initiation or {})
    if refused and agent.on_disallowed_override == "close":
        reason = override_reason(refused[0])
        problem = InitiationProblem(1008, reason, "override_error", reason)

    def permitted(path: str) -> bool:
        return agent.allows_override(path)

    ov = initiation.conversation_config_override if initiation else None
    ag = ov.agent if ov else None
    prompt = ag.prompt if ag else None
    tts = ov.tts if ov else None
    conv = ov.conversation if ov else None

    def pick(value: Any, path: str, default: Any) -> Any:
        return value if value is not None and permitted(path) else default

    raw_override = (raw_initiation or {}).get("conversation_config_override")
    quirk_text_only = isinstance(raw_override, Mapping) and raw_override.get("text_only") is True
    text_only = agent.text_only or (
        permitted("conversation.text_only")
        and ((conv is not None and conv.text_only is True) or quirk_text_only)
    )
    extra = initiation.custom_llm_extra_body if initiation else None
    procedures = agent.allow_procedure_ids
    variables = dict(initiation.dynamic_variables or {}) if initiation else {}
    settings = SessionSettings(
        first_message=pick(
            ag.first_message if ag else None, "agent.first_message", agent.first_message
        ),
        prompt=pick(prompt.prompt if prompt else None, "agent.prompt.prompt", agent.prompt),
        language=pick(ag.language if ag else None, "agent.language", agent.language),
        voice_id=pick(tts.voice_id if tts else None, "tts.voice_id", agent.voice_id),
        text_only=text_only,
        max_conversation_duration_message=pick(
            ag.max_conversation_duration_message if ag else None,
            "agent.max_conversation_duration_message",
            agent.max_conversation_duration_message,
        ),
        speed=pick(tts.speed if tts else None, "tts.speed", 1.0),
        stability=pick(tts.stability if tts else None, "tts.stability", None),
        similarity_boost=pick(tts.similarity_boost if tts else None, "tts.similarity_boost", None),
        llm=pick(prompt.llm if prompt else None, "agent.prompt.llm", None),
        reasoning_effort=pick(
            prompt.reasoning_effort if prompt else None, "agent.prompt.reasoning_effort", None
        ),
        dynamic_variables=variables,
        custom_llm_extra_body=extra if agent.allow_custom_llm_extra_body else None,
        procedure_ids=initiation.procedure_ids if initiation and procedures else None,
        start_procedure_ids=initiation.start_procedure_ids if initiation and procedures else None,
    )
    if problem is None:
        missing = find_missing_variables([settings.prompt, settings.first_message], variables)
        if missing:
            names = ", ".join(missing)
            message = f"Missing required dynamic variables: {names}"
            problem = InitiationProblem(1008, message, "missing_dynamic_variable", message)
    values = {**system_values, **variables}
    settings = _replace_texts(settings, values)
    return settings, problem


def _replace_texts(settings: SessionSettings, values: Mapping[str, Any]) -> SessionSettings:
    return replace(
        settings,
        first_message=substitute_variables(settings.first_message, values),
        prompt=substitute_variables(settings.prompt, values),
        max_conversation_duration_message=substitute_variables(
            settings.max_conversation_duration_message, values
        ),
    )
