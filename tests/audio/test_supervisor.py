"""Tests of piagent.audio.supervisor (health reporting and rescans) through the real PyAudio
-> PortAudio -> ALSA path of the fake card (tests/audio/alsa.py), in child processes as in
test_devices.py.

A microphone that appears while the speaker is open: the fake card's ``fakemic`` has no input
channels while its ``$FAKE_MIC_FILE`` does not exist, and the scenario creates it while the
process runs. The fake card changes nothing under /proc/asound or /dev/snd, so the scenarios
replace ``PORTAUDIO_INSTANCES.signature`` (what says that the sound cards changed) by a value
they flip themselves.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from piagent.audio.devices import Microphone, Speaker
from piagent.audio.playback import Playback
from piagent.audio.portaudio import PORTAUDIO_INSTANCES
from piagent.audio.supervisor import RESCANS
from piagent.config import AudioInputConfig, AudioOutputConfig
from tests.audio.alsa import FakeCard, Fifo, write_fake_card
from tests.audio.child import Scenarios
from tests.audio.test_devices import (
    FAST,
    Child,
    Json,
    Samples,
    ScriptedSource,
    Timings,
    b64,
    drain,
    fixture,
    unb64,
    wait_until,
)

scenarios = Scenarios(__name__)

# FAST, but retrying every 0.1 s doubling to 0.25 s (FAST's reaches 1 s): the phases below last
# a number of retries, not a fixed time, so they are short and still see several retries.
RETRYING: Timings = {**FAST, "backoff_initial": 0.1, "backoff_max": 0.25}


def run_child(card: FakeCard, name: str, timeout: float = 40, **args: Any) -> Child:
    result, stderr = scenarios.spawn(card, name, timeout=timeout, **args)
    return Child(result, stderr)


class IdleAwareSource(ScriptedSource):
    """A ScriptedSource that says when it is idle, as Playback does; ``busy`` holds it busy
    (speech queued)."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = False

    @property
    def is_idle(self) -> bool:
        return self.done and not self.busy


async def feed(fifo: Fifo, samples: Samples, period: float = 0.02) -> None:
    """Write ``samples`` into a capture FIFO at real-time pace (16 kHz), then silence,
    forever; what does not fit while the device is closed is dropped."""
    step = round(16000 * period)
    position = 0
    while True:
        chunk = samples[position : position + step]
        if chunk.size < step:
            chunk = np.zeros(step, dtype=np.int16)
        try:
            fifo.write(chunk)
            position += step
        except (BlockingIOError, OverflowError):
            pass  # the device is closed for a moment: the pipe is full
        await asyncio.sleep(period)


class LogCounter(logging.Handler):
    """Counts the records of piagent's audio supervision whose message contains a text: how
    many retries a device has made, or how many times a rescan waited."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        for name in ("piagent.audio.supervisor", "piagent.audio.rescans"):
            logging.getLogger(name).addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def count(self, text: str) -> int:
        return sum(text in message for message in self.messages)

    async def wait_for_more(self, text: str, more: int = 2) -> None:
        """Wait until ``more`` further records contain ``text``."""
        target = self.count(text) + more
        await wait_until(lambda: self.count(text) >= target, f"{more} more {text!r}")


def recorder(calls: list[Json], device: Microphone | Speaker) -> None:
    """Record each call of ``device.when_health_changed``: value, thread, problem."""
    loop_thread = threading.get_ident()

    def changed(healthy: bool) -> None:
        calls.append(
            {
                "healthy": healthy,
                "on_loop": threading.get_ident() == loop_thread,
                "problem": device.problem,
            }
        )

    device.when_health_changed = changed


# ----------------------------------------------------------------------------------------------
# Scenarios (run in the child)


@scenarios
def lost_microphone_health(args: Json) -> Json:
    """The microphone's FIFO runs dry (stall) and disappears; later a new one appears."""
    rate = 16000
    path = Path(os.environ["FAKE_MIC_FILE"])

    async def main() -> Json:
        fifo = Fifo(path)
        fifo.write(fixture(rate, 0.2, seed=3))
        mic = Microphone(AudioInputConfig(device="fakemic", rate=rate), **RETRYING)
        log = LogCounter()
        calls: list[Json] = []
        recorder(calls, mic)
        problems = {"before": mic.problem}

        async def consume() -> None:
            async for _ in mic.frames():
                pass

        async with asyncio.TaskGroup() as tasks:
            helpers = [tasks.create_task(mic.run()), tasks.create_task(consume())]
            await wait_until(lambda: mic.healthy, "the microphone to open")
            problems["healthy"] = mic.problem
            await wait_until(lambda: not mic.healthy, "the stall to be noticed")
            problems["lost"] = mic.problem
            fifo.remove()  # EOF unblocks PortAudio's thread; the device is gone
            await log.wait_for_more("Microphone 'fakemic' still unavailable")
            problems["missing"] = mic.problem
            fifo = Fifo(path)  # the device returns
            fifo.write(fixture(rate, 0.2, seed=4))
            await wait_until(lambda: mic.healthy, "the microphone to return", 3.0)
            problems["back"] = mic.problem
            fifo.close()
            for task in helpers:
                task.cancel()
        problems["after"] = mic.problem
        return {"calls": calls, "problems": problems}

    return asyncio.run(main())


@scenarios
def microphone_plugged_in_while_the_speaker_is_open(args: Json) -> Json:
    """The speaker plays on fakespk; fakemic's file appears later. Phases: the card list
    unchanged (no rescan), changed while the speaker is busy (no rescan), then idle."""
    rate = 16000
    mic_path = Path(os.environ["FAKE_MIC_FILE"])
    speaker_fifo = Fifo(Path(os.environ["FAKE_SPK_FILE"]))
    cards = {"changed": False}
    PORTAUDIO_INSTANCES.signature = lambda: cards["changed"]
    captured, played = fixture(rate, 0.2, seed=21), fixture(rate, 0.1, seed=22)
    played_bytes = played.astype("<i2").tobytes()

    async def main() -> Json:
        source = IdleAwareSource()
        speaker = Speaker(AudioOutputConfig(device="fakespk", rate=rate), source, **RETRYING)
        mic = Microphone(AudioInputConfig(device="fakemic", rate=rate), **RETRYING)
        log = LogCounter()
        missing = "Microphone 'fakemic' still unavailable"
        speaker_calls: list[Json] = []
        mic_calls: list[Json] = []
        recorder(speaker_calls, speaker)
        recorder(mic_calls, mic)
        received: list[Samples] = []
        output = bytearray()
        phases: dict[str, Json] = {}

        def phase() -> Json:
            return {
                "mic_healthy": mic.healthy,
                "mic_problem": mic.problem,
                "speaker_healthy": speaker.healthy,
                "speaker_calls": len(speaker_calls),
                "rescans": RESCANS.count,
            }

        async def consume() -> None:
            async for frame in mic.frames():
                received.append(frame)

        speaker.open()
        async with asyncio.TaskGroup() as tasks:
            helpers = [
                tasks.create_task(speaker.run()),
                tasks.create_task(drain(speaker_fifo, rate, output)),
                tasks.create_task(mic.run()),
                tasks.create_task(consume()),
            ]
            await wait_until(lambda: speaker.healthy, "the speaker to open")
            await log.wait_for_more(missing)
            phases["absent"] = phase()
            mic_fifo = Fifo(mic_path)  # the microphone is plugged in
            mic_fifo.write(captured)  # read when the microphone opens
            await log.wait_for_more(missing)
            phases["unchanged"] = phase()  # PortAudio still lists the old devices
            source.busy = True  # speech is queued: the speaker must not pause
            cards["changed"] = True
            await log.wait_for_more("the rescan waits: the speaker is busy")
            phases["busy"] = phase()
            source.busy = False
            loop = asyncio.get_running_loop()
            idle_at = loop.time()
            await wait_until(lambda: mic.healthy, "the microphone to open", 5.0)
            mic_after = loop.time() - idle_at
            await wait_until(lambda: speaker.healthy, "the speaker to resume", 3.0)
            await wait_until(lambda: sum(1 for f in received if f.any()) >= 10, "its audio")
            # Keep it fed from now on (a FIFO full before the stream starts loses its head).
            helpers.append(tasks.create_task(feed(mic_fifo, np.zeros(0, dtype=np.int16))))
            source.play(played)
            await wait_until(lambda: played_bytes in output, "the speaker to play")
            await asyncio.sleep(1.0)  # nothing changes any more: no second rescan
            phases["end"] = phase()
            mic_fifo.close()
            speaker_fifo.close()
            for task in helpers:
                task.cancel()
        sound = b"".join(f.astype("<i2").tobytes() for f in received if f.any())
        return {
            "phases": phases,
            "mic_after": mic_after,
            "speaker_calls": speaker_calls,
            "mic_calls": mic_calls,
            "sound": b64(sound),
        }

    return asyncio.run(main())


@scenarios
def speaker_plugged_in_while_the_microphone_is_open(args: Json) -> Json:
    """The microphone captures from fakemic; ``plug:latespk`` (piagent's ALSA alias) appears
    later: the microphone pauses for one short gap, whenever, and resumes."""
    rate = 16000
    mic_fifo = Fifo(Path(os.environ["FAKE_MIC_FILE"]))
    speaker_fifo = Fifo(Path(os.environ["FAKE_SPK_FILE"]))
    PORTAUDIO_INSTANCES.signature = lambda: os.environ.get("FAKE_LATE_SPK")

    async def main() -> Json:
        mic = Microphone(AudioInputConfig(device="fakemic", rate=rate), **RETRYING)
        speaker = Speaker(AudioOutputConfig(device="plug:latespk", rate=rate), None, **RETRYING)
        log = LogCounter()
        mic_calls: list[Json] = []
        recorder(mic_calls, mic)
        output = bytearray()

        async def consume() -> None:
            async for _ in mic.frames():
                pass

        mic.open()
        async with asyncio.TaskGroup() as tasks:
            helpers = [
                tasks.create_task(feed(mic_fifo, np.zeros(0, dtype=np.int16))),
                tasks.create_task(mic.run()),
                tasks.create_task(consume()),
                tasks.create_task(speaker.run()),
                tasks.create_task(drain(speaker_fifo, rate, output)),
            ]
            await wait_until(lambda: mic.healthy, "the microphone to open")
            await log.wait_for_more("Speaker 'plug:latespk' still unavailable")
            absent = {"speaker": speaker.problem, "rescans": RESCANS.count}
            os.environ["FAKE_LATE_SPK"] = "fakespk"  # the card is plugged in
            loop = asyncio.get_running_loop()
            plugged_at = loop.time()
            await wait_until(lambda: speaker.healthy, "the speaker to open", 5.0)
            speaker_after = loop.time() - plugged_at
            await wait_until(lambda: mic.healthy, "the microphone to resume", 3.0)
            result = {
                "absent": absent,
                "speaker_after": speaker_after,
                "rescans": RESCANS.count,
                "mic_calls": mic_calls[:],
                "speaker_name": speaker.name,
            }
            mic_fifo.close()
            speaker_fifo.close()
            for task in helpers:
                task.cancel()
        return result

    return asyncio.run(main())


# ----------------------------------------------------------------------------------------------
# Tests


@pytest.fixture
def card(tmp_path: Path) -> FakeCard:
    return write_fake_card(
        tmp_path, mic_file=tmp_path / "mic.fifo", spk_file=tmp_path / "speaker.fifo"
    )


@pytest.mark.timeout(60)
def test_health_hook_follows_a_lost_and_returned_microphone_on_the_loop(card: FakeCard) -> None:
    child = run_child(card, "lost_microphone_health")
    calls = child.result["calls"]
    lost = "lost: no audio for 0.5 s; reopening"
    assert calls == [
        {"healthy": True, "on_loop": True, "problem": None},
        {"healthy": False, "on_loop": True, "problem": lost},
        {"healthy": True, "on_loop": True, "problem": None},
        {"healthy": False, "on_loop": True, "problem": "closed"},  # cancelled: run() closes
    ]
    assert child.result["problems"] == {
        "before": "not open yet",
        "healthy": None,
        "lost": lost,
        "missing": "not found: fakemic",  # it exists but has no channels
        "back": None,
        "after": "closed",
    }


@pytest.mark.timeout(60)
def test_microphone_plugged_in_while_the_speaker_is_open_is_found(card: FakeCard) -> None:
    child = run_child(card, "microphone_plugged_in_while_the_speaker_is_open")
    result = child.result
    phases = result["phases"]
    # Absent, then present but unseen: PortAudio's enumeration is the speaker's, and with no
    # change in the card list nothing disturbs the speaker.
    for name in ("absent", "unchanged", "busy"):
        assert phases[name] == {
            "mic_healthy": False,
            "mic_problem": "not found: fakemic",
            "speaker_healthy": True,
            "speaker_calls": 1,
            "rescans": 0,
        }, name
    # Once the speaker is idle: one rescan, the microphone opens, the speaker resumes.
    assert result["mic_after"] < 3.0
    assert phases["end"] == {
        "mic_healthy": True,
        "mic_problem": None,
        "speaker_healthy": True,
        "speaker_calls": 3,
        "rescans": 1,
    }
    paused = "paused: PortAudio is listing the devices again"
    assert [(c["healthy"], c["problem"]) for c in result["speaker_calls"]] == [
        (True, None),
        (False, paused),
        (True, None),
        (False, "closed"),  # the scenario's end: run() cancelled
    ]
    assert all(c["on_loop"] for c in result["speaker_calls"] + result["mic_calls"])
    assert [c["healthy"] for c in result["mic_calls"]] == [True, False]  # open, then closed
    expected = fixture(16000, 0.2, seed=21).astype("<i2").tobytes()
    assert unb64(result["sound"])[: len(expected)] == expected
    infos = child.messages("INFO")
    assert (
        "Sound cards changed while the microphone is missing: pausing the speaker so that "
        "PortAudio lists the devices again"
    ) in infos
    assert any(i.startswith("Microphone open after ") for i in infos)
    (warning,) = child.messages("WARNING")  # the microphone's absence, once; nothing else
    assert warning.startswith("Microphone 'fakemic' unavailable: input device 'fakemic' exists")


@pytest.mark.timeout(60)
def test_speaker_plugged_in_while_the_microphone_is_open_is_found(card: FakeCard) -> None:
    child = run_child(card, "speaker_plugged_in_while_the_microphone_is_open")
    result = child.result
    assert result["absent"] == {"speaker": "not found: plug:latespk", "rescans": 0}
    assert result["speaker_after"] < 3.0
    assert (result["rescans"], result["speaker_name"]) == (1, "plug:latespk")
    paused = "paused: PortAudio is listing the devices again"
    assert [(c["healthy"], c["problem"]) for c in result["mic_calls"]] == [
        (True, None),
        (False, paused),
        (True, None),
    ]
    assert any(i.startswith("Speaker open after ") for i in child.messages("INFO"))


def test_playback_is_idle_only_without_speech_or_earcons() -> None:
    now = [0.0]
    playback = Playback(16000, jitter_ms=0, period_s=0.02, clock=lambda: now[0])
    assert playback.is_idle
    playback.play(np.ones(320, dtype=np.int16))
    assert not playback.is_idle
    playback.read(320)
    assert not playback.is_idle  # the last period is still in the device
    now[0] += 0.05
    assert playback.is_idle
    playback.play_earcon("press")
    assert not playback.is_idle
    playback.read(16000)
    assert playback.is_idle
