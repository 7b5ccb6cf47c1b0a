"""The ``wav`` backend's microphone: a WAV file played into the daemon in real time.

Owns ``WavMicrophone`` and ``read_wav``. The microphone yields ``chunk_ms`` frames of the file,
then silence forever, as a capture device would: from ``frames()`` on its own timer, or, clocked
by a ``WavSpeaker`` (``clock_with``), handed to ``when_frame`` on the speaker's ticks, one
wake-up a period for both (``audio.wavio``'s module docstring). A microphone nobody wants
rests: the file plays on unheard, and it resumes with the frame being captured.

No threads; imports numpy, the standard ``wave`` module and piagent's audio helpers.
"""

from __future__ import annotations

import asyncio
import logging
import time
import wave
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from piagent.audio.codecs import Samples
from piagent.audio.levels import apply_gain
from piagent.audio.wavecho import WavEchoPath, WavFileError

__all__ = ["EARLY_S", "WavMicrophone", "read_wav"]

logger = logging.getLogger(__name__)

EARLY_S = 1e-6
"""The loop runs a timer this close to its deadline as due (its clock's resolution)."""


def read_wav(path: Path) -> tuple[Samples, int]:
    """The samples (read-only) and rate (Hz) of a 16-bit mono PCM WAV; ``WavFileError``
    otherwise."""
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
    # A view of the bytes read, not a copy of them: the file may be minutes long.
    samples: Samples = np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)
    return samples, rate


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
        self._samples.setflags(write=False)  # frames are views of it
        self._chunk_ms = chunk_ms
        self._gain_db = gain_db
        self._clock = clock
        self._echo: WavEchoPath | None = None
        self.echo = echo
        self._frames = 0  # frames delivered so far, across calls to frames()
        self._clipped = 0
        self._wanted = True
        self._wanted_event: asyncio.Event | None = None  # made on the loop by frames()
        # Clocked by a speaker (``clock_with``): frames go to ``when_frame`` on its ticks.
        self.when_frame: Callable[[Samples], None] | None = None
        self._ticks: _Ticks | None = None
        self._clocked = False
        self._on_wanted: Callable[[], None] | None = None

    @property
    def wanted(self) -> bool:
        """Whether anyone needs the frames now. While not, ``frames`` rests (no timer, no
        wake-up) and the file plays on unheard, as a real microphone's samples go by when
        nobody reads them; once wanted again it resumes at the frame being captured."""
        return self._wanted

    @wanted.setter
    def wanted(self, wanted: bool) -> None:
        was, self._wanted = self._wanted, wanted
        if wanted and self._wanted_event is not None:
            self._wanted_event.set()
        ticks = self._ticks
        if ticks is not None and wanted and not was:
            # Resume with the frame being captured now: those before it went by unheard.
            now = self._clock() if self._clock is not None else time.monotonic()
            skipped = max(0, int((now - ticks.start) / ticks.chunk_s) - ticks.count)
            ticks.captured += self._span(self._frames, skipped)
            self._frames += skipped
            ticks.count += skipped
            if self._on_wanted is not None:
                self._on_wanted()  # a resting clock ticks again

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
        if end <= len(self._samples):
            frame = self._samples[start:end]  # a view: the file's samples are read-only
        else:
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

    @property
    def clocked(self) -> bool:
        """Whether a speaker's clock delivers the frames (to ``when_frame``): true from the
        moment a speaker is made with this microphone, before it runs."""
        return self._clocked

    def attach_clock(self) -> None:
        """A speaker will clock this microphone (its constructor says so)."""
        self._clocked = True

    def clock_with(self, start: float, wake: Callable[[], None]) -> None:
        """Be captured on a speaker's clock from ``start`` (loop time): frame ``k`` is handed to
        ``when_frame`` by the first tick at or after ``start + (k + 1) * chunk_ms``, so one
        wake-up a period serves both devices, as one sound card's clock serves capture and
        playback. ``wake`` makes a resting clock tick again (called when wanted again)."""
        self._ticks = _Ticks(start, self._chunk_ms / 1000)
        self._on_wanted = wake

    def deliver_due(self, now: float) -> None:
        """The clock's tick at ``now``: hand every frame captured by then to ``when_frame``
        (none while not wanted: they go by unheard)."""
        ticks, deliver = self._ticks, self.when_frame
        if ticks is None:
            return
        # A timer may fire a hair before its deadline (the loop's clock resolution).
        due = int((now - ticks.start + EARLY_S) / ticks.chunk_s)
        if not self._wanted or deliver is None:
            if due > ticks.count:  # the file plays on unheard
                ticks.captured += self._span(self._frames, due - ticks.count)
                self._frames += due - ticks.count
                ticks.count = due
            return
        while ticks.count < due:
            frame = self._frame(self._frames, (ticks.start, ticks.captured))
            ticks.captured += len(frame)
            self._frames += 1
            ticks.count += 1
            try:
                deliver(frame)
            except Exception:  # the consumer's bug must not stop the clock (the speaker)
                logger.exception("the microphone's frame consumer failed")

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


@dataclass(slots=True)
class _Ticks:
    """Where a clocked microphone stands: its start (loop time), frame length (s), frames
    delivered or skipped since the start, samples captured since the start."""

    start: float
    chunk_s: float
    count: int = 0
    captured: int = 0
