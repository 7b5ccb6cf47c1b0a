"""The local control socket: ``ControlServer`` in the daemon, ``run_ctl`` for ``piagent ctl``.

Owns the server side of the control protocol (the commands themselves are declared once in
``commands``; ``piagent ctl`` is in ``ctl``). The protocol is one JSON object per line, both
ways, over a UNIX stream socket:

    -> {"command": "say", "args": ["hello", "there"]}
    <- {"ok": true, "result": null}
    -> {"command": "sya", "args": []}
    <- {"ok": false, "error": "unknown command 'sya' (did you mean 'say'?)"}

A connection may carry any number of requests, one answer per line (``say`` and ``context``
join their arguments with spaces). ``status`` answers with the service's status object;
``--json`` only changes how ``piagent ctl`` prints it.

The server is bounded, and a bad client only ever gets an error answer: requests are at most
``max_line`` bytes (64 KiB), at most ``max_clients`` (16) connections are served at once, and a
connection that sends nothing for ``read_timeout`` seconds (5) is closed. The socket file gets
the configured mode before the server listens, so nobody outside it can connect in between.

The service implements ``ControlHandler``; its methods are called on the event loop's thread,
must not block, and may raise ``PiagentError`` (sent back as the error message).

Imports nothing from piagent but ``errors``, ``commands`` and (re-exported for its callers)
``ctl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import stat
from pathlib import Path
from typing import Any, Final

from piagent.commands import (
    COMMANDS,
    USAGE,
    ControlHandler,
    FeedbackScore,
    Request,
    RequestError,
    decode_request,
    dispatch,
)
from piagent.ctl import (
    CTL_TIMEOUT,
    EX_ERROR,
    EX_NOPERM,
    EX_OK,
    EX_PROTOCOL,
    EX_UNAVAILABLE,
    EX_USAGE,
    format_status,
    run_ctl,
)
from piagent.errors import PiagentError

logger = logging.getLogger(__name__)

MAX_LINE: Final = 64 * 1024  # bytes in one request line
MAX_CLIENTS: Final = 16  # connections served at once
READ_TIMEOUT: Final = 5.0  # seconds a connection may stay silent


class ControlSocketError(PiagentError):
    """The control socket cannot be served: in use by a live daemon, not a socket, no access."""


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
        return dispatch(self._handler, request)


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


__all__ = [
    "COMMANDS",
    "CTL_TIMEOUT",
    "EX_ERROR",
    "EX_NOPERM",
    "EX_OK",
    "EX_PROTOCOL",
    "EX_UNAVAILABLE",
    "EX_USAGE",
    "MAX_CLIENTS",
    "USAGE",
    "ControlHandler",
    "ControlServer",
    "ControlSocketError",
    "FeedbackScore",
    "RequestError",
    "format_status",
    "run_ctl",
]
