"""Simulated agent definitions: what each agent says, allows and how its timers are set.

Owns ``AgentDefinition`` (one frozen dataclass per agent, every field with a default, so
``AgentDefinition()`` is the public demo parrot), which optional events its ``client_events``
let out (``OPTIONAL_EVENTS``), ``ServerSettings`` (switches of the server as a whole) and the
agent-file loader (``--agent FILE``). Validation is strict: an unknown key or a
wrong value raises ``ScenarioError`` naming the entry and key (``agents[1].ping_interval: ...``).

Pure: no I/O except reading the agent file in ``load_agent_file``.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from piagent.errors import ScenarioError
from piagent.protocol.messages import (
    AgentChatResponsePart,
    AgentResponse,
    AgentResponseCorrection,
    AgentToolResponse,
    Audio,
    AudioFormat,
    ClientToolCall,
    Interruption,
    Ping,
    ServerEvent,
    UserTranscript,
    VadScore,
)

__all__ = [
    "CLIENT_EVENT_NAMES",
    "DEFAULT_CLIENT_EVENTS",
    "DEFAULT_FIRST_MESSAGE",
    "OPTIONAL_EVENTS",
    "OVERRIDE_PATHS",
    "AgentDefinition",
    "AgentFile",
    "FaultClose",
    "ServerSettings",
    "load_agent_file",
    "parse_agent_file",
]

DEFAULT_FIRST_MESSAGE = "Hello! I'm the piagent demo agent. Press the button and talk to me."

# Every name the platform accepts in conversation.client_events (protocol.md §4.3).
CLIENT_EVENT_NAMES = frozenset(
    {
        "conversation_initiation_metadata",
        "asr_initiation_metadata",
        "ping",
        "audio",
        "interruption",
        "user_transcript",
        "tentative_user_transcript",
        "agent_response",
        "agent_response_correction",
        "client_tool_call",
        "mcp_tool_call",
        "mcp_connection_status",
        "agent_tool_request",
        "agent_tool_response",
        "agent_tool_response_full_payload",
        "agent_response_metadata",
        "vad_score",
        "agent_chat_response_part",
        "client_error",
        "guardrail_triggered",
        "dtmf_request",
        "agent_response_complete",
        "internal_turn_probability",
        "internal_tentative_agent_response",
    }
)

DEFAULT_CLIENT_EVENTS: tuple[str, ...] = (
    "audio",
    "interruption",
    "agent_response",
    "agent_response_correction",
    "agent_chat_response_part",
    "user_transcript",
    "vad_score",
    "client_tool_call",
    "agent_tool_response",
    "ping",
)

# Optional server events and the client_events name that enables each (protocol.md §4.3).
OPTIONAL_EVENTS: Mapping[type[Any], str] = {
    Audio: "audio",
    AgentResponse: "agent_response",
    AgentResponseCorrection: "agent_response_correction",
    AgentChatResponsePart: "agent_chat_response_part",
    UserTranscript: "user_transcript",
    VadScore: "vad_score",
    Interruption: "interruption",
    Ping: "ping",
    ClientToolCall: "client_tool_call",
    AgentToolResponse: "agent_tool_response",
}

# The permission flags of platform_settings.overrides.conversation_config_override (§7.3),
# as dotted paths. A section name (``tts``) allows everything under it; ``all`` allows all.
OVERRIDE_PATHS = frozenset(
    {
        "agent.first_message",
        "agent.language",
        "agent.max_conversation_duration_message",
        "agent.prompt.prompt",
        "agent.prompt.llm",
        "agent.prompt.reasoning_effort",
        "agent.prompt.tool_ids",
        "agent.prompt.native_mcp_server_ids",
        "agent.prompt.knowledge_base",
        "tts.voice_id",
        "tts.stability",
        "tts.speed",
        "tts.similarity_boost",
        "tts.model_id",
        "asr.keywords",
        "turn.soft_timeout_config.message",
        "conversation.text_only",
        "conversation.client_events",
    }
)
_OVERRIDE_SECTIONS = frozenset(
    {"agent", "agent.prompt", "tts", "asr", "turn", "turn.soft_timeout_config", "conversation"}
)

OverridePolicy = Literal["close", "ignore"]
ResponseOrder = Literal["after_first_audio", "before_audio", "after_audio"]
FaultPoint = Literal["connect", "initiation", "metadata", "first_audio"]
UnknownAgentPolicy = Literal["close", "http_404"]


@dataclass(frozen=True, slots=True)
class FaultClose:
    """Close the socket with ``code``/``reason`` at a fixed point of the conversation:
    ``connect`` (right after the upgrade), ``initiation`` (after the client data, before
    metadata), ``metadata`` (right after metadata) or ``first_audio`` (after the first audio
    chunk of the first agent turn)."""

    at: FaultPoint
    code: int = 1011
    reason: str = ""

    def __post_init__(self) -> None:
        if self.at not in get_args(FaultPoint):
            raise ScenarioError(f"at: expected one of {', '.join(get_args(FaultPoint))}")
        check_close_code(self.code, "code")
        if len(self.reason.encode()) > 123:
            raise ScenarioError("reason: at most 123 bytes (a WebSocket close reason)")


def check_close_code(code: int, key: str) -> None:
    if not (code in {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011} or 3000 <= code <= 4999):
        raise ScenarioError(f"{key}: {code} is not a close code an endpoint may send")


@dataclass(frozen=True, slots=True)
class AgentDefinition:
    """One simulated agent. Times are in seconds unless the name ends in ``_ms``."""

    agent_id: str = "demo"
    name: str = "piagent demo agent"
    # What the agent says and is (each can be overridden per conversation if allowed).
    first_message: str = DEFAULT_FIRST_MESSAGE  # "" = wait for the user
    prompt: str = "You are a parrot: you repeat what the user said."
    language: str = "en"
    voice_id: str = "21m00Tcm4TlvDq8ikWAM"
    max_conversation_duration_message: str = ""
    text_only: bool = False
    input_format: AudioFormat = AudioFormat.PCM_16000
    output_format: AudioFormat = AudioFormat.PCM_16000
    client_events: tuple[str, ...] = DEFAULT_CLIENT_EVENTS
    # Access: a private agent needs a signed URL; api_keys empty = any non-empty key is valid.
    private: bool = False
    api_keys: tuple[str, ...] = ()
    signed_url_ttl: float = 900.0
    # Overrides (protocol.md §7.3).
    allowed_overrides: tuple[str, ...] = ("all",)
    allow_custom_llm_extra_body: bool = True
    allow_procedure_ids: bool = True  # enable_procedure_ids_from_client (procedure_ids, start_...)
    on_disallowed_override: OverridePolicy = "close"
    reject_before_metadata: bool = False  # rejections (override, dynamic variable) come first
    # Session start.
    initiation_timeout: float = 3.0  # wait this long for conversation_initiation_client_data
    strict_initiation: bool = False  # anything else first: close 1008 instead of "no overrides"
    strict_messages: bool = False  # unknown client types (and bad feedback): close 1008
    echo_user_message: bool = False  # also send a user message back as user_transcript
    # Concurrency (protocol.md §4 queue_status): None = no limit. Over the limit a new
    # conversation gets metadata, then queue_status waiting (what it sends is discarded), then
    # admitted once a slot frees, or timed_out and close 3008 after queue_wait_timeout.
    # queueing false: refused at once with close 3008 instead.
    concurrency_limit: int | None = None
    queueing: bool = True
    queue_wait_timeout: float = 60.0
    # Timers.
    max_duration: float = 600.0
    no_input_timeout: float = 60.0
    turn_timeout: float | None = None  # re-prompt after this much silence; None = never
    turn_timeout_message: str = "Are you still there?"
    ping_interval: float | None = 3.0  # None = no pings
    max_missed_pongs: int | None = None  # close 1002 after this many unanswered pings
    response_timeout_secs: float = 20.0  # client tool calls
    # Voice activity detection on user audio.
    vad_threshold_db: float = -40.0  # a 20 ms frame at or above this level (dBFS) is speech
    min_speech_ms: int = 60  # this much speech in a row starts a user turn
    turn_end_silence_ms: int = 600  # this much silence ends it
    max_utterance_ms: int = 30000  # a longer utterance is cut into turns
    vad_score_interval_ms: int = 100
    # Agent speech.
    audio_chunk_ms: int = 100
    audio_pace: float = 1.5  # chunks are sent this many times faster than real time
    agent_response_order: ResponseOrder = "after_first_audio"
    mark_final_audio: bool = True  # False: never set is_final (optional on the wire)
    stale_chunks: int = 3  # audio chunks of an interrupted turn still sent after interruption
    # Fault injection.
    connect_delay: float = 0.0  # before the upgrade response
    metadata_delay: float = 0.0  # before conversation_initiation_metadata
    refuse_upgrade: int | None = None  # answer the upgrade with this HTTP status instead
    refuse_upgrade_times: int | None = None  # ... this many times, then accept; None = always
    fault_close: FaultClose | None = None

    def __post_init__(self) -> None:
        # Accept the plain values a test would write: format names, lists for tuples.
        for key in ("input_format", "output_format"):
            value = getattr(self, key)
            if not isinstance(value, AudioFormat):
                object.__setattr__(self, key, _convert(value, AudioFormat, key))
        for key in ("client_events", "api_keys", "allowed_overrides"):
            value = getattr(self, key)
            if not isinstance(value, tuple):
                object.__setattr__(self, key, _convert(value, tuple[str, ...], key))
        if not self.agent_id:
            raise ScenarioError("agent_id: must not be empty")
        for key in (
            "max_duration",
            "no_input_timeout",
            "response_timeout_secs",
            "audio_pace",
            "queue_wait_timeout",
        ):
            _check_positive(getattr(self, key), key)
        for key in ("turn_timeout", "ping_interval", "signed_url_ttl"):
            if getattr(self, key) is not None:
                _check_positive(getattr(self, key), key)
        for key in ("initiation_timeout", "connect_delay", "metadata_delay", "stale_chunks"):
            if getattr(self, key) < 0:
                raise ScenarioError(f"{key}: must be >= 0")
        for key in ("min_speech_ms", "turn_end_silence_ms", "vad_score_interval_ms"):
            if getattr(self, key) < 20:
                raise ScenarioError(f"{key}: must be >= 20 (one VAD frame)")
        if self.max_utterance_ms < 1000:
            raise ScenarioError("max_utterance_ms: must be >= 1000")
        if not 10 <= self.audio_chunk_ms <= 5000:
            raise ScenarioError("audio_chunk_ms: must be between 10 and 5000")
        if not -120 < self.vad_threshold_db < 0:
            raise ScenarioError("vad_threshold_db: must be between -120 and 0 (dBFS)")
        if self.concurrency_limit is not None and self.concurrency_limit < 0:
            raise ScenarioError("concurrency_limit: must be >= 0 (null: no limit)")
        if self.max_missed_pongs is not None and self.max_missed_pongs < 1:
            raise ScenarioError("max_missed_pongs: must be >= 1")
        if self.refuse_upgrade is not None and not 400 <= self.refuse_upgrade <= 599:
            raise ScenarioError("refuse_upgrade: must be an HTTP error status (400-599)")
        if self.refuse_upgrade_times is not None and self.refuse_upgrade_times < 1:
            raise ScenarioError("refuse_upgrade_times: must be >= 1")
        for name in self.allowed_overrides:
            if name != "all" and name not in OVERRIDE_PATHS | _OVERRIDE_SECTIONS:
                raise ScenarioError(f"allowed_overrides: unknown override field {name!r}")
        for name in self.client_events:
            if name not in CLIENT_EVENT_NAMES:
                raise ScenarioError(f"client_events: unknown client event {name!r}")
        if any(not key for key in self.api_keys):
            raise ScenarioError("api_keys: keys must not be empty")

    def allows_override(self, path: str) -> bool:
        """Whether the dotted override ``path`` (``tts.voice_id``) is permitted."""
        if "all" in self.allowed_overrides:
            return True
        parts = path.split(".")
        return any(".".join(parts[:n]) in self.allowed_overrides for n in range(1, len(parts) + 1))

    def accepts_api_key(self, key: str | None) -> bool:
        """Whether ``key`` (the ``xi-api-key`` header) may act for this agent."""
        if not key:
            return False
        return not self.api_keys or key in self.api_keys

    def sends(self, event_type: str) -> bool:
        """Whether the optional server event ``event_type`` is enabled (``client_events``)."""
        return event_type in self.client_events

    def sends_event(self, event: ServerEvent) -> bool:
        """Whether ``event`` goes out: always, unless it is an optional event the agent's
        ``client_events`` leave out."""
        name = OPTIONAL_EVENTS.get(type(event))
        return name is None or self.sends(name)

    def merged(self, changes: Mapping[str, Any], where: str = "agent") -> AgentDefinition:
        """A copy with ``changes`` (plain YAML values) applied, validated like a file entry."""
        return _from_mapping(changes, where, base=self)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "agent") -> AgentDefinition:
        """Build an agent from plain YAML values; errors name ``where`` and the key."""
        return _from_mapping(data, where, base=cls())


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Switches of the simulator as a whole.

    ``unknown_agent``: ``close`` accepts the upgrade and closes 1008 ``Agent not found``;
    ``http_404`` refuses the upgrade. ``max_message_size``: largest client frame, in bytes.
    ``max_records``: keep only the latest conversation records (None: all).
    ``record_traffic``: keep every sent frame and all user audio in the records."""

    unknown_agent: UnknownAgentPolicy = "close"
    max_message_size: int = 16 * 1024 * 1024
    max_records: int | None = None
    record_traffic: bool = True

    def __post_init__(self) -> None:
        if self.unknown_agent not in get_args(UnknownAgentPolicy):
            raise ScenarioError("unknown_agent: expected close or http_404")
        _check_positive(self.max_message_size, "max_message_size")
        if self.max_records is not None:
            _check_positive(self.max_records, "max_records")


@dataclass(frozen=True, slots=True)
class AgentFile:
    """What an agent file holds: the agents and, optionally, server settings."""

    agents: tuple[AgentDefinition, ...]
    server: ServerSettings = field(default_factory=ServerSettings)


def _check_positive(value: float, key: str) -> None:
    if not value > 0:
        raise ScenarioError(f"{key}: must be > 0")


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _convert(value: Any, hint: Any, key: str) -> Any:
    """One plain YAML value to the field type ``hint``; ``ScenarioError`` names ``key``."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        (hint,) = (arg for arg in get_args(hint) if arg is not type(None))
        origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
            raise ScenarioError(f"{key}: expected one of {', '.join(get_args(hint))}")
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ScenarioError(f"{key}: expected a list of strings")
        if not all(isinstance(item, str) for item in value):
            raise ScenarioError(f"{key}: expected a list of strings")
        return tuple(value)
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, str):
        return value
    if hint is AudioFormat and isinstance(value, str):
        try:
            return AudioFormat(value)
        except ValueError:
            names = ", ".join(f.value for f in AudioFormat)
            raise ScenarioError(f"{key}: expected one of {names}") from None
    if hint is FaultClose and isinstance(value, Mapping):
        return _build(FaultClose, value, key, {})
    expected = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    raise ScenarioError(f"{key}: expected {expected.get(hint, 'a mapping')}, got {value!r}")


def _build(cls: type[Any], data: Mapping[str, Any], where: str, base: dict[str, Any]) -> Any:
    hints = _hints(cls)
    values = dict(base)
    for key, value in data.items():
        if key not in hints:
            raise ScenarioError(f"{where}.{key}: unknown key")
        values[key] = _convert(value, hints[key], f"{where}.{key}")
    try:
        return cls(**values)
    except ScenarioError as exc:
        raise ScenarioError(f"{where}.{exc}") from None
    except TypeError as exc:  # a required field missing
        raise ScenarioError(f"{where}: {exc}") from None


def _from_mapping(data: Mapping[str, Any], where: str, base: AgentDefinition) -> AgentDefinition:
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{where}: expected a mapping of agent settings")
    current = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    agent: AgentDefinition = _build(AgentDefinition, data, where, current)
    return agent


def parse_agent_file(text: str, source: str = "agent file") -> AgentFile:
    """Parse an agent file: a list of agents, or a mapping with ``agents:`` (and ``server:``)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML ({exc})") from exc
    server = ServerSettings()
    if isinstance(data, Mapping):
        unknown = set(data) - {"agents", "server"}
        if unknown:
            raise ScenarioError(f"{source}: unknown key {sorted(unknown)[0]!r}")
        if "server" in data:
            server_data = data["server"]
            if not isinstance(server_data, Mapping):
                raise ScenarioError("server: expected a mapping")
            server = _build(ServerSettings, server_data, "server", {})
        data = data.get("agents")
    if not isinstance(data, list) or not data:
        raise ScenarioError(f"{source}: expected a non-empty list of agents (or agents: [...])")
    agents: list[AgentDefinition] = []
    for index, entry in enumerate(data):
        where = f"agents[{index}]"
        if not isinstance(entry, Mapping) or "agent_id" not in entry:
            raise ScenarioError(f"{where}: expected a mapping with an agent_id")
        agent = AgentDefinition.from_mapping(entry, where)
        if any(a.agent_id == agent.agent_id for a in agents):
            raise ScenarioError(f"{where}.agent_id: duplicate agent_id {agent.agent_id!r}")
        agents.append(agent)
    return AgentFile(tuple(agents), server)


def load_agent_file(path: str | Path) -> AgentFile:
    """Read and validate an agent file (``ScenarioError`` if unreadable or invalid)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read agent file ({exc.strerror})") from exc
    return parse_agent_file(text, str(path))
