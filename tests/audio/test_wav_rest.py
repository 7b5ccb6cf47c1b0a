"""The ``wav`` backend at rest: a microphone nobody needs and a speaker with nothing to play
wake nobody, yet both keep real time. A resting microphone resumes with the frame being
captured when it is wanted again (the file played on unheard); a resting speaker still writes
its timeline (the silence that went by, once a second) and plays sound at the moment it
comes, never earlier in the file. Real time, in short spans."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path

import numpy as np
import pytest

from piagent.audio import wavio
from piagent.audio.playback import Playback
from piagent.audio.wavio import WavMicrophone, WavSpeaker, read_wav
from tests.audio.test_wavio import ramp, write_wav

RATE = 16000
CHUNK = 320  # 20 ms


def run(coro: Awaitable[None], timeout: float = 15) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout)

    asyncio.run(bounded())


def test_a_resting_microphone_resumes_with_the_frame_being_captured(tmp_path: Path) -> None:
    samples = ramp(RATE * 3)
    mic = WavMicrophone(write_wav(tmp_path / "mic.wav", samples, RATE))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        frames = mic.frames()
        start = loop.time()
        first = await anext(frames)
        assert np.array_equal(first, samples[:CHUNK])
        mic.wanted = False
        resting = asyncio.ensure_future(anext(frames))
        await asyncio.sleep(0.5)
        assert not resting.done(), "a microphone nobody wants delivered a frame"
        mic.wanted = True
        frame = await resting
        arrived = loop.time() - start
        # The frame that arrives is the one captured just now, whole: its place in the file
        # is its moment (frame k ends at (k + 1) * 20 ms), not the one after the last heard.
        index = int(np.flatnonzero(samples == frame[0])[0]) // CHUNK
        assert np.array_equal(frame, samples[index * CHUNK : (index + 1) * CHUNK])
        assert index >= 20, f"frame {index} after 0.5 s of rest: the rest was not skipped"
        assert (index + 1) * 0.02 == pytest.approx(arrived, abs=0.05)
        await frames.aclose()

    run(main())


def test_a_resting_speaker_keeps_the_timeline_and_plays_sound_when_it_comes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wavio, "PARK_AFTER_S", 0.2)
    monkeypatch.setattr(wavio, "REST_S", 0.3)
    playback = Playback(RATE, jitter_ms=0)
    speaker = WavSpeaker(tmp_path / "speaker.wav", RATE, playback)
    playback.when_audible = speaker.wake
    tone = np.full(RATE // 5, 5000, dtype=np.int16)  # 200 ms

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(speaker.run())
        await asyncio.sleep(1.5)
        assert speaker.parks >= 2, "an idle speaker did not rest"
        behind = loop.time() - (speaker.start_time or 0) - speaker.samples_written / RATE
        assert behind <= wavio.REST_S + 0.05, f"the timeline fell {behind:.2f} s behind"
        queued_at = loop.time() - (speaker.start_time or 0)
        playback.play(tone)
        playback.mark_end()
        await asyncio.sleep(0.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        played, _ = read_wav(tmp_path / "speaker.wav")
        sound = np.flatnonzero(played)
        assert len(sound) == len(tone), "the sound was not played whole"
        at = sound[0] / RATE
        assert queued_at <= at <= queued_at + 0.045, (
            f"the sound queued at {queued_at:.3f} s plays at {at:.3f} s in the file"
        )

    run(main())
