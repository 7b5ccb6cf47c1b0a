"""The ``wav`` audio backend: a WAV-file microphone and speaker, paced in real time.

Owns the promise interface.md makes for ``audio.backend: wav``. ``WavMicrophone`` reads a 16-bit
mono WAV at any rate and yields ``chunk_ms`` frames on the event loop's clock, then silence
forever, as a capture device would. ``WavSpeaker`` is a task that pulls one period from its
source (a ``Playback``) every period and appends it to a 16-bit mono WAV: a timeline, with
silence written whenever nothing plays, so a sample's position in the file is the moment it was
played and what a flush drops is never written. The header's sizes are rewritten after every
append (data first, then header, then flush), so the file is valid WAV whenever the daemon is
not inside a write, and complete once the task ends.

Both keep absolute deadlines (``start + k * period``), so lateness never accumulates into
drift: after the loop was held up they catch up at once, as a device's buffer would. Both
satisfy the same small shapes as the PyAudio devices (``rate``, ``name``, ``healthy``, and
``frames()`` or ``run()``), so the service picks a backend in one place.

``WavEchoPath`` (``audio.input.echo``) lets the microphone hear the speaker: the speaker hands it
every sample it plays, the path runs them through a simulated room (``room.Room``: delay, gain,
impulse response, soft clipping) at the microphone's rate, and the microphone adds what it
hears to each frame. Both sides place samples on the loop's clock (the speaker's sample 0 at its
``start_time``, the microphone's frame ``k`` at its start plus ``k`` periods), fixing the offset
between the two timelines once, in whole samples, so the echo is sample-aligned and never drifts.

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
import wave
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from piagent.audio.codecs import Samples, decode_pcm16, encode_pcm16
from piagent.audio.levels import apply_gain
from piagent.audio.resample import StreamResampler
from piagent.audio.room import Room, load_impulse_response
from piagent.errors import PiagentError

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


class WavFileError(PiagentError):
    """A WAV file the ``wav`` backend cannot use; the message names the file and the fix."""


class SampleSource(Protocol):
    """What a speaker plays from (``Playback`` is one)."""

    def read(self, n: int) -> Samples:
        """Exactly ``n`` int16 samples to play next (silence when there is nothing)."""
        ...


def read_wav(path: Path) -> tuple[Samples, int]:
    """The samples and rate (Hz) of a 16-bit mono PCM WAV; ``WavFileError`` otherwise."""
    fix = f"convert it with: sox '{path}' -b 16 -c 1 -e signed-integer converted.wav"
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            if channels != 1 or width != 2:
                raise WavFileError(
                    f"{path}: need 16-bit mono PCM, got {8 * width}-bit with {channels} "
                    f"channel(s); {fix}"
                )
            data = wav.readframes(wav.getnframes())
    except wave.Error as exc:
        raise WavFileError(f"{path}: not a 16-bit PCM WAV file ({exc}); {fix}") from exc
    except EOFError as exc:
        raise WavFileError(f"{path}: truncated WAV header; {fix}") from exc
    except OSError as exc:
        raise WavFileError(f"{path}: cannot read the WAV file ({exc.strerror or exc})") from exc
    return decode_pcm16(data), rate


class WavEchoPath:
    """What the microphone (at ``rate`` Hz) hears of what the speaker played: the simulated
    room of ``audio.input.echo`` between a ``WavSpeaker`` and a ``WavMicrophone``.

    ``delay_ms``, ``gain_db`` and ``drive`` are ``room.Room``'s; ``impulse_response`` a WAV
    file of the room's response (resampled to ``rate``; ``WavFileError`` if unusable). Echo
    the microphone has not taken within ``keep_s`` seconds is dropped.
    """

    def __init__(
        self,
        rate: int,
        *,
        delay_ms: float = 50.0,
        gain_db: float = -10.0,
        impulse_response: Path | str | None = None,
        drive: float = 0.0,
        keep_s: float = 5.0,
    ) -> None:
        response = None
        if impulse_response is not None:
            try:
                response = load_impulse_response(impulse_response, rate)
            except ValueError as exc:
                raise WavFileError(str(exc)) from exc
        self._room = Room(
            rate, delay_ms=delay_ms, gain_db=gain_db, impulse_response=response, drive=drive
        )
        self._rate = rate
        self._keep = int(keep_s * rate)
        self._start: float | None = None  # the speaker's start_time
        self._resampler: StreamResampler | None = None
        self._echo = np.zeros(0, dtype=np.int16)  # heard samples from index ``_base`` on
        self._base = 0

    @property
    def rate(self) -> int:
        return self._rate

    def start_speaker(self, start_time: float, rate: int) -> None:
        """The speaker's timeline begins: its sample 0 plays at ``start_time`` (loop time)."""
        self._start = start_time
        self._resampler = StreamResampler(rate, self._rate)
        self._echo = np.zeros(0, dtype=np.int16)
        self._base = 0

    def played(self, samples: Samples) -> None:
        """The speaker played ``samples``, next on its timeline."""
        if self._resampler is None:
            return
        heard = self._room.process(self._resampler.process(samples))
        self._echo = np.concatenate([self._echo, heard])
        excess = len(self._echo) - self._keep
        if excess > 0:
            self._echo = self._echo[excess:]
            self._base += excess

    def heard(self, capture_start: float, index: int, n: int) -> Samples:
        """The ``n`` echo samples in the microphone's samples ``index`` on, counted from
        ``capture_start`` (loop time): silence before the speaker started or past what it has
        played so far."""
        out = np.zeros(n, dtype=np.int16)
        if self._start is None:
            return out
        # Echo sample i reaches the mic at start + i / rate (the resampler keeps sample
        # positions; it only holds its last few back). The offset is fixed once per pair of
        # starts, so consecutive frames stay contiguous.
        first = round((capture_start - self._start) * self._rate) + index
        lo, hi = max(first, self._base), min(first + n, self._base + len(self._echo))
        if lo < hi:
            out[lo - first : hi - first] = self._echo[lo - self._base : hi - self._base]
        if lo > self._base:  # the microphone reads forward: drop what it has passed
            drop = min(lo, self._base + len(self._echo)) - self._base
            self._echo = self._echo[drop:]
            self._base += drop
        return out


class WavMicrophone:
    """A microphone that plays a WAV file into the daemon in real time, then silence.

    ``chunk_ms`` is the frame length in ms; ``gain_db`` a software gain, as the PyAudio mic's;
    ``clock`` is the running loop's ``time`` unless a test injects another (seconds; with
    ``echo`` it must be the speaker's clock, the loop's). The file is read (and checked) when
    the microphone is made. ``echo`` (at the file's rate) adds what the speaker played, heard
    through a simulated room, before the gain.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        chunk_ms: int = 20,
        gain_db: float = 0.0,
        clock: Callable[[], float] | None = None,
        echo: WavEchoPath | None = None,
    ) -> None:
        if chunk_ms <= 0:
            raise ValueError(f"chunk_ms must be positive, got {chunk_ms}")
        self._path = Path(path)
        self._samples, self._rate = read_wav(self._path)
        self._chunk_ms = chunk_ms
        self._gain_db = gain_db
        self._clock = clock
        self._echo: WavEchoPath | None = None
        self.echo = echo
        self._frames = 0  # frames delivered so far, across calls to frames()
        self._clipped = 0
        self._wanted = True
        self._wanted_event: asyncio.Event | None = None  # made on the loop by frames()

    @property
    def wanted(self) -> bool:
        """Whether anyone needs the frames now. While not, ``frames`` rests (no timer, no
        wake-up) and the file plays on unheard, as a real microphone's samples go by when
        nobody reads them; once wanted again it resumes at the frame being captured."""
        return self._wanted

    @wanted.setter
    def wanted(self, wanted: bool) -> None:
        self._wanted = wanted
        if wanted and self._wanted_event is not None:
            self._wanted_event.set()

    @property
    def rate(self) -> int:
        """The file's sample rate (Hz): the rate of every frame."""
        return self._rate

    @property
    def name(self) -> str:
        return str(self._path)

    @property
    def healthy(self) -> bool:
        """Always True: a file does not fail once read."""
        return True

    @property
    def echo(self) -> WavEchoPath | None:
        """The echo path this microphone hears (None: only its file). Settable, so a path
        can be made at the file's ``rate`` once the microphone has read it."""
        return self._echo

    @echo.setter
    def echo(self, path: WavEchoPath | None) -> None:
        if path is not None and path.rate != self._rate:
            raise ValueError(f"the echo path runs at {path.rate} Hz, the file at {self._rate} Hz")
        self._echo = path

    @property
    def overruns(self) -> int:
        """Always 0: frames are made on demand, so none are lost."""
        return 0

    @property
    def clipped(self) -> int:
        """Samples clipped by ``gain_db`` so far."""
        return self._clipped

    @property
    def duration_s(self) -> float:
        """The file's length in seconds (silence follows)."""
        return len(self._samples) / self._rate

    def _span(self, index: int, frames: int) -> int:
        """Samples in ``frames`` frames from frame ``index`` on."""
        per = self._chunk_ms * self._rate
        return (index + frames) * per // 1000 - index * per // 1000

    def _frame(self, index: int, echo: tuple[float, int] | None = None) -> Samples:
        """Frame ``index`` (from 0): the file's samples in it, zero-padded past the end, plus
        the echo heard at ``echo`` (capture start, sample index from it) when there is a path."""
        start = index * self._chunk_ms * self._rate // 1000
        end = (index + 1) * self._chunk_ms * self._rate // 1000
        frame = np.zeros(end - start, dtype=np.int16)
        if start < len(self._samples):
            part = self._samples[start:end]
            frame[: len(part)] = part
        if self._echo is not None and echo is not None:
            heard = self._echo.heard(echo[0], echo[1], len(frame)).astype(np.int32)
            frame = np.clip(frame.astype(np.int32) + heard, -32768, 32767).astype(np.int16)
        if self._gain_db != 0.0:
            frame, clipped = apply_gain(frame, self._gain_db)
            self._clipped += clipped
        return frame

    async def frames(self) -> AsyncGenerator[Samples, None]:
        """Frames of ``chunk_ms``, each delivered once it has been "captured": frame ``k`` of
        this call at ``start + (k + 1) * chunk_ms``. Endless; cancel or close to stop."""
        clock = self._clock or asyncio.get_running_loop().time
        chunk_s = self._chunk_ms / 1000
        start = clock()
        count = 0
        captured = 0  # samples of this call so far: where the echo path reads next
        self._wanted_event = wanted = asyncio.Event()
        while True:
            if not self._wanted:
                wanted.clear()
                await wanted.wait()
                # Resume with the frame being captured now; those in between went by unheard.
                now_count = max(count, int((clock() - start) / chunk_s))
                skipped = now_count - count
                captured += self._span(self._frames, skipped)
                self._frames += skipped
                count = now_count
            count += 1
            delay = start + count * chunk_s - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = self._frame(self._frames, (start, captured))
            captured += len(frame)
            self._frames += 1
            yield frame


class WavSpeaker:
    """A speaker that writes what it plays, silence included, to a WAV file in real time.

    Every ``period_ms`` (absolute deadlines on the loop's clock) ``run`` pulls one period of
    ``rate`` Hz samples from ``source`` and appends it to ``path``, which it creates (with its
    parent directories) or overwrites at start. With ``echo``, every sample played is also
    handed to that path, for a microphone to hear.
    """

    def __init__(
        self,
        path: Path | str,
        rate: int,
        source: SampleSource,
        *,
        period_ms: int = 20,
        echo: WavEchoPath | None = None,
    ) -> None:
        if rate <= 0 or period_ms <= 0:
            raise ValueError(f"rate and period_ms must be positive, got {rate}, {period_ms}")
        self._path = Path(path)
        self._rate = rate
        self._source = source
        self._period_ms = period_ms
        self._echo = echo
        self._healthy = True
        self._start_time: float | None = None
        self._written = 0  # samples in the file
        self._full = False  # the file reached the format's 4 GiB limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._woken: asyncio.Event | None = None
        self.parks = 0  # times the speaker rested

    def wake(self) -> None:
        """Sound is due (the source's ``when_audible``): a resting speaker plays on at once.
        From any thread."""
        loop, woken = self._loop, self._woken
        if loop is not None and woken is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nothing runs to wake
                loop.call_soon_threadsafe(woken.set)

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
        """Write the timeline until cancelled; the file is complete when this returns."""
        loop = asyncio.get_running_loop()
        period_s = self._period_ms / 1000
        try:
            file = self._create()
        except OSError as exc:
            self._healthy = False
            raise WavFileError(f"{self._path}: cannot create the speaker file ({exc})") from exc
        with file:
            try:
                start = self._start_time = loop.time()
                if self._echo is not None:
                    self._echo.start_speaker(start, self._rate)
                played = 0  # samples pulled from the source: the timeline's position
                index = 0  # the next period to play
                self._loop, self._woken = loop, asyncio.Event()
                busy_at = start  # when the source last had something to play
                while True:
                    # Every period whose deadline has passed is due, the current one included:
                    # after the loop was held up, catch up as a device's buffer would.
                    due = int((loop.time() - start) / period_s) + 1
                    chunks: list[Samples] = []
                    while index < due:
                        end = self._period_end(index)
                        chunks.append(self._read(end - played))
                        played = end
                        index += 1
                    played_now = np.concatenate(chunks)
                    if self._echo is not None:
                        self._echo.played(played_now)
                    self._append(file, played_now)
                    now = loop.time()
                    if not _idle(self._source):
                        busy_at = now
                    elif now - busy_at >= PARK_AFTER_S and await self._rest():
                        # Rested: the periods that went by were silence (the source had
                        # nothing), written without asking it, the current one too, as a
                        # running speaker would have read it at its start; the next is read.
                        silent_to = int((loop.time() - start) / period_s) + 1
                        if silent_to > index:
                            end = self._period_end(silent_to - 1)
                            zeros = np.zeros(end - played, dtype=np.int16)
                            if self._echo is not None:
                                self._echo.played(zeros)
                            self._append(file, zeros)
                            played, index = end, silent_to
                        await asyncio.sleep(max(0.0, start + index * period_s - loop.time()))
                        continue
                    await asyncio.sleep(max(0.0, start + index * period_s - now))
            except OSError as exc:
                self._healthy = False
                raise WavFileError(f"{self._path}: cannot write the speaker file ({exc})") from exc
            finally:
                if self._healthy:
                    self._write_sizes(file)

    async def _rest(self) -> bool:
        """Wait for ``wake`` or ``REST_S``, whichever comes first; False (no rest) when sound
        became due meanwhile."""
        woken = self._woken
        assert woken is not None
        woken.clear()
        if not _idle(self._source):  # queued between the check and the clear
            return False
        self.parks += 1
        with contextlib.suppress(TimeoutError):  # the timeline catches up once a second
            await asyncio.wait_for(woken.wait(), REST_S)
        return True

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
        data = memoryview(encode_pcm16(samples))
        while data:  # an unbuffered write may be short
            count = file.write(data)
            if not count:
                raise OSError(f"wrote nothing of {len(data)} bytes")
            data = data[count:]
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
