"""The agent's keepalive on one connection: JSON ``ping`` events and the pongs that answer them.

Owns ``Keepalive``: a ``ping`` every ``ping_interval`` seconds whose ``ping_ms`` is the last
measured round trip (an explicit null before the first, as the service sends: protocol.md §4),
the pongs matched to their pings (§3.3), the round trips and misses kept in the record, and the
end of a conversation whose client left ``max_missed_pongs`` pings in a row unanswered (close
1002 "Ping timeout", §8). The conversation runs it as one of its tasks, once admitted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator

from piagent.protocol.messages import Ping, UnknownMessage, encode
from piagent.sim.agent import AgentDefinition
from piagent.sim.endings import EndConversation, Ending
from piagent.sim.record import ConversationRecord

__all__ = ["Keepalive"]

logger = logging.getLogger(__name__)

_REMEMBERED = 16  # unanswered pings kept for a late pong; older ones are forgotten


class Keepalive:
    """Pings out through ``send_text``, event ids from the conversation's ``ids``."""

    def __init__(
        self,
        agent: AgentDefinition,
        record: ConversationRecord,
        ids: Iterator[int],
        send_text: Callable[[str], Awaitable[None]],
    ) -> None:
        self._agent, self._record, self._ids, self._send_text = agent, record, ids, send_text
        self._pings: dict[int, float] = {}  # unanswered ping event id -> time sent
        self._missed_in_row = 0
        self._last_rtt_ms: int | None = None

    async def run(self) -> None:
        """Ping until cancelled; raises ``EndConversation`` after too many misses in a row."""
        interval = self._agent.ping_interval
        if interval is None or not self._agent.sends("ping"):
            return
        loop = asyncio.get_running_loop()
        previous: int | None = None
        while True:
            await asyncio.sleep(interval)
            if previous in self._pings:  # the last ping is still unanswered
                self._record.pongs_missed += 1
                self._missed_in_row += 1
                limit = self._agent.max_missed_pongs
                if limit is not None and self._missed_in_row >= limit:
                    raise EndConversation(Ending(1002, "Ping timeout"))
            event_id = next(self._ids)
            if self._last_rtt_ms is None:
                # The model omits an unset ping_ms; the service sends an explicit null (§4).
                ping_event = {"event_id": event_id, "ping_ms": None}
                frame = encode(UnknownMessage("ping", {"type": "ping", "ping_event": ping_event}))
            else:
                frame = encode(Ping(event_id, self._last_rtt_ms))
            self._pings[event_id] = loop.time()
            previous = event_id
            while len(self._pings) > _REMEMBERED:
                del self._pings[next(iter(self._pings))]
            self._record.pings_sent += 1
            await self._send_text(frame)

    def receive_pong(self, event_id: int, now: float) -> None:
        """A ``pong`` arrived at ``now`` (the loop's clock)."""
        self._record.pongs.append(event_id)
        sent = self._pings.pop(event_id, None)
        if sent is None:
            logger.info("pong for unknown or already answered ping %d", event_id)
            return
        self._last_rtt_ms = round((now - sent) * 1000)
        self._record.ping_rtts_ms.append(self._last_rtt_ms)
        self._missed_in_row = 0
