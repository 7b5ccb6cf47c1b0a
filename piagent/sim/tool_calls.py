"""The client tool calls a simulated agent makes, and the results that answer them.

Owns ``ToolCalls``: a ``client_tool_call`` sent with a fresh ``tool_call_id``, the wait for its
``client_tool_result`` when the call expects one (up to the step's timeout or the agent's
``response_timeout_secs``, protocol.md §3.4, §8), results matched to the calls still pending,
and what the record keeps of both (results, and the calls never answered).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from piagent.protocol.messages import ClientToolCall, ClientToolResult, ServerEvent
from piagent.sim.record import ConversationRecord

__all__ = ["ToolCalls"]

logger = logging.getLogger(__name__)


class ToolCalls:
    """Calls go out through ``emit``; ``receive_result`` answers the pending ones."""

    def __init__(
        self, record: ConversationRecord, emit: Callable[[ServerEvent], Awaitable[None]]
    ) -> None:
        self._record, self._emit = record, emit
        self._pending: dict[str, asyncio.Future[ClientToolResult]] = {}

    async def call(
        self,
        name: str,
        parameters: Mapping[str, Any],
        event_id: int,
        *,
        expects_response: bool,
        timeout: float,  # noqa: ASYNC109 (the tool's own response timeout, protocol data)
    ) -> bool:
        """Call tool ``name``; False when a result was expected and none came in ``timeout``."""
        call_id = f"toolu_{secrets.token_hex(8)}"
        call = ClientToolCall(name, call_id, dict(parameters), event_id, expects_response)
        if not expects_response:
            await self._emit(call)
            return True
        waiter: asyncio.Future[ClientToolResult] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = waiter
        try:
            await self._emit(call)
            async with asyncio.timeout(timeout):
                result = await waiter
        except TimeoutError:
            self._record.tool_timeouts.append(call_id)
            logger.warning("tool %s (%s) did not answer in time", name, call_id)
            return False
        finally:
            del self._pending[call_id]
        logger.info("tool %s answered: %r", name, result.result)
        return True

    def receive_result(self, message: ClientToolResult) -> None:
        """A ``client_tool_result`` arrived: it answers its call if that is still pending."""
        self._record.tool_results.append(message)
        waiter = self._pending.get(message.tool_call_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(message)
        else:
            logger.warning("client_tool_result for unknown tool_call_id %r", message.tool_call_id)
