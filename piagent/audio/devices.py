"""PyAudio adapters: the microphone and the speaker, the only place PortAudio threads exist.

Owns the capture and playback streams (:class:`Microphone`, :class:`Speaker`): opening a
device by the name the config gives, with the channel count and rate it accepts; noticing
when a device is lost and reopening it by name; converting between the device's channels and
piagent's mono. Finding devices, probing formats and ``piagent devices`` live in
``audio.portaudio`` (re-exported here); ALSA names in ``audio.alsanames``.

Use, in the service's TaskGroup (``open()`` first is optional: it fails fast with a
DeviceError, and tells the rates when the config leaves them to negotiation)::

    mic, speaker = Microphone(config.audio.input), Speaker(config.audio.output)
    mic.open(); speaker.open()
    speaker.source = Playback(speaker.rate, period_s=speaker.period_s, ...)
    tasks.create_task(mic.run()); tasks.create_task(speaker.run())
    tasks.create_task(pump())  # async for frame in mic.frames(): client.feed(frame)

``run()`` owns a device for good: it never returns, survives any device failure, and closes
the device when cancelled; every await in it, and ``Microphone.read``, is safe to cancel.

Channels. piagent is mono inside. Each open tries 1 channel, then 2, then the device's
maximum (never fewer than alsa-lib says the device takes: PortAudio would pad a mono stream
itself and capture the left channel only), each checked with the rate; the microphone
averages the captured channels and the speaker copies its mono samples onto every channel
(``audio.channels``). ``channels`` says what the open stream uses.

ALSA names. ``hw:`` names open the card's raw device through PortAudio's own entry; any other
ALSA PCM string with arguments (``plughw:CARD=Device,DEV=0``, ``sysdefault:CARD=Device``)
is defined as ``piagent_input``/``piagent_output`` in piagent's own ALSA configuration file
(``alsanames.AlsaOverlay``), which the devices install before each ``PyAudio()``: construct
both devices before opening either, so that one enumeration sees both.

Threads. PortAudio runs one callback thread per open stream. A microphone's callback does one
thing: ``loop.call_soon_threadsafe`` to hand the captured bytes to the event loop, where they are
cut into frames. A speaker's callback must return samples at once, so it pulls them from its
``source`` (``SampleSource.read``, thread-safe and never blocking), upmixes them and only sets
counters the loop reads (while the device is down, the loop drains the source in its place).
Closing a stream runs in a short-lived daemon thread, because PortAudio's close joins the
callback thread and that thread can be stuck in a system call on a failing device:
the loop waits for it with a timeout and abandons it rather than hang. Everything else,
including opening (a few milliseconds; it briefly blocks the loop), runs on the event loop.
``portaudio.PORTAUDIO_LOCK`` serialises PortAudio's process-wide calls (initialise, open,
close, terminate) between the loop and those closing threads; nothing else takes a lock.

Each device has its own ``PyAudio`` instance, created anew for every (re)open so that PortAudio
enumerates the devices again; PortAudio counts initialisations, so it only re-enumerates when no
other instance is alive (a returning USB device keeps its name, usually its card number too).
A device missing while the other is open would therefore never be found: when the sound cards
change, the other device pauses for a moment so that PortAudio enumerates anew (the rescans of
``audio.supervisor``, which also owns the supervision both devices share: open by name, watch,
reopen with backoff, close off the loop, ``healthy``, ``problem`` and ``when_health_changed``).

PortAudio and ALSA print start-up noise (JACK probing, unusable PCMs) on file descriptor 2:
fd 2 points at /dev/null while PortAudio initialises, probes and opens, and one INFO line per
opened device is logged instead.

Imports nothing from piagent but ``errors``, ``config`` and the ``audio`` modules ``codecs``,
``levels``, ``channels``, ``alsanames``, ``portaudio`` and ``supervisor``; no I/O at import.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Final, Protocol

import numpy as np
import pyaudio

from piagent.audio.alsanames import alsa_hw_name
from piagent.audio.channels import Upmixer, downmix
from piagent.audio.codecs import Samples
from piagent.audio.levels import gain_q, scale_q
from piagent.audio.portaudio import (
    FALLBACK_RATES,
    PROBED_RATES,
    SAMPLE_BYTES,
    DeviceError,
    DeviceInfo,
    format_devices,
    list_devices,
    negotiate_format,
    negotiate_rate,
    resolve_device,
)
from piagent.audio.supervisor import PortAudioDevice
from piagent.config import AudioInputConfig, AudioOutputConfig

logger = logging.getLogger(__name__)

__all__ = [
    "FALLBACK_RATES",
    "PROBED_RATES",
    "DeviceError",
    "DeviceInfo",
    "Microphone",
    "PortAudioDevice",
    "SampleSource",
    "Speaker",
    "alsa_hw_name",
    "format_devices",
    "list_devices",
    "negotiate_format",
    "negotiate_rate",
    "resolve_device",
]

_FULL_SCALE: Final = 32767  # |sample| >= this counts as clipped


class SampleSource(Protocol):
    """What a speaker plays: ``piagent.audio.playback.Playback`` is one.

    A source may also have an ``is_idle`` property (``Playback`` has), True while nothing is
    queued to play: only then may a rescan pause the speaker (see ``audio.supervisor``). A
    source without it is never interrupted.
    """

    def read(self, n: int) -> Samples:
        """Exactly ``n`` int16 samples, silence where nothing plays.

        Called on PortAudio's thread (on the loop while the device is down): must be
        thread-safe, cheap and never block.
        """
        ...


# ----------------------------------------------------------------------------------------------
# The microphone


class Microphone(PortAudioDevice):
    """Capture from an ALSA device as int16 mono frames of ``chunk_ms``, on the event loop.

    ``async for frame in mic.frames(): client.feed(frame)`` is the whole pump; run ``run()``
    beside it. Frames wait in a bounded queue of ``queue_frames`` (1 s by default); when it is
    full the OLDEST frame is dropped and counted in ``overruns``. The configured ``gain_db`` is
    applied on the loop in int32 fixed point (``levels.gain_q``: a multiply, a rounding shift,
    a clip to int16; exact for powers of two, 20*log10(2) dB doubles; 0 dB leaves samples
    untouched); ``clipped`` counts samples at full scale (|sample| >= 32767) after the gain,
    which includes a signal already clipped before it.

    While the device is down (before it first opens, or after a loss until it returns),
    ``frames()`` yields silence at real-time pace by the loop's clock, so the conversation keeps
    its cadence; when the rate is not known yet (not configured and never opened) it waits.
    """

    _kind = "microphone"
    _is_input = True

    def __init__(
        self,
        config: AudioInputConfig,
        *,
        queue_frames: int = 50,
        stall_timeout: float = 1.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 5.0,
        close_timeout: float = 2.0,
    ) -> None:
        super().__init__(
            config.device,
            config.rate,
            stall_timeout=stall_timeout,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            close_timeout=close_timeout,
        )
        if queue_frames < 1:
            raise ValueError("queue_frames must be at least 1")
        self._chunk_ms = config.chunk_ms
        # Fixed point (levels.gain_q): x * multiplier >> shift in int32; None at 0 dB.
        gain = None if config.gain_db == 0.0 else gain_q(10.0 ** (config.gain_db / 20.0))
        self._gain: tuple[int, int] | None = gain
        self._queue: collections.deque[Samples] = collections.deque()
        self._queue_frames = queue_frames
        self._readable = asyncio.Event()  # a frame arrived, or the device went down
        self._pending = bytearray()  # captured bytes short of a whole frame
        self._stream_channels = 1  # of the open stream: captured frames are downmixed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._silence_next: float | None = None  # loop time the next silence frame is due
        self._overruns = 0
        self._clipped = 0

    @property
    def overruns(self) -> int:
        """Frames dropped (the oldest first) because the queue was full."""
        return self._overruns

    @property
    def clipped(self) -> int:
        """Samples at full scale (|sample| >= 32767) after the software gain, in total."""
        return self._clipped

    @property
    def frame_samples(self) -> int:
        """Samples per frame: ``rate * chunk_ms // 1000``."""
        return self.rate * self._chunk_ms // 1000

    async def read(self) -> Samples:
        """The next frame (int16, ``frame_samples`` long); silence while the device is down.

        Cancel-safe: a frame is only taken from the queue when it is returned.
        """
        loop = asyncio.get_running_loop()
        while True:
            if self._queue:
                return self._queue.popleft()
            self._readable.clear()
            if self._stream is not None or self._rate is None:
                await self._readable.wait()
                continue
            period = self._chunk_ms / 1000
            now = loop.time()
            if self._silence_next is None or self._silence_next < now - self._queue_frames * period:
                self._silence_next = now  # (re)start the cadence rather than burst to catch up
            if self._silence_next <= now:
                self._silence_next += period
                return np.zeros(self.frame_samples, dtype=np.int16)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(self._silence_next):
                    await self._readable.wait()

    async def frames(self) -> AsyncGenerator[Samples, None]:
        """Every frame, forever (see ``read``)."""
        while True:
            yield await self.read()

    def _prepare(self) -> None:
        self._loop = asyncio.get_running_loop()

    def _period_frames(self, rate: int) -> int:
        return rate * self._chunk_ms // 1000

    def _start(self, rate: int, channels: int) -> None:
        self._pending.clear()
        self._stream_channels = channels

    def _on_down(self) -> None:
        self._pending.clear()
        self._silence_next = None
        self._readable.set()

    def _callback(
        self, generation: int, data: bytes | None, frames: int, time_info: object, status: int
    ) -> tuple[bytes | None, int]:
        # PortAudio's thread: hand the bytes to the loop and nothing else.
        assert self._loop is not None
        if generation != self._generation:  # given up on: stop spinning
            return None, pyaudio.paAbort
        try:
            self._loop.call_soon_threadsafe(self._receive, generation, data, status)
        except RuntimeError:  # the loop is closed: we are shutting down
            return None, pyaudio.paAbort
        return None, pyaudio.paContinue

    def _receive(self, generation: int, data: bytes | None, status: int) -> None:
        """On the loop: cut the captured bytes into frames, apply the gain, queue them."""
        if generation != self._generation or not data:
            return  # from a stream already closed or failing
        self._callbacks += 1
        self._count_status(status)
        self._pending += data
        channels = self._stream_channels
        size = self.frame_samples * channels * SAMPLE_BYTES
        while len(self._pending) >= size:
            chunk = bytes(self._pending[:size])
            del self._pending[:size]
            wide = downmix(np.frombuffer(chunk, dtype="<i2"), channels)  # int32, a new array
            if self._gain is not None:
                scale_q(wide, *self._gain)
                np.clip(wide, -32768, 32767, out=wide)
            self._clipped += int(np.count_nonzero(np.abs(wide) >= _FULL_SCALE))
            frame = wide.astype(np.int16)
            if len(self._queue) >= self._queue_frames:
                self._queue.popleft()
                self._overruns += 1
            self._queue.append(frame)
        self._readable.set()


# ----------------------------------------------------------------------------------------------
# The speaker


class Speaker(PortAudioDevice):
    """Play through an ALSA device: PortAudio's thread pulls each period from ``source``.

    The period (``period_ms``, 20 by default) is what PortAudio asks for at a time; it bounds
    the latency of a flush. ``source`` may be assigned after ``open()``, once ``rate`` is
    known; until then the speaker plays silence. A ``source`` that raises or returns the wrong
    length aborts the stream: that counts as a device failure and the device is reopened.

    While the device is down, ``run()`` keeps pulling periods from ``source`` on the loop at
    real-time pace and drops them, as if they had been played: whoever waits for the speech to
    finish (``Playback.wait_drained``, the half-duplex microphone) carries on instead of
    waiting for a device that may never return, and no stale speech plays when it does.

    Parking. Once the source has been idle (``is_idle``, or no source) for ``park_after_s``
    seconds, the stream completes and rests: no PortAudio thread wakes, no period is mixed.
    The device stays open and healthy. ``wake()`` (the source's ``when_audible`` hook, which
    the ``source`` setter connects) starts it again before the sound is due: a source with a
    jitter buffer (``Playback``) holds speech back longer than a restart takes. None never
    parks.
    """

    _kind = "speaker"
    _is_input = False

    def __init__(
        self,
        config: AudioOutputConfig,
        source: SampleSource | None = None,
        *,
        period_ms: int = 20,
        park_after_s: float | None = 2.0,
        stall_timeout: float = 1.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 5.0,
        close_timeout: float = 2.0,
    ) -> None:
        super().__init__(
            config.device,
            config.rate,
            stall_timeout=stall_timeout,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            close_timeout=close_timeout,
        )
        if not 1 <= period_ms <= 200:
            raise ValueError("period_ms must be within 1..200")
        if park_after_s is not None and park_after_s <= 0:
            raise ValueError("park_after_s must be positive (or None: never park)")
        self._period_ms = period_ms
        self._park_periods = (
            None if park_after_s is None else max(1, round(park_after_s * 1000 / period_ms))
        )
        self._idle_run = 0  # consecutive idle periods (PortAudio's thread)
        self._parked = False  # the stream completed on purpose and rests
        self._parks = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._source_wakes = True  # set with the source
        self._wake = asyncio.Event()  # the device went down, or a source was assigned
        self._source: SampleSource | None = None
        self.source = source
        self._upmixer = Upmixer(1)  # replaced for each stream, before its callbacks start

    @property
    def source(self) -> SampleSource | None:
        """What plays; assign it on the loop's thread (PortAudio's reads it per period)."""
        return self._source

    @source.setter
    def source(self, source: SampleSource | None) -> None:
        old = self._source
        if old is not None and getattr(old, "when_audible", None) == self.wake:
            old.when_audible = None  # type: ignore[attr-defined]
        self._source = source
        # Only a source that says when it sounds (or none at all) could wake a parked stream.
        self._source_wakes = source is None or hasattr(source, "when_audible")
        if source is not None and self._source_wakes:
            source.when_audible = self.wake  # type: ignore[attr-defined]
        self._wake.set()
        self.wake()

    @property
    def parked(self) -> bool:
        """Whether the stream rests because nothing has played for ``park_after_s``."""
        return self._parked

    @property
    def parks(self) -> int:
        """Times the stream has parked."""
        return self._parks

    def wake(self) -> None:
        """Something is about to sound: restart a parked stream (from any thread; on the
        loop's own thread at once, else through the loop)."""
        loop = self._loop
        if not self._parked or loop is None:
            return
        try:
            here = asyncio.get_running_loop() is loop
        except RuntimeError:
            here = False
        if here:
            self._resume()
        else:
            loop.call_soon_threadsafe(self._resume)

    def _resume(self) -> None:
        stream = self._stream
        if not self._parked or stream is None:
            return
        self._parked = False
        self._idle_run = 0
        try:
            stream.stop_stream()  # the completed stream, so that it can start again
            stream.start_stream()
        except OSError as exc:  # the watcher reopens it
            self._failure = f"PortAudio error restarting the parked stream: {exc}"
            return
        logger.debug("speaker resumed")

    def _resting(self) -> bool:
        return self._parked

    @property
    def period_s(self) -> float:
        """Seconds of audio PortAudio pulls per callback."""
        return self._period_frames(self.rate) / self.rate

    def may_pause(self) -> bool:
        """Only while nothing plays: no source, or one whose ``is_idle`` is True."""
        return _idle(self._source)

    async def run(self) -> None:
        """See ``PortAudioDevice.run``; also drains ``source`` in real time while the device
        is down."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._drain_while_down())
            await super().run()

    async def _drain_while_down(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            due = loop.time()
            while self._stream is None and self._source is not None and self._rate is not None:
                frames = self._period_frames(self._rate)
                self._source.read(frames)
                # Real-time pace; after a stall of the loop, catch up on at most a second.
                due = max(due + frames / self._rate, loop.time() - 1.0)
                await asyncio.sleep(due - loop.time())

    def _prepare(self) -> None:
        # Opened off a loop (a one-off check): nothing could wake it, so it never parks.
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()

    def _on_down(self) -> None:
        self._parked = False
        self._wake.set()

    def _start(self, rate: int, channels: int) -> None:
        self._upmixer = Upmixer(channels, self._period_frames(rate))
        self._parked = False
        self._idle_run = 0

    def _period_frames(self, rate: int) -> int:
        return max(1, rate * self._period_ms // 1000)

    def _callback(
        self, generation: int, data: bytes | None, frames: int, time_info: object, status: int
    ) -> tuple[bytes | None, int]:
        # PortAudio's thread: cheap, never blocks, touches nothing but counters.
        upmixer = self._upmixer
        silence = upmixer.silence(frames)
        if generation != self._generation:
            return silence, pyaudio.paAbort
        self._callbacks += 1
        self._count_status(status)
        source = self._source
        if source is None:
            return silence, pyaudio.paComplete if self._may_park(None) else pyaudio.paContinue
        try:
            samples = source.read(frames)
            if samples.dtype != np.int16 or samples.shape != (frames,):
                got = f"{samples.dtype} {samples.shape}"
                raise ValueError(f"expected {frames} int16 samples, got {got}")
        except Exception as exc:  # reported on the loop, as a device failure
            self._failure = f"the source failed: {exc!r}"
            return silence, pyaudio.paAbort
        if self._may_park(source):
            return upmixer.upmix(samples), pyaudio.paComplete
        return upmixer.upmix(samples), pyaudio.paContinue

    def _may_park(self, source: SampleSource | None) -> bool:
        """PortAudio's thread: count idle periods; park once there are enough. ``parked`` is
        set before the second look at the source, and ``wake`` reads it after the source
        changed, so that sound queued meanwhile either stops the parking or wakes it."""
        # Something must be able to wake it: a loop to restart it on, a source that says when
        # it sounds (both known before the stream starts; nothing is looked up per period).
        wakeable = self._loop is not None and self._source_wakes
        if self._park_periods is None or not wakeable or not _idle(source):
            self._idle_run = 0
            return False
        self._idle_run += 1
        if self._idle_run < self._park_periods:
            return False
        self._parked = True
        if not _idle(source):
            self._parked = False
            self._idle_run = 0
            return False
        self._parks += 1
        return True


def _idle(source: SampleSource | None) -> bool:
    return source is None or getattr(source, "is_idle", False) is True
