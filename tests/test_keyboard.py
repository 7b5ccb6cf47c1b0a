"""KeyboardPushToTalk through a real pseudo-terminal: keys typed on the master side reach the
keyboard on the slave side, as they would from a terminal on standard input.

The keyboard only turns keys into timed ``KeyPressed`` events: the tests check which events
arrive, and wait for them rather than for fixed times. What the keys do (the talk key toggles a
turn, mute toggles) is the appliance's, on a fake clock in tests/appliance/test_gestures.py;
one test goes end to end into a real ``AgentClient``.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import termios
from collections.abc import Iterator

import pytest

from piagent.appliance.gestures import Key, KeyPressed
from piagent.keyboard import KeyboardPushToTalk
from tests.test_gpio import Recorder, idle_client, ticks

LFLAG = 3  # index of the local-mode flags in termios.tcgetattr's list


@pytest.fixture
def pty() -> Iterator[tuple[int, int]]:
    """(master, slave) of a fresh pseudo-terminal, in its default (cooked) mode."""
    master, slave = os.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


async def keys_of(recorder: Recorder, count: int) -> list[Key]:
    """The keys of the next ``count`` events to arrive."""
    events = [await recorder.next() for _ in range(count)]
    return [event.key for event in events if isinstance(event, KeyPressed)]


def test_keys_become_timed_events_and_the_terminal_is_restored(pty: tuple[int, int]) -> None:
    master, slave = pty
    before = termios.tcgetattr(slave)

    async def main() -> None:
        recorder = Recorder()
        with KeyboardPushToTalk(recorder, slave, clock=ticks()) as keyboard:
            lflag = termios.tcgetattr(slave)[LFLAG]
            assert keyboard.is_open and not lflag & (termios.ICANON | termios.ECHO)  # cbreak
            os.write(master, b" ")  # no enter needed: each key arrives at once
            assert await recorder.next() == KeyPressed(100.0, Key.TALK)
            os.write(master, b" ")  # no key-up in a terminal: each press is a talk key
            assert await recorder.next() == KeyPressed(101.0, Key.TALK)
            os.write(master, b"\r")  # enter (the terminal turns CR into NL)
            os.write(master, b"\n")
            assert await keys_of(recorder, 2) == [Key.TALK, Key.TALK]
            os.write(master, b"mMhH")
            assert await keys_of(recorder, 4) == [Key.MUTE, Key.MUTE, Key.HANG_UP, Key.HANG_UP]
            os.write(master, b"qxz1h")  # q and others ignored: the daemon keeps running
            assert await keys_of(recorder, 1) == [Key.HANG_UP]
            os.write(master, b"\x1b[A\x1bOm")  # arrow and function keys (ESC O m: not mute)
            await asyncio.sleep(0.02)  # the loop reads them
            os.write(master, b" ")
            assert await keys_of(recorder, 1) == [Key.TALK]  # nothing came in between
        assert not keyboard.is_open
        assert len(recorder.events) == 10

    asyncio.run(main())
    assert termios.tcgetattr(slave) == before


def test_keys_drive_the_client(pty: tuple[int, int]) -> None:
    """End to end: the client's gestures decide what each key does."""
    master, slave = pty

    async def main() -> None:
        client = idle_client()
        recorder = Recorder(then=client.handle_button)
        with KeyboardPushToTalk(recorder, slave):
            os.write(master, b" ")
            await recorder.next()
            assert client.held  # a turn opened ...
            os.write(master, b" ")
            await recorder.next()
            assert not client.held  # ... and ended by the next talk key
            os.write(master, b"m")
            await recorder.next()
            assert client.muted
            os.write(master, b" h")
            await keys_of(recorder, 2)
            assert not client.held and client.muted  # hung up; mute is kept

    asyncio.run(main())


def test_terminal_restored_after_an_exception(pty: tuple[int, int]) -> None:
    _, slave = pty
    before = termios.tcgetattr(slave)

    async def main() -> None:
        with KeyboardPushToTalk(Recorder(), slave):
            assert termios.tcgetattr(slave) != before
            raise KeyError("boom")

    with pytest.raises(KeyError):
        asyncio.run(main())
    assert termios.tcgetattr(slave) == before


def unread(fd: int) -> int:
    """Bytes waiting to be read on the terminal ``fd`` (cbreak: every byte counts)."""
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), "little")


def test_run_restores_the_terminal_when_cancelled(pty: tuple[int, int]) -> None:
    """What SIGINT/SIGTERM cause: the service cancels its tasks."""
    master, slave = pty
    before = termios.tcgetattr(slave)

    async def main() -> None:
        recorder = Recorder()
        keyboard = KeyboardPushToTalk(recorder, slave)
        task = asyncio.create_task(keyboard.run())
        await asyncio.sleep(0)  # the task opens the keyboard
        os.write(master, b" ")
        assert await keys_of(recorder, 1) == [Key.TALK]
        assert termios.tcgetattr(slave) != before
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not keyboard.is_open
        readable = asyncio.Event()  # the loop says when the line can be read, reading nothing
        asyncio.get_running_loop().add_reader(slave, readable.set)
        os.write(master, b"x\n")  # a whole line: the terminal is cooked again
        async with asyncio.timeout(2):
            await readable.wait()
        asyncio.get_running_loop().remove_reader(slave)
        assert unread(slave) == 2 and len(recorder.events) == 1  # no longer read

    asyncio.run(main())
    assert termios.tcgetattr(slave) == before


def test_terminal_hang_up_stops_reading(pty: tuple[int, int]) -> None:
    master, slave = pty
    other_master, other_slave = os.openpty()
    os.close(other_slave)

    async def main() -> None:
        recorder = Recorder()
        with KeyboardPushToTalk(recorder, slave) as keyboard:
            os.write(master, b" ")
            assert await keys_of(recorder, 1) == [Key.TALK]
            os.dup2(other_master, master)  # the terminal's far side goes away ...
            os.close(other_master)
            async with asyncio.timeout(2):  # ... the read fails (EIO) or meets EOF
                while keyboard.is_open:  # noqa: ASYNC110 (nothing to wait on: the loop turns)
                    await asyncio.sleep(0)
        assert recorder.events == [recorder.events[0]]

    asyncio.run(main())


def test_input_that_is_not_a_terminal_is_left_alone() -> None:
    read_end, write_end = os.pipe()
    recorder_events: list[object] = []

    async def main() -> None:
        with KeyboardPushToTalk(recorder_events.append, read_end) as keyboard:
            assert not keyboard.is_open  # nothing will read the pipe
            os.write(write_end, b" ")
            await asyncio.sleep(0)
        assert os.read(read_end, 8) == b" "  # still there: nobody read it

    try:
        asyncio.run(main())
    finally:
        os.close(read_end)
        os.close(write_end)
    assert recorder_events == []
