"""The local control socket: ``ControlServer`` in the daemon, ``run_ctl`` for ``piagent ctl``.

Owns the control protocol, its commands and their arguments, and the ``piagent ctl`` output.
The protocol is one JSON object per line, both ways, over a UNIX stream socket:

    -> {"command": "say", "args": ["hello", "there"]}
    <- {"ok": true, "result": null}
    -> {"command": "sya", "args": []}
    <- {"ok": false, "error": "unknown command 'sya' (did you mean 'say'?)"}

A connection may carry any number of requests, one answer per line. The commands are those of
interface.md: ``press | release | say TEXT | context TEXT | hangup | mute | unmute |
feedback like|dislike | status [--json]`` (``say`` and ``context`` join their arguments with
spaces). ``status`` answers with the service's status object; ``--json`` only changes how
``piagent ctl`` prints it.

The server is bounded, and a bad client only ever gets an error answer: requests are at most
``max_line`` bytes (64 KiB), at most ``max_clients`` (16) connections are served at once, and a
connection that sends nothing for ``read_timeout`` seconds (5) is closed. The socket file gets
the configured mode before the server listens, so nobody outside it can connect in between.

The service implements ``ControlHandler``; its methods are called on the event loop's thread,
must not block, and may raise ``PiagentError`` (sent back as the error message).

Exit statuses of ``run_ctl`` (sysexits.h): 0 success, 1 the daemon refused the command, 64 a bad
command line, 69 no daemon listening, 76 a malformed answer, 77 permission denied.

Imports nothing from piagent but ``errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import logging
import socket
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TextIO

from piagent.errors import PiagentError

logger = logging.getLogger(__name__)

MAX_LINE: Final = 64 * 1024  # bytes in one request line
MAX_CLIENTS: Final = 16  # connections served at once
READ_TIMEOUT: Final = 5.0  # seconds a connection may stay silent
CTL_TIMEOUT: Final = 10.0  # seconds ``piagent ctl`` waits to connect and for the answer
MAX_ANSWER: Final = 16 * 1024 * 1024  # bytes ``piagent ctl`` reads at most

EX_OK: Final = 0
EX_ERROR: Final = 1  # the daemon answered with an error
EX_USAGE: Final = 64
EX_UNAVAILABLE: Final = 69
EX_PROTOCOL: Final = 76
EX_NOPERM: Final = 77

COMMANDS: Final = (
    "press",
    "release",
    "say",
    "context",
    "hangup",
    "mute",
    "unmute",
    "feedback",
    "status",
)
USAGE: Final = (
    "usage: piagent ctl [--socket PATH] press | release | say TEXT | context TEXT | hangup | "
    "mute | unmute | feedback like|dislike | status [--json]"
)
_NO_ARGUMENTS: Final = frozenset({"press", "release", "hangup", "mute", "unmute"})
_TEXT: Final = frozenset({"say", "context"})
_SCORES: Final = ("like", "dislike")

FeedbackScore = Literal["like", "dislike"]


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


class ControlSocketError(PiagentError):
    """The control socket cannot be served: in use by a live daemon, not a socket, no access."""


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
    if command not in COMMANDS:
        raise RequestError(f"unknown command {command!r}{_suggest(command, COMMANDS)}")
    if command in _NO_ARGUMENTS:
        if args:
            raise RequestError(f"{command} takes no arguments (got {' '.join(args)!r})")
        return Request(command)
    if command in _TEXT:
        text = " ".join(args).strip()
        if not text:
            raise RequestError(f"{command} needs some text: {command} TEXT")
        return Request(command, text=text)
    if command == "feedback":
        if len(args) != 1 or args[0] not in _SCORES:
            got = " ".join(args)
            hint = _suggest(got, _SCORES) if got else ""
            raise RequestError(f"feedback takes like or dislike (got {got!r}){hint}")
        score: FeedbackScore = "like" if args[0] == "like" else "dislike"
        return Request(command, score=score)
    # status: --json is piagent ctl's business; accepted (and ignored) from raw clients too.
    extra = [arg for arg in args if arg != "--json"]
    if extra:
        raise RequestError(f"status takes only --json (got {' '.join(extra)!r})")
    return Request(command)


def decode_request(line: bytes) -> Request:
    """One request line (``{"command": ..., "args": [...]}``) into a ``Request``."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep
        raise RequestError(f"bad request: not JSON ({_first_line(exc)})") from exc
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


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class ControlServer:
    """The control socket of a running daemon (module docstring).

    ``await serve()`` starts, serves until cancelled, then closes every connection and removes
    the socket file. To fail early (before ``READY=1``) when the socket is in use, start it
    first with ``async with server:`` (``start`` on entry, ``close`` on exit), which also cleans
    up should ``serve`` be cancelled before it ever ran. Safe to cancel at any await.
    """

    def __init__(
        self,
        path: Path,
        mode: int,
        handler: ControlHandler,
        *,
        read_timeout: float = READ_TIMEOUT,
        max_clients: int = MAX_CLIENTS,
        max_line: int = MAX_LINE,
    ) -> None:
        self._path = path
        self._mode = mode
        self._handler = handler
        self._read_timeout = read_timeout
        self._max_clients = max_clients
        self._max_line = max_line
        self._server: asyncio.Server | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of our socket file
        # Each connection's task (created by asyncio's stream machinery) and its writer.
        self._clients: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._closing = False
        self._refusing = False  # a refusal was logged since the last free slot

    @property
    def path(self) -> Path:
        return self._path

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def is_serving(self) -> bool:
        """True between a successful ``start`` and ``close``."""
        return self._server is not None

    async def start(self) -> None:
        """Create the socket file with the configured mode and listen on it."""
        if self._server is not None:
            return
        parent = self._path.parent
        if not parent.exists():
            parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            parent.chmod(0o755)  # whatever the umask: the socket's group must reach it
        await self._remove_stale_socket()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self._path))
            info = self._path.lstat()
            self._identity = (info.st_dev, info.st_ino)
            # The file exists from bind(); nobody can connect before listen(), so setting the
            # mode now leaves no window with the umask's wider permissions.
            self._path.chmod(self._mode)
            self._closing = False
            self._server = await asyncio.start_unix_server(
                self._on_connect, sock=sock, limit=self._max_line
            )
        except OSError as exc:
            sock.close()
            self._unlink_own_socket()
            raise ControlSocketError(f"cannot listen on {self._path}: {exc}") from exc
        logger.info("control socket listening on %s (mode %04o)", self._path, self._mode)

    async def serve(self) -> None:
        """Serve until cancelled; then close connections and remove the socket file."""
        await self.start()
        try:
            await asyncio.get_running_loop().create_future()  # until cancelled
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop listening, end every connection, remove the socket file. Idempotent; ``start``
        may follow."""
        self._closing = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        # Abort the connections rather than cancel their tasks: each task then ends on its own
        # at once (EOF, or a reset while writing), and Python 3.11's stream machinery reports a
        # cancelled connection task as an error.
        for writer in self._clients.values():
            writer.transport.abort()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        self._unlink_own_socket()

    async def _remove_stale_socket(self) -> None:
        """Remove a socket file left by a dead daemon; refuse a live one or any other file."""
        try:
            info = self._path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise ControlSocketError(
                f"{self._path} exists and is not a socket: remove it or set control.socket "
                "to another path"
            )
        if await _answers(self._path):
            raise ControlSocketError(
                f"another piagent is already running: its control socket {self._path} "
                "answers (stop it first, or set control.socket to another path)"
            )
        logger.info("removing stale control socket %s", self._path)
        self._path.unlink(missing_ok=True)

    def _unlink_own_socket(self) -> None:
        """Remove the socket file if it is still ours (not a newer daemon's)."""
        identity, self._identity = self._identity, None
        if identity is None:
            return
        with contextlib.suppress(FileNotFoundError):
            info = self._path.lstat()
            if (info.st_dev, info.st_ino) == identity:
                self._path.unlink()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection's supervisor: the one place its failures are caught."""
        task = asyncio.current_task()
        assert task is not None
        try:
            if self._closing:
                return
            if len(self._clients) >= self._max_clients:
                if not self._refusing:  # once per busy spell: a client in a loop is no flood
                    logger.warning(
                        "control socket: %d clients connected, refusing more", len(self._clients)
                    )
                    self._refusing = True
                await self._send(writer, _error(f"too many clients (max {self._max_clients})"))
                return
            self._clients[task] = writer
            await self._converse(reader, writer)
        except (ConnectionError, TimeoutError) as exc:
            logger.debug("control client gone: %r", exc)
        except Exception:
            logger.exception("control connection failed")
        finally:
            if self._clients.pop(task, None) is not None:
                self._refusing = False
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                async with asyncio.timeout(self._read_timeout):
                    line = await reader.readline()
            except TimeoutError:
                await self._send(writer, _error(f"no request within {self._read_timeout:g} s"))
                return
            except ValueError:  # readline's LimitOverrunError: the line is over the limit
                await self._send(writer, _error(f"request longer than {self._max_line} bytes"))
                return
            if not line:
                return
            await self._send(writer, self._answer(line))

    async def _send(self, writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
        try:
            data = json.dumps(answer, allow_nan=False)
        except (TypeError, ValueError):
            logger.exception("control answer is not JSON: %r", answer)
            data = json.dumps(_error("internal error: the answer is not JSON (see the log)"))
        writer.write(data.encode() + b"\n")
        # A client that does not read its answers is dropped like a silent one.
        async with asyncio.timeout(self._read_timeout):
            await writer.drain()

    def _answer(self, line: bytes) -> dict[str, Any]:
        if not line.strip():
            return _error('empty request: send {"command": ..., "args": [...]}')
        try:
            request = decode_request(line)
        except RequestError as exc:
            return _error(str(exc))
        if request.command == "status":
            logger.debug("control: status")  # polled: keep it out of the normal log
        else:
            logger.info("control: %s", request.command)
        try:
            return {"ok": True, "result": self._execute(request)}
        except PiagentError as exc:
            return _error(str(exc))
        except Exception:
            logger.exception("control command %s failed", request.command)
            return _error(f"internal error in {request.command} (see the daemon's log)")

    def _execute(self, request: Request) -> Any:
        handler = self._handler
        match request.command:
            case "press":
                handler.press()
            case "release":
                handler.release()
            case "say":
                handler.say(request.text)
            case "context":
                handler.context(request.text)
            case "hangup":
                handler.hangup()
            case "mute":
                handler.mute()
            case "unmute":
                handler.unmute()
            case "feedback":
                assert request.score is not None
                handler.feedback(request.score)
            case "status":
                return handler.status()
            case _:
                raise AssertionError(f"unhandled command {request.command}")
        return None


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


async def _answers(path: Path) -> bool:
    """True when something accepts connections on the UNIX socket ``path``."""
    try:
        async with asyncio.timeout(1.0):
            _, writer = await asyncio.open_unix_connection(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except TimeoutError:
        return True  # a full backlog: alive, only busy
    except OSError as exc:
        raise ControlSocketError(f"cannot check whether {path} is in use: {exc}") from exc
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return True


# The client: ``piagent ctl``


class _BadAnswer(Exception):
    """The daemon's answer is not an answer of this protocol."""


def run_ctl(
    socket_path: Path,
    argv: Sequence[str],
    *,
    stdout: TextIO,
    stderr: TextIO,
    timeout: float = CTL_TIMEOUT,
) -> int:
    """``piagent ctl COMMAND...``: send one request to the daemon at ``socket_path``, print
    the outcome, return the exit status (module docstring). ``argv`` is what follows
    ``ctl [--socket PATH]``."""
    try:
        command, args, as_json = _parse_argv(argv)
    except RequestError as exc:
        print(f"piagent ctl: {exc}", file=stderr)
        print(USAGE, file=stderr)
        return EX_USAGE
    request = json.dumps({"command": command, "args": args}).encode() + b"\n"
    try:
        answer = _exchange(socket_path, request, timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        print(
            f"piagent ctl: piagent is not running (nothing listens on {socket_path}); "
            "start it with: systemctl start piagent",
            file=stderr,
        )
        return EX_UNAVAILABLE
    except PermissionError:
        print(
            f"piagent ctl: permission denied on {socket_path}: run as root or as a member of "
            "the socket's group",
            file=stderr,
        )
        return EX_NOPERM
    except TimeoutError:
        print(f"piagent ctl: no answer from piagent on {socket_path} in {timeout:g} s", file=stderr)
        return EX_UNAVAILABLE
    except OSError as exc:
        print(f"piagent ctl: cannot talk to piagent on {socket_path}: {exc}", file=stderr)
        return EX_UNAVAILABLE
    except _BadAnswer as exc:
        print(f"piagent ctl: bad answer from {socket_path}: {exc}", file=stderr)
        return EX_PROTOCOL
    if not answer["ok"]:
        print(f"piagent ctl: {answer.get('error') or 'the daemon refused'}", file=stderr)
        return EX_ERROR
    result = answer.get("result")
    if command == "status":
        if not isinstance(result, dict):
            print(
                f"piagent ctl: bad answer from {socket_path}: status is not an object", file=stderr
            )
            return EX_PROTOCOL
        print(json.dumps(result) if as_json else format_status(result), file=stdout)
    elif result is not None:
        print(result if isinstance(result, str) else json.dumps(result), file=stdout)
    return EX_OK


def _parse_argv(argv: Sequence[str]) -> tuple[str, list[str], bool]:
    """(command, args to send, --json) from ``piagent ctl``'s words."""
    if not argv:
        raise RequestError("no command given")
    command, *args = argv
    as_json = command == "status" and "--json" in args
    parse_request(command, args)
    if command == "status":
        args = []
    return command, args, as_json


def _exchange(path: Path, request: bytes, timeout: float) -> dict[str, Any]:
    """Send one request line and read one answer line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            # A daemon that turns us away (too many clients) answers and hangs up without
            # reading: its answer is still there to read.
            sock.sendall(request)
        received = bytearray()
        while b"\n" not in received:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            if len(received) > MAX_ANSWER:
                raise _BadAnswer(f"longer than {MAX_ANSWER} bytes")
    line = bytes(received).partition(b"\n")[0]
    if not line:
        raise ConnectionResetError("the daemon closed the connection without answering")
    try:
        answer = json.loads(line)
    except ValueError as exc:
        raise _BadAnswer(f"not JSON ({_first_line(exc)})") from exc
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
        raise _BadAnswer('expected an object with "ok"')
    return answer


# ``piagent ctl status``, for people

_LABEL_WIDTH: Final = 14
_KNOWN: Final = ("state", "conversation_id", "latency_ms", "devices", "leds")


def format_status(status: Mapping[str, Any]) -> str:
    """The status object (interface.md) as aligned lines for a person; tolerant of missing or
    null fields, and showing any further fields as they are."""
    lines = [
        _line("state", _text(status.get("state"))),
        _line("conversation", _text(status.get("conversation_id"), none="none")),
        _line("latency", _latency(status.get("latency_ms"))),
    ]
    devices = status.get("devices")
    for role in ("input", "output"):
        device = devices.get(role) if isinstance(devices, Mapping) else None
        lines.append(_line(role, _device(device)))
    lines.append(_line("leds", _leds(status.get("leds"))))
    lines.extend(_line(key, _text(value)) for key, value in status.items() if key not in _KNOWN)
    return "\n".join(lines)


def _line(label: str, value: str) -> str:
    return f"{label + ':':<{_LABEL_WIDTH - 1}} {value}"


def _text(value: Any, *, none: str = "n/a") -> str:
    match value:
        case None:
            return none
        case bool():
            return "yes" if value else "no"
        case float():
            return f"{value:g}"
        case Mapping():
            return ", ".join(f"{k}={_text(v)}" for k, v in value.items()) or none
        case list() | tuple():
            return "(" + ", ".join(_text(v) for v in value) + ")"
        case _:
            return str(value)


def _milliseconds(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.0f} ms"
    return "n/a"


def _latency(latency: Any) -> str:
    if not isinstance(latency, Mapping) or not latency:
        return "no turn yet"
    parts = [
        f"reply {_milliseconds(latency.get('reply_ms'))}",
        f"ping {_milliseconds(latency.get('ping_ms'))}",
    ]
    parts.extend(f"{k} {_text(v)}" for k, v in latency.items() if k not in ("reply_ms", "ping_ms"))
    return ", ".join(parts)


def _device(device: Any) -> str:
    if not isinstance(device, Mapping):
        return "unknown"
    rate = device.get("rate")
    healthy = device.get("healthy")
    parts = [
        _text(device.get("name"), none="?"),
        f"{rate} Hz" if isinstance(rate, int | float) else "? Hz",
        "healthy" if healthy is True else "UNHEALTHY" if healthy is False else "health unknown",
    ]
    parts.extend(
        f"{k}={_text(v)}" for k, v in device.items() if k not in ("name", "rate", "healthy")
    )
    return ", ".join(parts)


def _leds(leds: Any) -> str:
    if not isinstance(leds, Mapping):
        return _text(leds, none="none")
    if not leds:
        return "none"
    return ", ".join(f"{name}={_led_value(value)}" for name, value in leds.items())


def _led_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return _text(value)
