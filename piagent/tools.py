"""Client tools: what the agent may ask this device to do (protocol.md §3.4, §4 client_tool_call).

This module owns

* the tool declarations config is mapped onto: ``CommandTool`` (an allow-listed executable),
  ``PythonTool`` (a ``package.module:function`` target) and the built-ins, named in
  ``BUILTIN_TOOLS`` (``current_time``, ``set_volume``, ``hang_up``, ``set_led``);
* ``ToolHost``, the few hooks the daemon lends the built-ins (volume, hang-up, LEDs);
* ``ToolRegistry``, which runs one ``ClientToolCall`` and turns whatever happens into a
  ``ClientToolResult`` (or ``None`` when the call does not expect a response).

What it promises:

* the agent names a tool, never a program, a module or arguments: those are fixed in config;
* a command runs without a shell, with its parameters as JSON on stdin, in a new session (its
  own process group), with a minimal environment (PATH, LANG, HOME, ``PIAGENT_TOOL_NAME``,
  ``PIAGENT_TOOL_CALL_ID``): never the API key or anything else of the daemon's;
* every call is answered within its tool's timeout plus ``KILL_GRACE``; a failure of any kind
  becomes an ``is_error`` result, never an exception; results are capped at
  ``MAX_RESULT_CHARS`` with a note saying so.

Cancellation: ``ToolRegistry.run`` is safe to cancel. A running command's process group is
killed and its exit reaped before the ``CancelledError`` propagates. A synchronous Python tool
runs in a worker thread, which cannot be stopped: its result is discarded when it finishes.

Must not import config, service, transport, or anything that opens audio or GPIO devices.
"""

from __future__ import annotations

import asyncio
import codecs
import importlib
import inspect
import json
import logging
import math
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from piagent.protocol.messages import ClientToolCall, ClientToolResult

__all__ = [
    "BUILTIN_TIMEOUT",
    "BUILTIN_TOOLS",
    "KILL_GRACE",
    "MAX_RESULT_CHARS",
    "CommandTool",
    "LedRequest",
    "PythonTool",
    "ToolHost",
    "ToolRegistry",
]

logger = logging.getLogger(__name__)

MAX_RESULT_CHARS = 16 * 1024
"""Longest result sent to the agent, truncation note included (characters; a command's stdout
is read up to as many bytes)."""
KILL_GRACE = 2.0
"""Seconds allowed, after a command is killed, for its pipes to close and its exit to be reaped."""
BUILTIN_TIMEOUT = 5.0
"""Timeout of a built-in tool (seconds); they only call quick ``ToolHost`` hooks."""
_STDERR_TAIL_BYTES = 4096
_STDERR_TAIL_LINES = 5
_CHUNK = 64 * 1024
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


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


# --- outcomes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Outcome:
    text: str
    is_error: bool = False
    summary: str = "ok"
    """For the INFO log line: never contains parameter values."""


class _BadParameters(ValueError):
    """A built-in was called with parameters it cannot use; the message says what it expects."""


def _success_text(name: str) -> str:
    # The Python SDK's wording for a handler that returns nothing (protocol.md §3.4).
    return f"Client tool: {name} called successfully."


def _timed_out(name: str, timeout: float, detail: str = "") -> _Outcome:
    return _Outcome(
        f"Tool {name!r} timed out after {timeout:g} s{detail}.",
        True,
        f"timed out after {timeout:g} s",
    )


def _truncate(text: str, limit: int, note: str) -> str:
    """``text`` cut, with ``note`` appended, to at most ``limit`` characters in all."""
    note = f"\n[{note}]"
    return text[: max(limit - len(note), 0)].rstrip() + note


async def _within(name: str, seconds: float, work: Callable[[], Awaitable[_Outcome]]) -> _Outcome:
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            return await work()
    except TimeoutError:
        if not deadline.expired():
            raise  # the tool's own TimeoutError: a failure like any other
        return _timed_out(name, seconds)


# --- built-ins --------------------------------------------------------------------------------


async def _current_time(host: ToolHost, params: Mapping[str, Any]) -> str:
    zone_name = params.get("timezone")
    if zone_name is None or zone_name == "":
        now = datetime.now().astimezone()
    else:
        expected = "expected an IANA time zone name such as 'Europe/Berlin'"
        if not isinstance(zone_name, str):
            raise _BadParameters(f"'timezone': {expected}")
        try:
            # ZoneInfo reads the tz database from disk the first time: keep that off the loop.
            zone = await asyncio.to_thread(ZoneInfo, zone_name)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise _BadParameters(f"unknown time zone {zone_name!r}: {expected}") from exc
        now = datetime.now(zone)
    return json.dumps(
        {
            "iso": now.isoformat(timespec="seconds"),
            "weekday": _WEEKDAYS[now.weekday()],
            "timezone": now.tzname() or "",
        }
    )


def _percent(value: object, expected: str) -> float:
    """Read a volume in percent: an integer or a number beyond +-1 is percent, a fraction
    (a float from -1.0 to 1.0) is scaled, so ``50`` and ``0.5`` both mean half, ``1`` is one
    percent and ``1.0`` is full; ``"50%"`` and numeric strings are accepted."""
    number: int | float
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _BadParameters(expected)
    if isinstance(value, str):
        text = value.strip()
        try:
            if text.endswith("%"):
                return _finite(float(text[:-1]), expected)
            number = int(text) if text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise _BadParameters(expected) from None
    else:
        number = value
    number = _finite(number, expected)
    if isinstance(number, float) and abs(number) <= 1.0:
        return number * 100.0
    return float(number)


def _finite(number: float, expected: str) -> float:
    if not math.isfinite(number):
        raise _BadParameters(expected)
    return number


async def _set_volume(host: ToolHost, params: Mapping[str, Any]) -> str:
    level, change = params.get("level"), params.get("change")
    if (level is None) == (change is None):
        raise _BadParameters(
            "expected either 'level' (0-100, or 0.0-1.0) or 'change' (relative, e.g. -10)"
        )
    if level is not None:
        target = _percent(level, "'level': expected a number, 0-100 or 0.0-1.0")
    else:
        expected = "'change': expected a relative number, e.g. -10 (percent) or -0.1"
        target = host.get_volume() * 100.0 + _percent(change, expected)
    applied = host.set_volume(min(max(target, 0.0), 100.0) / 100.0)
    return json.dumps({"level": round(applied * 100.0)})


async def _hang_up(host: ToolHost, params: Mapping[str, Any]) -> str:
    host.request_hang_up()
    return "ok"


async def _set_led(host: ToolHost, params: Mapping[str, Any]) -> str:
    state, color, on = params.get("state"), params.get("color"), params.get("on")
    expected = "expected 'state' (text), 'color' (text) and/or 'on' (true or false)"
    if state is None and color is None and on is None:
        raise _BadParameters(expected)
    for value in (state, color):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise _BadParameters(expected)
    if on is not None and not isinstance(on, bool):
        raise _BadParameters(expected)
    host.set_led(LedRequest(state=state, color=color, on=on))
    return "ok"


_Builtin = Callable[[ToolHost, Mapping[str, Any]], Awaitable[str]]
_BUILTINS: dict[str, _Builtin] = {
    "current_time": _current_time,
    "set_volume": _set_volume,
    "hang_up": _hang_up,
    "set_led": _set_led,
}
BUILTIN_TOOLS: frozenset[str] = frozenset(_BUILTINS)
"""Names of the built-in tools a config may enable."""


class _BuiltinRunner:
    def __init__(self, name: str, host: ToolHost) -> None:
        self._name = name
        self._host = host

    async def __call__(self, call: ClientToolCall) -> _Outcome:
        async def work() -> _Outcome:
            try:
                return _Outcome(await _BUILTINS[self._name](self._host, call.parameters))
            except _BadParameters as exc:
                text = f"Invalid parameters for {self._name}: {exc}"
                return _Outcome(text, True, "invalid parameters")

        return await _within(self._name, BUILTIN_TIMEOUT, work)


# --- Python tools -----------------------------------------------------------------------------


class _LoadError(Exception):
    """A Python tool's target cannot be imported or is not callable."""


class _PythonRunner:
    def __init__(self, tool: PythonTool) -> None:
        self._tool = tool
        self._function: Callable[[dict[str, Any]], object] | None = None

    async def __call__(self, call: ClientToolCall) -> _Outcome:
        return await _within(self._tool.name, self._tool.timeout, lambda: self._call(call))

    async def _call(self, call: ClientToolCall) -> _Outcome:
        try:
            function = self._function or await self._load()
        except _LoadError as exc:
            text = f"Cannot load Python tool {self._tool.name!r} from {self._tool.target!r}: {exc}"
            return _Outcome(text, True, "cannot load target")
        params = dict(call.parameters)  # a copy the function may change freely
        is_async = inspect.iscoroutinefunction(function)  # a bool: mypy over-narrows the TypeIs
        if is_async:
            value = function(params)
        else:
            value = await asyncio.to_thread(function, params)
        if inspect.isawaitable(value):
            value = await value
        if value is None:
            return _Outcome(_success_text(self._tool.name))
        if isinstance(value, str):
            return _Outcome(value)
        return _Outcome(json.dumps(value, default=str, ensure_ascii=False))

    async def _load(self) -> Callable[[dict[str, Any]], object]:
        module_name, _, attribute = self._tool.target.partition(":")
        try:
            # Importing reads files and runs module code: a worker thread keeps the loop free.
            found: object = await asyncio.to_thread(importlib.import_module, module_name)
            for part in attribute.split("."):
                found = getattr(found, part)
        except Exception as exc:
            raise _LoadError(f"{type(exc).__name__}: {exc}") from exc
        if not callable(found):
            raise _LoadError(f"{attribute} is not callable")
        # A failed load is not remembered: the next call tries again (the module may be fixed).
        self._function = found
        return found


# --- command tools ----------------------------------------------------------------------------


def _child_env(call: ClientToolCall) -> dict[str, str]:
    # An allow-list, not a deny-list: nothing of the daemon's (ELEVENLABS_API_KEY above all).
    env = {key: os.environ[key] for key in ("PATH", "LANG", "HOME") if key in os.environ}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    env["PIAGENT_TOOL_NAME"] = call.tool_name
    env["PIAGENT_TOOL_CALL_ID"] = call.tool_call_id
    return env


class _Head:
    """The first ``limit`` bytes of a stream; the rest is counted and discarded."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.total = 0

    async def collect(self, stream: asyncio.StreamReader) -> None:
        # Keep reading past the limit: a program blocked on a full pipe would never exit.
        while chunk := await stream.read(_CHUNK):
            self.total += len(chunk)
            if (room := self.limit - len(self.data)) > 0:
                self.data += chunk[:room]

    def text(self) -> str:
        if self.total <= self.limit:
            return self.data.decode("utf-8", "replace").strip()
        # The cut may split a UTF-8 sequence: a non-final incremental decode holds it back.
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        text = decoder.decode(bytes(self.data), final=False).strip()
        return _truncate(text, self.limit, f"output truncated: {self.total} bytes in all")


class _Tail:
    """The last ``limit`` bytes of a stream."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    async def collect(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_CHUNK):
            self.data += chunk
            del self.data[: -self.limit]

    def lines(self) -> list[str]:
        text = self.data.decode("utf-8", "replace")
        return [line for line in text.splitlines() if line.strip()]


async def _feed(stdin: asyncio.StreamWriter, payload: bytes) -> None:
    try:
        stdin.write(payload)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the program need not read its parameters


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(_CHUNK):
        pass


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """Kill the process group and reap the leader, draining the pipes so they can close."""
    try:
        # The group id is the leader's pid (start_new_session); it is not reused while any
        # member lives, so this reaches the program's children too.
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone
    except PermissionError:
        logger.warning("cannot kill process group %d; killing the program only", proc.pid)
        if proc.returncode is None:
            proc.kill()
    assert proc.stdout is not None and proc.stderr is not None
    try:
        async with asyncio.timeout(KILL_GRACE):
            await _drain(proc.stdout)
            await _drain(proc.stderr)
            await proc.wait()
    except TimeoutError:
        logger.warning(
            "process %d was killed but its pipes stay open (a process left its group?)", proc.pid
        )


def _describe_status(status: int) -> str:
    if status >= 0:
        return f"exit status {status}"
    try:
        return f"signal {signal.Signals(-status).name}"
    except ValueError:
        return f"signal {-status}"


class _CommandRunner:
    def __init__(self, tool: CommandTool, limit: int) -> None:
        self._tool = tool
        self._limit = limit

    async def __call__(self, call: ClientToolCall) -> _Outcome:
        tool = self._tool
        program = tool.command[0]
        payload = (
            json.dumps(dict(call.parameters), ensure_ascii=False, default=str).encode() + b"\n"
        )
        try:
            proc = await asyncio.create_subprocess_exec(
                *tool.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=_child_env(call),
                start_new_session=True,  # its own process group, killed as one on timeout
            )
        except FileNotFoundError:
            return _Outcome(f"Tool {tool.name!r}: program {program} not found", True, "not found")
        except PermissionError:
            text = f"Tool {tool.name!r}: program {program} is not executable"
            return _Outcome(text, True, "not executable")
        except OSError as exc:
            text = f"Tool {tool.name!r}: cannot start {program}: {exc.strerror or exc}"
            return _Outcome(text, True, "cannot start")
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        stdout, stderr = _Head(self._limit), _Tail(_STDERR_TAIL_BYTES)
        deadline = asyncio.timeout(tool.timeout)
        finished = False
        try:
            async with deadline:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(_feed(proc.stdin, payload))
                    tasks.create_task(stdout.collect(proc.stdout))
                    tasks.create_task(stderr.collect(proc.stderr))
                status = await proc.wait()
            finished = True
        except TimeoutError:
            if not deadline.expired():
                raise
            return _timed_out(tool.name, tool.timeout, " and was stopped")
        finally:
            # Timeout, cancellation or failure: nothing of the program may outlive the call.
            if not finished:
                await _kill(proc)
            if stderr.data:
                logger.debug("tool %r stderr:\n%s", tool.name, "\n".join(stderr.lines()))
        if status != 0:
            text = f"Tool {tool.name!r} failed with {_describe_status(status)}"
            if tail := stderr.lines()[-_STDERR_TAIL_LINES:]:
                text += ":\n" + "\n".join(tail)
            return _Outcome(text, True, _describe_status(status))
        return _Outcome(stdout.text() or _success_text(tool.name))


# --- the registry -----------------------------------------------------------------------------


_Runner = Callable[[ClientToolCall], Awaitable[_Outcome]]


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
            self._add(name, _BuiltinRunner(name, host))
        for command in commands:
            self._add(command.name, _CommandRunner(command, max_result_chars))
        for function in python:
            self._add(function.name, _PythonRunner(function))

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
                outcome = _Outcome(text, True, "unknown tool")
            else:
                outcome = await runner(call)
        except asyncio.CancelledError:
            logger.info("tool %r call %s: cancelled after %.2f s", name, call_id, _since(started))
            raise
        except (Exception, SystemExit) as exc:
            # The one place where a tool's unexpected failure (its exception, a hook's, an
            # unserialisable return value) becomes an error result for the agent.
            logger.debug("tool %r call %s raised", name, call_id, exc_info=True)
            outcome = _Outcome(f"{type(exc).__name__}: {exc}", True, type(exc).__name__)
        text = outcome.text
        if len(text) > self._max_result_chars:
            note = f"result truncated: {len(text)} characters in all"
            text = _truncate(text, self._max_result_chars, note)
        verdict = f"error ({outcome.summary})" if outcome.is_error else "ok"
        logger.info("tool %r call %s: %s in %.2f s", name, call_id, verdict, _since(started))
        logger.debug("tool %r call %s result: %s", name, call_id, text)
        if not call.expects_response:
            return None
        return ClientToolResult(call_id, text, outcome.is_error)


def _since(started: float) -> float:
    return time.monotonic() - started
