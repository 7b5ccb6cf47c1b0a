"""The ``wav`` audio backend: a WAV-file microphone and speaker, paced in real time.

Owns the promise interface.md makes for ``audio.backend: wav``. ``WavMicrophone`` (in
``audio.wavmic``) reads a 16-bit mono WAV at any rate and yields ``chunk_ms`` frames on the
event loop's clock, then silence forever, as a capture device would. ``WavSpeaker`` pulls one
period from its source (a ``Playback``) every period, in a timer callback on the event loop
(``run`` starts the chain and waits), and appends it to a 16-bit mono WAV: a timeline, with
silence written whenever nothing plays, so a sample's position in the file is the moment it was
played and what a flush drops is never written. The header's sizes are rewritten after every
append (data first, then header, then flush), so the file is valid WAV whenever the daemon is
not inside a write, and complete once the task ends.

Both keep absolute deadlines (``start + k * period``), so lateness never accumulates into
drift: after the loop was held up they catch up at once, as a device's buffer would. Both
satisfy the same small shapes as the PyAudio devices (``rate``, ``name``, ``healthy``, and
``frames()`` or ``run()``), so the service picks a backend in one place.

One clock. A speaker made with ``microphone=`` clocks it, as one sound card's clock serves
capture and playback: each of its ticks writes the period due and hands the microphone's
captured frames to ``when_frame``, so a conversation costs one wake-up a period, not two, and
no task switch for the frames. The clock ticks while the microphone is wanted or sound plays;
while nothing has played for ``PARK_AFTER_S`` the silence going by is written ``REST_S`` at a
time, and with the microphone unwanted too the speaker rests (no ticks at all).

``WavEchoPath`` (``audio.input.echo``, in ``audio.wavecho``) lets the microphone hear the
speaker: the speaker hands it every sample it plays and the microphone adds what it hears to
each frame.

No threads: everything runs on the event loop. The file writes are a few hundred bytes per
period to a local file, small enough not to need an executor. Imports numpy, the standard
``wave`` module and piagent's audio helpers; never PyAudio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from piagent.audio.codecs import NATIVE_PCM16, Samples, encode_pcm16
from piagent.audio.wavecho import WavEchoPath, WavFileError
from piagent.audio.wavmic import EARLY_S, WavMicrophone, read_wav

__all__ = [
    "SampleSource",
    "WavEchoPath",
    "WavFileError",
    "WavMicrophone",
    "WavSpeaker",
    "read_wav",
]

logger = logging.getLogger(__name__)

_HEADER_BYTES = 44
_MAX_DATA_BYTES = 0xFFFFFFFF - (_HEADER_BYTES - 8)  # the RIFF size field is 32 bits


PARK_AFTER_S = 2.0
"""A speaker whose source has had nothing to play for this long rests between periods."""
REST_S = 1.0
"""A resting speaker writes the silence that went by this often (s): the file stays a timeline."""


def _idle(source: object) -> bool:
    """Whether ``source`` has nothing to play (``Playback.is_idle``; a source without the
    property is never idle)."""
    return bool(getattr(source, "is_idle", False))


class SampleSource(Protocol):
    """What a speaker plays from (``Playback`` is one)."""

    def read(self, n: int) -> Samples:
        """Exactly ``n`` int16 samples to play next (silence when there is nothing)."""
        ...


class WavSpeaker:
    """A speaker that writes what it plays, silence included, to a WAV file in real time.

    Every ``period_ms`` (absolute deadlines on the loop's clock) ``run`` pulls one period of
    ``rate`` Hz samples from ``source`` and appends it to ``path``, which it creates (with its
    parent directories) or overwrites at start. With ``echo``, every sample played is also
    handed to that path, for a microphone to hear; with ``microphone``, each tick also
    delivers that microphone's captured frames (see the module docstring: one clock).
    """

    def __init__(
        self,
        path: Path | str,
        rate: int,
        source: SampleSource,
        *,
        period_ms: int = 20,
        echo: WavEchoPath | None = None,
        microphone: WavMicrophone | None = None,
    ) -> None:
        if rate <= 0 or period_ms <= 0:
            raise ValueError(f"rate and period_ms must be positive, got {rate}, {period_ms}")
        self._path = Path(path)
        self._rate = rate
        self._source = source
        self._period_ms = period_ms
        self._echo = echo
        self._mic = microphone
        if microphone is not None:
            microphone.attach_clock()
        self._healthy = True
        self._start_time: float | None = None
        self._written = 0  # samples in the file
        self._full = False  # the file reached the format's 4 GiB limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self.parks = 0  # times the speaker rested
        self._resting = False  # no ticks until ``wake`` or REST_S: ``wake`` has work to do
        # The timeline while ``run`` runs (see ``_tick``).
        self._file: BinaryIO | None = None
        self._played = 0  # samples pulled from the source: the timeline's position
        self._index = 0  # the next period to play
        self._busy_at = 0.0  # when the source last had something to play
        self._deferred = False  # silent periods before ``_index`` are still to be written
        self._timer: asyncio.TimerHandle | None = None
        self._failed: asyncio.Future[None] | None = None

    def wake(self) -> None:
        """Sound is due (the source's ``when_audible``): a resting speaker plays on at once.
        From any thread."""
        loop = self._loop
        # Only a resting speaker needs waking (a running one reads the source next period):
        # each call_soon_threadsafe writes to the loop's self-pipe, an extra wake-up of its
        # own, and the agent's audio comes ten times a second. A rest is marked before the
        # source is looked at, so sound queued before this check is seen there.
        if loop is not None and self._resting:
            with contextlib.suppress(RuntimeError):  # a closed loop: nothing runs to wake
                loop.call_soon_threadsafe(self._end_rest)

    @property
    def rate(self) -> int:
        return self._rate

    @property
    def name(self) -> str:
        return str(self._path)

    @property
    def healthy(self) -> bool:
        """False once writing the file has failed."""
        return self._healthy

    @property
    def start_time(self) -> float | None:
        """Loop time at which the file's sample 0 played (None before ``run``)."""
        return self._start_time

    @property
    def samples_written(self) -> int:
        """Samples in the file so far."""
        return self._written

    def _period_end(self, index: int) -> int:
        """Samples played once period ``index`` (from 0) has been: integer-exact at any rate."""
        return (index + 1) * self._period_ms * self._rate // 1000

    async def run(self) -> None:
        """Write the timeline until cancelled; the file is complete when this returns.

        The periods are written by a chain of timer callbacks (``_tick``), not by this task:
        one callback a period, no future, no task switch."""
        loop = asyncio.get_running_loop()
        try:
            file = self._create()
        except OSError as exc:
            self._healthy = False
            raise WavFileError(f"{self._path}: cannot create the speaker file ({exc})") from exc
        with file:
            start = self._start_time = loop.time()
            if self._echo is not None:
                self._echo.start_speaker(start, self._rate)
            if self._mic is not None:
                self._mic.clock_with(start, self.wake)
            self._loop, self._file, self._failed = loop, file, loop.create_future()
            self._played = self._index = 0
            self._busy_at, self._deferred = start, False
            try:
                self._tick()
                await self._failed  # only a tick's error ends it; cancelling stops it
            except OSError as exc:
                self._healthy = False
                raise WavFileError(f"{self._path}: cannot write the speaker file ({exc})") from exc
            finally:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer, self._resting, self._file = None, False, None
                if self._healthy:
                    if self._deferred:  # the silence up to now: the file ends as it stops
                        with contextlib.suppress(OSError):
                            self._append_silence(file, self._due(loop.time()))
                    self._write_sizes(file)

    def _due(self, now: float) -> int:
        """Periods due by ``now``: every one whose deadline has passed, the current one
        included (after the loop was held up, they catch up as a device's buffer would)."""
        assert self._start_time is not None
        return int((now - self._start_time + EARLY_S) * 1000 / self._period_ms) + 1

    def _deadline(self, index: int) -> float:
        assert self._start_time is not None
        return self._start_time + index * self._period_ms / 1000

    def _tick(self) -> None:
        """One period's work, then the next tick (or a rest); an error ends ``run``."""
        loop, failed = self._loop, self._failed
        assert loop is not None and failed is not None
        try:
            rest = self._step(loop.time())
        except Exception as exc:
            if not failed.done():
                failed.set_exception(exc)
            return
        if rest:
            self._timer = loop.call_later(REST_S, self._end_rest)
        else:
            self._timer = loop.call_at(self._deadline(self._index), self._tick)

    def _step(self, now: float) -> bool:
        """Write what is due, deliver the microphone's frames; True to rest."""
        file, mic = self._file, self._mic
        assert file is not None
        due = self._due(now)
        idle = _idle(self._source)
        if not idle:
            self._busy_at = now
        if idle and now - self._busy_at >= PARK_AFTER_S:
            # Nothing to play for a while: the silence that goes by is written a rest at a time
            # (the file stays a timeline, at most REST_S behind; the source is not asked, as
            # while resting), and the clock ticks on for a microphone.
            self._deferred = True
            if (due - self._index) * self._period_ms >= REST_S * 1000:
                self._append_silence(file, due)
        else:
            if self._deferred:  # sound again: what went by was silence, this one is read
                self._append_silence(file, due - 1)
                self._deferred = False
            self._play(file, due)
        self._index = max(self._index, due)
        if mic is not None:
            mic.deliver_due(now)  # what was captured meanwhile
        if now - self._busy_at < PARK_AFTER_S or (mic is not None and mic.wanted):
            return False
        self._resting = True  # before the source is looked at again: see ``wake``
        if not _idle(self._source):
            self._resting = False
            return False
        self.parks += 1
        return True

    def _end_rest(self) -> None:
        """``wake`` or REST_S after resting: the periods that went by were silence (the source
        had nothing), written without asking it, the current one too, as a running speaker
        would have read it at its start; the next is read at its deadline."""
        loop, file = self._loop, self._file
        if not self._resting or loop is None or file is None:
            return
        self._resting = False
        if self._timer is not None:
            self._timer.cancel()
        try:
            self._append_silence(file, self._due(loop.time()))
        except OSError as exc:
            if self._failed is not None and not self._failed.done():
                self._failed.set_exception(exc)
            return
        self._deferred = False
        self._timer = loop.call_at(self._deadline(self._index), self._tick)

    def _play(self, file: BinaryIO, due: int) -> None:
        """Read the periods from ``_index`` up to ``due`` from the source and append them."""
        if self._index >= due:
            return
        chunks: list[Samples] = []
        played, index = self._played, self._index
        while index < due:
            end = self._period_end(index)
            chunks.append(self._read(end - played))
            played = end
            index += 1
        self._played, self._index = played, index
        played_now = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        if self._echo is not None:
            self._echo.played(played_now)
        self._append(file, played_now)

    def _append_silence(self, file: BinaryIO, to: int) -> None:
        """Append silence up to the end of period ``to - 1`` without asking the source."""
        end = self._period_end(to - 1)
        if end > self._played:
            zeros = np.zeros(end - self._played, dtype=np.int16)
            if self._echo is not None:
                self._echo.played(zeros)
            self._append(file, zeros)
            self._played = end
        self._index = max(self._index, to)

    def _read(self, n: int) -> Samples:
        samples = self._source.read(n)
        if len(samples) == n:
            return samples
        fitted = np.zeros(n, dtype=np.int16)  # a source that broke its promise: keep time
        fitted[: min(n, len(samples))] = samples[:n]
        return fitted

    def _create(self) -> BinaryIO:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered: each period is one write of its samples and one of the header, nothing
        # held back in between (50 periods a second; a seek on a buffered file flushes it).
        file = open(self._path, "wb", buffering=0)  # noqa: SIM115 - closed by run's with block
        file.write(_wav_header(self._rate, 0))
        self._written = 0
        self._full = False
        return file

    def _append(self, file: BinaryIO, samples: Samples) -> None:
        """Data first, then the sizes: the header never claims bytes that are not there."""
        if self._full:
            return
        if (self._written + len(samples)) * 2 > _MAX_DATA_BYTES:
            self._full = True
            logger.warning("%s: WAV size limit (4 GiB) reached; writing no more", self._path)
            return
        # int16 on a little-endian machine is written from the array itself, without a copy.
        data = samples if samples.dtype is NATIVE_PCM16 else encode_pcm16(samples)
        size = len(samples) * 2
        count = file.write(data)  # type: ignore[arg-type] # an ndarray is a buffer
        if count != size:  # an unbuffered write may be short
            rest = memoryview(data).cast("B")  # type: ignore[arg-type] # a buffer too
            while count:
                rest = rest[count:]
                if not rest:
                    break
                count = file.write(rest)
            if rest:
                raise OSError(f"wrote nothing of {len(rest)} bytes")
        self._written += len(samples)
        self._write_sizes(file)

    def _write_sizes(self, file: BinaryIO) -> None:
        """Rewrite the header in place (one positioned write; the file position stays at the
        end, where the next samples go)."""
        os.pwrite(file.fileno(), _wav_header(self._rate, self._written * 2), 0)


def _wav_header(rate: int, data_bytes: int) -> bytes:
    """The canonical 44-byte header of a 16-bit mono PCM WAV."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        data_bytes + _HEADER_BYTES - 8,
        b"WAVE",
        b"fmt ",
        16,  # fmt chunk size
        1,  # PCM
        1,  # channels
        rate,
        rate * 2,  # bytes per second
        2,  # block align
        16,  # bits per sample
        b"data",
        data_bytes,
    )
