"""The mic path's front end: the speaker's periods and the microphone's frames in, as the
daemon gives them, through a simulated room (``audio.room``), on a fake clock.

The canceller, the delay estimator and the near-end detector are the real ones; only time is
simulated, so a test runs faster than real time and the same every time."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from piagent.audio.aec import engine_problem
from piagent.audio.duplex import EchoControl
from piagent.audio.room import Room
from piagent.config import load_config
from piagent.config.schema import AecConfig
from piagent.hearing import RESYNC_MS, Hearing, build_hearing
from tests.audio.speechlike import speechlike

pytestmark = pytest.mark.skipif(
    engine_problem("speex") is not None, reason=f"no speex here: {engine_problem('speex')}"
)

PERIOD_S = 0.02


class Stage:
    """A speaker and a microphone at ``rate`` in one room, 20 ms at a time."""

    def __init__(self, rate: int = 16000, delay_ms: float = 40.0, gain_db: float = -6.0) -> None:
        self.rate = rate
        self.now = 0.0
        self.room = Room(rate, delay_ms=delay_ms, gain_db=gain_db)
        echo = EchoControl(AecConfig(enabled=True), speaker_rate=rate, resync_ms=RESYNC_MS)
        self.hearing = Hearing(rate, echo=echo, clock=lambda: self.now)
        self.period = round(rate * PERIOD_S)
        self.onsets: list[float] = []
        self.out: list[np.ndarray] = []

    def run(self, far: np.ndarray, near: np.ndarray, *, speaker_on: bool = True) -> None:
        """Play ``far`` and have the user say ``near`` (same length), period by period."""
        for k in range(0, len(far) - self.period + 1, self.period):
            played = far[k : k + self.period]
            if speaker_on:
                self.hearing.played(played)  # read by the device now, heard after the room
            echo = self.room.process(played if speaker_on else np.zeros_like(played))
            mic = np.clip(echo.astype(np.int32) + near[k : k + self.period], -32768, 32767)
            self.now += PERIOD_S
            heard = self.hearing.hear(mic.astype(np.int16))
            self.out.append(heard.frame)
            if heard.voice_over:
                self.onsets.append(self.now)


def at16k(seconds: float, seed: int, level: float = -20.0) -> np.ndarray:
    return speechlike(seconds, seed=seed, level_dbfs=level)


def test_the_agents_own_voice_through_the_room_never_counts_as_the_user() -> None:
    stage = Stage()
    far = at16k(60.0, seed=1, level=-12.0)
    stage.run(far, np.zeros_like(far))
    assert stage.onsets == []
    info = stage.hearing.describe()["aec"]
    assert isinstance(info, dict)
    print(info)
    # The path's 40 ms, less the few ms of lead the canceller's filter is given.
    assert 25.0 <= info["latency_ms"] <= 40.0
    assert info["erle_db"] >= 20.0
    # What goes to the uplink is the cancelled audio, at 16 kHz, every sample of it.
    assert sum(len(frame) for frame in stage.out) == len(far)
    assert stage.hearing.uplink_rate == 16000


def test_the_user_talking_over_the_agent_is_heard_within_a_few_frames() -> None:
    stage = Stage()
    far = at16k(20.0, seed=2, level=-12.0)
    near = np.zeros_like(far)
    onset_s = 12.0
    user = at16k(3.0, seed=7, level=-20.0)
    start = int(onset_s * 16000)
    near[start : start + len(user)] = user
    first = int(np.flatnonzero(np.abs(user) > 300)[0]) / 16000  # the first audible syllable
    stage.run(far, near)
    assert stage.onsets, "the user's voice over the agent was never detected"
    print(f"detected {1000 * (stage.onsets[0] - onset_s - first):.0f} ms after the onset")
    assert onset_s + first <= stage.onsets[0] <= onset_s + first + 0.1


def test_the_speaker_parked_and_woken_again_keeps_the_reference_in_place() -> None:
    """The speaker stops reading while parked; the positions of what it plays after waking are
    taken from the clock again, so its echo still cancels and never counts as the user."""
    stage = Stage()
    far = at16k(20.0, seed=3, level=-12.0)
    stage.run(far, np.zeros_like(far))
    gap = np.zeros(int(3.0 * 16000), np.int16)
    stage.run(gap, gap, speaker_on=False)  # parked: nothing read, nothing heard
    stage.run(at16k(20.0, seed=4, level=-12.0), np.zeros(20 * 16000, np.int16))
    assert stage.onsets == []
    info = stage.hearing.describe()["aec"]
    assert isinstance(info, dict) and info["erle_db"] >= 20.0


def test_the_speakers_underruns_are_taken_from_its_xrun_count() -> None:
    """Once a second the speaker underruns: 30 ms of silence plays before its next period,
    and its xrun count goes up before that period is read. The reference follows the sound,
    so the echo still cancels, the agent's voice never counts as the user, and ``ctl status``
    counts the slips."""
    rate, gap = 16000, 480
    xruns = 0
    now = 0.0
    echo = EchoControl(AecConfig(enabled=True), speaker_rate=rate, resync_ms=RESYNC_MS)
    hearing = Hearing(rate, echo=echo, clock=lambda: now, output_xruns=lambda: xruns)
    room = Room(rate, delay_ms=40.0, gain_db=-6.0)
    periods = [at16k(20.0, seed=6, level=-12.0)[k : k + 320] for k in range(0, 20 * rate, 320)]
    starts = [320 * k + gap * (k // 50) for k in range(len(periods))]
    sound = np.zeros(starts[-1] + 320, np.int16)
    for start, period in zip(starts, periods, strict=True):
        sound[start : start + 320] = period
    heard_echo = room.process(sound)
    onsets, fed = 0, 0
    for j in range(len(sound) // 320):
        while fed < len(periods) and starts[fed] <= 320 * j:
            if fed and fed % 50 == 0:
                xruns += 1  # PortAudio flagged the callback that reads this period
            now = starts[fed] / rate
            hearing.played(periods[fed])
            fed += 1
        now = 320 * (j + 1) / rate
        onsets += hearing.hear(heard_echo[320 * j : 320 * (j + 1)]).voice_over
    info = hearing.describe()["aec"]
    assert isinstance(info, dict)
    print(info)
    assert onsets == 0
    assert info["slips"] >= 15 and info["converged"]
    assert info["erle_db"] >= 20.0


def test_a_48_khz_microphone_and_speaker_are_resampled_for_the_canceller() -> None:
    stage = Stage(rate=48000)
    far16 = at16k(30.0, seed=5, level=-12.0)
    far = np.repeat(far16, 3)  # crude, but the room and the canceller see the same thing
    stage.run(far, np.zeros_like(far))
    assert stage.onsets == []
    assert sum(len(frame) for frame in stage.out) == pytest.approx(len(far16), abs=160)
    info = stage.hearing.describe()["aec"]
    assert isinstance(info, dict) and info["erle_db"] >= 15.0


def test_nothing_to_do_builds_no_front_end_and_an_absent_engine_leaves_the_button(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("agent: {agent_id: demo}\n")
    config = load_config(path)
    assert build_hearing(config, 48000, 48000) is None
    on = replace(config, audio=replace(config.audio, aec=replace(config.audio.aec, enabled=True)))
    hearing = build_hearing(on, 48000, 48000, latency_s=(0.02, 0.04))
    assert hearing is not None and hearing.cancels_echo and hearing.uplink_rate == 16000
    hearing.close()
    webrtc = replace(on.audio.aec, engine="webrtc")
    missing = engine_problem("webrtc")
    config_webrtc = replace(on, audio=replace(on.audio, aec=webrtc))
    built = build_hearing(config_webrtc, 48000, 48000, latency_s=(0.02, 0.04))
    if missing is None:
        assert built is not None and built.cancels_echo
    else:
        assert built is None
        assert "echo cancellation is off" in caplog.text and "audio.aec.engine" in caplog.text
