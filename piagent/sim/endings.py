"""How a simulated conversation ends: the ``Ending`` a task raises and the standard endings.

Owns ``Ending`` (optional words to speak, events to send, then a close code and reason),
``EndConversation`` (the exception that carries one out of a task and tears the conversation's
TaskGroup down), the endings protocol.md names (§7: ``invalid_message`` 1008, §4.2/§8: max
duration 1000 and ``transport_receive_timeout`` 1002, ``end_call``; §4/§7.1: a queued wait
that timed out, or a refusal at the concurrency limit, 3008), and ``close_info``, which reads
back how a closed socket ended.

Pure apart from reading a closed connection's close frames.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection

from piagent.protocol.messages import AgentToolResponse, ErrorEvent, QueueStatus, ServerEvent

__all__ = [
    "TOO_MANY_CONVERSATIONS",
    "EndConversation",
    "Ending",
    "close_info",
    "conversations_refused",
    "end_call",
    "invalid_message",
    "max_duration_exceeded",
    "no_input",
    "queue_timed_out",
]


@dataclass(frozen=True, slots=True)
class Ending:
    """How a conversation ends: ``speak`` (if any), then ``events``, then the close.

    ``code`` None means the client is already gone: nothing is sent."""

    code: int | None
    reason: str = ""
    events: tuple[ServerEvent, ...] = ()
    speak: str = ""


class EndConversation(Exception):
    """Raised by a conversation task to end the conversation with ``ending``."""

    def __init__(self, ending: Ending) -> None:
        super().__init__(ending.reason)
        self.ending = ending


def invalid_message(detail: str) -> Ending:
    """Close 1008 on a malformed or forbidden client frame: the real server is strict."""
    reason = f"Invalid message: {detail}"
    if len(reason.encode()) > 123:  # the limit of a close reason
        reason = reason.encode()[:120].decode(errors="ignore") + "..."
    error = ErrorEvent(1008, detail, "invalid_message", "Invalid message received")
    return Ending(1008, reason, (error,))


def max_duration_exceeded(message: str) -> Ending:
    """The agent's max-duration message, ``max_duration_exceeded``, close 1000."""
    error = ErrorEvent(1000, "Maximum conversation duration exceeded", "max_duration_exceeded")
    return Ending(1000, "Maximum conversation duration exceeded", (error,), message)


def no_input(seconds: float) -> Ending:
    """``transport_receive_timeout``: no user input for ``seconds``, close 1002."""
    message = f"No user input received for {seconds:g} seconds"
    error = ErrorEvent(1002, message, "transport_receive_timeout")
    return Ending(1002, "No user input received", (error,))


def end_call(event_id: int) -> Ending:
    """The agent hung up: the ``end_call`` system tool's response, then close 1000."""
    call_id = f"end_call_{secrets.token_hex(6)}"
    event = AgentToolResponse("end_call", call_id, "system", False, True, event_id)
    return Ending(1000, "end_call", (event,))


# The close of a conversation the agent's concurrency limit keeps out (protocol.md §7.1).
TOO_MANY_CONVERSATIONS = "too many concurrent connections"


def queue_timed_out() -> Ending:
    """A queued wait ran out: ``queue_status`` ``timed_out``, then close 3008."""
    return Ending(3008, TOO_MANY_CONVERSATIONS, (QueueStatus("timed_out"),))


def conversations_refused() -> Ending:
    """The agent is at its limit and does not queue: close 3008 at once (an assumption: the
    platform's refusal without a queue is not documented)."""
    return Ending(3008, TOO_MANY_CONVERSATIONS)


def close_info(ws: ServerConnection) -> tuple[int, str]:
    """How a closed socket ended: the close frame of whichever side closed first, else 1006."""
    protocol = ws.protocol
    if protocol.close_sent is not None and not protocol.close_rcvd_then_sent:
        return protocol.close_sent.code, protocol.close_sent.reason
    if protocol.close_rcvd is not None:
        return protocol.close_rcvd.code, protocol.close_rcvd.reason
    return 1006, ""
