"""What the microphone and the speaker share: open a PortAudio device by name, watch it,
reopen it with backoff when it fails, close it off the loop, report its health; and the
rescans that let a device plugged in later be found while the other one is open.

Owns :class:`PortAudioDevice` (the base of ``devices.Microphone`` and ``devices.Speaker``)
and re-exports the process-wide rescan coordinator (``audio.rescans``). The streams'
directions and data live in ``audio.devices``; PortAudio access, the instance count and the
card signature in ``audio.portaudio``.

Health. ``healthy`` is True while the stream is open and audio flows through its callbacks;
``problem`` says why not, in a few words (``not found: hw:CARD=Device,DEV=0``, ``lost: no
audio for 1 s; reopening``), and is None while healthy. ``when_health_changed`` (gpiozero's
style of name) is called with the new value each time ``healthy`` flips, on the thread that
runs the device (the event loop's: ``open``, ``close`` and ``run`` run there), never on a
PortAudio thread: the daemon's LEDs and status line follow it without polling.

Rescans. PortAudio enumerates devices only when its initialisation count goes from 0 to 1
(``portaudio.Instances``), and each open device holds one instance. So a USB microphone
plugged in after boot stays invisible for as long as the speaker is open. When a device that
is missing retries while others hold PortAudio, and the sound cards changed since PortAudio
last enumerated them (``Instances.cards_changed``: /proc/asound/cards and /dev/snd, cheap, so
an idle daemon with an absent device does not churn PortAudio), the coordinator asks the
holders to let go: each closes its stream and terminates PortAudio in its closing thread as
after a loss, then waits. Once no instance is alive, the missing device opens (a fresh
enumeration), and the holders reopen by name. A holder is only asked while it can spare a
moment (the speaker while its source is idle; the microphone always: a rescan costs one
short gap of captured audio, which ``Microphone.read`` fills with silence), and a rescan runs
at most every ``Rescans.interval`` seconds (5). A pause lasts a fraction of a second (two
closes and two opens); speech queued during it is drained as during a loss. ``healthy`` is
False while paused (``problem`` says so). Everything here runs on the event loop.

Imports nothing from piagent but the ``audio`` modules ``alsanames``, ``channels``, ``pabuffer``,
``portaudio`` and ``rescans``; no I/O at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Final

import pyaudio

from piagent.audio.alsanames import AlsaOverlay, alsa_pcm_to_wrap
from piagent.audio.channels import describe_channels
from piagent.audio.pabuffer import ask_capture_latency, capture_latency
from piagent.audio.portaudio import (
    PORTAUDIO_INSTANCES,
    PORTAUDIO_LOCK,
    DeviceError,
    enumerate_devices,
    negotiate_format,
    portaudio_access,
    probe_channels,
    resolve_device,
    supports,
)
from piagent.audio.rescans import RESCANS, Rescans

__all__ = ["RESCANS", "PortAudioDevice", "Rescans"]

# How often a watcher looks at a stream that rests on purpose (a parked speaker): it only
# needs to notice a rescan's request; the stream's own restart needs no watcher.
_RESTING_CHECK_S = 1.0

logger = logging.getLogger(__name__)

_FORMAT: Final = pyaudio.paInt16
_LOCK_TIMEOUT_S: Final = 0.25  # how long the loop waits for a closing thread to let go
# What a warning about a missing or failing device tells the user to do.
_ADVICE: Final = (
    "check that it is connected and not used by another program (`piagent devices` lists "
    "what PortAudio sees)"
)
_PAUSED: Final = "paused: PortAudio is listing the devices again"

# piagent's ALSA configuration for the devices of this process (see alsanames): devices
# define their PCM when constructed and install it before each PyAudio().
_OVERLAY = AlsaOverlay()


def _close_portaudio(stream: Any, pa: Any, clean: bool) -> None:
    """Stop, close and terminate; runs in a closing thread (PortAudio releases the GIL)."""
    with PORTAUDIO_LOCK:
        steps: list[tuple[str, Callable[[], object]]] = []
        if stream is not None:
            if clean:  # let queued output play (at most a period or two)
                steps.append(("stopping the stream", stream.stop_stream))
            steps.append(("closing the stream", stream.close))  # aborts, joins PortAudio's thread
        steps.append(
            ("terminating PortAudio", functools.partial(PORTAUDIO_INSTANCES.terminate, pa))
        )
        for what, step in steps:
            try:
                step()
            except OSError as exc:
                logger.debug("%s: %s", what, exc)


# ----------------------------------------------------------------------------------------------
# What both devices share: open by name, watch, reopen with backoff, close off the loop


class PortAudioDevice:
    """The supervision both devices share; subclasses add the stream's direction and data."""

    _kind: ClassVar[str]
    _is_input: ClassVar[bool]

    def __init__(
        self,
        device: str | int,
        rate: int | None,
        *,
        stall_timeout: float,
        backoff_initial: float,
        backoff_max: float,
        close_timeout: float,
    ) -> None:
        self.when_health_changed: Callable[[bool], None] | None = None
        self._wanted = device
        self._rate = rate  # configured, then pinned by the first open: reopens keep it
        self._channels: int | None = None  # negotiated at every open
        self._name = str(device)
        self._index: int | None = None
        # An ALSA PCM string PortAudio cannot list is opened through piagent's alias of it.
        self._pcm = alsa_pcm_to_wrap(device)
        if self._pcm is not None:
            _OVERLAY.define(self._pcm, is_input=self._is_input)
        self._stall_timeout = stall_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self.close_timeout = close_timeout
        self._pa: Any = None
        self._stream: Any = None
        self._generation = 0  # callbacks of older streams are ignored
        self._callbacks = 0  # of the current stream (written by one thread only)
        self._flagged_run = 0  # consecutive callbacks with PortAudio status flags
        self._xruns = 0  # callbacks with status flags, in total
        self._failure: str | None = None  # set by a callback that had to abort
        self._pause_requested = False  # a rescan asked this device to let go of PortAudio
        self._healthy = False
        self._problem: str | None = "not open yet"
        self._open_problem = "cannot open"  # what the open in progress was doing
        self._ever_opened = False
        self._ever_healthy = False
        self._outage_since: float | None = None  # loop time the device went missing
        self._outage_logged = False

    # -- public ---------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``microphone`` or ``speaker``."""
        return self._kind

    @property
    def name(self) -> str:
        """PortAudio's name of the device once opened; the configured name before."""
        return self._name

    @property
    def rate(self) -> int:
        """Sample rate in Hz: configured, or negotiated by the first open and kept after."""
        if self._rate is None:
            raise DeviceError(
                f"the {self._kind}'s rate is not known until it opens: call open() first, or "
                f"configure audio.{'input' if self._is_input else 'output'}.rate"
            )
        return self._rate

    @property
    def channels(self) -> int | None:
        """Channels of the device's stream (piagent mixes them to and from mono); None until
        the first open."""
        return self._channels

    @property
    def healthy(self) -> bool:
        """True while the stream is open and audio is flowing through its callbacks."""
        return self._healthy

    @property
    def problem(self) -> str | None:
        """Why the device is not healthy, in a few words for a status line (``not found:
        hw:CARD=Device,DEV=0``, ``lost: no audio for 1 s; reopening``); None while healthy.
        The log has the details."""
        return self._problem

    @property
    def xruns(self) -> int:
        """Callbacks that arrived with PortAudio status flags (overflow or underflow)."""
        return self._xruns

    @property
    def holds_portaudio(self) -> bool:
        """Whether this device has a PortAudio instance (an open stream)."""
        return self._pa is not None

    def may_pause(self) -> bool:
        """Whether the device can close for a moment now, so that PortAudio re-enumerates."""
        return True

    def pause_for_rescan(self) -> None:
        """Ask ``run()`` to close the stream and reopen it once the rescan is over."""
        self._pause_requested = True

    def open(self) -> None:
        """Find the device by name, negotiate channels and rate, start the stream (no-op if
        open).

        Runs on the event loop's thread (blocking it for the few ms PortAudio takes); raises
        DeviceError when the device is missing, refuses the rate or fails to open.
        """
        if self._stream is not None:
            return
        self._prepare()
        with portaudio_access(_LOCK_TIMEOUT_S):
            _OVERLAY.install()  # alsa-lib rereads it when PortAudio enumerates
            pa = PORTAUDIO_INSTANCES.create()
            try:
                self._open_problem = "not found"
                info = resolve_device(enumerate_devices(pa), self._wanted, is_input=self._is_input)
                self._open_problem = "format refused"
                name = self._pcm if self._pcm is not None else info.name
                channels, rate = negotiate_format(
                    self._rate,
                    info.default_rate,
                    probe_channels(info, is_input=self._is_input),
                    functools.partial(supports, pa, info.index, is_input=self._is_input),
                    device=name,
                )
                self._open_problem = "cannot open"
                period = self._period_frames(rate)
                self._generation += 1
                self._callbacks = self._flagged_run = 0
                self._failure = None
                self._pause_requested = False
                self._start(rate, channels)
                if self._is_input:  # room for late callbacks; no added latency
                    ask_capture_latency(pa, info.index, capture_latency(period, rate))
                direction = "input" if self._is_input else "output"
                stream = pa.open(
                    rate=rate,
                    channels=channels,
                    format=_FORMAT,
                    frames_per_buffer=period,
                    stream_callback=functools.partial(self._callback, self._generation),
                    **{direction: True, f"{direction}_device_index": info.index},
                )
            except (OSError, ValueError) as exc:
                PORTAUDIO_INSTANCES.terminate(pa)
                raise DeviceError(f"cannot open {self._kind} {self._wanted!r}: {exc}") from exc
            except BaseException:
                PORTAUDIO_INSTANCES.terminate(pa)
                raise
        self._pa, self._stream = pa, stream
        self._rate, self._channels = rate, channels
        self._name, self._index = name, info.index
        self._problem = "opened: waiting for audio"
        if self._outage_since is None and not self._ever_opened:
            logger.info("%s open: %s", self._kind.capitalize(), self._describe())
        else:
            logger.debug("%s reopened: %s; waiting for audio", self._kind, self._describe())
        self._ever_opened = True

    def close(self) -> None:
        """Stop and close the stream and terminate PortAudio (waits up to ``close_timeout``)."""
        stream, pa, clean = self._detach("closed")
        if pa is None:
            return
        closer = threading.Thread(
            target=_close_portaudio,
            args=(stream, pa, clean),
            name=f"piagent-{self._kind}-close",
            daemon=True,
        )
        closer.start()
        closer.join(self.close_timeout)
        if closer.is_alive():
            logger.warning(
                "%s %r did not close within %g s; abandoning it",
                self._kind,
                self._name,
                self.close_timeout,
            )

    async def run(self) -> None:
        """Own the device: open it, watch it, and reopen it by name whenever it fails.

        Never returns and never raises for a device failure: each loss is logged once at
        WARNING with its reason, reopen attempts follow with backoff (``backoff_initial``
        doubling to ``backoff_max``) and the return is logged at INFO. While it is missing,
        each retry may arrange a rescan (see the module docstring). Cancelling it closes the
        stream and terminates PortAudio; it is safe to cancel at any await.
        """
        delay = self._backoff_initial
        RESCANS.register(self)
        try:
            while True:
                if self._stream is None:
                    await RESCANS.wait_finished()  # reopen only after another's fresh open
                    self._try_open()
                    if self._stream is None and await RESCANS.release_others(self):
                        try:
                            self._try_open()  # PortAudio enumerates anew for this one
                        finally:
                            RESCANS.finish()
                    if self._stream is None:
                        await asyncio.sleep(delay)
                        delay = min(2 * delay, self._backoff_max)
                        continue
                reason = await self._watch()
                if reason is None:  # paused for a rescan: reopen as soon as it is over
                    await self._close_in_thread(_PAUSED)
                    continue
                if self._healthy:
                    delay = self._backoff_initial  # a fresh outage starts the backoff again
                self._note_failure(reason, f"lost: {reason}; reopening")
                await self._close_in_thread(self._problem)
                await asyncio.sleep(delay)
                delay = min(2 * delay, self._backoff_max)
        finally:
            RESCANS.unregister(self)
            self.close()

    # -- for subclasses -------------------------------------------------------------------

    def _prepare(self) -> None:
        """Before opening, on the loop's thread."""

    def _start(self, rate: int, channels: int) -> None:
        """Just before the stream starts: reset per-stream state."""

    def _on_down(self) -> None:
        """The stream is gone or failing."""

    def _resting(self) -> bool:
        """Whether the open stream is stopped on purpose (a parked speaker): not a failure,
        and no callbacks are due."""
        return False

    def _period_frames(self, rate: int) -> int:
        raise NotImplementedError

    def _callback(
        self, generation: int, data: bytes | None, frames: int, time_info: object, status: int
    ) -> tuple[bytes | None, int]:
        raise NotImplementedError

    def _count_status(self, status: int) -> None:
        if status:
            self._xruns += 1
            self._flagged_run += 1
        else:
            self._flagged_run = 0

    # -- internals ------------------------------------------------------------------------

    def _set_health(self, healthy: bool, problem: str | None) -> None:
        """Record health and its problem; tell ``when_health_changed`` when it flips."""
        self._problem = None if healthy else problem
        if healthy == self._healthy:
            return
        self._healthy = healthy
        hook = self.when_health_changed
        if hook is None:
            return
        try:
            hook(healthy)
        except Exception:  # the listener's bug must not stop the device's supervision
            logger.exception("when_health_changed of the %s failed", self._kind)

    def _try_open(self) -> None:
        try:
            self.open()
        except DeviceError as exc:
            self._note_failure(str(exc), f"{self._open_problem}: {self._wanted}")
        except Exception as exc:  # a bug or a PortAudio surprise: keep going
            logger.exception("opening %s %r", self._kind, self._wanted)
            self._note_failure(f"unexpected error: {exc!r}", f"cannot open: {self._wanted}")

    def _detach(self, problem: str | None) -> tuple[Any, Any, bool]:
        """Forget the stream (its late callbacks are ignored) and hand it over for closing."""
        stream, pa, clean = self._stream, self._pa, self._failure is None and self._healthy
        self._stream = self._pa = None
        self._generation += 1
        self._set_health(False, problem)
        self._on_down()
        return stream, pa, clean

    def _check(self) -> str | None:
        """Why the open stream is failing, or None."""
        if self._stream is None:
            return "the stream was closed"
        if self._failure is not None:
            return self._failure
        try:
            active = self._stream.is_active()
        except OSError as exc:
            return f"PortAudio error: {exc}"
        if not active and not self._resting():
            return "the stream stopped"
        period_s = self._period_frames(self.rate) / self.rate
        if self._flagged_run * period_s > self._stall_timeout:
            return f"overruns or underruns on every period for {self._stall_timeout:g} s"
        return None

    async def _watch(self) -> str | None:
        """Watch the open stream until it fails; returns the reason, or None when a rescan
        asked it to pause. Confirms health first."""
        loop = asyncio.get_running_loop()
        seen, progress_at = 0, loop.time()  # callbacks count from 0 for each stream
        while True:
            resting = self._resting()
            await asyncio.sleep(_RESTING_CHECK_S if resting else min(0.1, self._stall_timeout / 4))
            if self._pause_requested:
                self._pause_requested = False
                return None
            reason = self._check()
            if reason is not None:
                return reason
            now = loop.time()
            if self._callbacks != seen:
                seen, progress_at = self._callbacks, now
                if not self._healthy:
                    self._confirm(now)
            elif resting or self._resting():  # no callbacks on purpose: nothing is late
                progress_at = now
            elif now - progress_at > self._stall_timeout:
                return f"no audio for {self._stall_timeout:g} s"

    def _describe(self) -> str:
        period_ms = 1000 * self._period_frames(self.rate) / self.rate
        where = f"index {self._index}" if self._pcm is None else f"as PortAudio's {self._alias}"
        channels = describe_channels(self._channels or 1)
        buffer = ""
        with contextlib.suppress(AttributeError, OSError):  # no stream, or PortAudio's error
            stream = self._stream
            latency = stream.get_input_latency() if self._is_input else stream.get_output_latency()
            buffer = f", buffer {1000 * latency + period_ms:.0f} ms"
        return (
            f"{self._name!r} ({where}), {self.rate} Hz, {channels}, period {period_ms:g} ms{buffer}"
        )

    @property
    def _alias(self) -> str:
        return "piagent_input" if self._is_input else "piagent_output"

    def _confirm(self, now: float) -> None:
        self._set_health(True, None)
        if self._outage_since is not None:
            how = "back" if self._ever_healthy else "open"
            away = now - self._outage_since
            logger.info(
                "%s %s after %.1f s: %s", self._kind.capitalize(), how, away, self._describe()
            )
        self._ever_healthy = True
        self._outage_since = None
        self._outage_logged = False

    def _note_failure(self, reason: str, problem: str) -> None:
        """Log a loss once (WARNING), later failed attempts at DEBUG."""
        if self._outage_since is None:
            self._outage_since = asyncio.get_running_loop().time()
        if self._healthy:
            logger.warning(
                "%s %r lost: %s; reopening %r until it returns: %s",
                self._kind.capitalize(),
                self._name,
                reason,
                self._wanted,
                _ADVICE,
            )
            self._outage_logged = True
        elif not self._outage_logged:
            logger.warning(
                "%s %r unavailable: %s; retrying until it opens",
                self._kind.capitalize(),
                self._wanted,
                reason,
            )
            self._outage_logged = True
        else:
            logger.debug(
                "%s %r still unavailable: %s", self._kind.capitalize(), self._wanted, reason
            )
        self._set_health(False, problem)
        self._generation += 1  # what the failing stream still delivers is dropped
        self._on_down()

    async def _close_in_thread(self, problem: str | None) -> None:
        """Close off the loop, waiting at most ``close_timeout`` (cancel-safe)."""
        stream, pa, clean = self._detach(problem)
        if pa is None:
            return
        loop = asyncio.get_running_loop()
        closed = loop.create_future()

        def finish() -> None:
            RESCANS.closed()
            if not closed.done():
                closed.set_result(None)

        def work() -> None:
            _close_portaudio(stream, pa, clean)
            with contextlib.suppress(RuntimeError):  # the loop may be closed by now
                loop.call_soon_threadsafe(finish)

        threading.Thread(target=work, name=f"piagent-{self._kind}-close", daemon=True).start()
        try:
            async with asyncio.timeout(self.close_timeout):
                await asyncio.shield(closed)
        except TimeoutError:
            logger.warning(
                "%s %r did not close within %g s; abandoning it",
                self._kind,
                self._name,
                self.close_timeout,
            )
