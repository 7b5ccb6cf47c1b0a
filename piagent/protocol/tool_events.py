"""Server -> client tool events (protocol.md §4): client tools, the agent's tools, MCP.

Owns ``client_tool_call`` (which the daemon answers with a ``client_tool_result`` when it
expects one), ``agent_tool_request``, ``agent_tool_response`` (``end_call`` is the agent
hanging up) and its full-payload variant, ``mcp_tool_call`` and ``mcp_connection_status``.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from piagent.protocol.codec import (
    BOOL,
    INT,
    OBJECT,
    OBJECT_LIST,
    STR,
    Field,
    JsonObject,
    Spec,
    list_of,
    nested,
    one_of,
    opt,
    req,
)

__all__ = [
    "AgentToolRequest",
    "AgentToolResponse",
    "AgentToolResponseFullPayload",
    "ClientToolCall",
    "McpConnectionStatus",
    "McpIntegration",
    "McpToolCall",
]


@dataclass(frozen=True, slots=True)
class ClientToolCall:
    """The agent asks the client to run a tool; answer only if ``expects_response``.

    AA-pkg omits ``expects_response``; a call without it is taken to expect a response, as the
    official SDKs answer every call."""

    tool_name: str
    tool_call_id: str
    parameters: JsonObject
    event_id: int
    expects_response: bool = True
    SPEC: ClassVar[Spec] = Spec(
        "client_tool_call",
        "client_tool_call",
        (
            req("tool_name", STR),
            req("tool_call_id", STR),
            req("parameters", OBJECT),
            req("event_id", INT),
            Field(
                "expects_response", "expects_response", BOOL, True, nullable=True, send_default=True
            ),
        ),
    )


@dataclass(frozen=True, slots=True)
class AgentToolRequest:
    """The agent is about to call a tool (client, webhook, mcp or system)."""

    tool_name: str
    tool_call_id: str
    tool_type: str
    event_id: int
    SPEC: ClassVar[Spec] = Spec(
        "agent_tool_request",
        "agent_tool_request",
        (
            req("tool_name", STR),
            req("tool_call_id", STR),
            req("tool_type", STR),
            req("event_id", INT),
        ),
    )


_TOOL_RESPONSE_FIELDS = (
    req("tool_name", STR),
    req("tool_call_id", STR),
    req("tool_type", STR),
    req("is_error", BOOL),
    req("is_called", BOOL),
    req("event_id", INT),
    opt("is_blocked", BOOL, default=False),
)


@dataclass(frozen=True, slots=True)
class AgentToolResponse:
    """A tool ran; ``tool_name == "end_call"`` means the agent hung up (protocol.md §4.2)."""

    tool_name: str
    tool_call_id: str
    tool_type: str
    is_error: bool
    is_called: bool
    event_id: int
    is_blocked: bool = False
    SPEC: ClassVar[Spec] = Spec("agent_tool_response", "agent_tool_response", _TOOL_RESPONSE_FIELDS)


@dataclass(frozen=True, slots=True)
class AgentToolResponseFullPayload:
    """``agent_tool_response`` with the tool's full result."""

    tool_name: str
    tool_call_id: str
    tool_type: str
    is_error: bool
    is_called: bool
    event_id: int
    full_tool_result: str
    is_blocked: bool = False
    truncated: bool = False
    SPEC: ClassVar[Spec] = Spec(
        "agent_tool_response_full_payload",
        "agent_tool_response_full_payload",
        (
            *_TOOL_RESPONSE_FIELDS,
            req("full_tool_result", STR),
            opt("truncated", BOOL, default=False),
        ),
    )


@dataclass(frozen=True, slots=True)
class McpToolCall:
    """Progress of an MCP tool call; ``awaiting_approval`` needs an ``McpToolApprovalResult``."""

    service_id: str
    tool_call_id: str
    tool_name: str
    parameters: JsonObject
    state: str
    timestamp: str | None = None
    tool_description: str | None = None
    approval_timeout_secs: int | None = None
    result: tuple[JsonObject, ...] | None = None
    error_message: str | None = None
    SPEC: ClassVar[Spec] = Spec(
        "mcp_tool_call",
        "mcp_tool_call",
        (
            req("service_id", STR),
            req("tool_call_id", STR),
            req("tool_name", STR),
            req("parameters", OBJECT),
            req("state", one_of("loading", "awaiting_approval", "success", "failure")),
            opt("timestamp", STR),
            opt("tool_description", STR),
            opt("approval_timeout_secs", INT),
            opt("result", OBJECT_LIST),
            opt("error_message", STR),
        ),
    )


@dataclass(frozen=True, slots=True)
class McpIntegration:
    """Connection status of one MCP integration."""

    integration_id: str
    integration_type: str
    is_connected: bool
    tool_count: int = 0
    SPEC: ClassVar[Spec] = Spec(
        None,
        None,
        (
            req("integration_id", STR),
            req("integration_type", STR),
            req("is_connected", BOOL),
            # AA-pkg requires tool_count (default 0): accept it missing, always send it.
            Field("tool_count", "tool_count", INT, default=0, send_default=True),
        ),
    )


@dataclass(frozen=True, slots=True)
class McpConnectionStatus:
    """Which MCP integrations are connected."""

    integrations: tuple[McpIntegration, ...]
    SPEC: ClassVar[Spec] = Spec(
        "mcp_connection_status",
        "mcp_connection_status",
        (req("integrations", list_of(nested(McpIntegration), "array of objects")),),
    )
