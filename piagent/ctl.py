"""``piagent ctl``: one request to a running daemon's control socket, and its answer printed.

Owns ``run_ctl`` (the command line checked with ``commands.parse_request`` before anything is
sent, the exchange over the UNIX socket, exit statuses) and ``format_status`` (the status
object for people; ``--json`` prints it as it came).

Exit statuses of ``run_ctl`` (sysexits.h): 0 success, 1 the daemon refused the command, 64 a bad
command line, 69 no daemon listening, 76 a malformed answer, 77 permission denied.

Imports nothing from piagent but ``errors`` and ``commands``.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from piagent.commands import USAGE, RequestError, first_line, parse_request

CTL_TIMEOUT: Final = 10.0  # seconds ``piagent ctl`` waits to connect and for the answer
MAX_ANSWER: Final = 16 * 1024 * 1024  # bytes ``piagent ctl`` reads at most

EX_OK: Final = 0
EX_ERROR: Final = 1  # the daemon answered with an error
EX_USAGE: Final = 64
EX_UNAVAILABLE: Final = 69
EX_PROTOCOL: Final = 76
EX_NOPERM: Final = 77


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
        raise _BadAnswer(f"not JSON ({first_line(exc)})") from exc
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
