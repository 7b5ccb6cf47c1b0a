"""``ToolRegistry``: the tools this device offers the agent, by name, and the one place where
whatever happens in a call (a result, a failure, an exception, a timeout, a cancel) becomes the
``ClientToolResult`` sent back, logged without its parameters at INFO."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from piagent.protocol.messages import ClientToolCall, ClientToolResult
from piagent.tools.builtin import BUILTIN_TOOLS, BuiltinRunner
from piagent.tools.declarations import (
    MAX_RESULT_CHARS,
    CommandTool,
    Outcome,
    PythonTool,
    ToolHost,
    truncate,
)
from piagent.tools.runners import CommandRunner, PythonRunner

logger = logging.getLogger(__name__)

_Runner = Callable[[ClientToolCall], Awaitable[Outcome]]


class ToolRegistry:
    """The tools this device offers the agent, by name; ``run`` answers one call.

    ``builtins`` names built-ins to enable (see ``BUILTIN_TOOLS``; an unknown name raises
    ``ValueError``), whose hooks ``host`` provides. Tool names must be unique across all kinds.
    """

    def __init__(
        self,
        host: ToolHost,
        builtins: Iterable[str] = (),
        commands: Iterable[CommandTool] = (),
        python: Iterable[PythonTool] = (),
        *,
        max_result_chars: int = MAX_RESULT_CHARS,
    ) -> None:
        builtin_names = list(dict.fromkeys(builtins))
        if unknown := [name for name in builtin_names if name not in BUILTIN_TOOLS]:
            raise ValueError(
                f"unknown built-in tool(s): {', '.join(map(repr, unknown))}; "
                f"available: {', '.join(sorted(BUILTIN_TOOLS))}"
            )
        self._max_result_chars = max_result_chars
        self._runners: dict[str, _Runner] = {}
        for name in builtin_names:
            self._add(name, BuiltinRunner(name, host))
        for command in commands:
            self._add(command.name, CommandRunner(command, max_result_chars))
        for function in python:
            self._add(function.name, PythonRunner(function))

    def _add(self, name: str, runner: _Runner) -> None:
        if name in self._runners:
            raise ValueError(f"tool name {name!r} is declared twice")
        self._runners[name] = runner

    @property
    def names(self) -> tuple[str, ...]:
        """The names of every tool on offer, sorted."""
        return tuple(sorted(self._runners))

    async def run(self, call: ClientToolCall) -> ClientToolResult | None:
        """Run the tool ``call`` names and return its result, or ``None`` when the call does
        not expect a response (the tool still runs). Never raises for a tool's failure; safe to
        cancel (see the module docstring)."""
        name, call_id = call.tool_name, call.tool_call_id
        logger.debug("tool %r call %s parameters: %s", name, call_id, dict(call.parameters))
        started = time.monotonic()
        runner = self._runners.get(name)
        try:
            if runner is None:
                available = ", ".join(self.names) or "none"
                text = f"Unknown tool {name!r}; available tools: {available}"
                outcome = Outcome(text, True, "unknown tool")
            else:
                outcome = await runner(call)
        except asyncio.CancelledError:
            logger.info("tool %r call %s: cancelled after %.2f s", name, call_id, _since(started))
            raise
        except (Exception, SystemExit) as exc:
            # The one place where a tool's unexpected failure (its exception, a hook's, an
            # unserialisable return value) becomes an error result for the agent.
            logger.debug("tool %r call %s raised", name, call_id, exc_info=True)
            outcome = Outcome(f"{type(exc).__name__}: {exc}", True, type(exc).__name__)
        text = outcome.text
        if len(text) > self._max_result_chars:
            note = f"result truncated: {len(text)} characters in all"
            text = truncate(text, self._max_result_chars, note)
        verdict = f"error ({outcome.summary})" if outcome.is_error else "ok"
        logger.info("tool %r call %s: %s in %.2f s", name, call_id, verdict, _since(started))
        logger.debug("tool %r call %s result: %s", name, call_id, text)
        if not call.expects_response:
            return None
        return ClientToolResult(call_id, text, outcome.is_error)


def _since(started: float) -> float:
    return time.monotonic() - started
