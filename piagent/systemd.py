"""systemd integration: sd_notify messages and the watchdog loop.

Owns what piagent tells its service manager over ``$NOTIFY_SOCKET`` (sd_notify(3)):
``READY=1`` once the daemon serves, a short human ``STATUS=`` line, ``RELOADING=1`` and
``STOPPING=1`` around reloads and shutdown, and ``WATCHDOG=1`` pings (:func:`watchdog_loop`),
sent only while the service says it is healthy, so that systemd restarts a daemon whose audio
thread has wedged (``WatchdogSec=`` in the unit).

Everything is a no-op without ``$NOTIFY_SOCKET`` (a run from a terminal, tests), and nothing
here ever raises because a message could not be sent: the first failure is logged at WARNING,
later ones at DEBUG. ``systemd.daemon.notify`` (libsystemd) sends when it is importable;
otherwise a plain ``AF_UNIX``/``SOCK_DGRAM`` datagram does, abstract-namespace sockets
(``@name``) included.

STATUS lines are the callers' words ("listening", "offline: retrying in 4 s") and must never
hold a secret; :meth:`Notifier.status` still folds newlines and caps the length, because a
newline would start a new sd_notify field.

Imports nothing from piagent; reads the environment when called, never at import.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Final

logger = logging.getLogger(__name__)

MAX_STATUS_CHARS: Final = 200


def _libsystemd_notify() -> Callable[[str], object] | None:
    """``systemd.daemon.notify`` when systemd-python is installed, else None."""
    # importlib, not an import statement: the repository's own systemd/ folder (unit files)
    # would otherwise pass for the package when type checking.
    try:
        daemon = importlib.import_module("systemd.daemon")
    except ImportError:
        return None
    notify: Callable[[str], object] = daemon.notify
    return notify


def clean_status(text: str) -> str:
    """``text`` fit for one ``STATUS=`` field: one line, at most 200 characters."""
    line = " ".join(text.split())
    if len(line) > MAX_STATUS_CHARS:
        line = line[: MAX_STATUS_CHARS - 3] + "..."
    return line


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as ``MONOTONIC_USEC=`` wants it."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET``; a no-op when it is not set.

    ``use_libsystemd=False`` sends with a plain datagram socket even when systemd-python is
    installed (the fallback path, also used when it is not).
    """

    def __init__(self, *, use_libsystemd: bool = True) -> None:
        self._libsystemd = _libsystemd_notify() if use_libsystemd else None
        self._warned = False

    @property
    def uses_libsystemd(self) -> bool:
        """True when messages go through libsystemd's sd_notify."""
        return self._libsystemd is not None

    @property
    def enabled(self) -> bool:
        """True when a service manager listens (``$NOTIFY_SOCKET`` is set)."""
        return bool(os.environ.get("NOTIFY_SOCKET"))

    def ready(self, status: str) -> None:
        """Startup (or a reload) is complete: ``READY=1`` with a STATUS line."""
        self.send(f"READY=1\nSTATUS={clean_status(status)}")

    def status(self, text: str) -> None:
        """A short, human, secret-free line for ``systemctl status``."""
        self.send(f"STATUS={clean_status(text)}")

    def reloading(self) -> None:
        """A reload has begun (``Type=notify-reload``); send :meth:`ready` when it is done.

        systemd 253 and later want ``MONOTONIC_USEC`` with ``RELOADING=1`` to match the reload
        to its request; older versions ignore the field."""
        self.send(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec()}")

    def stopping(self) -> None:
        """Shutdown has begun."""
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        """One keep-alive ping (``WATCHDOG=1``)."""
        self.send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half of ``$WATCHDOG_USEC``, or None without a watchdog.

        ``$WATCHDOG_PID``, when set, names the process the watchdog is meant for; any other
        process (a child that inherited the environment) gets None."""
        usec = os.environ.get("WATCHDOG_USEC")
        if not usec:
            return None
        pid = os.environ.get("WATCHDOG_PID")
        if pid and pid.strip() != str(os.getpid()):
            return None
        try:
            value = int(usec)
        except ValueError:
            logger.warning("ignoring WATCHDOG_USEC=%r: not a whole number of microseconds", usec)
            return None
        if value <= 0:
            return None
        return value / 2 / 1_000_000

    def send(self, message: str) -> bool:
        """Send one sd_notify message (newline-separated ``KEY=value`` fields).

        True when it was sent; False without ``$NOTIFY_SOCKET`` or when sending failed (the
        first failure is logged at WARNING, later ones at DEBUG). Never raises ``OSError``."""
        address = os.environ.get("NOTIFY_SOCKET")
        if not address:
            return False
        try:
            if self._libsystemd is not None:
                # sd_notify reads $NOTIFY_SOCKET itself; it raises FileNotFoundError when the
                # socket is missing and returns 0 (False) when the variable is unset.
                return bool(self._libsystemd(message))
            _send_datagram(address, message.encode())
        except OSError as exc:
            self._report_failure(address, exc)
            return False
        return True

    def _report_failure(self, address: str, exc: OSError) -> None:
        if self._warned:
            logger.debug("sd_notify to %s failed again: %s", address, exc)
            return
        self._warned = True
        logger.warning(
            "cannot notify systemd at NOTIFY_SOCKET=%s: %s (further failures logged at DEBUG)",
            address,
            exc,
        )


def _send_datagram(address: str, payload: bytes) -> None:
    """sd_notify without libsystemd: one datagram to a path or an abstract ``@name``."""
    target = "\0" + address[1:] if address.startswith("@") else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(payload, target)


async def watchdog_loop(
    notifier: Notifier,
    healthy: Callable[[], bool],
    *,
    interval: float | None = None,
) -> None:
    """Ping the watchdog every ``interval`` seconds while ``healthy()`` says so; run until
    cancelled (safe to cancel at any point).

    ``interval`` defaults to :meth:`Notifier.watchdog_interval`; without a watchdog the loop
    returns at once. While ``healthy()`` is False (or raises) no ping is sent, so systemd
    restarts the service once ``WatchdogSec`` runs out; that is logged at WARNING once per
    unhealthy spell, and the recovery at INFO. The loop itself being late also withholds
    pings: a blocked event loop gets restarted too.
    """
    if interval is None:
        interval = notifier.watchdog_interval()
        if interval is None:
            logger.debug("no systemd watchdog: WATCHDOG_USEC is not set for this process")
            return
    if interval <= 0:
        raise ValueError(f"watchdog interval must be positive, got {interval}")
    withholding = False
    while True:
        try:
            ok = healthy()
        except Exception:
            # The health check is the service's; a broken one must not pass for "healthy".
            if not withholding:
                logger.exception("watchdog health check failed")
            ok = False
        if ok:
            notifier.watchdog()
            if withholding:
                logger.info("service healthy again: watchdog pings resumed")
                withholding = False
        elif not withholding:
            logger.warning(
                "service unhealthy: withholding watchdog pings (systemd restarts the service "
                "when WatchdogSec runs out)"
            )
            withholding = True
        await asyncio.sleep(interval)
