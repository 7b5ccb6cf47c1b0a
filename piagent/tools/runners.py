"""The runners for the tools the config names: ``PythonRunner`` (a function imported at first
use, run on the loop or in a worker thread) and ``CommandRunner`` (an allow-listed program, run
without a shell in its own process group, with a minimal environment, its parameters as JSON
on stdin, its stdout capped, and nothing of it left alive after a timeout or a cancel)."""

from __future__ import annotations

import asyncio
import codecs
import importlib
import inspect
import json
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from piagent.protocol.messages import ClientToolCall
from piagent.tools.declarations import (
    KILL_GRACE,
    CommandTool,
    Outcome,
    PythonTool,
    success_text,
    timed_out,
    truncate,
    within,
)

logger = logging.getLogger(__name__)

STDERR_TAIL_BYTES = 4096
STDERR_TAIL_LINES = 5
CHUNK = 64 * 1024


class _LoadError(Exception):
    """A Python tool's target cannot be imported or is not callable."""


class PythonRunner:
    def __init__(self, tool: PythonTool) -> None:
        self._tool = tool
        self._function: Callable[[dict[str, Any]], object] | None = None

    async def __call__(self, call: ClientToolCall) -> Outcome:
        return await within(self._tool.name, self._tool.timeout, lambda: self._call(call))

    async def _call(self, call: ClientToolCall) -> Outcome:
        try:
            function = self._function or await self._load()
        except _LoadError as exc:
            text = f"Cannot load Python tool {self._tool.name!r} from {self._tool.target!r}: {exc}"
            return Outcome(text, True, "cannot load target")
        params = dict(call.parameters)  # a copy the function may change freely
        is_async = inspect.iscoroutinefunction(function)  # a bool: mypy over-narrows the TypeIs
        if is_async:
            value = function(params)
        else:
            value = await asyncio.to_thread(function, params)
        if inspect.isawaitable(value):
            value = await value
        if value is None:
            return Outcome(success_text(self._tool.name))
        if isinstance(value, str):
            return Outcome(value)
        return Outcome(json.dumps(value, default=str, ensure_ascii=False))

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
        while chunk := await stream.read(CHUNK):
            self.total += len(chunk)
            if (room := self.limit - len(self.data)) > 0:
                self.data += chunk[:room]

    def text(self) -> str:
        if self.total <= self.limit:
            return self.data.decode("utf-8", "replace").strip()
        # The cut may split a UTF-8 sequence: a non-final incremental decode holds it back.
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        text = decoder.decode(bytes(self.data), final=False).strip()
        return truncate(text, self.limit, f"output truncated: {self.total} bytes in all")


class _Tail:
    """The last ``limit`` bytes of a stream."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    async def collect(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(CHUNK):
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
    while await stream.read(CHUNK):
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


class CommandRunner:
    def __init__(self, tool: CommandTool, limit: int) -> None:
        self._tool = tool
        self._limit = limit

    async def __call__(self, call: ClientToolCall) -> Outcome:
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
            return Outcome(f"Tool {tool.name!r}: program {program} not found", True, "not found")
        except PermissionError:
            text = f"Tool {tool.name!r}: program {program} is not executable"
            return Outcome(text, True, "not executable")
        except OSError as exc:
            text = f"Tool {tool.name!r}: cannot start {program}: {exc.strerror or exc}"
            return Outcome(text, True, "cannot start")
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        stdout, stderr = _Head(self._limit), _Tail(STDERR_TAIL_BYTES)
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
            return timed_out(tool.name, tool.timeout, " and was stopped")
        finally:
            # Timeout, cancellation or failure: nothing of the program may outlive the call.
            if not finished:
                await _kill(proc)
            if stderr.data:
                logger.debug("tool %r stderr:\n%s", tool.name, "\n".join(stderr.lines()))
        if status != 0:
            text = f"Tool {tool.name!r} failed with {_describe_status(status)}"
            if tail := stderr.lines()[-STDERR_TAIL_LINES:]:
                text += ":\n" + "\n".join(tail)
            return Outcome(text, True, _describe_status(status))
        return Outcome(stdout.text() or success_text(tool.name))
