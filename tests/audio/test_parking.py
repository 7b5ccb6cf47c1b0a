"""The speaker parks while nothing plays, through the real PyAudio -> PortAudio -> ALSA path.

An idle daemon's speaker would otherwise wake PortAudio's thread 50 times a second to mix
and write silence. Parked, the stream has completed: no PortAudio thread runs and no period is
mixed, the device stays open and healthy, and the next sound (speech or an earcon queued in
``Playback``) starts it again through ``Playback.when_audible``, bit-exact from its first
sample. Scenarios run in a child process on the fake card, as in test_devices.py.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from piagent.audio.devices import Speaker
from piagent.audio.playback import Playback
from piagent.config import AudioOutputConfig
from tests.audio.alsa import FakeCard, Fifo, write_fake_card
from tests.audio.child import Scenarios
from tests.audio.test_devices import (
    b64,
    drain,
    fixture,
    native_threads,
    settled_threads,
    unb64,
    wait_until,
)

Json = dict[str, Any]
scenarios = Scenarios(__name__)

RATE = 48000
PARK_AFTER_S = 0.2


@scenarios
def park_and_wake(args: Json) -> Json:
    """Open the speaker with Playback as its source; let it park; play a fixture; let it park
    again. Returns what the FIFO received and what was seen on the way."""
    fifo = Fifo(Path(os.environ["FAKE_SPK_FILE"]))
    speech = fixture(RATE, 0.3, seed=3)

    async def main() -> Json:
        playback = Playback(RATE, jitter_ms=0, volume=1.0)
        speaker = Speaker(
            AudioOutputConfig(device="fakespk", rate=RATE), playback, park_after_s=PARK_AFTER_S
        )
        health: list[bool] = []
        speaker.when_health_changed = health.append
        before = native_threads()
        played = bytearray()
        seen: Json = {"hooked": playback.when_audible == speaker.wake}
        async with asyncio.TaskGroup() as tasks:
            drainer = tasks.create_task(drain(fifo, RATE, played))
            speaker.open()
            runner = tasks.create_task(speaker.run())
            await wait_until(lambda: speaker.healthy, "the speaker to be healthy")
            await wait_until(lambda: speaker.parked, "the speaker to park", 5.0)
            seen["threads_parked"] = await settled_threads(before)
            callbacks = speaker._callbacks
            await asyncio.sleep(0.5)
            seen["callbacks_while_parked"] = speaker._callbacks - callbacks
            seen["healthy_parked"] = speaker.healthy
            mark = len(played)
            playback.play(speech)  # wakes it
            seen["parked_after_play"] = speaker.parked
            seen["threads_playing"] = native_threads()
            payload = speech.astype("<i2").tobytes()
            await wait_until(lambda: payload in played[mark:], "the speech to be played", 5.0)
            await wait_until(lambda: speaker.parks == 2, "the speaker to park again", 5.0)
            seen["after_wake"] = b64(bytes(played[mark:]))
            seen["parks"] = speaker.parks
            seen["health"] = list(health)  # before the cancel closes it
            drainer.cancel()
            fifo.close()
            runner.cancel()
        return {**seen, "threads_before": before}

    return asyncio.run(main())


@pytest.fixture
def card(tmp_path: Path) -> FakeCard:
    return write_fake_card(tmp_path, spk_file=tmp_path / "speaker.fifo")


@pytest.mark.timeout(60)
def test_an_idle_speaker_parks_and_the_next_sound_wakes_it_bit_exact(card: FakeCard) -> None:
    result, _ = scenarios.spawn(card, "park_and_wake", timeout=40)
    assert result["hooked"] is True
    # Parked: PortAudio's callback thread is gone and nothing is mixed, yet healthy.
    assert result["threads_parked"] == result["threads_before"]
    assert result["callbacks_while_parked"] == 0
    assert result["healthy_parked"] is True
    # play() restarts it at once, on the loop's thread, and every sample plays.
    assert result["parked_after_play"] is False
    assert result["threads_playing"] == result["threads_before"] + 1
    played = np.frombuffer(unb64(result["after_wake"]), dtype="<i2")
    speech = fixture(RATE, 0.3, seed=3)
    at = played.tobytes().find(speech.astype("<i2").tobytes())
    assert at >= 0 and at % 2 == 0
    assert not played[: at // 2].any()  # only silence before it
    # And it parks again afterwards; health never flipped back to False on the way.
    assert result["parks"] == 2
    assert result["health"] == [True]
    messages = [message for _, message in result["logs"]]
    assert "speaker resumed" in messages


def test_parking_needs_a_positive_time() -> None:
    with pytest.raises(ValueError, match="park_after_s"):
        Speaker(AudioOutputConfig(device="x", rate=RATE), park_after_s=0)


def test_a_source_that_cannot_say_when_it_sounds_never_parks() -> None:
    """A source without ``when_audible`` would never wake a parked stream: no parking."""

    class Plain:
        is_idle = True

        def read(self, n: int) -> Any:
            return np.zeros(n, dtype=np.int16)

    async def main() -> tuple[bool, bool]:
        speaker = Speaker(AudioOutputConfig(device="x", rate=RATE), Plain(), park_after_s=0.02)
        speaker._prepare()  # the loop it would wake on
        plain = speaker._may_park(speaker.source)
        playback = Playback(RATE)
        speaker.source = playback
        hooked = speaker._may_park(playback)  # one idle period of 20 ms: enough
        return plain, hooked

    assert asyncio.run(main()) == (False, True)
