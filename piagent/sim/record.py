"""What the simulator remembers of each conversation, for tests to inspect.

Owns ``ConversationRecord``: filled in by ``conversation`` as frames come and go (every frame
sent, every parsed client message but the audio chunks, the raw user audio, pongs, tool
results, feedback, context), and closed with the close code and reason once the socket is
closed. Tests read it after (or during) a conversation and wait on ``wait_closed``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from piagent.errors import RemoteProtocolError
from piagent.protocol.messages import (
    ClientMessage,
    ClientToolResult,
    ContextualUpdate,
    ConversationInitiationClientData,
    Feedback,
    McpToolApprovalResult,
    ServerEvent,
    UnknownMessage,
    parse_server,
)
from piagent.sim.overrides import SessionSettings

__all__ = ["ConversationRecord"]


@dataclass(eq=False)
class ConversationRecord:
    """One connection's history. Lists grow in order; ``close_code`` is None while open."""

    agent_id: str
    query: dict[str, str] = field(default_factory=dict)
    subprotocol: str | None = None
    conversation_id: str | None = None
    initiation: ConversationInitiationClientData | None = None
    settings: SessionSettings | None = None  # the agent's settings after overrides
    received: list[ClientMessage | UnknownMessage] = field(default_factory=list)
    user_audio: bytearray = field(default_factory=bytearray)  # in the input format
    audio_chunks: int = 0
    user_transcripts: list[str] = field(default_factory=list)
    agent_turns: dict[int, str] = field(default_factory=dict)  # event_id -> full text
    interruptions: list[int] = field(default_factory=list)  # interrupted turns' event ids
    pings_sent: int = 0
    pongs: list[int] = field(default_factory=list)  # event ids answered
    pongs_missed: int = 0
    ping_rtts_ms: list[int] = field(default_factory=list)
    tool_results: list[ClientToolResult] = field(default_factory=list)
    tool_timeouts: list[str] = field(default_factory=list)  # tool_call_ids never answered
    feedback: list[Feedback] = field(default_factory=list)  # only those naming an agent turn
    contextual_updates: list[ContextualUpdate] = field(default_factory=list)
    context: dict[str | None, str] = field(default_factory=dict)  # latest text per context_id
    user_activity: int = 0
    mcp_approvals: list[McpToolApprovalResult] = field(default_factory=list)
    queue_statuses: list[str] = field(default_factory=list)  # queue_status values sent
    discarded_while_queued: int = 0  # client frames dropped while waiting in the queue
    sent: list[str] = field(default_factory=list)  # every text frame sent, in order
    failure: str | None = None  # why the simulator ended it, when it was not the plan
    close_code: int | None = None
    close_reason: str | None = None
    _closed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def mark_closed(self, code: int, reason: str) -> None:
        """Called once by the simulator when the socket is closed."""
        self.close_code, self.close_reason = code, reason
        self._closed.set()

    async def wait_closed(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (test API)
        """Wait until the connection is closed (``TimeoutError`` after ``timeout`` s)."""
        async with asyncio.timeout(timeout):
            await self._closed.wait()

    def sent_events(self) -> list[ServerEvent]:
        """The frames sent so far, parsed; frames that are not valid events are skipped."""
        events: list[ServerEvent] = []
        for frame in self.sent:
            try:
                events.append(parse_server(frame))
            except RemoteProtocolError:
                continue
        return events
