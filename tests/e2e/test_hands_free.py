"""Hands-free through the daemon process, over the simulated room: the wake word opens a
conversation, the user's voice interrupts the agent, and the agent's own voice never does.

``piagent run`` with the WAV backend and ``audio.input.echo``: the microphone hears its file
plus what the speaker played, through a room (delay, gain). The wake phrase is espeak-ng's, so
these tests need espeak-ng and the wake-word engine (skipped with the reason otherwise)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from piagent.audio.aec import engine_problem
from piagent.audio.wavio import read_wav
from piagent.config.schema import WakeConfig
from piagent.sim.agent import AgentDefinition
from piagent.sim.server import SimServer
from piagent.wake import wake_problems
from tests.e2e.harness import (
    Daemon,
    Samples,
    WavTimeline,
    base_config,
    mic_wav,
    record,
    sleep_until,
    speech_like,
    start_wav,
    windows,
)

RATE = 16000
LONG_TURN = "aoeui" * 20  # 9.5 s of the simulated voice, without a pause
WAKE_AT = 1.0  # s into the microphone's file
BARGE_IN_LIMIT_S = 0.15  # from the user's first sound to the speaker's silence
ROOM = {"delay_ms": 40, "gain_db": -6}

_missing = [
    reason
    for reason in (
        None if shutil.which("espeak-ng") else "espeak-ng is not installed",
        engine_problem("speex"),
        "; ".join(str(p) for p in wake_problems(WakeConfig())) or None,
    )
    if reason
]
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(bool(_missing), reason="; ".join(_missing)),
]


@pytest.fixture
def sim() -> Iterator[SimServer]:
    agents = [
        AgentDefinition(agent_id="parrot", first_message="", turn_end_silence_ms=800),
        AgentDefinition(agent_id="talker", first_message=LONG_TURN, turn_end_silence_ms=800),
    ]
    with SimServer(agents).run_in_thread() as server:
        yield server


def wake_phrase(tmp: Path) -> Samples:
    """ "Okay Nabu" in espeak-ng's default English voice, at 16 kHz."""
    path = tmp / "wake.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), "okay nabu"], check=True)
    samples, rate = read_wav(path)
    return np.asarray(resample_poly(samples.astype(np.float64), RATE, rate), np.int16)


def start(
    tmp: Path,
    sim: SimServer,
    agent_id: str,
    daemons: list[Daemon],
    speech: list[tuple[float, Samples]],
) -> tuple[Daemon, WavTimeline]:
    mic_wav(tmp / "mic.wav", RATE, 25.0, [(WAKE_AT, wake_phrase(tmp)), *speech])
    config = base_config(tmp, sim, agent_id, wake={"model": "okay_nabu"})
    config["audio"]["input"]["echo"] = ROOM
    config["audio"]["aec"] = {"enabled": True}
    return start_wav(tmp, config, daemons, RATE)


def test_the_wake_word_opens_a_conversation_and_the_question_is_answered(
    sim: SimServer, tmp_path: Path, daemons: list[Daemon]
) -> None:
    question = speech_like(1.5, RATE, seed=3)
    daemon, timeline = start(tmp_path, sim, "parrot", daemons, [(4.0, question)])
    try:
        rec = record(sim, 0, daemon, within=10)  # nobody pressed anything
        status = daemon.status()
        assert status["hearing"]["words"] >= 1, status
        daemon.wait_for(
            "the answer", lambda: windows(timeline, 5.5, time.monotonic()).sound_seconds() >= 1.0
        )
        heard = np.frombuffer(bytes(rec.user_audio), dtype="<i2")
        assert np.abs(heard).max() > 1000, "the simulator heard no question"
    finally:
        timeline.close()


def test_the_users_voice_interrupts_the_agent_within_150_ms(
    sim: SimServer, tmp_path: Path, daemons: list[Daemon]
) -> None:
    talk_at = 10.0  # the canceller has had about 6 s of the agent to converge
    user = speech_like(2.0, RATE, seed=4)
    first = int(np.flatnonzero(np.abs(user) > 300)[0]) / RATE
    daemon, timeline = start(tmp_path, sim, "talker", daemons, [(talk_at, user)])
    try:
        onset = timeline.start + talk_at + first
        daemon.check(time.monotonic() < onset, "the daemon started too late for the test")
        sleep_until(onset + 2.5)
        before = windows(timeline, onset - 1.0, onset)
        daemon.check(
            before.sound_seconds() >= 0.8, f"the agent was not speaking: {before.describe()}"
        )
        after = windows(timeline, onset, onset + 2.0)
        silent_at = after.silent_from(0.5)
        daemon.check(silent_at is not None, f"the agent went on: {after.describe()}")
        assert silent_at is not None
        print(f"\nsilent {1000 * (silent_at - onset):.0f} ms after the user's first sound")
        daemon.check(
            silent_at - onset <= BARGE_IN_LIMIT_S,
            f"silent {silent_at - onset:.3f} s after the onset: {after.describe()}",
        )
        status = daemon.status()
        assert status["hearing"]["aec"]["voice_overs"] >= 1, status
        rec = record(sim, 0, daemon)
        daemon.wait_for("the simulator's interruption", lambda: rec.interruptions, within=5)
    finally:
        timeline.close()


def test_the_agents_own_voice_through_the_room_never_interrupts_it(
    sim: SimServer, tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon, timeline = start(tmp_path, sim, "talker", daemons, [])
    try:
        rec = record(sim, 0, daemon, within=10)
        # Full duplex: the LEDs say "listening" all along, so the speaker's file tells when
        # the turn has played (or stopped short: then the wait runs out and the checks fail).
        daemon.wait_for(
            "the agent's whole turn",
            lambda: windows(timeline, timeline.start, time.monotonic()).sound_seconds() >= 9.0,
            within=25,
        )
        time.sleep(1.0)
        played = windows(timeline, timeline.start, time.monotonic()).sound_seconds()
        status = daemon.status()
        print(f"\nplayed {played:.2f} s; hearing {status['hearing']}")
        assert played >= 9.0, f"the agent's 9.5 s turn was cut: {played:.2f} s played"
        assert status["hearing"]["aec"]["voice_overs"] == 0
        assert rec.interruptions == []
    finally:
        timeline.close()
