"""Keyboard push-to-talk for development: the terminal's keys act as the button.

Owns :class:`KeyboardPushToTalk`: with ``gpio.keyboard: true`` and a terminal on standard
input, space or enter toggles talking (``press()``, then ``release()``: a terminal reports no
key-up, so this toggles whatever ``gpio.button.mode`` says), ``m`` toggles mute and ``h``
hangs up. Every other key, ``q`` included, is ignored: the daemon stops on signals, not keys.

The terminal is put in cbreak mode (keys arrive one at a time, unechoed; Ctrl-C still sends
SIGINT) while the keyboard is open, and its previous mode is restored by ``close()``, which
the context manager and :meth:`KeyboardPushToTalk.run` call on every way out: a normal exit,
an exception, or the cancellation the service's SIGINT/SIGTERM handlers cause.

Threads: none. Keys are read with ``loop.add_reader`` on the event loop. Imports nothing from
piagent but ``gpio`` (for the ``Controls`` protocol).
"""

from __future__ import annotations

import asyncio
import logging
import os
import termios
import tty
from types import TracebackType
from typing import Any, Final, Self

from piagent.gpio import Controls

logger = logging.getLogger(__name__)

TALK_KEYS: Final = frozenset(b" \r\n")  # space and enter (CR; NL when ICRNL maps it)
MUTE_KEYS: Final = frozenset(b"mM")
HANG_UP_KEYS: Final = frozenset(b"hH")
_ESC: Final = 0x1B


class KeyboardPushToTalk:
    """Keys read from the terminal ``fd`` (standard input's, usually) drive ``controls``.

    ``open()`` (or ``with``, or ``await run()``) starts reading; ``close()`` stops and
    restores the terminal. Input that is not a terminal is left alone: nothing is read.
    """

    def __init__(
        self,
        controls: Controls,
        fd: int,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._controls = controls
        self._fd = fd
        self._loop = loop
        self._saved: list[Any] | None = None  # the terminal's mode before cbreak
        self._reading = False

    @property
    def is_talking(self) -> bool:
        """Whether a turn is open (the client knows; the keyboard keeps no copy)."""
        return self._controls.held

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

    def _on_key(self, key: int) -> None:
        if key in TALK_KEYS:
            talking = not self._controls.held
            logger.info("keyboard: %s", "talking" if talking else "turn ended")
            if talking:
                self._controls.press()
            else:
                self._controls.release()
        elif key in MUTE_KEYS:
            muted = not self._controls.muted
            logger.info("keyboard: %s", "muted" if muted else "unmuted")
            self._controls.set_muted(muted)
        elif key in HANG_UP_KEYS:
            logger.info("keyboard: hang up")
            self._controls.hang_up()
