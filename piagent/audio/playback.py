"""The speaker's buffer: ``Playback`` (a ``client.AudioSink``) and the persisted volume.

Owns what the speaker will play next: agent speech in a jitter buffer, earcons mixed over it,
the software volume, and the counters ``status`` shows (underruns, flushes). ``VolumeStore``
keeps the volume across restarts in a small JSON file.

Threading (style principle 5). A ``Playback`` is the one object shared between the event loop
and a device thread: the loop calls ``play``, ``mark_end``, ``flush``, ``play_earcon``,
``set_volume`` and ``wait_drained``; the device calls ``read`` from its own thread (PortAudio's
callback) or task (the WAV speaker). One ``threading.Lock`` guards the queues and the jitter
state, and is held only for list operations and a few integer updates: ``read`` takes views
of the queued chunks under it, then mixes, scales and clips outside it, so the audio callback
never waits on numpy work done by the loop, nor the loop on the callback's. The reader tells
the loop that speech has run out with ``loop.call_soon_threadsafe`` (tolerating a closed loop
at shutdown); everything else about ``wait_drained`` happens on the loop.

Cost. ``read`` runs once a period with cold caches, where a numpy call costs far more than its
arithmetic, so the common periods take the fewest: a period of speech alone is scaled by one
lookup in a table made once per volume (``levels.gain_table``: the fixed-point numbers of the
mix), a silent one is a shared read-only buffer, and only earcons are mixed in int32.

Jitter buffer. After idle, speech starts once ``jitter_ms`` of it is queued, or the producer
calls ``mark_end`` (the burst is complete), or ``jitter_ms`` of wall time has passed since its
first chunk (so a short last chunk is never stuck). When speech runs dry without ``mark_end``
the buffer cannot yet tell an underrun from the end of the agent's turn (``AgentClient`` does
not mark ends), so it decides when the next chunk comes: speech again within
``turn_gap_s`` means the queue ran dry mid-turn and silence was inserted, one underrun;
later, it was a new turn. Either way the buffer refills to ``jitter_ms`` before playing on.

Earcons are local sounds, not agent speech: they start at once (no jitter wait), mix over
speech, and stay out of ``is_playing``, ``queued_s`` and ``wait_drained``, which the client
reads as "the agent is speaking" (state ``speaking``, half-duplex gating, idle hang-up).
``flush`` drops speech and the earcons queued before it; an earcon queued after a flush is
heard (a barge-in press flushes the agent's speech, then its own press sound plays).

Imports numpy and piagent's audio helpers; the only I/O is ``VolumeStore``'s small file.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from piagent.audio.codecs import Samples
from piagent.audio.earcons import EarconKind, earcon
from piagent.audio.levels import gain_q, gain_table, scale_q

__all__ = ["Playback", "VolumeStore", "default_volume_path"]

logger = logging.getLogger(__name__)

_INT16_MIN = -32768
_INT16_MAX = 32767
# Speech and earcons are summed before the volume: clip the sum to two full scales, which
# ``gain_q(..., headroom=2)`` keeps inside int32 after the multiply.
_MIX_MIN = 2 * _INT16_MIN
_MIX_MAX = 2 * _INT16_MAX + 1


def _silence(n: int) -> Samples:
    """``n`` zero samples that nobody may change (one buffer serves every silent period)."""
    zeros = np.zeros(n, dtype=np.int16)
    zeros.flags.writeable = False
    return zeros


def _joined(n: int, parts: list[Samples]) -> Samples:
    """The parts one after another, zero-padded to ``n`` samples."""
    whole = np.zeros(n, dtype=np.int16)
    pos = 0
    for part in parts:
        whole[pos : pos + len(part)] = part
        pos += len(part)
    return whole


def default_volume_path() -> Path:
    """``$STATE_DIRECTORY/volume.json`` (systemd's ``StateDirectory=``), else
    ``$XDG_STATE_HOME/piagent/volume.json``, else ``~/.local/state/piagent/volume.json``."""
    state_dirs = os.environ.get("STATE_DIRECTORY", "")
    if state_dirs:
        return Path(state_dirs.split(":")[0]) / "volume.json"
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "piagent" / "volume.json"


class VolumeStore:
    """The volume (0.0-1.0) in a tiny JSON file, ``{"volume": 0.8}``, written atomically.

    A missing or corrupt file reads as the caller's default; I/O errors are logged as warnings
    and never raised: losing the volume is better than losing the speaker.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else default_volume_path()

    def load(self, default: float) -> float:
        """The stored volume, or ``default`` when there is none (or it cannot be read)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return default
        except OSError as exc:
            logger.warning(
                "cannot read the volume from %s (%s); using %.2f", self.path, exc, default
            )
            return default
        try:
            value = json.loads(text)["volume"]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"expected a number, got {value!r}")
            level = float(value)
            if not 0.0 <= level <= 1.0:
                raise ValueError(f"expected 0.0-1.0, got {level}")
        except (ValueError, TypeError, KeyError) as exc:
            logger.warning(
                "ignoring corrupt volume file %s (%s); using %.2f", self.path, exc, default
            )
            return default
        return level

    def save(self, level: float) -> None:
        """Store ``level``: write a temporary file beside the target, then rename it over."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as file:
                json.dump({"volume": round(level, 4)}, file)
                file.write("\n")
            tmp.replace(self.path)  # os.replace: atomic on one filesystem
        except OSError as exc:
            logger.warning("cannot save the volume to %s (%s)", self.path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


class Playback:
    """The speaker's buffer: agent speech behind a jitter buffer, earcons over it, volume.

    ``rate`` is the device rate (Hz) of everything played and read; ``jitter_ms`` the speech
    held back before playing after idle; ``volume`` the initial software gain (0.0-1.0; a
    ``store`` overrides it with the persisted one and keeps later changes); ``period_s`` the
    device period, the time audio handed to the device by one ``read`` takes to play;
    ``turn_gap_s`` the longest silence still counted as an underrun rather than a new turn;
    ``clock`` is ``time.monotonic`` (seconds) unless a test injects one.
    """

    def __init__(
        self,
        rate: int,
        *,
        jitter_ms: int = 60,
        volume: float = 0.8,
        period_s: float = 0.02,
        turn_gap_s: float = 0.5,
        store: VolumeStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"sample rate must be positive, got {rate}")
        self._rate = rate
        self._jitter_samples = rate * jitter_ms // 1000
        self._jitter_s = jitter_ms / 1000
        self._period_s = period_s
        self._turn_gap_s = turn_gap_s
        self._clock = clock
        self._store = store
        self._volume = 0.0
        self._gain = gain_q(0.0, headroom=2)
        self._table: Samples | None = None  # the volume as a lookup (None: unity)
        self._silence: Samples = _silence(0)
        self._apply_volume(store.load(volume) if store is not None else volume)

        # Guarded by _lock (shared with the reader thread).
        self._lock = threading.Lock()
        self._speech: collections.deque[Samples] = collections.deque()
        self._head = 0  # samples of _speech[0] already read
        self._queued = 0  # speech samples not yet read
        self._started = False  # the jitter wait is over: speech is being read
        self._primed_at = 0.0  # clock time of the first chunk after idle
        self._end_marked = False  # the producer said the current burst is complete
        self._dry_at: float | None = None  # speech ran out unmarked at this time
        self._audible_until = -math.inf  # the last speech handed to the device ends by then
        self._earcons: list[tuple[Samples, int]] = []  # (sound, samples already read)
        self._underruns = 0
        self._flushes = 0
        self._flushed_samples = 0

        # Called on the producer's thread after speech or an earcon is queued (the speaker's
        # ``wake``, which the speaker connects: a parked stream starts before it is due).
        self.when_audible: Callable[[], None] | None = None
        # Called by ``read``, on the device's thread, with what the device gets (the echo
        # canceller's reference, ``hearing.Hearing.played``); must be quick.
        self.tap: Callable[[Samples], None] | None = None

        # Loop side only.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._drain_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------------------------------
    # Status

    @property
    def rate(self) -> int:
        """Sample rate (Hz) of what ``play`` takes and ``read`` returns."""
        return self._rate

    @property
    def is_playing(self) -> bool:
        """True while agent speech is queued or the last of it is still in the device (read
        less than ``period_s`` ago). Earcons do not count."""
        return self._queued > 0 or self._clock() < self._audible_until

    @property
    def is_idle(self) -> bool:
        """True when nothing would sound: no speech queued or still in the device, and no
        earcon (the speaker may then pause for a moment, e.g. for a device rescan)."""
        return not self.is_playing and not self._earcons

    @property
    def queued_s(self) -> float:
        """Seconds of agent speech queued and not yet read."""
        return self._queued / self._rate

    @property
    def underruns(self) -> int:
        """Times speech ran dry mid-turn and silence was inserted."""
        return self._underruns

    @property
    def flushes(self) -> int:
        """Times ``flush`` was called."""
        return self._flushes

    @property
    def flushed_s(self) -> float:
        """Seconds of speech dropped by flushes, in all."""
        return self._flushed_samples / self._rate

    @property
    def volume(self) -> float:
        """The software volume, 0.0-1.0."""
        return self._volume

    def set_volume(self, level: float) -> float:
        """Set the volume, clamped to 0.0-1.0; stored when there is a store. Returns it."""
        if math.isnan(level):
            raise ValueError("volume must be a number from 0.0 to 1.0, got NaN")
        self._apply_volume(level)
        if self._store is not None:
            self._store.save(self._volume)
        return self._volume

    def _apply_volume(self, level: float) -> None:
        self._volume = min(1.0, max(0.0, level))
        # One tuple assignment: the reader sees the old gain or the new one, never half.
        self._gain = multiplier, shift = gain_q(self._volume, headroom=2)
        # Speech alone is scaled by one lookup (levels.gain_table: the same numbers).
        self._table = None if multiplier == 1 << shift else gain_table(multiplier, shift)

    # ------------------------------------------------------------------------------------------
    # Producer side (the event loop)

    def play(self, samples: Samples) -> None:
        """Queue int16 mono speech at ``rate``; returns at once. The array is kept, not
        copied: do not change it afterwards."""
        chunk = np.asarray(samples, dtype=np.int16)
        if chunk.size == 0:
            return
        now = self._clock()
        with self._lock:
            if self._queued == 0 and not self._started:
                self._primed_at = now
                if self._dry_at is not None and now - self._dry_at < self._turn_gap_s:
                    self._underruns += 1
                self._dry_at = None
            self._speech.append(chunk)
            self._queued += len(chunk)
        self._audible()

    def mark_end(self) -> None:
        """The current burst is complete: play what is queued without waiting for more, and
        do not count its running dry as an underrun."""
        with self._lock:
            self._end_marked = self._queued > 0
            self._dry_at = None

    def play_earcon(self, kind: EarconKind) -> None:
        """Mix the earcon ``kind`` over whatever plays (at the volume), starting with the next
        ``read``; several earcons at once are mixed together."""
        sound = earcon(kind, self._rate)
        with self._lock:
            self._earcons.append((sound, 0))
        self._audible()

    def _audible(self) -> None:
        hook = self.when_audible
        if hook is not None:
            hook()

    def flush(self) -> None:
        """Drop all queued speech and earcons: the next ``read`` is silent, so the speaker is
        silent once the period already handed to the device has played."""
        with self._lock:
            self._flushes += 1
            self._flushed_samples += self._queued
            self._speech.clear()
            self._head = 0
            self._queued = 0
            self._started = False
            self._end_marked = False
            self._dry_at = None
            self._earcons.clear()
        if self._loop is not None:
            self._check_drained()

    async def wait_drained(self) -> None:
        """Return once all queued speech has been read and has played (``is_playing`` is
        false). Safe to cancel. Needs a reader: with no device running it waits."""
        loop = asyncio.get_running_loop()
        self._loop = loop  # before the check below, so the reader's signal cannot be missed
        while self.is_playing:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            self._check_drained()
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _check_drained(self) -> None:
        """On the loop: wake the waiters once speech is drained and its tail has played."""
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        if not self._waiters or self._queued > 0:
            return  # the reader signals again when the queue next runs dry
        remaining = self._audible_until - self._clock()
        if remaining > 0:
            assert self._loop is not None
            self._drain_timer = self._loop.call_later(remaining, self._check_drained)
            return
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def _signal_drained(self) -> None:
        """On the reader's thread: hand the drained check to the loop."""
        loop = self._loop
        if loop is None:
            return  # nobody has waited yet; wait_drained checks before it waits
        # A closed loop raises RuntimeError: the daemon is exiting and nobody waits any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._check_drained)

    # ------------------------------------------------------------------------------------------
    # Consumer side (the device's thread or task)

    def read(self, n: int) -> Samples:
        """The next ``n`` samples to play: speech and earcons times the volume, silence where
        there is nothing. Called by the device, from any one thread."""
        now = self._clock()
        speech: list[Samples] = []
        sounds: list[Samples] = []
        drained = False
        with self._lock:
            if not self._started and self._queued > 0:
                self._started = (
                    self._queued >= self._jitter_samples
                    or self._end_marked
                    or now - self._primed_at >= self._jitter_s
                )
            if self._started:
                drained = self._take_speech(n, speech)
                if drained:
                    self._started = False
                    self._dry_at = None if self._end_marked else now
                    self._end_marked = False
                if speech:
                    self._audible_until = now + self._period_s
            if self._earcons:
                self._take_earcons(n, sounds)
        if drained:
            self._signal_drained()
        # The common periods take the fewest numpy calls (each is costly when the caches are
        # cold, as they are once a period): silence is one shared read-only buffer, speech
        # alone one lookup of the volume (none at full volume), so the mix is only for
        # earcons.
        if sounds:
            out = self._mix(n, speech, sounds)
        elif speech:
            whole = speech[0] if len(speech) == 1 and len(speech[0]) == n else _joined(n, speech)
            table = self._table
            out = whole if table is None else table[whole.view(np.uint16)]
        else:
            out = self._silence if len(self._silence) == n else self._new_silence(n)
        tap = self.tap
        if tap is not None:
            tap(out)  # the echo canceller's reference: exactly what the device gets
        return out

    def _new_silence(self, n: int) -> Samples:
        self._silence = _silence(n)
        return self._silence

    def _take_speech(self, n: int, out: list[Samples]) -> bool:
        """Under the lock: move up to ``n`` samples of views into ``out``; True if that
        emptied the queue."""
        need = n
        while need > 0 and self._speech:
            chunk = self._speech[0]
            part = chunk[self._head : self._head + need]
            out.append(part)
            need -= len(part)
            self._head += len(part)
            if self._head == len(chunk):
                self._speech.popleft()
                self._head = 0
        self._queued -= n - need
        return self._queued == 0

    def _take_earcons(self, n: int, out: list[Samples]) -> None:
        """Under the lock: the next ``n`` samples (or fewer) of each playing earcon."""
        playing: list[tuple[Samples, int]] = []
        for sound, pos in self._earcons:
            out.append(sound[pos : pos + n])
            if pos + n < len(sound):
                playing.append((sound, pos + n))
        self._earcons = playing

    def _mix(self, n: int, speech: list[Samples], sounds: list[Samples]) -> Samples:
        mix: npt.NDArray[np.int32] = _joined(n, speech).astype(np.int32)
        for sound in sounds:
            mix[: len(sound)] += sound
        if len(sounds) > 1:  # speech plus one earcon (LEVEL < 1) stays within the mix range
            np.clip(mix, _MIX_MIN, _MIX_MAX, out=mix)
        multiplier, shift = self._gain
        scale_q(mix, multiplier, shift)
        np.minimum(mix, _INT16_MAX, out=mix)  # two ufuncs: np.clip's wrapper costs more
        np.maximum(mix, _INT16_MIN, out=mix)
        return mix.astype(np.int16)
