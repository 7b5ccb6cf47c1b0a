"""One clock for the ``wav`` backend: a speaker made with ``microphone=`` hands that microphone's
frames over on its own ticks, as one sound card's clock serves capture and playback. The frames
are the file's, whole and in order; a microphone nobody wants gets none and resumes with the
frame being captured; the speaker rests only when neither side needs it. Real time, in short
spans; no timing is asserted beyond what the frames' contents say."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from piagent.audio import wavio
from piagent.audio.codecs import Samples
from piagent.audio.playback import Playback
from piagent.audio.wavio import WavMicrophone, WavSpeaker
from tests.audio.test_wavio import parse, ramp, run, write_wav

RATE = 16000
CHUNK = 320  # 20 ms


def clocked_pair(
    tmp_path: Path, seconds: float
) -> tuple[WavMicrophone, WavSpeaker, Samples, list[Samples]]:
    """A microphone playing a ramp, the speaker that clocks it, the ramp, and the list the
    microphone's frames are handed to."""
    samples = ramp(int(RATE * seconds))
    mic = WavMicrophone(write_wav(tmp_path / "mic.wav", samples, RATE))
    playback = Playback(RATE, jitter_ms=0)
    speaker = WavSpeaker(tmp_path / "speaker.wav", RATE, playback, microphone=mic)
    frames: list[Samples] = []
    mic.when_frame = frames.append
    return mic, speaker, samples, frames


@contextlib.asynccontextmanager
async def running(speaker: WavSpeaker) -> AsyncIterator[None]:
    """The speaker's ``run`` for the block; cancelled at its end, as the daemon stops it."""
    task = asyncio.create_task(speaker.run())
    try:
        yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_the_speaker_hands_over_the_microphones_frames_whole_and_in_order(
    tmp_path: Path,
) -> None:
    mic, speaker, samples, frames = clocked_pair(tmp_path, 2.0)
    assert mic.clocked  # from the speaker's making: the daemon's pump decides by it at start

    async def main() -> None:
        async with running(speaker):
            await asyncio.sleep(0.5)

    run(main())
    assert len(frames) >= 10, f"only {len(frames)} frames in 0.5 s"
    assert all(len(frame) == CHUNK for frame in frames)
    np.testing.assert_array_equal(np.concatenate(frames), samples[: len(frames) * CHUNK])
    _, played = parse(tmp_path / "speaker.wav")
    assert not played.any()  # nothing to play: the timeline is silence


def test_a_clocked_microphone_nobody_wants_gets_nothing_then_resumes_where_the_file_is(
    tmp_path: Path,
) -> None:
    mic, speaker, samples, frames = clocked_pair(tmp_path, 3.0)

    async def main() -> None:
        async with running(speaker):
            await asyncio.sleep(0.2)
            mic.wanted = False
            await asyncio.sleep(0.02)  # a tick may be on its way
            heard = len(frames)
            await asyncio.sleep(0.5)
            assert len(frames) == heard, "a microphone nobody wants was handed frames"
            mic.wanted = True
            await asyncio.sleep(0.2)
        # The first frame after the rest is the one captured when it was wanted again: the
        # half second in between went by unheard, in whole frames.
        resumed = frames[heard]
        index = int(np.flatnonzero(samples == resumed[0])[0])
        assert index % CHUNK == 0
        np.testing.assert_array_equal(resumed, samples[index : index + CHUNK])
        assert index // CHUNK >= heard + 20, "the rest was not skipped"
        after = np.concatenate(frames[heard:])
        np.testing.assert_array_equal(after, samples[index : index + len(after)])

    run(main())


def test_the_clock_rests_only_when_neither_side_needs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wavio, "PARK_AFTER_S", 0.1)
    monkeypatch.setattr(wavio, "REST_S", 0.2)
    mic, speaker, _, frames = clocked_pair(tmp_path, 3.0)

    async def main() -> None:
        async with running(speaker):
            await asyncio.sleep(0.6)
            assert speaker.parks == 0, "the speaker rested while the microphone was wanted"
            mic.wanted = False
            await asyncio.sleep(0.6)
            assert speaker.parks >= 1, "nothing needed the clock and it went on ticking"
            heard = len(frames)
            mic.wanted = True  # wakes the resting clock
            await asyncio.sleep(0.2)
            assert len(frames) > heard, "a resting clock did not tick for the microphone"

    run(main())
    # The file is a timeline to the end, the silence written a rest at a time included.
    _, played = parse(tmp_path / "speaker.wav")
    assert speaker.start_time is not None
    assert len(played) == speaker.samples_written
    assert len(played) >= 1.3 * RATE
