"""The control commands, declared once: ``piagent ctl``'s words, the control socket's parser
and dispatcher, and the help all follow from ``COMMANDS``.

Owns ``Command`` (a name, what it takes: nothing, text, a score or ``--json``, and a line of
help), ``COMMANDS`` (interface.md's list), ``ControlHandler`` (what the daemon implements: one
method per command, of the same name), ``Request`` and its parsing (``parse_request``,
``decode_request``), ``dispatch`` and the usage and help texts.

Imports nothing from piagent but ``errors``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from piagent.errors import PiagentError

FeedbackScore = Literal["like", "dislike"]
Takes = Literal["nothing", "text", "score", "json"]
_SCORES: Final = ("like", "dislike")
_ARGUMENTS: Final[dict[Takes, str]] = {
    "nothing": "",
    "text": " TEXT",
    "score": " like|dislike",
    "json": " [--json]",
}


@dataclass(frozen=True, slots=True)
class Command:
    """One control command."""

    name: str
    takes: Takes
    help: str

    @property
    def usage(self) -> str:
        """The command as written on ``piagent ctl``'s line."""
        return self.name + _ARGUMENTS[self.takes]


COMMANDS: Final = (
    Command("press", "nothing", "the push-to-talk button, as if pressed"),
    Command("release", "nothing", "the push-to-talk button, as if released"),
    Command("say", "text", "a typed user message (interrupts the agent)"),
    Command("context", "text", "a contextual update for the agent"),
    Command("hangup", "nothing", "end the conversation"),
    Command("mute", "nothing", "send silence instead of the microphone"),
    Command("unmute", "nothing", "send the microphone again"),
    Command("feedback", "score", "rate the agent's last answer"),
    Command("status", "json", "state, conversation id, latencies, device health"),
)
BY_NAME: Final = {command.name: command for command in COMMANDS}
NAMES: Final = tuple(BY_NAME)
SYNOPSIS: Final = " | ".join(command.usage for command in COMMANDS)
USAGE: Final = f"usage: piagent ctl [--socket PATH] {SYNOPSIS}"


def help_text() -> str:
    """One line per command, for ``piagent ctl --help``."""
    width = max(len(command.usage) for command in COMMANDS)
    return "\n".join(f"  {command.usage:<{width}}  {command.help}" for command in COMMANDS)


class ControlHandler(Protocol):
    """What the control socket drives: the service implements it.

    Called on the event loop's thread; no method may block. Each may raise ``PiagentError``
    ("no conversation is open"), whose message becomes the error answer."""

    def press(self) -> None:
        """The push-to-talk button, as if pressed."""

    def release(self) -> None:
        """The push-to-talk button, as if released."""

    def say(self, text: str) -> None:
        """A typed user message (interrupts the agent); ``text`` is not empty."""

    def context(self, text: str) -> None:
        """A contextual update; ``text`` is not empty."""

    def hangup(self) -> None:
        """End the conversation."""

    def mute(self) -> None:
        """Stop sending the microphone."""

    def unmute(self) -> None:
        """Send the microphone again."""

    def feedback(self, score: FeedbackScore) -> None:
        """Rate the agent's last answer."""

    def status(self) -> dict[str, Any]:
        """The status object (interface.md): ``state``, ``conversation_id``, ``latency_ms``,
        ``devices``, ``leds``, ...; it must be JSON-serializable."""
        ...


class RequestError(PiagentError):
    """A control request that cannot be carried out as written: the message says why."""


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed command: ``text`` for say/context, ``score`` for feedback."""

    command: str
    text: str = ""
    score: FeedbackScore | None = None


def parse_request(command: str, args: Sequence[str]) -> Request:
    """Check a command and its arguments; raises ``RequestError`` saying what is wrong."""
    spec = BY_NAME.get(command)
    if spec is None:
        raise RequestError(f"unknown command {command!r}{_suggest(command, NAMES)}")
    if spec.takes == "nothing":
        if args:
            raise RequestError(f"{command} takes no arguments (got {' '.join(args)!r})")
        return Request(command)
    if spec.takes == "text":
        text = " ".join(args).strip()
        if not text:
            raise RequestError(f"{command} needs some text: {command} TEXT")
        return Request(command, text=text)
    if spec.takes == "score":
        if len(args) != 1 or args[0] not in _SCORES:
            got = " ".join(args)
            hint = _suggest(got, _SCORES) if got else ""
            raise RequestError(f"{command} takes like or dislike (got {got!r}){hint}")
        score: FeedbackScore = "like" if args[0] == "like" else "dislike"
        return Request(command, score=score)
    # status: --json is piagent ctl's business; accepted (and ignored) from raw clients too.
    extra = [arg for arg in args if arg != "--json"]
    if extra:
        raise RequestError(f"{command} takes only --json (got {' '.join(extra)!r})")
    return Request(command)


def decode_request(line: bytes) -> Request:
    """One request line (``{"command": ..., "args": [...]}``) into a ``Request``."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep
        raise RequestError(f"bad request: not JSON ({first_line(exc)})") from exc
    if not isinstance(data, dict):
        raise RequestError('bad request: expected an object like {"command": "status"}')
    command = data.get("command")
    if not isinstance(command, str):
        raise RequestError('bad request: "command" must be a string')
    args = data.get("args", [])
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        raise RequestError('bad request: "args" must be a list of strings')
    return parse_request(command, args)


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (one of: {', '.join(choices)})"


def first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def dispatch(handler: ControlHandler, request: Request) -> Any:
    """Call the handler's method of the command's name with what the command takes."""
    method = getattr(handler, request.command)
    match BY_NAME[request.command].takes:
        case "text":
            return method(request.text)
        case "score":
            return method(request.score)
        case _:
            return method()
