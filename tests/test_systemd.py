"""piagent.systemd against a real notify socket: an AF_UNIX datagram socket in a temp dir."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from piagent.systemd import MAX_STATUS_CHARS, Notifier, watchdog_loop

BACKENDS = ["libsystemd", "datagram"]


def make_notifier(backend: str) -> Notifier:
    return Notifier(use_libsystemd=backend == "libsystemd")


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A bound datagram socket named by $NOTIFY_SOCKET, as systemd provides it."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(1.0)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def drain(sock: socket.socket) -> list[str]:
    """Every datagram waiting on ``sock`` now."""
    got: list[str] = []
    sock.setblocking(False)
    try:
        while True:
            got.append(sock.recv(4096).decode())
    except BlockingIOError:
        return got
    finally:
        sock.settimeout(1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_message_arrives_exactly(notify_socket: socket.socket, backend: str) -> None:
    notifier = make_notifier(backend)
    assert notifier.enabled
    assert notifier.uses_libsystemd == (backend == "libsystemd")

    notifier.ready("listening")
    assert receive(notify_socket) == "READY=1\nSTATUS=listening"
    notifier.status("offline: retrying in 4 s")
    assert receive(notify_socket) == "STATUS=offline: retrying in 4 s"
    notifier.watchdog()
    assert receive(notify_socket) == "WATCHDOG=1"
    notifier.stopping()
    assert receive(notify_socket) == "STOPPING=1"

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = receive(notify_socket).split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after
    assert drain(notify_socket) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_status_is_one_short_line(notify_socket: socket.socket, backend: str) -> None:
    notifier = make_notifier(backend)
    notifier.status("offline:\nretrying\r\nsoon")
    assert receive(notify_socket) == "STATUS=offline: retrying soon"

    notifier.ready("x" * 1000)
    ready, status = receive(notify_socket).split("\n")
    assert ready == "READY=1"
    assert status.startswith("STATUS=xxx")
    assert status.endswith("...")
    assert len(status) == len("STATUS=") + MAX_STATUS_CHARS


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_op_without_notify_socket(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, backend: str
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = make_notifier(backend)
    assert not notifier.enabled
    with caplog.at_level(logging.DEBUG, logger="piagent.systemd"):
        notifier.ready("listening")
        notifier.status("x")
        notifier.reloading()
        notifier.watchdog()
        notifier.stopping()
        assert notifier.send("READY=1") is False
    assert caplog.records == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_socket_warns_once_and_never_raises(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    backend: str,
) -> None:
    gone = tmp_path / "gone.sock"
    monkeypatch.setenv("NOTIFY_SOCKET", str(gone))
    notifier = make_notifier(backend)
    with caplog.at_level(logging.DEBUG, logger="piagent.systemd"):
        notifier.ready("listening")
        notifier.watchdog()
        notifier.stopping()
        assert notifier.send("WATCHDOG=1") is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(gone) in warnings[0].getMessage()
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r not in warnings)


@pytest.mark.parametrize("backend", BACKENDS)
def test_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    name = f"piagent-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(1.0)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        make_notifier(backend).ready("ready")
        assert receive(sock) == "READY=1\nSTATUS=ready"


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("3000000", None, 1.5),
        ("3000000", "self", 1.5),
        ("3000000", "other", None),
        ("20000", None, 0.01),
        (None, None, None),
        ("", None, None),
        ("0", None, None),
        ("soon", None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    if usec is None:
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    else:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is None:
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
    else:
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + (pid == "other")))
    assert Notifier().watchdog_interval() == expected


def test_watchdog_loop_pings_only_while_healthy(
    notify_socket: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "40000")  # a ping every 20 ms
    health = [True]

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        task = asyncio.create_task(watchdog_loop(Notifier(), lambda: health[0]))
        await asyncio.sleep(0.2)
        healthy = drain(notify_socket)

        health[0] = False
        await asyncio.sleep(0.05)  # a ping already decided may still land
        drain(notify_socket)
        await asyncio.sleep(0.2)
        wedged = drain(notify_socket)

        health[0] = True
        await asyncio.sleep(0.2)
        recovered = drain(notify_socket)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return healthy, wedged, recovered

    with caplog.at_level(logging.INFO, logger="piagent.systemd"):
        healthy, wedged, recovered = asyncio.run(scenario())
    assert len(healthy) >= 3
    assert set(healthy) == {"WATCHDOG=1"}
    assert wedged == []
    assert len(recovered) >= 3
    assert set(recovered) == {"WATCHDOG=1"}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "withholding watchdog pings" in warnings[0].getMessage()
    assert any("resumed" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_watchdog_loop_treats_a_failing_check_as_unhealthy(
    notify_socket: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> bool:
        raise RuntimeError("audio thread gone")

    async def scenario() -> None:
        task = asyncio.create_task(watchdog_loop(Notifier(), broken, interval=0.01))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.WARNING, logger="piagent.systemd"):
        asyncio.run(scenario())
    assert drain(notify_socket) == []
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None


def test_watchdog_loop_returns_without_a_watchdog(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    asyncio.run(asyncio.wait_for(watchdog_loop(Notifier(), lambda: True), timeout=1.0))
    assert drain(notify_socket) == []


def test_watchdog_loop_rejects_a_bad_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        asyncio.run(watchdog_loop(Notifier(), lambda: True, interval=0.0))
