"""What a client tool is and what one call comes to.

Owns the tool declarations config is mapped onto (``CommandTool``, ``PythonTool``), the hooks
the daemon lends the built-ins (``ToolHost``, ``LedRequest``), the limits every call keeps
(``MAX_RESULT_CHARS``, ``KILL_GRACE``, ``BUILTIN_TIMEOUT``), and ``Outcome``, what a runner
makes of a call before the registry turns it into a ``ClientToolResult``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

MAX_RESULT_CHARS = 16 * 1024
"""Longest result sent to the agent, truncation note included (characters; a command's stdout
is read up to as many bytes)."""
KILL_GRACE = 2.0
"""Seconds allowed, after a command is killed, for its pipes to close and its exit to be reaped."""
BUILTIN_TIMEOUT = 5.0
"""Timeout of a built-in tool (seconds); they only call quick ``ToolHost`` hooks."""


def _check_common(kind: str, name: str, timeout: float) -> None:
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"{kind} tool name {name!r}: expected a non-empty name without spaces")
    if not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"{kind} tool {name!r}: timeout {timeout!r}: expected seconds > 0")


@dataclass(frozen=True, slots=True)
class CommandTool:
    """An allow-listed executable the agent may run by ``name``.

    ``command`` is the program (an absolute path) and its fixed arguments; it is run without a
    shell, with the call's parameters as one line of JSON on stdin. Its stdout, stripped, is the
    result; a non-zero exit status is an error. ``timeout`` is in seconds; on expiry the process
    and its process group are killed. ``description`` is for people reading the config.
    """

    name: str
    command: tuple[str, ...]
    timeout: float = 10.0
    description: str = ""

    def __post_init__(self) -> None:
        _check_common("command", self.name, self.timeout)
        # Config may hand over a list; a tuple keeps the declaration immutable.
        object.__setattr__(self, "command", tuple(self.command))
        if not self.command or not all(isinstance(arg, str) for arg in self.command):
            raise ValueError(f"command tool {self.name!r}: expected a program and its arguments")
        if not Path(self.command[0]).is_absolute():
            program = self.command[0]
            raise ValueError(f"command tool {self.name!r}: {program!r}: expected an absolute path")


@dataclass(frozen=True, slots=True)
class PythonTool:
    """A Python callable the agent may run by ``name``.

    ``target`` is ``"package.module:function"`` (the function may be a dotted attribute path),
    imported at first use. The function gets one argument, the parameters as a dict; a plain
    function runs in a worker thread, a coroutine function on the event loop (it must not
    block). It returns a ``str`` (sent as is), ``None`` (the Python SDK's success sentence) or
    anything else (sent as JSON). ``timeout`` is in seconds.
    """

    name: str
    target: str
    timeout: float = 10.0

    def __post_init__(self) -> None:
        _check_common("python", self.name, self.timeout)
        module, sep, attribute = self.target.partition(":")
        parts = [*module.split("."), *attribute.split(".")]
        if not sep or not all(part.isidentifier() for part in parts):
            raise ValueError(
                f"python tool {self.name!r}: target {self.target!r}: "
                "expected 'package.module:function'"
            )


@dataclass(frozen=True, slots=True)
class LedRequest:
    """What ``set_led`` asks of the LEDs; at least one field is set, the meaning is the host's."""

    state: str | None = None
    """A named LED state, e.g. ``"listening"`` or ``"off"``."""
    color: str | None = None
    """A colour name or ``"#rrggbb"``."""
    on: bool | None = None
    """Light on or off."""


class ToolHost(Protocol):
    """The hooks the daemon lends the built-in tools.

    They are called on the event loop thread and must return quickly. A hook may raise
    ``ValueError`` for a request it cannot honour; the agent then gets the message as an error.
    """

    def get_volume(self) -> float:
        """The output volume, 0.0 (silent) to 1.0 (full)."""
        ...

    def set_volume(self, level: float) -> float:
        """Set the output volume (0.0 to 1.0) and return the level actually applied."""
        ...

    def request_hang_up(self) -> None:
        """End the conversation once the agent has finished what it is saying."""
        ...

    def set_led(self, request: LedRequest) -> None:
        """Show ``request`` on the status LEDs."""
        ...


# --- outcomes -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    text: str
    is_error: bool = False
    summary: str = "ok"
    """For the INFO log line: never contains parameter values."""


class BadParameters(ValueError):
    """A built-in was called with parameters it cannot use; the message says what it expects."""


def success_text(name: str) -> str:
    # The Python SDK's wording for a handler that returns nothing (protocol.md §3.4).
    return f"Client tool: {name} called successfully."


def timed_out(name: str, timeout: float, detail: str = "") -> Outcome:
    return Outcome(
        f"Tool {name!r} timed out after {timeout:g} s{detail}.",
        True,
        f"timed out after {timeout:g} s",
    )


def truncate(text: str, limit: int, note: str) -> str:
    """``text`` cut, with ``note`` appended, to at most ``limit`` characters in all."""
    note = f"\n[{note}]"
    return text[: max(limit - len(note), 0)].rstrip() + note


async def within(name: str, seconds: float, work: Callable[[], Awaitable[Outcome]]) -> Outcome:
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            return await work()
    except TimeoutError:
        if not deadline.expired():
            raise  # the tool's own TimeoutError: a failure like any other
        return timed_out(name, seconds)
