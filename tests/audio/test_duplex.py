"""piagent.audio.duplex: the chain as the daemon wires it, on two clocks' worth of timestamps.

A 48 kHz speaker reports each 20 ms period with its DAC time; a 16 kHz mic hears it through a
simulated room (90 ms later) and reports each period with its ADC time, a little jittered. The
chain must find the latency itself, cancel the echo, and report a talker over it.
"""

from __future__ import annotations

import numpy as np
import pytest

from piagent.audio.aec import AecUnavailable, engine_problem
from piagent.audio.duplex import EchoControl
from piagent.audio.resample import StreamResampler
from piagent.audio.room import Room, synthetic_impulse_response
from piagent.config.schema import AecConfig
from tests.audio.speechlike import frames, power, speechlike

pytestmark = pytest.mark.skipif(engine_problem("speex") is not None, reason="no libspeexdsp1")

RATE = 16000
DELAY_MS = 90


def scenario(
    seconds: float, near: np.ndarray | None = None
) -> tuple[EchoControl, np.ndarray, np.ndarray, list[int]]:
    far16 = speechlike(seconds, seed=21, level_dbfs=-16)
    up = StreamResampler(RATE, 48000)
    far48 = np.concatenate([up.process(far16), up.flush()])[: len(far16) * 3]
    ir = synthetic_impulse_response(RATE, rt60_ms=200, length_ms=100, seed=8)
    echo = Room(RATE, delay_ms=DELAY_MS, gain_db=-6, impulse_response=ir).process(far16)
    mic = echo if near is None else np.clip(echo.astype(np.int32) + near, -32768, 32767)
    mic = mic.astype(np.int16)
    control = EchoControl(AecConfig(enabled=True, engine="speex"), speaker_rate=48000)
    jitter = np.random.default_rng(3).uniform(-20e-6, 20e-6, len(mic) // 320 + 1)
    t0 = 1000.0
    out, onsets = [], []
    for k, (played, heard) in enumerate(zip(frames(far48, 960), frames(mic, 320), strict=False)):
        control.record_played(played, t0 + 0.02 * k)
        cleaned, onset = control.process(heard, t0 + 0.02 * k + jitter[k])
        out.append(cleaned)
        if onset:
            onsets.append(k)
    return control, echo, np.concatenate(out), onsets


def test_the_chain_finds_the_latency_and_cancels_the_echo() -> None:
    control, echo, out, onsets = scenario(10)
    assert 80 <= control.latency_ms <= 90
    steady = slice(6 * RATE, 10 * RATE)
    assert 10 * np.log10(power(echo[steady]) / max(power(out[steady]), 1e-9)) > 25
    assert onsets == []
    assert control.engine == "speex" and not control.talking


def test_a_talker_over_the_agent_is_reported() -> None:
    near = np.zeros(10 * RATE, np.int16)
    talk = speechlike(1.0, seed=5, level_dbfs=-22)
    near[8 * RATE : 8 * RATE + len(talk)] = talk
    _, _, _, onsets = scenario(10, near)
    assert len(onsets) == 1 and 400 <= onsets[0] <= 405  # 8.00-8.10 s, in 20 ms periods


def test_periods_must_be_whole_frames() -> None:
    control = EchoControl(AecConfig(enabled=True, engine="speex"), speaker_rate=48000)
    with pytest.raises(ValueError, match="whole 10 ms frames"):
        control.process(np.zeros(100, np.int16), 0.0)


def test_an_unavailable_engine_is_reported_under_its_key() -> None:
    with pytest.raises(AecUnavailable, match=r"audio\.aec\.engine"):
        EchoControl(AecConfig(enabled=True, engine="bogus"), speaker_rate=48000)  # type: ignore[arg-type]


def xrun_scenario(side: str, *, report: bool) -> tuple[EchoControl, float]:
    """14 s of the agent's voice through the room, with a 30 ms xrun every second on one
    ``side``: the speaker underruns (the rest of its sound plays 30 ms later each time) or the
    mic overruns (30 ms of captured sound is lost each time). Periods are stamped on the clock,
    as the daemon stamps them, and timelines resync past 250 ms, as the daemon's do; the xruns
    are ``report``ed as the device flags them, or not. Returns the chain and its ERLE over the
    last 6 s."""
    seconds, gap = 14, 480  # 30 ms at 16 kHz
    far16 = speechlike(seconds, seed=21, level_dbfs=-16)
    up = StreamResampler(RATE, 48000)
    far48 = np.concatenate([up.process(far16), up.flush()])[: len(far16) * 3]
    periods = frames(far16, 320)
    # Where each speaker period's sound really started (16 kHz samples), and what the room got.
    slip = [gap * (k // 50) if side == "speaker" else 0 for k in range(len(periods))]
    starts = [320 * k + slip[k] for k in range(len(periods))]
    played = np.zeros(starts[-1] + 320, np.int16)
    for start, period in zip(starts, periods, strict=True):
        played[start : start + 320] = period
    ir = synthetic_impulse_response(RATE, rt60_ms=200, length_ms=100, seed=8)
    echo = Room(RATE, delay_ms=DELAY_MS, gain_db=-6, impulse_response=ir).process(played)
    control = EchoControl(
        AecConfig(enabled=True, engine="speex"), speaker_rate=48000, resync_ms=250.0
    )
    t0, fed, heard = 1000.0, 0, []
    speaker = list(enumerate(frames(far48, 960)))
    for j in range(len(echo) // 320 - 20):
        at = 320 * j  # the mic's capture position: with overruns, some spans are never read
        lost = side == "mic" and j and j % 50 == 0
        if side == "mic":
            at += gap * (j // 50)
        while fed < len(speaker) and starts[fed] <= at + 320:
            k, period = speaker[fed]
            control.record_played(
                period, t0 + starts[k] / RATE, slipped=report and k % 50 == 0 and k > 0
            )
            fed += 1
        cleaned, _ = control.process(
            echo[at : at + 320], t0 + at / RATE, slipped=bool(report and lost)
        )
        heard.append((echo[at : at + 320], cleaned))
    tail = heard[-300:]
    before = np.concatenate([h for h, _ in tail])
    after = np.concatenate([c for _, c in tail])
    return control, 10 * np.log10(power(before) / max(power(after), 1e-9))


@pytest.mark.parametrize(("side", "least_db"), [("speaker", 20), ("mic", 10)])
def test_reported_xruns_keep_the_timelines_on_the_echo(side: str, least_db: float) -> None:
    # An underrun's gap is silence in the reference as in the room: the canceller hardly
    # notices. An overrun's is a jump in both signals, which the filter takes a moment to
    # cross each time (one a second here, far more than a working device has).
    control, erle = xrun_scenario(side, report=True)
    assert control.slips >= 10 and control.resyncs == 0
    assert 80 <= control.latency_ms <= 90  # the room's delay, not the xruns' sum
    assert erle > least_db, f"{erle:.1f} dB"


@pytest.mark.parametrize("side", ["speaker", "mic"])
def test_unreported_xruns_leave_the_reference_off_the_echo(side: str) -> None:
    # The same xruns unflagged, as the chain saw them before the devices said: the count
    # runs 30 ms further off the sound each second, and the canceller never settles.
    control, erle = xrun_scenario(side, report=False)
    assert control.slips == 0
    assert erle < 3, f"{erle:.1f} dB"
