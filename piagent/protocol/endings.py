"""How a conversation ended, classified: the reason, and whether retrying can help.

Owns ``EndReason`` (each reason says whether it is ``retryable``, whether it ``is_error``, and
the ``advice`` a user gets for a fatal one), ``Ending`` (a reason with the close code and
words), and ``classify_ending``, which reads a close (code and reason text) together with what
came before it: our own hang-up, an ``error`` event, ``end_call``, a ``queue_status`` of
``timed_out`` (protocol.md §4.2, §7). One classifier serves the reconnect policy, the
transport's failed connects and doctor's checks.

Pure: no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from piagent.protocol.messages import ClientErrorEvent, ErrorEvent, FlatErrorEvent

__all__ = ["EndReason", "Ending", "ServerErrorEvent", "classify_ending"]


class EndReason(enum.Enum):
    """Why a conversation ended; ``retryable`` says whether a new connection could help."""

    CLIENT_HANGUP = "client hung up"
    AGENT_ENDED_CALL = "agent ended the call"
    MAX_DURATION = "maximum conversation duration reached"
    SERVER_CLOSED = "server closed the conversation"
    NO_INPUT_TIMEOUT = "no user input for too long"
    TIMEOUT = "server-side timeout"
    PROTOCOL_ERROR = "server reported an operational error"
    SERVER_ERROR = "internal server error"
    REQUEST_ERROR = "request error"
    SERVICE_UNAVAILABLE = "service unavailable"
    CONNECT_FAILED = "could not connect"
    STALLED = "connection stalled"
    CONNECTION_LOST = "connection lost"
    CLOSED_BEFORE_METADATA = "closed before the conversation started"
    QUOTA_EXCEEDED = "quota exceeded"
    OVERRIDE_REJECTED = "override not allowed by the agent"
    AUTH_REJECTED = "authentication rejected"
    AGENT_NOT_FOUND = "agent not found"
    MISSING_DYNAMIC_VARIABLE = "missing dynamic variable"
    INVALID_REQUEST = "request rejected as invalid"
    QUEUE_TIMED_OUT = "timed out in the agent's queue (too many conversations)"

    @property
    def retryable(self) -> bool:
        """True when the failure is transient: reconnecting later may succeed."""
        return self in _RETRYABLE

    @property
    def is_error(self) -> bool:
        """False for the ways a conversation ends normally."""
        return self not in _NORMAL

    @property
    def advice(self) -> str:
        """What the user can do about it, for the one log line a fatal failure gets."""
        return _ADVICE.get(self, "")


_NORMAL = frozenset(
    {
        EndReason.CLIENT_HANGUP,
        EndReason.AGENT_ENDED_CALL,
        EndReason.MAX_DURATION,
        EndReason.SERVER_CLOSED,
        EndReason.NO_INPUT_TIMEOUT,
    }
)
_RETRYABLE = frozenset(
    {
        EndReason.NO_INPUT_TIMEOUT,
        EndReason.TIMEOUT,
        EndReason.PROTOCOL_ERROR,
        EndReason.SERVER_ERROR,
        EndReason.REQUEST_ERROR,
        EndReason.SERVICE_UNAVAILABLE,
        EndReason.CONNECT_FAILED,
        EndReason.STALLED,
        EndReason.CONNECTION_LOST,
        EndReason.CLOSED_BEFORE_METADATA,
        EndReason.QUEUE_TIMED_OUT,
    }
)
_ADVICE: Mapping[EndReason, str] = {
    EndReason.QUOTA_EXCEEDED: "the ElevenLabs account is out of quota: check its plan and usage",
    EndReason.OVERRIDE_REJECTED: (
        "the agent does not allow an override piagent sends: enable it in the agent's Security "
        "settings or remove the key from the agent section of the config"
    ),
    EndReason.AUTH_REJECTED: (
        "the API key or signed URL was rejected: check agent.api_key_file or ELEVENLABS_API_KEY, "
        "and whether the agent is private"
    ),
    EndReason.AGENT_NOT_FOUND: "the agent does not exist: check agent.agent_id",
    EndReason.MISSING_DYNAMIC_VARIABLE: (
        "the agent's prompt uses a dynamic variable the config does not set: add it under "
        "agent.dynamic_variables"
    ),
    EndReason.INVALID_REQUEST: "the server rejected a message as invalid: see the close reason",
}

_ERROR_TYPE_REASONS: Mapping[str, EndReason] = {
    "max_duration_exceeded": EndReason.MAX_DURATION,
    "transport_receive_timeout": EndReason.NO_INPUT_TIMEOUT,
    "llm_timeout": EndReason.TIMEOUT,
    "asyncio_timeout": EndReason.TIMEOUT,
    "redis_timeout_error": EndReason.TIMEOUT,
    "override_error": EndReason.OVERRIDE_REJECTED,
    "missing_dynamic_variable": EndReason.MISSING_DYNAMIC_VARIABLE,
    "missing_dynamic_variable_transfer": EndReason.MISSING_DYNAMIC_VARIABLE,
    "invalid_message": EndReason.INVALID_REQUEST,
    "value_error": EndReason.INVALID_REQUEST,
    "missing_fields": EndReason.INVALID_REQUEST,
    "unknown_websocket_crash": EndReason.SERVER_ERROR,
}

# Close reasons are free text; these fragments are what real closes have said (protocol.md §7).
_TEXT_REASONS: tuple[tuple[str, EndReason], ...] = (
    ("quota", EndReason.QUOTA_EXCEEDED),
    ("override for field", EndReason.OVERRIDE_REJECTED),
    ("agent not found", EndReason.AGENT_NOT_FOUND),
    ("invalid agent", EndReason.AGENT_NOT_FOUND),
    ("does not exist", EndReason.AGENT_NOT_FOUND),
    ("signature", EndReason.AUTH_REJECTED),
    ("authenticat", EndReason.AUTH_REJECTED),
    ("unauthori", EndReason.AUTH_REJECTED),
    ("api key", EndReason.AUTH_REJECTED),
    ("dynamic variable", EndReason.MISSING_DYNAMIC_VARIABLE),
    ("too many concurrent", EndReason.QUEUE_TIMED_OUT),
)

_CODE_REASONS: Mapping[int, EndReason] = {
    1000: EndReason.SERVER_CLOSED,
    1001: EndReason.CONNECTION_LOST,
    1002: EndReason.PROTOCOL_ERROR,
    1006: EndReason.CONNECTION_LOST,
    1008: EndReason.INVALID_REQUEST,
    1011: EndReason.SERVER_ERROR,
    3000: EndReason.REQUEST_ERROR,
    3008: EndReason.QUEUE_TIMED_OUT,  # a queued wait timed out (queue_status, protocol.md §7.1)
}


@dataclass(frozen=True, slots=True)
class Ending:
    """How a conversation ended.

    ``code`` and ``detail`` are the close frame's (``None``/"" when the connection dropped with
    none); ``cut_turn`` is the event id of an agent turn that was still streaming."""

    reason: EndReason
    code: int | None
    detail: str
    before_metadata: bool = False
    cut_turn: int | None = None

    @property
    def retryable(self) -> bool:
        """Whether reconnecting can help (transient), as opposed to a fatal or normal end."""
        return self.reason.retryable

    def describe(self) -> str:
        """One human line: reason, close code and the server's words."""
        parts = [self.reason.value]
        if self.code is not None:
            parts.append(f"code {self.code}")
        if self.detail:
            parts.append(repr(self.detail))
        return ", ".join(parts)


ServerErrorEvent: TypeAlias = ErrorEvent | ClientErrorEvent | FlatErrorEvent


def classify_ending(
    code: int | None,
    detail: str = "",
    *,
    error: ServerErrorEvent | None = None,
    end_call: bool = False,
    hung_up: bool = False,
    queue_timed_out: bool = False,
    before_metadata: bool = False,
    cut_turn: int | None = None,
) -> Ending:
    """Map a close (code, reason text), with what preceded it, to an ``Ending``.

    The most specific evidence wins: our own hang-up, then a ``queue_status`` of ``timed_out``,
    then the error event's ``error_type``, then words in the close reason or error message,
    then the close code."""
    reason = _classify(code, detail, error, end_call, hung_up)
    if queue_timed_out and reason is not EndReason.CLIENT_HANGUP:
        reason = EndReason.QUEUE_TIMED_OUT
    if before_metadata and reason in (EndReason.SERVER_CLOSED, EndReason.CONNECTION_LOST):
        reason = EndReason.CLOSED_BEFORE_METADATA
    return Ending(reason, code, detail, before_metadata, cut_turn)


def _classify(
    code: int | None,
    detail: str,
    error: ServerErrorEvent | None,
    end_call: bool,
    hung_up: bool,
) -> EndReason:
    if hung_up and code in (None, 1000):
        return EndReason.CLIENT_HANGUP
    error_type = error.error_type if isinstance(error, ErrorEvent) else None
    if error_type is not None and error_type in _ERROR_TYPE_REASONS:
        return _ERROR_TYPE_REASONS[error_type]
    words = " ".join(filter(None, [detail, _error_text(error)])).lower()
    for fragment, reason in _TEXT_REASONS:
        if fragment in words:
            return reason
    if code == 1000 and end_call:
        return EndReason.AGENT_ENDED_CALL
    if code is None:
        return EndReason.CONNECTION_LOST
    return _CODE_REASONS.get(code, EndReason.PROTOCOL_ERROR)


def _error_text(error: ServerErrorEvent | None) -> str:
    if error is None:
        return ""
    if isinstance(error, ErrorEvent):
        return " ".join(filter(None, [error.message, error.reason]))
    if isinstance(error, ClientErrorEvent):
        return " ".join(filter(None, [error.error_name, error.message]))
    return error.message
