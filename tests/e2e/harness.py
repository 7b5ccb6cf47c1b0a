"""End-to-end harness: the real ``piagent run`` process, driven as a user drives it.

Owns what the end-to-end tests share:

* ``Daemon``: ``python -m piagent run --config FILE`` as a child process with mock pins, a real
  ``NOTIFY_SOCKET`` (a thread timestamps every datagram on this process's monotonic clock, which
  is the daemon's too: ``CLOCK_MONOTONIC`` is system-wide), ``piagent ctl`` as subprocesses,
  bounded waits whose failure messages carry the daemon's stderr tail, its notify messages and
  its last status, and a teardown that always kills it;
* audio fixtures: ``speech_like`` (noise with a syllable rhythm, -20 dBFS) and WAV files;
* timelines of what the speaker played, as (moment, level) per 20 ms window, for the two
  backends: ``WavTimeline`` reads the WAV backend's speaker file and maps its samples to moments
  by watching the file grow (sample ``i`` plays at ``start + i / rate``; ``start`` is estimated
  from the sizes seen, each an upper bound of it); ``FifoSpeaker`` drains the ALSA fake card's
  speaker FIFO at real-time pace (as a sound card would: silence when nothing comes), so sample
  ``i`` is heard at ``t0 + i / rate`` by construction;
* ``FifoMic``: the ALSA fake card's microphone FIFO, written one 20 ms period at a time by a
  paced thread (silence, or what the test says), never more than a few periods ahead;
* ``SimProcess``: ``piagent sim`` as a child process, for flows that use it as a user would.

Everything is synchronous (threads and subprocesses); no pytest-asyncio.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import wave
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import yaml
from scipy.signal import correlate

from piagent.sim.record import ConversationRecord
from piagent.sim.server import SimServer
from tests.audio.alsa import write_fake_card

Samples = npt.NDArray[np.int16]
T = TypeVar("T")

WINDOW_S = 0.02  # analysis window: one device period
SPEECH_DB = -40.0  # a window at or above this level (dBFS) is sound (the sim's VAD threshold)
SILENCE_DB = -60.0  # a window below this is silence
STDERR_TAIL = 60  # lines of the daemon's stderr shown in a failure message


def free_port() -> int:
    """A TCP port nothing listens on (the OS's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ----------------------------------------------------------------------------------------------
# Audio fixtures and analysis


def speech_like(seconds: float, rate: int, seed: int = 1) -> Samples:
    """Speech-like noise: a soft low-passed hiss with a 3 Hz syllable envelope, about -20 dBFS
    RMS, never quiet long enough for a VAD to end the turn."""
    n = round(seconds * rate)
    rng = np.random.default_rng(seed)
    noise = np.convolve(rng.standard_normal(n + 3), np.ones(4) / 2.0, mode="valid")[:n]
    t = np.arange(n) / rate
    envelope = 0.35 + 0.65 * np.abs(np.sin(2 * np.pi * 3.0 * t))
    signal_ = noise * envelope * (0.1 * 32767 / 1.0)
    return np.clip(signal_, -32767, 32767).astype(np.int16)


def write_wav(path: Path, samples: Samples, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())


def mic_wav(path: Path, rate: int, total_s: float, speech: list[tuple[float, Samples]]) -> None:
    """A microphone WAV: silence, with each ``(offset_s, samples)`` placed at its offset."""
    out = np.zeros(round(total_s * rate), dtype=np.int16)
    for offset, samples in speech:
        start = round(offset * rate)
        out[start : start + len(samples)] = samples[: len(out) - start]
    write_wav(path, out, rate)


def levels_db(samples: Samples, rate: int, window_s: float = WINDOW_S) -> npt.NDArray[np.float64]:
    """RMS level (dBFS) of each whole window; digital silence reads -120."""
    size = round(window_s * rate)
    count = len(samples) // size
    if count == 0:
        return np.zeros(0)
    frames = samples[: count * size].astype(np.float64).reshape(count, size)
    rms = np.sqrt(np.mean(frames**2, axis=1)) / 32768.0
    return np.asarray(20 * np.log10(np.maximum(rms, 1e-6)), dtype=np.float64)


def sound_seconds(samples: Samples, rate: int) -> float:
    """How much of ``samples`` is sound (windows at or above ``SPEECH_DB``), in seconds."""
    return float(np.count_nonzero(levels_db(samples, rate) >= SPEECH_DB) * WINDOW_S)


class Timeline(Protocol):
    """What a speaker played: samples, and the moment (this process's monotonic clock) each
    was heard."""

    rate: int
    buffer_s: float  # how long after the daemon hands audio to the device it is heard, at most

    def samples(self) -> Samples: ...
    def time_at(self, index: int) -> float: ...


def index_at(timeline: Timeline, moment: float) -> int:
    """The sample heard at ``moment`` (may be negative or past the end)."""
    return round((moment - timeline.time_at(0)) * timeline.rate)


@dataclass(frozen=True, slots=True)
class Windows:
    """A stretch of a timeline in 20 ms windows: ``times[k]`` is window ``k``'s start."""

    times: npt.NDArray[np.float64]
    db: npt.NDArray[np.float64]

    def sound_seconds(self) -> float:
        return float(np.count_nonzero(self.db >= SPEECH_DB) * WINDOW_S)

    def first_sound(self) -> float | None:
        hits = np.flatnonzero(self.db >= SPEECH_DB)
        return float(self.times[hits[0]]) if len(hits) else None

    def last_sound(self) -> float | None:
        hits = np.flatnonzero(self.db >= SPEECH_DB)
        return float(self.times[hits[-1]] + WINDOW_S) if len(hits) else None

    def ended(self, hold_s: float = 0.3) -> bool:
        """There was sound, and the last ``hold_s`` have been silent since."""
        last = self.last_sound()
        end = float(self.times[-1]) + WINDOW_S if len(self.times) else 0.0
        return last is not None and end - last >= hold_s

    def silent_from(self, hold_s: float) -> float | None:
        """Start of the first run of windows below ``SILENCE_DB`` lasting ``hold_s``."""
        need = round(hold_s / WINDOW_S)
        run = 0
        for k, level in enumerate(self.db):
            run = run + 1 if level < SILENCE_DB else 0
            if run >= need:
                return float(self.times[k - need + 1])
        return None

    def describe(self) -> str:
        """A compact picture for failure messages: one character per window."""
        marks = "".join(
            "#" if d >= SPEECH_DB else ("." if d < SILENCE_DB else "-") for d in self.db
        )
        start = float(self.times[0]) if len(self.times) else 0.0
        return f"from t={start:.3f}: {marks}"


def windows(timeline: Timeline, start: float, end: float) -> Windows:
    """The windows of ``timeline`` from moment ``start`` to ``end`` (what has been heard)."""
    samples = timeline.samples()
    size = round(WINDOW_S * timeline.rate)
    first = max(0, index_at(timeline, start))
    last = min(len(samples), index_at(timeline, end))
    if last <= first:
        return Windows(np.zeros(0), np.zeros(0))
    part = samples[first:last]
    db = levels_db(part, timeline.rate)
    times = np.array([timeline.time_at(first + k * size) for k in range(len(db))])
    return Windows(times, db)


def read_wav_growing(path: Path) -> tuple[Samples, int]:
    """The samples of a WAV the daemon may still be appending to: the header's rate, and the
    data as far as the file goes (the speaker writes data before it updates the sizes)."""
    data = path.read_bytes()
    if len(data) < 44:
        return np.zeros(0, dtype=np.int16), 0
    (rate,) = struct.unpack_from("<I", data, 24)
    body = data[44:]
    return np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").astype(np.int16), rate


class WavTimeline:
    """The WAV backend's speaker file as a timeline.

    Sample ``i`` played at ``start + i / rate`` on the daemon's loop clock (the speaker keeps
    absolute deadlines). ``start`` is estimated by a thread that polls the file's size: at a
    moment ``t`` at most ``floor((t - start) / period) + 1`` periods can have been written, so
    every observation bounds ``start`` from above, and the smallest bound is within a few ms of
    the truth once one observation follows a write closely (the thread polls every 2 ms).
    """

    def __init__(self, path: Path, rate: int, period_s: float = WINDOW_S) -> None:
        self.path = path
        self.rate = rate
        self.buffer_s = 0.0  # a sample's place in the file is the moment it played
        self._period_s = period_s
        self._start: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="e2e-wav-clock", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                continue
            now = time.monotonic()
            written = max(0, size - 44) // 2
            if written == 0:
                continue
            bound = now + self._period_s - written / self.rate
            if self._start is None or bound < self._start:
                self._start = bound

    def wait_started(self, within: float = 10.0, settle: float = 0.4) -> float:
        """Wait for the file to appear and the estimate to settle; returns ``start``."""
        deadline = time.monotonic() + within
        while self._start is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the speaker file {self.path} did not appear in {within} s")
            time.sleep(0.01)
        time.sleep(settle)
        return self.start

    @property
    def start(self) -> float:
        if self._start is None:
            raise AssertionError("the speaker file has not been written yet")
        return self._start

    def samples(self) -> Samples:
        samples, _ = read_wav_growing(self.path)
        return samples

    def time_at(self, index: int) -> float:
        return self.start + index / self.rate

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


# ----------------------------------------------------------------------------------------------
# The ALSA fake card with a clock: paced FIFOs


def _fifo(path: Path, capacity: int | None = None) -> int:
    os.mkfifo(path)
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    if capacity is not None:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, capacity)
    return fd


def _queued(fd: int) -> int:
    buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    count: int = struct.unpack("i", buf)[0]
    return count


class FifoMic:
    """The fake card's microphone: a FIFO a thread writes one period into every period, on
    absolute deadlines. Silence unless ``say`` queued samples. At most ``QUEUE`` periods wait in
    the pipe: while nobody captures, periods are dropped, as a sound card drops them, so what is
    written at a moment is captured at that moment (within that many periods)."""

    QUEUE = 5

    def __init__(self, path: Path, rate: int, period_s: float = WINDOW_S) -> None:
        self.path = path
        self.rate = rate
        self._period = round(period_s * rate)
        self._period_s = period_s
        self._fd = _fifo(path)
        self._speech: deque[tuple[int, Samples]] = deque()  # (utterance, one period)
        self._lock = threading.Lock()
        self._spoken: dict[int, tuple[float, float]] = {}  # utterance -> (start, end) moments
        self._utterances = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0  # periods dropped because nobody captured them
        self.speech_dropped = 0  # ... of which speech
        # The room, when there is one: what reaches the microphone from the speaker over the
        # span (start moment, samples) one period covers, added to the user's voice.
        self.echo: Callable[[float, int], Samples] | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="e2e-fifo-mic", daemon=True)
        self._thread.start()

    def say(self, samples: Samples) -> int:
        """Speak ``samples`` from the next period on; returns the utterance's number."""
        chunks = [samples[i : i + self._period] for i in range(0, len(samples), self._period)]
        with self._lock:
            number = self._utterances
            self._utterances += 1
            self._speech.extend((number, chunk) for chunk in chunks)
        return number

    def spoken(self, utterance: int) -> tuple[float, float] | None:
        """When the utterance was written, once it has been whole: (start, end) moments."""
        with self._lock:
            if any(number == utterance for number, _ in self._speech):
                return None
            return self._spoken.get(utterance)

    def _next_period(self, now: float, due: float | None = None) -> tuple[Samples, bool]:
        """The period written at ``now``; ``due`` is when it was due (the clock's schedule,
        which keeps the room's samples contiguous through the writer's own jitter)."""
        out = np.zeros(self._period, dtype=np.int16)
        echo = self.echo
        if echo is not None:  # the period captured over [due - period, due)
            out = echo((now if due is None else due) - self._period_s, self._period)
        with self._lock:
            if not self._speech:
                return out, False
            number, chunk = self._speech.popleft()
            start, _ = self._spoken.get(number, (now, now))
            self._spoken[number] = (start, now + self._period_s)
        mixed = out[: len(chunk)].astype(np.int32) + chunk
        out[: len(chunk)] = np.clip(mixed, -32768, 32767)
        return out, True

    def _run(self) -> None:
        start = time.monotonic()
        k = 0
        while not self._stop.is_set():
            k += 1
            delay = start + k * self._period_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0:  # this process was held up: resynchronise, drop the backlog
                start, k = time.monotonic(), 0
            samples, speech = self._next_period(time.monotonic(), start + k * self._period_s)
            data = samples.astype("<i2").tobytes()
            if _queued(self._fd) >= self.QUEUE * len(data):
                self.dropped += 1
                self.speech_dropped += speech
                continue
            with contextlib.suppress(BlockingIOError):
                os.write(self._fd, data)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        with contextlib.suppress(OSError):
            os.close(self._fd)


class FifoSpeaker:
    """The fake card's speaker: a FIFO (4 KiB pipe) a thread drains at real-time pace, as a
    sound card's clock would: every 5 ms it takes what the time allows, and when the daemon has
    written less (an underrun, or before the device opens) the missing samples are silence.
    So the timeline is wall-clock exact: sample ``i`` is heard at ``t0 + i / rate``."""

    def __init__(self, path: Path, rate: int, pipe_bytes: int = 4096) -> None:
        self.path = path
        self.rate = rate
        self._fd = _fifo(path, pipe_bytes)
        self.buffer_s = fcntl.fcntl(self._fd, fcntl.F_GETPIPE_SZ) / 2 / rate  # the pipe's
        self._chunks: list[Samples] = []
        self._heard = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0 = 0.0
        self.underruns: list[tuple[float, int]] = []  # (moment, samples of silence put in)
        self._pending = b""

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="e2e-fifo-speaker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        slack = round(0.04 * self.rate)  # tolerate this much lateness before calling it silence
        while not self._stop.wait(0.005):
            due = int((time.monotonic() - self.t0) * self.rate) - self._heard
            if due <= 0:
                continue
            try:
                data = self._pending + os.read(self._fd, due * 2 - len(self._pending))
            except BlockingIOError:
                data = self._pending
            whole = len(data) // 2 * 2
            self._pending = data[whole:]
            got = np.frombuffer(data[:whole], dtype="<i2").astype(np.int16)
            missing = due - len(got)
            parts = [got]
            if missing > slack:  # an underrun: the card plays silence meanwhile
                parts.append(np.zeros(missing, dtype=np.int16))
                self.underruns.append((time.monotonic(), missing))
            with self._lock:
                for part in parts:
                    if len(part):
                        self._chunks.append(part)
                        self._heard += len(part)

    def samples(self) -> Samples:
        with self._lock:
            if not self._chunks:
                return np.zeros(0, dtype=np.int16)
            joined = np.concatenate(self._chunks)
            self._chunks = [joined]
            return joined

    def time_at(self, index: int) -> float:
        return self.t0 + index / self.rate

    def heard(self, moment: float, n: int) -> Samples:
        """The ``n`` samples heard from ``moment`` on; silence where none was heard (yet)."""
        out = np.zeros(n, dtype=np.int16)
        start = round((moment - self.t0) * self.rate)
        with self._lock:
            if not self._chunks or start + n <= 0:
                return out
            if len(self._chunks) > 1:
                self._chunks = [np.concatenate(self._chunks)]
            played = self._chunks[0]
        lo, hi = max(start, 0), min(start + n, len(played))
        if lo < hi:
            out[lo - start : hi - start] = played[lo:hi]
        return out

    def underrun_s(self, since: float) -> float:
        """Seconds of silence put in for want of samples since the moment ``since``."""
        return sum(n for moment, n in list(self.underruns) if moment >= since) / self.rate

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        with contextlib.suppress(OSError):
            os.close(self._fd)


class AlsaCard:
    """The fake card of testing.md with paced FIFOs for microphone and speaker; with ``room``
    ((delay ms, gain dB) per path: the direct one and reflections), the microphone also hears
    the speaker, in real time, as an open speaker in a room would be heard. The speaker's
    pipe is its buffer: the card plays silence when the daemon leaves it empty, and nothing
    tells the daemon (the fake card has no clock for ALSA to report an underrun by)."""

    def __init__(
        self,
        directory: Path,
        rate: int = 48000,
        room: tuple[tuple[float, float], ...] = (),
        speaker_pipe_bytes: int = 4096,
    ) -> None:
        self.mic = FifoMic(directory / "mic.fifo", rate)
        self.speaker = FifoSpeaker(directory / "speaker.fifo", rate, speaker_pipe_bytes)
        if room:
            paths = [(delay / 1000, 10 ** (gain / 20)) for delay, gain in room]
            speaker = self.speaker

            def echo(moment: float, n: int) -> Samples:
                mix = np.zeros(n, dtype=np.float64)
                for delay_s, gain in paths:
                    mix += gain * speaker.heard(moment - delay_s, n)
                return np.clip(np.round(mix), -32768, 32767).astype(np.int16)

            self.mic.echo = echo
        self.card = write_fake_card(directory, mic_file=self.mic.path, spk_file=self.speaker.path)
        self.rate = rate

    def env(self) -> dict[str, str]:
        return self.card.env()

    def audio_config(self) -> dict[str, Any]:
        return {
            "backend": "pyaudio",
            "input": {"device": "fakemic", "rate": self.rate},
            "output": {"device": "fakespk", "rate": self.rate, "volume": 1.0},
            "earcons": False,
        }

    def start(self) -> None:
        self.mic.start()
        self.speaker.start()

    def close(self) -> None:
        self.mic.close()
        self.speaker.close()


# ----------------------------------------------------------------------------------------------
# The daemon


class Notify:
    """The ``NOTIFY_SOCKET`` end: a thread records each datagram with its arrival moment."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self._messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="e2e-notify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._messages.append((time.monotonic(), data.decode(errors="replace")))

    @property
    def messages(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self._messages)

    def find(self, fragment: str, after: int = 0) -> tuple[int, float] | None:
        """Index and arrival moment of the first message from ``after`` on with ``fragment``."""
        for i, (moment, text) in enumerate(self.messages[after:], start=after):
            if fragment in text:
                return i, moment
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


@dataclass(frozen=True, slots=True)
class CtlCall:
    """One ``piagent ctl`` run: its result and when it was started and finished."""

    result: subprocess.CompletedProcess[str]
    launched: float
    done: float


class Daemon:
    """A ``piagent run`` child process; see the module docstring."""

    def __init__(self, tmp: Path, config: dict[str, Any], env: dict[str, str] | None = None):
        self.tmp = tmp
        self.config = config
        self.config_path = tmp / "config.yaml"
        self.write_config(config)
        self.control = Path(config["control"]["socket"])
        self.notify = Notify(tmp / "notify.sock")
        self.stderr_path = tmp / "daemon-stderr.log"
        child_env = {
            k: v
            for k, v in os.environ.items()
            if k
            not in {
                "JOURNAL_STREAM",
                "ELEVENLABS_API_KEY",
                "CREDENTIALS_DIRECTORY",
                "PIAGENT_CONFIG",
                "GPIOZERO_PIN_FACTORY",
            }
        }
        child_env.update(
            {
                "NOTIFY_SOCKET": str(self.notify.path),
                "WATCHDOG_USEC": "2000000",
                "STATE_DIRECTORY": str(tmp / "state"),
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            }
        )
        self._stderr = self.stderr_path.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "piagent", "run", "--config", str(self.config_path)],
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            cwd=tmp,
        )
        self.last_status: dict[str, Any] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def write_config(self, config: dict[str, Any]) -> None:
        self.config = config
        self.config_path.write_text(yaml.safe_dump(config))

    # -- failure context ---------------------------------------------------------------------

    def log(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def context(self) -> str:
        """The daemon's side of a failure: exit status, stderr tail, notify messages, status."""
        lines = self.log().splitlines()[-STDERR_TAIL:]
        messages = self.notify.messages
        notes = [
            f"  {moment - self.started:7.3f} {text}"
            for moment, text in messages
            if text != "WATCHDOG=1"
        ]
        pings = sum(text == "WATCHDOG=1" for _, text in messages)
        return "\n".join(
            [
                f"--- daemon pid {self.pid}, exit status {self.proc.poll()}",
                f"--- last status: {json.dumps(self.last_status)}",
                f"--- notify messages (s since start; {pings} WATCHDOG=1 not shown):",
                *notes[-40:],
                f"--- stderr (last {STDERR_TAIL} lines):",
                *lines,
            ]
        )

    def fail(self, message: str) -> AssertionError:
        return AssertionError(f"{message}\n{self.context()}")

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            raise self.fail(message)

    # -- waiting ------------------------------------------------------------------------------

    def wait_for(self, what: str, probe: Callable[[], T | None], within: float = 15.0) -> T:
        """Poll ``probe`` until it returns something other than None/False; fail after
        ``within`` s (or as soon as the daemon has exited) with the daemon's side shown."""
        deadline = time.monotonic() + within
        while True:
            value = probe()
            if value is not None and value is not False:
                return value
            if self.proc.poll() is not None:
                raise self.fail(f"the daemon exited while waiting for {what}")
            if time.monotonic() > deadline:
                raise self.fail(f"timed out after {within} s waiting for {what}")
            time.sleep(0.02)

    def wait_notify(self, fragment: str, after: int = 0, within: float = 15.0) -> tuple[int, float]:
        return self.wait_for(
            f"{fragment!r} on the notify socket (from message {after})",
            lambda: self.notify.find(fragment, after),
            within,
        )

    def wait_ready(self, within: float = 20.0) -> float:
        """Wait for ``READY=1``; returns its arrival moment."""
        return self.wait_notify("READY=1", within=within)[1]

    # -- piagent ctl --------------------------------------------------------------------------

    def ctl(self, *words: str, check: bool = True) -> CtlCall:
        launched = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "piagent", "ctl", "--socket", str(self.control), *words],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        call = CtlCall(result, launched, time.monotonic())
        if check and result.returncode != 0:
            raise self.fail(
                f"piagent ctl {' '.join(words)} exited {result.returncode}: "
                f"{result.stdout}{result.stderr}"
            )
        return call

    def status(self) -> dict[str, Any]:
        call = self.ctl("status", "--json")
        status: dict[str, Any] = json.loads(call.result.stdout)
        self.last_status = status
        return status

    def wait_status(
        self, what: str, predicate: Callable[[dict[str, Any]], bool], within: float = 15.0
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            status = self.status()
            return status if predicate(status) else None

        return self.wait_for(f"status: {what}", probe, within)

    # -- the process --------------------------------------------------------------------------

    def threads(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        raise AssertionError("no Threads: line")

    def fds(self) -> list[str]:
        """Where each open file descriptor points."""
        fd_dir = Path(f"/proc/{self.pid}/fd")
        targets = []
        for entry in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                targets.append(str(entry.readlink()))
        return sorted(targets)

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, within: float = 10.0) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            raise self.fail(f"the daemon did not exit within {within} s of signal {sig}") from None

    def close(self) -> None:
        """Teardown: kill the process if it still runs, release everything."""
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self.notify.close()
        self._stderr.close()


class Server(Protocol):
    """Where the simulator listens (``SimServer`` in a thread, or ``SimProcess``)."""

    @property
    def ws_base(self) -> str: ...
    @property
    def http_base(self) -> str: ...


def start_wav(
    tmp: Path, config: dict[str, Any], daemons: list[Daemon], rate: int
) -> tuple[Daemon, WavTimeline]:
    """Start the daemon on ``config`` (the WAV backend, its speaker at ``rate``), kept in
    ``daemons`` for the teardown; returns once it is ready and its speaker file is growing."""
    daemon = Daemon(tmp, config)
    daemons.append(daemon)
    timeline = WavTimeline(tmp / "speaker.wav", rate)
    daemon.wait_ready()
    timeline.wait_started()
    return daemon, timeline


def base_config(tmp: Path, sim: Server, agent_id: str, **sections: Any) -> dict[str, Any]:
    """A config for the WAV backend against ``sim``; ``sections`` are merged over each
    top-level section (one level deep)."""
    config: dict[str, Any] = {
        "agent": {"agent_id": agent_id, "server": sim.ws_base, "api_base": sim.http_base},
        "audio": {
            "backend": "wav",
            "input": {"file": str(tmp / "mic.wav")},
            "output": {"file": str(tmp / "speaker.wav"), "rate": 16000, "volume": 1.0},
            "earcons": False,
        },
        "gpio": {"pin_factory": "mock"},
        "control": {"socket": str(tmp / "control.sock")},
        "session": {"idle_timeout": 60},
        "logging": {"level": "info", "journal": False},
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    return config


# ----------------------------------------------------------------------------------------------
# The simulator's side


def record(sim: SimServer, n: int, daemon: Daemon, within: float = 15.0) -> ConversationRecord:
    """The ``n``-th conversation (from 0) the simulator saw, once it exists."""

    def probe() -> ConversationRecord | None:
        return sim.conversations[n] if len(sim.conversations) > n else None

    return daemon.wait_for(f"conversation #{n} at the simulator", probe, within)


def wait_closed(
    sim: SimServer, rec: ConversationRecord, daemon: Daemon, within: float = 15.0
) -> int:
    """The record's close code once the socket is closed."""
    daemon.wait_for(f"conversation {rec.conversation_id} to close", lambda: rec.closed, within)
    assert rec.close_code is not None
    return rec.close_code


def sent_types(rec: ConversationRecord) -> list[tuple[str, dict[str, Any]]]:
    """The simulator's frames to the daemon, as (type, object), in order."""
    out = []
    for frame in list(rec.sent):
        with contextlib.suppress(ValueError):
            data = json.loads(frame)
            if isinstance(data, dict):
                out.append((str(data.get("type")), data))
    return out


def sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def best_match(haystack: Samples, needle: Samples) -> tuple[int, float]:
    """Where ``needle`` best matches inside ``haystack``: (offset, normalised correlation,
    1.0 for an exact copy at any gain)."""
    h = haystack.astype(np.float64)
    n = needle.astype(np.float64)
    if len(h) < len(n) or not np.any(n):
        return 0, 0.0
    raw = correlate(h, n, mode="valid", method="fft")
    energy = np.concatenate(([0.0], np.cumsum(h * h)))
    local = np.sqrt(np.maximum(energy[len(n) :] - energy[: -len(n)], 1e-9))
    score = raw / (local * np.sqrt(np.sum(n * n)))
    best = int(np.argmax(score))
    return best, float(score[best])


class SimProcess:
    """``python -m piagent sim --port P --agent FILE --scenario FILE`` as a child process; the
    port is one the OS had free. Use as a context manager: it is killed on the way out."""

    def __init__(self, tmp: Path, agents: str, scenario: str | None = None) -> None:
        self.port = free_port()
        agent_file = tmp / "agents.yaml"
        agent_file.write_text(agents)
        argv = [sys.executable, "-m", "piagent", "sim", "--port", str(self.port)]
        argv += ["--agent", str(agent_file)]
        if scenario is not None:
            scenario_file = tmp / "scenario.yaml"
            scenario_file.write_text(scenario)
            argv += ["--scenario", str(scenario_file)]
        self.stderr_path = tmp / "sim-stderr.log"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        self.ws_base = f"ws://127.0.0.1:{self.port}"
        self.http_base = f"http://127.0.0.1:{self.port}"

    def wait_listening(self, within: float = 20.0) -> None:
        """Wait for its ``listening on`` line."""
        assert self.proc.stdout is not None
        done = threading.Event()
        lines: list[str] = []

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.append(line)
                if "listening on" in line:
                    done.set()
            done.set()

        threading.Thread(target=read, name="e2e-sim-stdout", daemon=True).start()
        if not done.wait(within) or not any("listening on" in line for line in lines):
            raise AssertionError(f"piagent sim did not listen: {lines} {self.log()}")

    def log(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
