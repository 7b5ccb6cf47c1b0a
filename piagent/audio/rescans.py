"""The rescans that let a sound card plugged in later be found while another device holds
PortAudio (the Rescans paragraph of ``audio.supervisor``'s docstring says why and when).

Owns :class:`Rescans` and the process-wide coordinator ``RESCANS``; the devices it pauses are
``supervisor.PortAudioDevice``s, seen here through :class:`Holder`. On the event loop only.
Imports nothing from piagent but ``audio.portaudio``; no I/O at import.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Protocol

from piagent.audio.portaudio import PORTAUDIO_INSTANCES

__all__ = ["RESCANS", "Holder", "Rescans"]

logger = logging.getLogger(__name__)


class Holder(Protocol):
    """What a rescan needs of a device (``supervisor.PortAudioDevice`` is one)."""

    close_timeout: float

    @property
    def kind(self) -> str: ...

    @property
    def holds_portaudio(self) -> bool: ...

    def may_pause(self) -> bool: ...

    def pause_for_rescan(self) -> None: ...


class Rescans:
    """Arranges a fresh PortAudio enumeration for a missing device (see the module docstring).

    Devices register while their ``run()`` runs. On the event loop only.
    """

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval  # seconds between two rescans, at least
        self.count = 0  # rescans arranged so far
        self._devices: set[Holder] = set()
        self._last = -math.inf  # loop time of the last rescan
        # Made per rescan, on the loop that runs it (an Event binds to its first loop).
        self._finished: asyncio.Event | None = None  # set when the rescan in progress ends
        self._closed: asyncio.Event | None = None  # a device finished closing

    def register(self, device: Holder) -> None:
        self._devices.add(device)

    def unregister(self, device: Holder) -> None:
        self._devices.discard(device)

    async def wait_finished(self) -> None:
        """Return once no rescan is in progress (at once when none is)."""
        while self._finished is not None:
            await self._finished.wait()

    def closed(self) -> None:
        """A device's closing thread has terminated its PortAudio instance."""
        if self._closed is not None:
            self._closed.set()

    async def release_others(self, device: Holder) -> bool:
        """For ``device``, which just failed to open: if a fresh enumeration could find it
        and the devices holding PortAudio can spare it, have them release PortAudio and wait
        until none is alive. True when that happened: ``device`` must then try to open and
        call :meth:`finish` (the holders reopen after it). Cancel-safe."""
        if self._finished is not None or not PORTAUDIO_INSTANCES.cards_changed():
            return False
        loop = asyncio.get_running_loop()
        if loop.time() - self._last < self.interval:
            return False
        holders = [d for d in self._devices if d is not device and d.holds_portaudio]
        if len(holders) < PORTAUDIO_INSTANCES.live:
            logger.debug("sound cards changed, but PortAudio is held by other code: no rescan")
            return False
        busy = [d.kind for d in holders if not d.may_pause()]
        if busy:
            logger.debug("sound cards changed; the rescan waits: the %s is busy", busy[0])
            return False
        self._last = loop.time()
        self.count += 1
        logger.info(
            "Sound cards changed while the %s is missing: pausing the %s so that PortAudio "
            "lists the devices again",
            device.kind,
            " and the ".join(d.kind for d in holders),
        )
        self._finished = asyncio.Event()
        self._closed = asyncio.Event()
        try:
            for holder in holders:
                holder.pause_for_rescan()
            timeout = max([h.close_timeout for h in holders], default=0.0) + 1.0
            async with asyncio.timeout(timeout):
                while PORTAUDIO_INSTANCES.live > 0:
                    self._closed.clear()
                    await self._closed.wait()
            self._closed = None
        except TimeoutError:  # a stuck close was abandoned: open anyway, nothing is lost
            logger.debug("PortAudio still has %d instance(s) alive", PORTAUDIO_INSTANCES.live)
        except BaseException:
            self.finish()
            raise
        return True

    def finish(self) -> None:
        """The missing device has tried to open: the paused devices may reopen."""
        finished, self._finished = self._finished, None
        if finished is not None:
            finished.set()


RESCANS = Rescans()
