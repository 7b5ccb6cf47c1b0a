"""piagent.audio.wavio: the ``wav`` backend's promise (interface.md) in real time.

The microphone: exact samples then silence, at any rate, paced by the loop's clock on absolute
deadlines. The speaker: a timeline written from a real ``Playback``, valid WAV whenever the
loop is not inside a write, with the signal at the moment it played and a flushed part absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from piagent.audio.codecs import Samples
from piagent.audio.playback import Playback
from piagent.audio.wavio import WavFileError, WavMicrophone, WavSpeaker, read_wav


def write_wav(
    path: Path, samples: npt.ArrayLike, rate: int, *, channels: int = 1, width: int = 2
) -> Path:
    data = np.asarray(samples)
    raw = data.astype(f"<i{width}").tobytes() if width in (2, 4) else data.astype("u1").tobytes()
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(raw)
    return path


def ramp(n: int, start: int = 1, sign: int = 1) -> Samples:
    """Nonzero, distinct-looking samples."""
    return (sign * (np.arange(start, start + n) % 20000 + 1)).astype(np.int16)


def run(coro: Awaitable[object], timeout: float = 10) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout)

    asyncio.run(bounded())


async def take(frames: AsyncIterator[Samples], count: int) -> list[tuple[float, Samples]]:
    """``count`` frames, each with the loop time it arrived."""
    loop = asyncio.get_running_loop()
    got: list[tuple[float, Samples]] = []
    async for frame in frames:
        got.append((loop.time(), frame))
        if len(got) == count:
            break
    return got


# ------------------------------------------------------------------------------------------------
# WavMicrophone


def test_mic_yields_the_file_exactly_then_silence(tmp_path: Path) -> None:
    signal = ramp(1000)
    mic = WavMicrophone(write_wav(tmp_path / "mic.wav", signal, 16000))
    assert (mic.rate, mic.name, mic.healthy, mic.overruns, mic.clipped) == (
        16000,
        str(tmp_path / "mic.wav"),
        True,
        0,
        0,
    )
    assert mic.duration_s == pytest.approx(1000 / 16000)

    async def main() -> None:
        async with contextlib.aclosing(mic.frames()) as frames:
            got = [frame for _, frame in await take(frames, 6)]
        assert all(len(frame) == 320 and frame.dtype == np.int16 for frame in got)
        heard = np.concatenate(got)
        np.testing.assert_array_equal(heard[:1000], signal)
        assert not heard[1000:].any()

    run(main())


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
def test_mic_reads_any_rate_with_integer_exact_frame_sizes(tmp_path: Path, rate: int) -> None:
    signal = ramp(rate // 10)  # 100 ms
    mic = WavMicrophone(write_wav(tmp_path / "mic.wav", signal, rate), chunk_ms=20)
    assert mic.rate == rate

    async def main() -> None:
        async with contextlib.aclosing(mic.frames()) as frames:
            got = [frame for _, frame in await take(frames, 7)]
        # Frame k ends at sample (k + 1) * 20 * rate // 1000: no rounding drift at 11025 Hz.
        ends = np.cumsum([len(frame) for frame in got])
        assert ends.tolist() == [(k + 1) * 20 * rate // 1000 for k in range(7)]
        heard = np.concatenate(got)
        np.testing.assert_array_equal(heard[: len(signal)], signal)
        assert not heard[len(signal) :].any()

    run(main())


def test_mic_is_paced_by_the_loop_clock_on_absolute_deadlines(tmp_path: Path) -> None:
    mic = WavMicrophone(write_wav(tmp_path / "mic.wav", ramp(16000), 16000), chunk_ms=20)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        arrivals: list[float] = []
        async with contextlib.aclosing(mic.frames()) as frames:
            async for _ in frames:
                arrivals.append(loop.time() - start)
                if len(arrivals) == 5:
                    time.sleep(0.1)  # noqa: ASYNC251 - hold the loop up, as a slow consumer would
                if len(arrivals) == 30:
                    break
        # Never early: frame k is delivered once it has been "captured".
        for k, at in enumerate(arrivals):
            assert at >= (k + 1) * 0.02 - 0.002, (k, at)
        # The stall is caught up at once, not carried: frame 30 is on time, not 100 ms late.
        assert arrivals[5] - arrivals[4] >= 0.09
        assert arrivals[6] - arrivals[5] < 0.015
        assert arrivals[29] == pytest.approx(0.6, abs=0.05)

    run(main())


def test_mic_keeps_its_place_across_frames_calls(tmp_path: Path) -> None:
    signal = ramp(640)
    mic = WavMicrophone(write_wav(tmp_path / "mic.wav", signal, 16000))

    async def main() -> None:
        async with contextlib.aclosing(mic.frames()) as frames:
            first = await take(frames, 1)
        async with contextlib.aclosing(mic.frames()) as frames:
            second = await take(frames, 1)
        np.testing.assert_array_equal(np.concatenate([first[0][1], second[0][1]]), signal)

    run(main())


def test_mic_gain_and_clip_count(tmp_path: Path) -> None:
    signal = np.array([100, -100, 20000, -20000] * 80, dtype=np.int16)  # one 20 ms frame
    mic = WavMicrophone(write_wav(tmp_path / "mic.wav", signal, 16000), gain_db=6.0206)

    async def main() -> None:
        async with contextlib.aclosing(mic.frames()) as frames:
            (_, frame), (_, silence) = await take(frames, 2)
        assert frame[:4].tolist() == [200, -200, 32767, -32768]
        assert not silence.any()
        assert mic.clipped == 160

    run(main())


@pytest.mark.parametrize(
    ("channels", "width", "words"),
    [(2, 2, "2 channel"), (1, 1, "8-bit"), (1, 4, "32-bit")],
)
def test_mic_rejects_other_formats_naming_the_file(
    tmp_path: Path, channels: int, width: int, words: str
) -> None:
    path = write_wav(
        tmp_path / "odd.wav", np.zeros(200 * channels), 16000, channels=channels, width=width
    )
    with pytest.raises(WavFileError, match=words) as caught:
        WavMicrophone(path)
    assert str(path) in str(caught.value)
    assert "sox" in str(caught.value)


@pytest.mark.parametrize("content", [b"", b"RIFF\x00\x00", b"not a wav file at all, just text"])
def test_mic_rejects_non_wav_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.wav"
    path.write_bytes(content)
    with pytest.raises(WavFileError, match=re.escape(str(path))):
        read_wav(path)


def test_mic_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(WavFileError, match=r"nowhere\.wav"):
        WavMicrophone(tmp_path / "nowhere.wav")


# ------------------------------------------------------------------------------------------------
# WavSpeaker


def parse(path: Path) -> tuple[int, Samples]:
    """Rate and samples of a WAV, checking the header agrees with the file's size."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getcomptype()) == (1, 2, "NONE")
        frames = wav.getnframes()
        data = wav.readframes(frames)
        rate = wav.getframerate()
    assert len(data) == 2 * frames
    assert path.stat().st_size == 44 + 2 * frames
    return rate, np.frombuffer(data, dtype="<i2").astype(np.int16)


async def poll_valid(path: Path, seconds: float, seen: list[int]) -> None:
    """Sleep ``seconds`` in small steps, parsing the file at each (the loop is never inside
    one of the speaker's writes here) and recording its length."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        await asyncio.sleep(0.007)
        seen.append(len(parse(path)[1]))


def test_speaker_writes_a_timeline_valid_at_every_moment(tmp_path: Path) -> None:
    rate, period = 16000, 320
    path = tmp_path / "out" / "nested" / "speaker.wav"
    playback = Playback(rate, jitter_ms=0, volume=1.0, period_s=0.02)
    speaker = WavSpeaker(path, rate, playback)
    first = ramp(rate // 2)  # 500 ms, flushed after about 200 ms
    second = ramp(rate // 10, sign=-1)  # 100 ms, played whole
    seen: list[int] = []
    times: dict[str, float] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(speaker.run())
        await poll_valid(path, 0.1, seen)
        times["first"] = loop.time()
        playback.play(first)
        await poll_valid(path, 0.2, seen)
        times["flush"] = loop.time()
        playback.flush()
        await poll_valid(path, 0.1, seen)
        times["second"] = loop.time()
        playback.play(second)
        playback.mark_end()
        await poll_valid(path, 0.2, seen)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        times["end"] = loop.time()

    run(main())
    file_rate, samples = parse(path)
    assert file_rate == rate
    assert len(samples) == speaker.samples_written
    assert len(seen) > 40 and seen == sorted(seen)  # parsed each time, always growing
    start = speaker.start_time
    assert start is not None
    assert len(samples) == pytest.approx((times["end"] - start) * rate, abs=2 * period)

    # The first signal starts where it was played (within one period)...
    nonzero = np.flatnonzero(samples)
    at = int(nonzero[0])
    assert at == pytest.approx((times["first"] - start) * rate, abs=period)
    # ...and plays until the flush, exactly, then stops: the rest is never written.
    heard = samples[at : at + len(first)]
    cut = int(np.argmin(heard != 0)) if not heard.all() else len(heard)
    np.testing.assert_array_equal(heard[:cut], first[:cut])
    assert cut == pytest.approx((times["flush"] - times["first"]) * rate, abs=period)
    assert cut < len(first) - rate // 10
    # Then silence until the second signal, which starts where it was played and plays whole.
    at2 = int(nonzero[nonzero >= at + cut][0])
    assert at2 == pytest.approx((times["second"] - start) * rate, abs=period)
    np.testing.assert_array_equal(samples[at2 : at2 + len(second)], second)
    assert len(nonzero) == cut + len(second)


def test_speaker_overwrites_and_catches_up_after_a_stall(tmp_path: Path) -> None:
    rate = 11025  # 220.5 samples a period: the sizes must still add up
    path = tmp_path / "speaker.wav"
    path.write_bytes(b"old contents " * 100_000)
    speaker = WavSpeaker(path, rate, Playback(rate))
    assert (speaker.rate, speaker.name, speaker.healthy, speaker.start_time) == (
        rate,
        str(path),
        True,
        None,
    )
    ends: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(speaker.run())
        await asyncio.sleep(0.1)
        time.sleep(0.15)  # noqa: ASYNC251 - hold the loop up: the timeline must keep this time
        await asyncio.sleep(0.1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        ends.append(loop.time())

    run(main())
    file_rate, samples = parse(path)
    assert file_rate == rate
    assert speaker.start_time is not None
    elapsed = ends[0] - speaker.start_time
    assert len(samples) == pytest.approx(elapsed * rate, abs=2 * 221)
    assert not samples.any()


class SloppySource:
    """A source that breaks the ``read(n)`` promise: one sample too many, then too few."""

    def __init__(self) -> None:
        self.calls = 0

    def read(self, n: int) -> Samples:
        self.calls += 1
        return np.full(n + (1 if self.calls % 2 else -1), 7, dtype=np.int16)


def test_speaker_keeps_time_with_a_sloppy_source(tmp_path: Path) -> None:
    path = tmp_path / "speaker.wav"
    source = SloppySource()
    speaker = WavSpeaker(path, 8000, source, period_ms=10)

    async def main() -> None:
        task = asyncio.create_task(speaker.run())
        await asyncio.sleep(0.1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    run(main())
    _, samples = parse(path)
    assert len(samples) == source.calls * 80
    assert np.count_nonzero(samples == 0) == source.calls // 2


def test_speaker_that_cannot_create_its_file_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    speaker = WavSpeaker(blocker / "speaker.wav", 16000, Playback(16000))

    async def main() -> None:
        with pytest.raises(WavFileError, match="cannot create the speaker file"):
            await speaker.run()

    run(main())
    assert not speaker.healthy


def test_both_backends_have_the_device_shape(tmp_path: Path) -> None:
    mic = WavMicrophone(write_wav(tmp_path / "mic.wav", ramp(10), 16000))
    speaker = WavSpeaker(tmp_path / "speaker.wav", 16000, Playback(16000))
    for device in (mic, speaker):
        assert isinstance(device.rate, int)
        assert isinstance(device.name, str)
        assert device.healthy is True
    frames: Callable[[], AsyncIterator[Samples]] = mic.frames
    runner: Callable[[], Awaitable[None]] = speaker.run
    assert callable(frames) and callable(runner)


class _Trickle(io.RawIOBase):
    """An unbuffered file that takes at most ``most`` bytes a write (a pipe, a full disk)."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        part = bytes(memoryview(b).cast("B")[: self.most])
        self.data += part
        return len(part)

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no descriptor")


@pytest.mark.parametrize("samples", [np.arange(-500, 500, 7, dtype=np.int16), np.arange(143)])
def test_short_writes_are_finished_and_a_stuck_file_is_an_error(
    tmp_path: Path, samples: npt.NDArray[Any]
) -> None:
    speaker = WavSpeaker(tmp_path / "out.wav", 16000, Playback(16000))
    speaker._written, speaker._full = 0, False  # as _create leaves them
    trickle = _Trickle(7)
    speaker._write_sizes = lambda file: None  # type: ignore[method-assign] # no header here
    speaker._append(trickle, samples)  # type: ignore[arg-type]
    assert bytes(trickle.data) == samples.astype("<i2").tobytes()
    assert speaker.samples_written == len(samples)
    with pytest.raises(OSError, match="wrote nothing of 286 bytes"):
        speaker._append(_Trickle(0), samples[:143])  # type: ignore[arg-type]
