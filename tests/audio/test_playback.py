"""piagent.audio.playback: the speaker's buffer (jitter, flush, volume, earcons, draining) and
the persisted volume, driven as the device drives it: ``read`` from another thread."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from piagent.audio.codecs import Samples
from piagent.audio.earcons import KINDS, LEVEL, EarconKind, earcon
from piagent.audio.levels import gain_q
from piagent.audio.playback import Playback, VolumeStore, default_volume_path

RATE = 16000
PERIOD = 320  # 20 ms at 16 kHz


class FakeClock:
    """A monotonic clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def ramp(n: int, start: int = 1) -> Samples:
    """Distinct nonzero samples, so where each one went is visible."""
    return (np.arange(start, start + n) % 30000 + 1).astype(np.int16)


def playing(playback: Playback) -> bool:
    """``is_playing``, read through a call so the type checker does not narrow it."""
    return playback.is_playing


def make(jitter_ms: int = 0, volume: float = 1.0, **kwargs: object) -> tuple[Playback, FakeClock]:
    clock = FakeClock()
    playback = Playback(RATE, jitter_ms=jitter_ms, volume=volume, clock=clock, **kwargs)  # type: ignore[arg-type]
    return playback, clock


# ------------------------------------------------------------------------------------------------
# read: sizes, silence, order, volume


@pytest.mark.parametrize("n", [0, 1, 160, 320, 1024])
def test_read_returns_exactly_n_int16_samples(n: int) -> None:
    playback, _ = make()
    empty = playback.read(n)
    assert empty.dtype == np.int16
    assert empty.shape == (n,)
    assert not empty.any()
    playback.play(ramp(500))
    assert playback.read(n).shape == (n,)


def test_reads_return_queued_audio_in_order_across_chunk_edges() -> None:
    playback, _ = make()
    signal = ramp(1000)
    for part in np.split(signal, [7, 300, 301, 850]):
        playback.play(part)
    out = np.concatenate([playback.read(n) for n in (100, 333, 1, 566, 200)])
    np.testing.assert_array_equal(out[:1000], signal)
    assert not out[1000:].any()
    assert playback.queued_s == 0.0


def test_queued_s_counts_unread_speech() -> None:
    playback, _ = make()
    playback.play(ramp(1600))
    assert playback.queued_s == pytest.approx(0.1)
    playback.read(800)
    assert playback.queued_s == pytest.approx(0.05)


def test_volume_scales_and_clips_in_integer_math() -> None:
    playback, _ = make(volume=0.5)
    playback.play(np.array([1000, -1000, 32767, -32768], dtype=np.int16))
    assert playback.read(4).tolist() == [500, -500, 16384, -16384]
    playback.set_volume(1.0)
    full = np.array([32767, -32768, 5], dtype=np.int16)
    playback.play(full)
    np.testing.assert_array_equal(playback.read(3), full)  # unity gain is exact


@pytest.mark.parametrize("volume", [0.0, 0.3, 0.8, 1.0])
def test_speech_alone_and_speech_under_an_earcon_share_the_volume_arithmetic(
    volume: float,
) -> None:
    # Speech alone takes a lookup, speech under an earcon the int32 mix: the earcon's part
    # of the mix is known, so the speech in both must come out the same.
    signal = np.random.default_rng(7).integers(-32768, 32768, 4 * PERIOD).astype(np.int16)
    alone, _ = make(volume=volume)
    mixed, _ = make(volume=volume)
    for playback in (alone, mixed):
        playback.play(signal[:500])  # chunk edges inside periods
        playback.play(signal[500:])
    mixed.play_earcon("error")
    sound = earcon("error", RATE)
    for index in range(4):
        out_alone = alone.read(PERIOD).astype(np.int32)
        out_mixed = mixed.read(PERIOD).astype(np.int32)
        quiet = sound[index * PERIOD : (index + 1) * PERIOD] == 0
        quiet = np.pad(quiet, (0, PERIOD - len(quiet)), constant_values=True)
        np.testing.assert_array_equal(out_alone[quiet], out_mixed[quiet])
        multiplier, shift = gain_q(volume, headroom=2)
        part = signal[index * PERIOD : (index + 1) * PERIOD].astype(np.int64)
        expected = np.clip((part * multiplier + (1 << (shift - 1))) >> shift, -32768, 32767)
        np.testing.assert_array_equal(out_alone, expected)


def test_silence_is_shared_and_cannot_be_changed_by_a_reader() -> None:
    playback, _ = make()
    first = playback.read(PERIOD)
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 1
    playback.play(ramp(PERIOD))
    assert playback.read(PERIOD).any()
    assert not playback.read(PERIOD).any()


def test_set_volume_clamps_and_rejects_nan() -> None:
    playback, _ = make()
    assert playback.set_volume(1.7) == 1.0
    assert playback.set_volume(-0.2) == 0.0
    assert playback.volume == 0.0
    playback.play(ramp(10))
    assert not playback.read(10).any()
    with pytest.raises(ValueError, match="NaN"):
        playback.set_volume(float("nan"))
    assert playback.volume == 0.0


def test_speech_plus_earcon_saturates_instead_of_wrapping() -> None:
    playback, _ = make(volume=1.0)
    playback.play(np.full(PERIOD, 32767, dtype=np.int16))
    playback.play_earcon("error")
    out = playback.read(PERIOD).astype(np.int32)
    sound = earcon("error", RATE)[:PERIOD].astype(np.int32)
    assert np.all(out[sound > 0] == 32767)  # clipped, not wrapped negative
    np.testing.assert_array_equal(out[sound <= 0], 32767 + sound[sound <= 0])


def test_every_earcon_at_once_over_full_scale_speech_still_clips_cleanly() -> None:
    playback, _ = make(volume=1.0)
    playback.play(np.full(PERIOD, -32768, dtype=np.int16))
    for kind in KINDS:
        playback.play_earcon(kind)
    out = playback.read(PERIOD)
    total = sum(earcon(kind, RATE)[:PERIOD].astype(np.int32) for kind in KINDS)
    np.testing.assert_array_equal(out, np.clip(total - 32768, -32768, 32767))


# ------------------------------------------------------------------------------------------------
# Jitter buffer and underruns


def test_jitter_holds_speech_until_enough_is_queued() -> None:
    playback, _ = make(jitter_ms=60)
    playback.play(ramp(PERIOD))
    assert not playback.read(PERIOD).any()
    playback.play(ramp(PERIOD, 1000))
    assert not playback.read(PERIOD).any()
    assert playing(playback)  # queued speech counts while it waits
    playback.play(ramp(PERIOD, 2000))  # 60 ms now queued
    np.testing.assert_array_equal(playback.read(PERIOD), ramp(PERIOD))


def test_mark_end_releases_a_short_burst_at_once() -> None:
    playback, _ = make(jitter_ms=60)
    playback.play(ramp(100))
    assert not playback.read(PERIOD).any()
    playback.mark_end()
    out = playback.read(PERIOD)
    np.testing.assert_array_equal(out[:100], ramp(100))
    assert not out[100:].any()


def test_jitter_times_out_so_a_short_last_chunk_is_never_stuck() -> None:
    playback, clock = make(jitter_ms=60)
    playback.play(ramp(100))
    clock.advance(0.059)
    assert not playback.read(PERIOD).any()
    clock.advance(0.002)
    assert playback.read(PERIOD)[:100].tolist() == ramp(100).tolist()


def test_once_started_speech_plays_on_without_waiting_again() -> None:
    playback, _ = make(jitter_ms=60)
    playback.play(ramp(3 * PERIOD))
    playback.read(PERIOD)
    playback.play(ramp(10, 5000))  # arrives while playing: no new jitter wait
    out = np.concatenate([playback.read(PERIOD) for _ in range(3)])
    np.testing.assert_array_equal(
        out[: 2 * PERIOD + 10], np.concatenate([ramp(3 * PERIOD)[PERIOD:], ramp(10, 5000)])
    )


def test_running_dry_mid_turn_is_an_underrun() -> None:
    playback, clock = make()
    playback.play(ramp(PERIOD))
    playback.read(PERIOD)
    clock.advance(0.02)
    assert not playback.read(PERIOD).any()  # dry: silence inserted
    clock.advance(0.02)
    playback.play(ramp(PERIOD))  # the rest of the turn arrives late
    assert playback.underruns == 1
    assert playback.read(PERIOD).any()


def test_end_of_turn_is_not_an_underrun() -> None:
    playback, clock = make()
    playback.play(ramp(PERIOD))
    playback.mark_end()
    playback.read(2 * PERIOD)
    clock.advance(0.1)
    playback.play(ramp(PERIOD))  # the next burst
    assert playback.underruns == 0
    # mark_end after the last chunk already played also ends the turn
    playback.read(2 * PERIOD)
    playback.mark_end()
    clock.advance(0.1)
    playback.play(ramp(PERIOD))
    assert playback.underruns == 0


def test_a_long_gap_is_a_new_turn_not_an_underrun() -> None:
    playback, clock = make(turn_gap_s=0.5)
    playback.play(ramp(PERIOD))
    playback.read(2 * PERIOD)
    clock.advance(3.0)  # the user spoke in between
    playback.play(ramp(PERIOD))
    assert playback.underruns == 0


def test_after_an_underrun_the_buffer_refills() -> None:
    playback, _ = make(jitter_ms=40)
    playback.play(ramp(2 * PERIOD))
    playback.read(2 * PERIOD)
    assert not playback.read(PERIOD).any()
    playback.play(ramp(PERIOD))
    assert playback.underruns == 1
    assert not playback.read(PERIOD).any()  # 20 of 40 ms: waits again
    playback.play(ramp(PERIOD))
    assert playback.read(PERIOD).any()


# ------------------------------------------------------------------------------------------------
# flush and is_playing


def test_flush_silences_the_next_read_and_counts() -> None:
    playback, _ = make()
    playback.play(ramp(10 * PERIOD))
    assert playback.read(PERIOD).any()
    playback.flush()
    assert not playback.read(PERIOD).any()
    assert playback.flushes == 1
    assert playback.flushed_s == pytest.approx(9 * PERIOD / RATE)
    assert playback.queued_s == 0.0
    assert playback.underruns == 0


def test_flush_during_jitter_wait_then_new_speech_waits_afresh() -> None:
    playback, clock = make(jitter_ms=60)
    playback.play(ramp(PERIOD))
    clock.advance(0.05)
    playback.flush()
    playback.play(ramp(PERIOD, 7))
    clock.advance(0.02)  # 70 ms after the flushed chunk, 20 ms after this one
    assert not playback.read(PERIOD).any()
    clock.advance(0.05)
    np.testing.assert_array_equal(playback.read(PERIOD), ramp(PERIOD, 7))


def test_is_playing_covers_queued_speech_and_the_period_in_the_device() -> None:
    playback, clock = make(period_s=0.02)
    assert not playing(playback)
    playback.play(ramp(PERIOD))
    assert playing(playback)
    playback.read(PERIOD)
    assert playing(playback)  # the last period is still sounding
    clock.advance(0.019)
    assert playing(playback)
    clock.advance(0.002)
    assert not playing(playback)
    playback.play(ramp(PERIOD))
    playback.flush()
    assert not playing(playback)  # nothing was handed to the device


def test_earcons_are_not_agent_speech() -> None:
    playback, _ = make()
    playback.play_earcon("press")
    assert not playing(playback)
    assert playback.queued_s == 0.0
    assert playback.read(PERIOD).any()
    assert not playing(playback)


# ------------------------------------------------------------------------------------------------
# Earcons


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("kind", KINDS)
def test_earcons_are_short_quiet_and_click_free(kind: EarconKind, rate: int) -> None:
    sound = earcon(kind, rate)
    assert sound.dtype == np.int16
    assert 0.06 <= len(sound) / rate <= 0.25
    assert abs(int(sound[0])) <= 1 and abs(int(sound[-1])) <= 1
    peak = int(np.max(np.abs(sound.astype(np.int32))))
    assert peak == pytest.approx(LEVEL * 32767, abs=1)
    # No jumps: the largest step between samples is what the highest note's slope allows.
    steps = np.abs(np.diff(sound.astype(np.int32)))
    assert steps.max() <= 2 * np.pi * 1100 / rate * peak + 2
    assert earcon(kind, rate) is sound  # cached
    assert not sound.flags.writeable


def test_earcons_differ_in_spectrum() -> None:
    def dominant_hz(sound: Samples) -> float:
        spectrum = np.abs(np.fft.rfft(sound.astype(np.float64), 1 << 15))
        return float(np.argmax(spectrum) * RATE / (1 << 15))

    def spectrum_shape(sound: Samples) -> npt.NDArray[np.float64]:
        spectrum = np.abs(np.fft.rfft(sound.astype(np.float64), 1 << 13))
        return np.asarray(spectrum / np.linalg.norm(spectrum), dtype=np.float64)

    peaks = {kind: dominant_hz(earcon(kind, RATE)) for kind in KINDS}
    assert len({round(hz / 20) for hz in peaks.values()}) == len(KINDS), peaks
    assert peaks["press"] > peaks["release"] > peaks["error"]
    shapes = [spectrum_shape(earcon(kind, RATE)) for kind in KINDS]
    for i in range(len(shapes)):
        for j in range(i + 1, len(shapes)):
            assert float(shapes[i] @ shapes[j]) < 0.8, (KINDS[i], KINDS[j])


def test_unknown_earcon_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown earcon"):
        earcon("fanfare", RATE)  # type: ignore[arg-type]


def test_earcon_plays_alone_at_the_volume() -> None:
    playback, _ = make(volume=0.5)
    playback.play_earcon("release")
    sound = earcon("release", RATE)
    out = np.concatenate([playback.read(PERIOD) for _ in range(len(sound) // PERIOD + 2)])
    expected = np.rint(sound.astype(np.float64) * 0.5)
    assert np.max(np.abs(out[: len(sound)] - expected)) <= 1
    assert not out[len(sound) :].any()


def test_earcon_mixes_over_speech_and_skips_the_jitter_wait() -> None:
    playback, _ = make(jitter_ms=60)
    playback.play(np.full(4 * PERIOD, 1000, dtype=np.int16))
    playback.play_earcon("press")
    out = playback.read(PERIOD).astype(np.int32)
    np.testing.assert_array_equal(out - 1000, earcon("press", RATE)[:PERIOD])


def test_earcon_queued_before_a_flush_is_dropped_one_after_is_heard() -> None:
    playback, _ = make()
    playback.play(ramp(50 * PERIOD))
    playback.play_earcon("connected")
    playback.read(PERIOD)
    playback.flush()  # barge-in: the agent's speech and the old earcon go
    assert not playback.read(PERIOD).any()
    playback.play_earcon("press")  # the press that barged in
    out = playback.read(PERIOD)
    np.testing.assert_array_equal(out, earcon("press", RATE)[:PERIOD])


# ------------------------------------------------------------------------------------------------
# wait_drained with a real reader thread


class PacedReader:
    """A device stand-in: a thread that reads one period every period until stopped."""

    def __init__(self, playback: Playback, period_s: float = 0.01) -> None:
        self.playback = playback
        self.period_s = period_s
        self.heard: list[Samples] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paced-reader", daemon=True)

    def _run(self) -> None:
        n = round(self.playback.rate * self.period_s)
        deadline = time.monotonic()
        while not self._stop.is_set():
            self.heard.append(self.playback.read(n))
            deadline += self.period_s
            self._stop.wait(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> PacedReader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def all_heard(self) -> Samples:
        return np.concatenate(self.heard)


def test_wait_drained_wakes_when_a_reader_thread_has_played_everything() -> None:
    playback = Playback(RATE, jitter_ms=20, volume=1.0, period_s=0.01)
    signal = ramp(RATE // 5)  # 200 ms

    async def main() -> float:
        loop = asyncio.get_running_loop()
        with PacedReader(playback) as reader:
            assert not playing(playback)
            await asyncio.wait_for(playback.wait_drained(), 1)  # nothing queued: at once
            start = loop.time()
            for chunk in np.split(signal, 10):
                playback.play(chunk)
            assert playing(playback)
            await asyncio.wait_for(playback.wait_drained(), 3)
            elapsed = loop.time() - start
            assert not playing(playback)
            assert playback.queued_s == 0.0
        heard = reader.all_heard()
        start_at = int(np.flatnonzero(heard)[0])
        np.testing.assert_array_equal(heard[start_at : start_at + len(signal)], signal)
        return elapsed

    elapsed = asyncio.run(main())
    assert 0.19 <= elapsed < 1.5


def test_wait_drained_wakes_on_flush_and_is_cancellable() -> None:
    playback = Playback(RATE, jitter_ms=0, volume=1.0, period_s=0.01)

    async def main() -> None:
        with PacedReader(playback):
            playback.play(ramp(RATE * 5))  # 5 s of speech
            waiter = asyncio.ensure_future(playback.wait_drained())
            cancelled = asyncio.ensure_future(playback.wait_drained())
            await asyncio.sleep(0.05)
            assert not waiter.done()
            cancelled.cancel()
            playback.flush()
            await asyncio.wait_for(waiter, 1)
            assert cancelled.cancelled()
            assert not playing(playback)

    asyncio.run(main())


def test_speech_queued_again_before_the_wake_keeps_the_waiter_waiting() -> None:
    playback = Playback(RATE, jitter_ms=0, volume=1.0, period_s=0.01)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with PacedReader(playback):
            playback.play(ramp(RATE // 20))  # 50 ms
            waiter = asyncio.ensure_future(playback.wait_drained())
            await asyncio.sleep(0.03)
            playback.play(ramp(RATE // 5))  # 200 ms more before the first ran out
            start = loop.time()
            await asyncio.wait_for(waiter, 2)
            assert loop.time() - start >= 0.15
            assert not playing(playback)

    asyncio.run(main())


def test_a_reader_thread_after_the_loop_closed_is_harmless() -> None:
    playback = Playback(RATE, jitter_ms=0, volume=1.0)

    async def main() -> None:
        playback.play(ramp(PERIOD))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await playback.wait_drained()  # no reader: it waits, registering the loop

    asyncio.run(main())
    errors: list[BaseException] = []

    def drain() -> None:
        try:
            playback.read(2 * PERIOD)  # drains: signals the closed loop
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=drain)
    thread.start()
    thread.join(5)
    assert errors == []


# ------------------------------------------------------------------------------------------------
# VolumeStore


def test_volume_store_round_trip(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "state" / "volume.json")
    assert store.load(0.8) == 0.8  # missing: the default
    store.save(0.35)
    assert store.load(0.8) == pytest.approx(0.35)
    assert json.loads(store.path.read_text()) == {"volume": 0.35}
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["volume.json"]


def test_playback_persists_its_volume_across_restarts(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "volume.json")
    first = Playback(RATE, volume=0.8, store=store)
    assert first.volume == 0.8
    assert first.set_volume(0.25) == 0.25
    second = Playback(RATE, volume=0.8, store=VolumeStore(tmp_path / "volume.json"))
    assert second.volume == pytest.approx(0.25)


@pytest.mark.parametrize(
    "content", ["", "{", "[]", '{"volume": "loud"}', '{"volume": 3}', '{"volume": true}', "{}"]
)
def test_corrupt_volume_file_means_the_default(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "volume.json"
    path.write_text(content)
    with caplog.at_level(logging.WARNING, logger="piagent.audio.playback"):
        assert VolumeStore(path).load(0.6) == 0.6
    assert str(path) in caplog.text


def test_unwritable_volume_dir_warns_and_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    store = VolumeStore(blocker / "volume.json")
    playback = Playback(RATE, volume=0.5, store=store)
    with caplog.at_level(logging.WARNING, logger="piagent.audio.playback"):
        assert playback.set_volume(0.9) == 0.9
        assert store.load(0.5) == 0.5
    assert "cannot save the volume" in caplog.text
    assert playback.volume == 0.9


def test_default_volume_path_follows_systemd_then_xdg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/a:{tmp_path}/b")
    assert default_volume_path() == tmp_path / "a" / "volume.json"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_volume_path() == tmp_path / "xdg" / "piagent" / "volume.json"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_volume_path() == tmp_path / ".local" / "state" / "piagent" / "volume.json"
