"""Client tools: what the agent may ask this device to do (protocol.md §3.4, §4 client_tool_call).

This package owns

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

from piagent.tools.builtin import BUILTIN_TOOLS
from piagent.tools.declarations import (
    BUILTIN_TIMEOUT,
    KILL_GRACE,
    MAX_RESULT_CHARS,
    CommandTool,
    LedRequest,
    PythonTool,
    ToolHost,
)
from piagent.tools.registry import ToolRegistry

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
