"""piagent.control: a real ControlServer on a UNIX socket, driven by run_ctl and raw clients."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from piagent.control import (
    EX_ERROR,
    EX_OK,
    EX_PROTOCOL,
    EX_UNAVAILABLE,
    EX_USAGE,
    MAX_CLIENTS,
    ControlHandler,
    ControlServer,
    ControlSocketError,
    FeedbackScore,
    format_status,
    run_ctl,
)
from piagent.errors import PiagentError

STATUS: dict[str, Any] = {
    "state": "listening",
    "conversation_id": "conv_01jx",
    "latency_ms": {"reply_ms": 812.4, "ping_ms": 45},
    "devices": {
        "input": {"name": "default", "rate": 48000, "healthy": True},
        "output": {"name": "USB Audio", "rate": 44100, "healthy": False},
    },
    "leds": {"red": 0.0, "green": 1.0, "blue": 0.25},
    "turns": 3,
}


class RecordingHandler:
    """The service's side, as simple as it gets: it records what it was asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.conversation_open = True

    def press(self) -> None:
        self.calls.append(("press",))

    def release(self) -> None:
        self.calls.append(("release",))

    def say(self, text: str) -> None:
        self.calls.append(("say", text))

    def context(self, text: str) -> None:
        self.calls.append(("context", text))

    def hangup(self) -> None:
        if not self.conversation_open:
            raise PiagentError("no conversation is open")
        self.conversation_open = False
        self.calls.append(("hangup",))

    def mute(self) -> None:
        self.calls.append(("mute",))

    def unmute(self) -> None:
        if self.calls == [("boom",)]:
            raise RuntimeError("handler bug")
        self.calls.append(("unmute",))

    def feedback(self, score: FeedbackScore) -> None:
        self.calls.append(("feedback", score))

    def status(self) -> dict[str, Any]:
        return STATUS


def socket_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "piagent" / "control.sock"


@contextlib.asynccontextmanager
async def serving(server: ControlServer) -> AsyncIterator[ControlServer]:
    """As the service does it: start (failing early), then serve in a task."""
    async with server:
        task = asyncio.create_task(server.serve())
        try:
            yield server
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def with_server(
    tmp_path: Path,
    scenario: Callable[[ControlServer], Awaitable[None]],
    handler: ControlHandler | None = None,
    **options: Any,
) -> None:
    async def main() -> None:
        server = ControlServer(
            socket_path(tmp_path), 0o660, handler or RecordingHandler(), **options
        )
        async with serving(server):
            await scenario(server)

    asyncio.run(main())


async def ctl(path: Path, *argv: str, wait: float = 5.0) -> tuple[int, str, str]:
    """``piagent ctl ARGV`` in a thread, as a separate process would run it."""
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(run_ctl, path, argv, stdout=out, stderr=err, timeout=wait)
    return code, out.getvalue(), err.getvalue()


class RawClient:
    """A client speaking the line protocol by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, path: Path) -> RawClient:
        reader, writer = await asyncio.open_unix_connection(str(path))
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), 3.0)
        assert line.endswith(b"\n"), line
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def ask(self, command: str, *args: str) -> dict[str, Any]:
        await self.send(json.dumps({"command": command, "args": list(args)}).encode() + b"\n")
        return await self.receive()

    async def at_eof(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 3.0) == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


# Commands through piagent ctl


def test_every_command_reaches_the_handler(tmp_path: Path) -> None:
    handler = RecordingHandler()

    async def scenario(server: ControlServer) -> None:
        for argv in (
            ["press"],
            ["release"],
            ["say", "hello", "there"],
            ["context", "the user is in the kitchen"],
            ["hangup"],
            ["mute"],
            ["unmute"],
            ["feedback", "like"],
            ["feedback", "dislike"],
        ):
            assert await ctl(server.path, *argv) == (EX_OK, "", ""), argv

    with_server(tmp_path, scenario, handler)
    assert handler.calls == [
        ("press",),
        ("release",),
        ("say", "hello there"),
        ("context", "the user is in the kitchen"),
        ("hangup",),
        ("mute",),
        ("unmute",),
        ("feedback", "like"),
        ("feedback", "dislike"),
    ]


def test_status_for_people_and_as_json(tmp_path: Path) -> None:
    async def scenario(server: ControlServer) -> None:
        code, out, err = await ctl(server.path, "status")
        assert (code, err) == (EX_OK, "")
        assert out.splitlines() == [
            "state:        listening",
            "conversation: conv_01jx",
            "latency:      reply 812 ms, ping 45 ms",
            "input:        default, 48000 Hz, healthy",
            "output:       USB Audio, 44100 Hz, UNHEALTHY",
            "leds:         red=0, green=1, blue=0.25",
            "turns:        3",
        ]
        code, out, err = await ctl(server.path, "status", "--json")
        assert (code, err) == (EX_OK, "")
        assert len(out.splitlines()) == 1
        assert json.loads(out) == STATUS

    with_server(tmp_path, scenario)


def test_format_status_copes_with_a_sparse_status() -> None:
    text = format_status(
        {
            "state": "ready",
            "conversation_id": None,
            "latency_ms": None,
            "devices": {"input": {"name": "mic", "rate": 16000}},
            "leds": {"led": True, "rgb": [1.0, 0.0, 0.5]},
        }
    )
    assert text.splitlines() == [
        "state:        ready",
        "conversation: none",
        "latency:      no turn yet",
        "input:        mic, 16000 Hz, health unknown",
        "output:       unknown",
        "leds:         led=on, rgb=(1, 0, 0.5)",
    ]
    assert format_status({}).splitlines()[0] == "state:        n/a"


def test_handler_errors_are_answers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    handler = RecordingHandler()
    handler.conversation_open = False

    async def scenario(server: ControlServer) -> None:
        assert await ctl(server.path, "hangup") == (
            EX_ERROR,
            "",
            "piagent ctl: no conversation is open\n",
        )
        handler.calls.append(("boom",))
        code, out, err = await ctl(server.path, "unmute")
        assert (code, out) == (EX_ERROR, "")
        assert err == "piagent ctl: internal error in unmute (see the daemon's log)\n"
        assert (await ctl(server.path, "status", "--json"))[0] == EX_OK

    with caplog.at_level(logging.ERROR, logger="piagent.control"):
        with_server(tmp_path, scenario, handler)
    (record,) = caplog.records
    assert record.exc_info is not None
    assert "handler bug" in str(record.exc_info[1])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no command given"),
        (["sya", "hi"], "unknown command 'sya' (did you mean 'say'?)"),
        (["reboot"], "unknown command 'reboot' (one of: press, release, say,"),
        (["say"], "say needs some text: say TEXT"),
        (["context", " ", ""], "context needs some text"),
        (["feedback"], "feedback takes like or dislike (got '')"),
        (["feedback", "lik"], "feedback takes like or dislike (got 'lik') (did you mean 'like'?)"),
        (["feedback", "like", "it"], "feedback takes like or dislike"),
        (["press", "now"], "press takes no arguments (got 'now')"),
        (["status", "--yaml"], "status takes only --json (got '--yaml')"),
    ],
)
def test_bad_command_lines_exit_64(tmp_path: Path, argv: list[str], message: str) -> None:
    handler = RecordingHandler()

    async def scenario(server: ControlServer) -> None:
        code, out, err = await ctl(server.path, *argv)
        assert (code, out) == (EX_USAGE, "")
        first, usage = err.splitlines()
        assert first.startswith(f"piagent ctl: {message}")
        assert usage.startswith("usage: piagent ctl [--socket PATH] press | release | say TEXT")

    with_server(tmp_path, scenario, handler)
    assert handler.calls == []


def test_no_daemon_exits_69_and_names_the_socket(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.sock"
    code, out, err = asyncio.run(ctl(missing, "status"))
    assert (code, out) == (EX_UNAVAILABLE, "")
    assert "piagent is not running" in err
    assert str(missing) in err

    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(stale))  # bound, never listening: connections are refused
    code, out, err = asyncio.run(ctl(stale, "press"))
    assert code == EX_UNAVAILABLE
    assert str(stale) in err


async def answer_with(path: Path, data: bytes, scenario: Callable[[], Awaitable[None]]) -> None:
    """A stand-in daemon that answers every connection with ``data``."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(data)
        writer.close()

    server = await asyncio.start_unix_server(reply, path=str(path))
    async with server:
        await scenario()


def test_malformed_or_missing_answers(tmp_path: Path) -> None:
    path = tmp_path / "odd.sock"

    async def expect(code: int, text: str) -> None:
        got, out, err = await ctl(path, "status")
        assert (got, out) == (code, "")
        assert text in err
        assert str(path) in err

    async def garbage() -> None:
        await expect(EX_PROTOCOL, "bad answer")

    async def not_an_answer() -> None:
        await expect(EX_PROTOCOL, 'expected an object with "ok"')

    async def silence() -> None:
        await expect(EX_UNAVAILABLE, "closed the connection without answering")

    asyncio.run(answer_with(path, b"<html>\n", garbage))
    path.unlink()
    asyncio.run(answer_with(path, b"[1, 2]\n", not_an_answer))
    path.unlink()
    asyncio.run(answer_with(path, b"", silence))


def test_a_daemon_that_never_answers(tmp_path: Path) -> None:
    path = tmp_path / "mute.sock"

    async def listen_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    async def main() -> None:
        async with await asyncio.start_unix_server(listen_only, path=str(path)):
            code, out, err = await ctl(path, "press", wait=0.3)
        assert (code, out) == (EX_UNAVAILABLE, "")
        assert err == f"piagent ctl: no answer from piagent on {path} in 0.3 s\n"

    asyncio.run(main())


# The socket file


def test_socket_mode_and_parent_directory(tmp_path: Path) -> None:
    async def scenario(server: ControlServer) -> None:
        info = server.path.lstat()
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o660
        assert stat.S_IMODE(server.path.parent.stat().st_mode) == 0o755

    with_server(tmp_path, scenario)
    assert not socket_path(tmp_path).exists()  # removed on the way out
    assert socket_path(tmp_path).parent.is_dir()


def test_socket_mode_is_the_configured_one(tmp_path: Path) -> None:
    async def main() -> None:
        server = ControlServer(tmp_path / "c.sock", 0o600, RecordingHandler())
        async with serving(server):
            assert stat.S_IMODE(server.path.lstat().st_mode) == 0o600
            assert (await ctl(server.path, "press"))[0] == EX_OK

    asyncio.run(main())


def test_stale_socket_is_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = socket_path(tmp_path)
    path.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # a daemon that died without removing its socket
    assert (asyncio.run(ctl(path, "status")))[0] == EX_UNAVAILABLE

    async def scenario(server: ControlServer) -> None:
        assert (await ctl(server.path, "status", "--json"))[0] == EX_OK

    with caplog.at_level(logging.INFO, logger="piagent.control"):
        with_server(tmp_path, scenario)
    assert f"removing stale control socket {path}" in caplog.messages


def test_a_live_daemon_is_not_replaced(tmp_path: Path) -> None:
    async def scenario(server: ControlServer) -> None:
        inode = server.path.lstat().st_ino
        second = ControlServer(server.path, 0o660, RecordingHandler())
        with pytest.raises(ControlSocketError, match="another piagent is already running"):
            await second.start()
        await second.close()  # closing a server that never started is harmless
        assert server.path.lstat().st_ino == inode
        assert (await ctl(server.path, "status", "--json"))[0] == EX_OK

    with_server(tmp_path, scenario)


def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    path.write_text("someone's notes")

    async def main() -> None:
        server = ControlServer(path, 0o660, RecordingHandler())
        with pytest.raises(ControlSocketError, match="is not a socket"):
            await server.start()

    asyncio.run(main())
    assert path.read_text() == "someone's notes"


def test_a_path_that_cannot_be_bound(tmp_path: Path) -> None:
    path = tmp_path / ("x" * 120) / "control.sock"  # longer than sun_path allows

    async def main() -> None:
        with pytest.raises(ControlSocketError, match="cannot listen on"):
            await ControlServer(path, 0o660, RecordingHandler()).start()

    asyncio.run(main())


def test_closing_ends_connections_and_keeps_a_newer_socket(tmp_path: Path) -> None:
    async def main() -> None:
        server = ControlServer(socket_path(tmp_path), 0o660, RecordingHandler())
        async with serving(server):
            client = await RawClient.connect(server.path)
            assert (await client.ask("status"))["ok"]
        assert await client.at_eof()
        await client.close()
        assert not server.path.exists()

        # A socket file that is no longer ours (a newer daemon's) survives our close.
        await server.start()
        server.path.unlink()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as newer:
            newer.bind(str(server.path))
            await server.close()
            assert server.path.exists()

    asyncio.run(main())


# The raw protocol: bad clients get answers, and the server keeps serving


def test_protocol_errors_get_clear_answers(tmp_path: Path) -> None:
    handler = RecordingHandler()

    async def scenario(server: ControlServer) -> None:
        client = await RawClient.connect(server.path)
        bad: list[tuple[bytes, str]] = [
            (b"not json\n", "bad request: not JSON (Expecting value: line 1 column 1"),
            (b"\xff\xfe\xfa\n", "bad request: not JSON"),
            (b"[" * 50000 + b"\n", "bad request: not JSON"),
            (b'["status"]\n', 'bad request: expected an object like {"command": "status"}'),
            (b'{"args": []}\n', 'bad request: "command" must be a string'),
            (b'{"command": "say", "args": "hi"}\n', 'bad request: "args" must be a list'),
            (b'{"command": "say", "args": [1]}\n', 'bad request: "args" must be a list'),
            (
                b'{"command": "sya", "args": ["hi"]}\n',
                "unknown command 'sya' (did you mean 'say'?)",
            ),
            (b'{"command": "say"}\n', "say needs some text: say TEXT"),
            (b'{"command": "say", "args": ["", " "]}\n', "say needs some text"),
            (b'{"command": "feedback", "args": ["meh"]}\n', "feedback takes like or dislike"),
            (b"\n", "empty request"),
        ]
        for request, error in bad:
            await client.send(request)
            answer = await client.receive()
            assert answer["ok"] is False, request
            assert answer["error"].startswith(error), (request, answer)
        # The same connection still works, several requests in a row.
        assert await client.ask("status", "--json") == {"ok": True, "result": STATUS}
        assert await client.ask("say", "still", "here") == {"ok": True, "result": None}
        await client.close()

    with_server(tmp_path, scenario, handler)
    assert handler.calls == [("say", "still here")]


def test_the_exact_error_answer_for_an_unknown_command(tmp_path: Path) -> None:
    async def scenario(server: ControlServer) -> None:
        client = await RawClient.connect(server.path)
        assert await client.ask("sya", "hello") == {
            "ok": False,
            "error": "unknown command 'sya' (did you mean 'say'?)",
        }
        await client.close()

    with_server(tmp_path, scenario)


def test_a_request_without_a_final_newline_is_answered(tmp_path: Path) -> None:
    async def scenario(server: ControlServer) -> None:
        client = await RawClient.connect(server.path)
        await client.send(b'{"command": "press"}')
        client.writer.write_eof()
        assert await client.receive() == {"ok": True, "result": None}
        assert await client.at_eof()
        await client.close()

    with_server(tmp_path, scenario)


def test_too_long_a_line(tmp_path: Path) -> None:
    handler = RecordingHandler()
    long_text = "x" * 60_000

    async def scenario(server: ControlServer) -> None:
        client = await RawClient.connect(server.path)
        assert (await client.ask("say", long_text))["ok"]  # under 64 KiB: fine
        await client.send(b'{"command": "say", "args": ["' + b"y" * 70_000 + b'"]}\n')
        assert await client.receive() == {
            "ok": False,
            "error": "request longer than 65536 bytes",
        }
        assert await client.at_eof()
        await client.close()
        assert (await ctl(server.path, "press"))[0] == EX_OK

    with_server(tmp_path, scenario, handler)
    assert handler.calls == [("say", long_text), ("press",)]


def test_too_many_clients(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(server: ControlServer) -> None:
        clients = [await RawClient.connect(server.path) for _ in range(MAX_CLIENTS)]
        for client in clients:  # an answer each: every one of them is being served
            assert (await client.ask("status"))["ok"]
        extra = await RawClient.connect(server.path)
        assert await extra.receive() == {"ok": False, "error": "too many clients (max 16)"}
        assert await extra.at_eof()
        await extra.close()
        code, _, err = await ctl(server.path, "press")
        assert (code, err) == (EX_ERROR, "piagent ctl: too many clients (max 16)\n")

        await clients.pop().close()
        for _ in range(100):  # until the server has noticed the hang-up
            if (await ctl(server.path, "press"))[0] == EX_OK:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("a freed slot was never reused")
        for client in clients:
            assert (await client.ask("status"))["ok"]
            await client.close()

    with caplog.at_level(logging.WARNING, logger="piagent.control"):
        with_server(tmp_path, scenario, read_timeout=3.0)
    # Once per busy spell, not once per refused client.
    assert [m for m in caplog.messages if "refusing" in m] == [
        "control socket: 16 clients connected, refusing more"
    ]


def test_a_silent_client_is_timed_out(tmp_path: Path) -> None:
    async def scenario(server: ControlServer) -> None:
        silent = await RawClient.connect(server.path)
        assert (await ctl(server.path, "press"))[0] == EX_OK  # others are served meanwhile
        assert await silent.receive() == {"ok": False, "error": "no request within 0.2 s"}
        assert await silent.at_eof()
        await silent.close()

        idle = await RawClient.connect(server.path)
        assert (await idle.ask("status"))["ok"]  # the timeout is per request, not per client
        await asyncio.sleep(0.1)
        assert (await idle.ask("status"))["ok"]
        assert (await idle.receive())["error"] == "no request within 0.2 s"
        await idle.close()
        assert (await ctl(server.path, "status"))[0] == EX_OK

    with_server(tmp_path, scenario, read_timeout=0.2)


class BrokenStatus(RecordingHandler):
    def status(self) -> dict[str, Any]:
        return {"state": "ready", "when": object(), "nan": float("nan")}


def test_a_status_that_is_not_json(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(server: ControlServer) -> None:
        code, _, err = await ctl(server.path, "status", "--json")
        assert (code, err) == (
            EX_ERROR,
            "piagent ctl: internal error: the answer is not JSON (see the log)\n",
        )
        assert (await ctl(server.path, "press"))[0] == EX_OK

    with caplog.at_level(logging.ERROR, logger="piagent.control"):
        with_server(tmp_path, scenario, BrokenStatus())
    assert len(caplog.records) == 1


def test_serve_alone_starts_and_cleans_up(tmp_path: Path) -> None:
    async def main() -> None:
        server = ControlServer(socket_path(tmp_path), 0o660, RecordingHandler())
        task = asyncio.create_task(server.serve())
        for _ in range(100):
            if server.is_serving:
                break
            await asyncio.sleep(0.01)
        assert (await ctl(server.path, "press"))[0] == EX_OK
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving
        assert not server.path.exists()

    asyncio.run(main())


def test_cancelled_before_it_ever_ran(tmp_path: Path) -> None:
    async def main() -> None:
        server = ControlServer(socket_path(tmp_path), 0o660, RecordingHandler())
        async with server:
            task = asyncio.create_task(server.serve())
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert not server.path.exists()

    asyncio.run(main())
