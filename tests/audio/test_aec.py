"""piagent.audio.aec: the canceller removes echo, keeps the talker, and says what it cannot do.

Synthetic speech-like signals (tests/audio/speechlike.py) through a simulated room
(piagent.audio.room) with the reference aligned as ``echoref`` would: ERLE above a bound on a
linear path, the near end kept under double talk, the frame contract enforced, and an engine
that cannot run reported under ``audio.aec.engine``. Timings belong in scripts/bench_aec.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from piagent.audio import aec
from piagent.audio.aec import FRAME_SAMPLES, AecUnavailable, EchoCanceller, engine_problem
from piagent.audio.room import Room, synthetic_impulse_response
from piagent.audio.speexdsp import SpeexUnavailable
from tests.audio.speechlike import frames, power, speechlike

pytestmark = pytest.mark.skipif(
    engine_problem("speex") is not None, reason=f"speex unavailable: {engine_problem('speex')}"
)

RATE = 16000
DELAY_MS = 60
LEAD_MS = 5  # the reference leads the echo a little, as DelayEstimator.apply leaves it


def echo_of(far: np.ndarray, *, drive: float = 0.0) -> np.ndarray:
    ir = synthetic_impulse_response(RATE, rt60_ms=150, length_ms=80, seed=2)
    return Room(RATE, delay_ms=DELAY_MS, gain_db=-6, impulse_response=ir, drive=drive).process(far)


def aligned(far: np.ndarray) -> np.ndarray:
    shift = RATE * (DELAY_MS - LEAD_MS) // 1000
    return np.concatenate([np.zeros(shift, dtype=np.int16), far])[: len(far)]


def cancel(canceller: EchoCanceller, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
    out = [canceller.process(n, f) for n, f in zip(frames(mic), frames(ref), strict=True)]
    return np.concatenate(out)


def test_a_linear_echo_path_is_cancelled_by_more_than_25_db() -> None:
    far = speechlike(12, seed=1)
    echo = echo_of(far)
    canceller = EchoCanceller("speex")
    out = cancel(canceller, echo, aligned(far))
    steady = slice(8 * RATE, 12 * RATE)
    erle = 10 * np.log10(power(echo[steady]) / max(power(out[steady]), 1e-9))
    assert erle > 25
    assert canceller.engine == "speex" and canceller.far_active
    assert canceller.erle_db > 20  # its own running estimate agrees


def test_double_talk_keeps_the_near_end() -> None:
    far = speechlike(12, seed=1)
    near = np.zeros(len(far), dtype=np.int16)
    talk = speechlike(2, seed=7, level_dbfs=-26)
    start = 9 * RATE
    near[start : start + len(talk)] = talk
    mic = np.clip(echo_of(far).astype(np.int32) + near, -32768, 32767).astype(np.int16)
    out = cancel(EchoCanceller("speex"), mic, aligned(far))
    # speex hands its output a frame late: compare the talker with the output 10 ms on.
    got = out[start + FRAME_SAMPLES : start + FRAME_SAMPLES + len(talk)].astype(np.float64)
    clean = talk.astype(np.float64)
    scale = float(np.dot(got, clean) / np.dot(clean, clean))
    snr = 10 * np.log10(power(scale * clean) / power(got - scale * clean))
    assert scale > 0.7
    assert snr > 10


def test_silence_in_gives_silence_out() -> None:
    canceller = EchoCanceller("speex")
    silent = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    for _ in range(50):
        out = canceller.process(silent, silent)
    assert not out.any()
    assert not canceller.far_active and canceller.erle_db == 0.0


def test_frames_must_be_10_ms_at_16_khz() -> None:
    canceller = EchoCanceller("speex")
    with pytest.raises(ValueError, match="160 samples"):
        canceller.process(np.zeros(320, np.int16), np.zeros(320, np.int16))


def test_reset_forgets_the_path() -> None:
    far = speechlike(4, seed=3)
    canceller = EchoCanceller("speex")
    cancel(canceller, echo_of(far), aligned(far))
    assert canceller.frames == len(far) // FRAME_SAMPLES
    canceller.reset()
    assert canceller.frames == 0 and canceller.erle_db == 0.0
    canceller.close()
    canceller.close()  # idempotent


def test_an_unknown_engine_names_the_key() -> None:
    with pytest.raises(AecUnavailable, match=r"audio\.aec\.engine: unknown engine 'nope'"):
        EchoCanceller("nope")


def test_a_missing_library_names_the_key_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> object:
        raise SpeexUnavailable("cannot load libspeexdsp.so.1; install libspeexdsp1")

    monkeypatch.setattr(aec, "load_speexdsp", missing)
    problem = engine_problem("speex")
    assert problem is not None and "libspeexdsp1" in problem
    with pytest.raises(AecUnavailable, match=r"^audio\.aec\.engine: speex: .*libspeexdsp1"):
        EchoCanceller("speex")


def test_auto_prefers_speex() -> None:
    assert EchoCanceller("auto").engine == "speex"


@pytest.mark.skipif(engine_problem("webrtc") is not None, reason="livekit is not installed")
def test_the_webrtc_engine_cancels_too() -> None:
    far = speechlike(6, seed=1)
    echo = echo_of(far)
    out = cancel(EchoCanceller("webrtc"), echo, aligned(far))
    steady = slice(4 * RATE, 6 * RATE)
    assert 10 * np.log10(power(echo[steady]) / max(power(out[steady]), 1e-9)) > 25
