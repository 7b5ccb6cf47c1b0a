"""KeyboardPushToTalk through a real pseudo-terminal: keys typed on the master side reach the
keyboard on the slave side, as they would from a terminal on standard input."""

from __future__ import annotations

import asyncio
import os
import termios
from collections.abc import Iterator

import pytest

from piagent.keyboard import KeyboardPushToTalk
from tests.test_gpio import RecordingControls

LFLAG = 3  # index of the local-mode flags in termios.tcgetattr's list


@pytest.fixture
def pty() -> Iterator[tuple[int, int]]:
    """(master, slave) of a fresh pseudo-terminal, in its default (cooked) mode."""
    master, slave = os.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


async def type_keys(master: int, keys: bytes) -> None:
    os.write(master, keys)
    await asyncio.sleep(0.02)  # the loop reads them


def test_keys_drive_the_controls_and_the_terminal_is_restored(pty: tuple[int, int]) -> None:
    master, slave = pty
    before = termios.tcgetattr(slave)
    controls = RecordingControls()

    async def main() -> None:
        with KeyboardPushToTalk(controls, slave) as keyboard:
            lflag = termios.tcgetattr(slave)[LFLAG]
            assert keyboard.is_open and not lflag & (termios.ICANON | termios.ECHO)  # cbreak
            await type_keys(master, b" ")  # no enter needed: each key arrives at once
            assert controls.calls == ["press"] and keyboard.is_talking
            await type_keys(master, b" ")  # a terminal has no key-up: the next one ends it
            assert controls.calls == ["press", "release"] and not keyboard.is_talking
            await type_keys(master, b"\r")  # enter (the terminal turns CR into NL)
            await type_keys(master, b"\n")
            assert controls.calls[2:] == ["press", "release"]
            await type_keys(master, b"m")
            assert controls.muted and controls.calls[-1] == "mute"
            await type_keys(master, b"M")
            assert not controls.muted and controls.calls[-1] == "unmute"
            await type_keys(master, b"h")
            assert controls.calls[-1] == "hang_up" and not keyboard.is_talking
            calls = len(controls.calls)
            await type_keys(master, b"qxz1\x1b[A\x1bOm")  # q, others, arrow/function keys
            assert len(controls.calls) == calls  # ignored; the daemon keeps running
            await type_keys(master, b" ")  # after a hang-up, space talks again
            assert controls.calls[-1] == "press"
        assert not keyboard.is_open

    asyncio.run(main())
    assert termios.tcgetattr(slave) == before


def test_terminal_restored_after_an_exception(pty: tuple[int, int]) -> None:
    _, slave = pty
    before = termios.tcgetattr(slave)

    async def main() -> None:
        with KeyboardPushToTalk(RecordingControls(), slave):
            assert termios.tcgetattr(slave) != before
            raise KeyError("boom")

    with pytest.raises(KeyError):
        asyncio.run(main())
    assert termios.tcgetattr(slave) == before


def test_run_restores_the_terminal_when_cancelled(pty: tuple[int, int]) -> None:
    """What SIGINT/SIGTERM cause: the service cancels its tasks."""
    master, slave = pty
    before = termios.tcgetattr(slave)
    controls = RecordingControls()

    async def main() -> None:
        keyboard = KeyboardPushToTalk(controls, slave)
        task = asyncio.create_task(keyboard.run())
        await type_keys(master, b" ")
        assert controls.calls == ["press"] and termios.tcgetattr(slave) != before
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not keyboard.is_open
        await type_keys(master, b" ")  # no longer read
        assert controls.calls == ["press"]

    asyncio.run(main())
    assert termios.tcgetattr(slave) == before


def test_terminal_hang_up_stops_reading(pty: tuple[int, int]) -> None:
    master, slave = pty
    controls = RecordingControls()
    other_master, other_slave = os.openpty()
    os.close(other_slave)

    async def main() -> None:
        with KeyboardPushToTalk(controls, slave) as keyboard:
            await type_keys(master, b" ")
            os.dup2(other_master, master)  # the terminal's far side goes away ...
            os.close(other_master)
            await asyncio.sleep(0.02)  # ... the read fails (EIO) or meets EOF
            assert not keyboard.is_open

    asyncio.run(main())
    assert controls.calls == ["press"]


def test_input_that_is_not_a_terminal_is_left_alone() -> None:
    read_end, write_end = os.pipe()
    controls = RecordingControls()

    async def main() -> None:
        with KeyboardPushToTalk(controls, read_end) as keyboard:
            os.write(write_end, b" ")
            await asyncio.sleep(0.02)
            assert not keyboard.is_open

    try:
        asyncio.run(main())
    finally:
        os.close(read_end)
        os.close(write_end)
    assert controls.calls == []
