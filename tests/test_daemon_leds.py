"""The LEDs tell the truth: with the real daemon, gpiozero's mock pins and the simulator,
"listening" is lit exactly while the simulator is receiving the user's audio."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from piagent.config import parse_config
from piagent.service import Daemon
from piagent.sim.agent import AgentDefinition
from piagent.sim.server import SimServer

pytestmark = pytest.mark.timeout(60)

RATE = 16000
WINDOW = RATE // 50  # 20 ms of samples
# Seconds either side of a transition where the two views may differ: the frame in flight
# and the LED task's turn on the loop (the simulator shares this process's loop).
SLACK = 0.1


def noisy_wav(path: Path, seconds: float) -> None:
    """A microphone that always hears the user: only the button decides what is sent."""
    rng = np.random.default_rng(4)
    samples = rng.integers(-5000, 5000, int(seconds * RATE), dtype=np.int16)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(samples.tobytes())


def test_listening_led_is_lit_exactly_while_the_server_receives_user_audio(
    tmp_path: Path,
) -> None:
    noisy_wav(tmp_path / "mic.wav", 30)
    samples: list[tuple[float, bool, bool]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with SimServer([AgentDefinition(first_message="")]) as sim:
            config = parse_config(
                {
                    "agent": {"agent_id": "demo", "server": sim.ws_base},
                    "audio": {
                        "backend": "wav",
                        "input": {"file": str(tmp_path / "mic.wav")},
                        "output": {"file": str(tmp_path / "out.wav"), "rate": 16000},
                        "earcons": False,
                    },
                    "gpio": {
                        "pin_factory": "mock",
                        "button": {"pin": 17, "bounce_ms": 5},
                        "leds": {"kind": "single", "pins": {"led": 27}},
                    },
                    "control": {"socket": str(tmp_path / "control.sock")},
                }
            )
            daemon = Daemon(config)
            assert daemon.button is not None
            button_pin = daemon.button._button.pin  # gpiozero's MockPin for BCM 17

            async def sample(until: float) -> None:
                while loop.time() < until:
                    received = sim.conversations[0].user_audio if sim.conversations else b""
                    tail = np.frombuffer(bytes(received[-2 * WINDOW :]), dtype="<i2")
                    speech = tail.size > 0 and float(np.abs(tail).mean()) > 500
                    samples.append((loop.time(), daemon.leds.state == "listening", speech))
                    await asyncio.sleep(0.01)

            async with asyncio.TaskGroup() as tasks:
                runner = tasks.create_task(daemon.run())
                while daemon.state == "booting":  # noqa: ASYNC110 - no event for it
                    await asyncio.sleep(0.01)
                start = loop.time()
                sampler = tasks.create_task(sample(start + 6.0))
                for press_at, release_at in ((0.5, 2.0), (3.5, 5.0)):
                    await asyncio.sleep(max(0.0, start + press_at - loop.time()))
                    button_pin.drive_low()  # pressed: the button pulls the pin to ground
                    await asyncio.sleep(max(0.0, start + release_at - loop.time()))
                    button_pin.drive_high()
                await sampler
                assert daemon.state != "listening"
                daemon.request_stop()
                await runner

    asyncio.run(main())

    times = np.array([t for t, _, _ in samples])
    lit = np.array([led for _, led, _ in samples])
    heard = np.array([speech for _, _, speech in samples])
    assert lit.sum() * 0.01 > 2.0, "the listening LED was hardly ever lit"
    assert heard.sum() * 0.01 > 2.0, "the simulator hardly received any speech"
    edges = times[1:][(np.diff(lit.astype(int)) != 0) | (np.diff(heard.astype(int)) != 0)]
    near_edge = np.array([np.any(np.abs(edges - t) < SLACK) for t in times])
    disagree = (lit != heard) & ~near_edge
    t0 = times[0]
    where = (
        [
            (round(t - t0, 2), bool(a), bool(b))
            for t, a, b in zip(times, lit, heard, strict=True)
            if abs(t - times[disagree][0]) < 0.3
        ]
        if disagree.any()
        else []
    )
    assert not disagree.any(), f"LED (lit) and server (heard) disagree: {where}"
