"""Keyboard push-to-talk for development: the terminal's keys act as the button.

Owns :class:`KeyboardPushToTalk`: with ``gpio.keyboard: true`` and a terminal on standard
input, each key that means something becomes one timed ``KeyPressed`` for the appliance's
gesture recognizer (``piagent.appliance.gestures``, run by ``AgentClient``), which decides
what it does: space or enter is ``Key.TALK`` (a turn opened, or the open one ended: a terminal
reports no key-up, so this toggles whatever ``gpio.button.mode`` says), ``m`` is ``Key.MUTE``
(mute toggled) and ``h`` is ``Key.HANG_UP``. Every other key, ``q`` included, is ignored: the
daemon stops on signals, not keys. Nothing about talking or muting is remembered here.

The terminal is put in cbreak mode (keys arrive one at a time, unechoed; Ctrl-C still sends
SIGINT) while the keyboard is open, and its previous mode is restored by ``close()``, which
the context manager and :meth:`KeyboardPushToTalk.run` call on every way out: a normal exit,
an exception, or the cancellation the service's SIGINT/SIGTERM handlers cause.

Threads: none. Keys are read with ``loop.add_reader`` on the event loop. Imports nothing from
piagent but ``appliance.gestures`` (the typed keys) and ``gpio`` (``ButtonSink``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import termios
import time
import tty
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final, Self

from piagent.appliance.gestures import Key, KeyPressed
from piagent.gpio import ButtonSink

logger = logging.getLogger(__name__)

# Each byte that means something, and what: space and enter (CR; NL when ICRNL maps it) talk.
KEYS: Final[Mapping[int, Key]] = {
    **dict.fromkeys(b" \r\n", Key.TALK),
    **dict.fromkeys(b"mM", Key.MUTE),
    **dict.fromkeys(b"hH", Key.HANG_UP),
}
_ESC: Final = 0x1B


class KeyboardPushToTalk:
    """Keys read from the terminal ``fd`` (standard input's, usually) go to ``sink`` as
    ``KeyPressed``, timed by ``clock`` (the runner's: ``AgentClient``'s is ``time.monotonic``).

    ``open()`` (or ``with``, or ``await run()``) starts reading; ``close()`` stops and
    restores the terminal. Input that is not a terminal is left alone: nothing is read.
    """

    def __init__(
        self,
        sink: ButtonSink,
        fd: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._fd = fd
        self._loop = loop
        self._saved: list[Any] | None = None  # the terminal's mode before cbreak
        self._reading = False

    @property
    def is_open(self) -> bool:
        """Whether keys are being read."""
        return self._reading

    def open(self) -> None:
        """Put the terminal in cbreak mode and start reading keys on the event loop."""
        if self._reading:
            return
        if not os.isatty(self._fd):
            logger.warning("gpio.keyboard: standard input is not a terminal; keys are ignored")
            return
        loop = self._loop if self._loop is not None else asyncio.get_running_loop()
        self._saved = termios.tcgetattr(self._fd)
        try:
            tty.setcbreak(self._fd, termios.TCSANOW)
            loop.add_reader(self._fd, self._on_readable)
        except BaseException:
            self._restore()
            raise
        self._loop, self._reading = loop, True
        logger.info("keyboard: space/enter talk (toggle), m mute, h hang up")

    def close(self) -> None:
        """Stop reading and give the terminal back its previous mode."""
        if self._reading and self._loop is not None:
            self._loop.remove_reader(self._fd)
        self._reading = False
        self._restore()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def run(self) -> None:
        """Read keys until cancelled; the terminal is restored however this ends."""
        with self:
            await asyncio.get_running_loop().create_future()  # until cancelled

    def _restore(self) -> None:
        if self._saved is not None:
            saved, self._saved = self._saved, None
            try:
                termios.tcsetattr(self._fd, termios.TCSADRAIN, saved)
            except termios.error as exc:  # the terminal is gone (hung up): nothing to restore
                logger.debug("keyboard: terminal not restored: %s", exc)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 64)
        except OSError as exc:  # EIO: the terminal hung up
            logger.debug("keyboard: read failed: %s", exc)
            data = b""
        if not data:
            logger.info("keyboard: the terminal went away; keys are ignored from now on")
            self.close()
            return
        for byte in data:
            if byte == _ESC:
                break  # an escape sequence (arrow or function key): ignore the rest of it
            self._on_key(byte)

    def _on_key(self, byte: int) -> None:
        key = KEYS.get(byte)
        if key is not None:
            self._sink(KeyPressed(self._clock(), key))
