"""Tests of piagent.audio.devices with fixed-format devices and ALSA names, through the real
PyAudio -> PortAudio -> ALSA path of the fake card (tests/audio/alsa.py), in child processes
as in test_devices.py: stereo-only PCMs (``arecord -c 1`` fails on them) for the channel
negotiation, the downmix and the upmix; ``plug:...`` (an ALSA PCM string PortAudio does not
list) for piagent's ALSA aliases; ``latespk`` for a device that appears after start-up.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from piagent.audio.devices import DeviceError, Microphone, Speaker
from piagent.config import AudioInputConfig, AudioOutputConfig
from tests.audio.alsa import FakeCard, Fifo, write_fake_card
from tests.audio.child import Scenarios
from tests.audio.test_devices import (
    FAST,
    Child,
    Json,
    ScriptedSource,
    b64,
    drain,
    fixture,
    unb64,
    wait_until,
)

scenarios = Scenarios(__name__)


def run_child(card: FakeCard, name: str, timeout: float = 30, **args: Any) -> Child:
    result, stderr = scenarios.spawn(card, name, timeout=timeout, **args)
    return Child(result, stderr)


# ----------------------------------------------------------------------------------------------
# Scenarios (run in the child)


@scenarios
def capture_from(args: Json) -> Json:
    """Capture ``count`` frames from ``device``, whose FIFO ``env`` names holds ``samples``."""
    fifo = Fifo(Path(os.environ[args["env"]]))
    fifo.write(np.frombuffer(unb64(args["samples"]), dtype="<i2"))

    async def main() -> Json:
        mic = Microphone(AudioInputConfig(device=args["device"], rate=args["rate"]))
        mic.open()
        frames = []
        async with asyncio.TaskGroup() as tasks:
            runner = tasks.create_task(mic.run())
            async with asyncio.timeout(5):
                while len(frames) < args["count"]:
                    frames.append(await mic.read())
            result = {
                "name": mic.name,
                "channels": mic.channels,
                "audio": b64(b"".join(f.astype("<i2").tobytes() for f in frames)),
            }
            fifo.close()
            runner.cancel()
        return result

    return asyncio.run(main())


@scenarios
def play_to(args: Json) -> Json:
    """Open ``device`` and return what the speaker's PortAudio callback hands PortAudio for
    one period of a fixture. (The callback is called here, on this thread: a PortAudio stream
    on the stereo-only fake PCM stalls after two periods, see tests/audio/alsa.py.)"""
    rate = args["rate"]
    samples = fixture(rate, 0.02, seed=2)
    source = ScriptedSource()
    speaker = Speaker(AudioOutputConfig(device=args["device"], rate=rate), source)
    speaker.open()
    try:
        source.play(samples)
        generation = speaker._generation  # the open stream's: its callbacks are accepted
        data, flag = speaker._callback(generation, None, samples.size, None, 0)
    finally:
        speaker.close()
    assert data is not None
    return {"name": speaker.name, "channels": speaker.channels, "played": b64(data), "flag": flag}


@scenarios
def open_both(args: Json) -> Json:
    """Construct a microphone and a speaker, then open both (as the service does)."""

    async def main() -> Json:  # the microphone opens on an event loop
        mic = Microphone(AudioInputConfig(device=args["mic"], rate=16000))
        speaker = Speaker(AudioOutputConfig(device=args["speaker"]))
        result: Json = {}
        for key, device in (("mic", mic), ("speaker", speaker)):
            try:
                device.open()
                result[key] = {
                    "name": device.name,
                    "channels": device.channels,
                    "rate": device.rate,
                }
            except DeviceError as exc:
                result[key] = {"error": str(exc)}
        mic.close()
        speaker.close()
        return {**result, "ALSA_CONFIG_PATH": os.environ["ALSA_CONFIG_PATH"]}

    return asyncio.run(main())


@scenarios
def late_speaker(args: Json) -> Json:
    """``plug:latespk`` cannot be opened at start-up; its PCM appears later."""
    rate = 16000
    fifo = Fifo(Path(os.environ["FAKE_SPK_FILE"]))
    samples = fixture(rate, 0.1, seed=9)
    payload = samples.astype("<i2").tobytes()

    async def main() -> Json:
        source = ScriptedSource()
        speaker = Speaker(AudioOutputConfig(device="plug:latespk", rate=rate), source, **FAST)
        played = bytearray()
        async with asyncio.TaskGroup() as tasks:
            runner = tasks.create_task(speaker.run())
            await asyncio.sleep(0.8)
            absent = {"healthy": speaker.healthy, "source_reads": source.reads}
            os.environ["FAKE_LATE_SPK"] = "fakespk"  # the card is plugged in
            drainer = tasks.create_task(drain(fifo, rate, played))
            await wait_until(lambda: speaker.healthy, "the speaker to appear", 3.0)
            source.play(samples)
            await wait_until(lambda: payload in played, "the payload to be played")
            result = {"absent": absent, "healthy": speaker.healthy, "name": speaker.name}
            drainer.cancel()
            fifo.close()
            runner.cancel()
        return result

    return asyncio.run(main())


# ----------------------------------------------------------------------------------------------
# Tests (each in a child process)


@pytest.fixture
def card(tmp_path: Path) -> FakeCard:
    return write_fake_card(
        tmp_path,
        mic_file=tmp_path / "mic.fifo",
        spk_file=tmp_path / "speaker.fifo",
        stereo_mic_file=tmp_path / "stereo-mic.fifo",
        stereo_spk_file=tmp_path / "stereo-speaker.fifo",
    )


@pytest.mark.timeout(60)
def test_stereo_only_microphone_is_downmixed_exactly(card: FakeCard) -> None:
    rate = 48000
    left, right = fixture(rate, 0.2, seed=11), fixture(rate, 0.2, seed=12)
    interleaved = np.stack([left, right], axis=1).reshape(-1).astype("<i2")
    child = run_child(
        card,
        "capture_from",
        device="stereomic",
        env="FAKE_STEREO_MIC_FILE",
        rate=rate,
        count=10,
        samples=b64(interleaved.tobytes()),
    )
    assert (child.result["name"], child.result["channels"]) == ("stereomic", 2)
    mono = np.frombuffer(unb64(child.result["audio"]), dtype="<i2")
    expected = (left.astype(np.int32) + right.astype(np.int32)) // 2  # mean, floor
    assert np.array_equal(mono, expected.astype(np.int16))
    (info,) = child.messages("INFO")
    assert info.startswith("Microphone open: 'stereomic' (index ")
    assert info.endswith("), 48000 Hz, 2 channels, period 20 ms, buffer 80 ms")


@pytest.mark.timeout(60)
def test_stereo_only_speaker_plays_mono_on_both_channels(card: FakeCard) -> None:
    child = run_child(card, "play_to", device="stereospk", rate=16000)
    assert (child.result["name"], child.result["channels"]) == ("stereospk", 2)
    assert child.result["flag"] == 0  # paContinue
    played = np.frombuffer(unb64(child.result["played"]), dtype="<i2").reshape(-1, 2)
    samples = fixture(16000, 0.02, seed=2)
    assert np.array_equal(played[:, 0], samples) and np.array_equal(played[:, 1], samples)
    assert child.messages("INFO")[0].endswith("), 16000 Hz, 2 channels, period 20 ms, buffer 40 ms")


@pytest.mark.timeout(60)
def test_alsa_pcm_string_opens_through_piagents_alias(card: FakeCard) -> None:
    samples = fixture(16000, 0.2, seed=13)
    child = run_child(
        card,
        "capture_from",
        device="plug:fakemic",  # PortAudio hides plug*: only the alias can reach it
        env="FAKE_MIC_FILE",
        rate=16000,
        count=10,
        samples=b64(samples.astype("<i2").tobytes()),
    )
    assert (child.result["name"], child.result["channels"]) == ("plug:fakemic", 1)
    assert unb64(child.result["audio"]) == samples.astype("<i2").tobytes()
    assert child.messages("INFO") == [
        "Microphone open: 'plug:fakemic' (as PortAudio's piagent_input), 16000 Hz, mono, "
        "period 20 ms, buffer 80 ms"
    ]


@pytest.mark.timeout(60)
def test_plug_over_a_stereo_only_pcm_takes_mono(tmp_path: Path) -> None:
    """The plug layer the name asks for is kept: ALSA converts, piagent opens it mono."""
    card = write_fake_card(tmp_path)  # /dev/zero and /dev/null: every PCM opens
    child = run_child(card, "open_both", mic="plug:stereomic", speaker="plug:stereospk")
    assert child.result["mic"] == {"name": "plug:stereomic", "channels": 1, "rate": 16000}
    assert child.result["speaker"] == {"name": "plug:stereospk", "channels": 1, "rate": 44100}
    path = child.result["ALSA_CONFIG_PATH"].split(":")
    assert path[0] == str(card.config) and len(path) == 2
    child = run_child(card, "open_both", mic="stereomic", speaker="plug:nosuchpcm")
    assert child.result["mic"]["channels"] == 2
    assert child.result["speaker"]["error"].startswith(
        "output device 'plug:nosuchpcm': ALSA cannot open it for playback"
    )


@pytest.mark.timeout(60)
def test_speaker_absent_at_start_is_reported_once_and_opens_when_it_appears(
    card: FakeCard,
) -> None:
    child = run_child(card, "late_speaker")
    result = child.result
    assert result["absent"]["healthy"] is False
    assert result["absent"]["source_reads"] > 0  # drained in real time while it was away
    assert (result["healthy"], result["name"]) == (True, "plug:latespk")
    (warning,) = child.messages("WARNING")
    assert warning.startswith(
        "Speaker 'plug:latespk' unavailable: output device 'plug:latespk': ALSA cannot open "
        "it for playback (sound cards: "
    )
    assert warning.endswith(
        "check that its card is connected and the name is right (`aplay -L` lists ALSA's "
        "names); retrying until it opens"
    )
    (info,) = child.messages("INFO")
    assert info.startswith("Speaker open after ")
    assert info.endswith(
        "(as PortAudio's piagent_output), 16000 Hz, mono, period 20 ms, buffer 40 ms"
    )
