"""The simulator's pure parts on their own: VAD, voice, turns, signed-URL grants."""

from __future__ import annotations

import numpy as np
import pytest

from piagent.audio.codecs import decode_audio
from piagent.protocol.messages import AudioFormat
from piagent.sim.endpoints import SignedUrls
from piagent.sim.turns import build_turn, resample, text_deltas
from piagent.sim.vad import EnergyVad, SpeechEnded, SpeechStarted, VadLevel
from piagent.sim.voice import even_alignment, synthesize

from .conftest import silence, tone


def feed_all(vad: EnergyVad, samples: np.ndarray, chunk: int) -> list[object]:
    events: list[object] = []
    for start in range(0, len(samples), chunk):
        events.extend(vad.feed(samples[start : start + chunk]))
    return events


@pytest.mark.parametrize("chunk", [37, 160, 320, 4000])  # chunk sizes need not fit frames
def test_vad_finds_one_turn_whatever_the_chunk_size(chunk: int) -> None:
    vad = EnergyVad(16000, end_silence_ms=300)
    audio = np.concatenate((silence(0.2, 16000), tone(0.5, 16000), silence(0.5, 16000)))
    events = feed_all(vad, audio, chunk)
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert starts == [SpeechStarted(200)]
    assert len(ends) == 1
    assert np.array_equal(ends[0].samples, audio[3200:11200])
    assert ends[0].duration_s == pytest.approx(0.5)
    assert not vad.in_speech


def test_vad_bridges_short_pauses_and_ignores_short_blips() -> None:
    vad = EnergyVad(16000, min_speech_ms=60, end_silence_ms=300)
    blip = np.concatenate((tone(0.04, 16000), silence(0.5, 16000)))
    assert not any(isinstance(e, SpeechStarted) for e in vad.feed(blip))
    words = np.concatenate(
        (tone(0.3, 16000), silence(0.2, 16000), tone(0.3, 16000), silence(0.4, 16000))
    )
    ends = [e for e in vad.feed(words) if isinstance(e, SpeechEnded)]
    assert len(ends) == 1 and ends[0].duration_s == pytest.approx(0.8)


def test_vad_cuts_very_long_utterances() -> None:
    vad = EnergyVad(8000, max_utterance_ms=1000)
    ends = [e for e in vad.feed(tone(2.5, 8000)) if isinstance(e, SpeechEnded)]
    assert [e.duration_s for e in ends] == [pytest.approx(1.0), pytest.approx(1.0)]


def test_vad_scores() -> None:
    vad = EnergyVad(16000, threshold_db=-40.0)
    assert vad.score(-np.inf) == 0.0
    assert vad.score(-40.0) == 0.5
    assert vad.score(-10.0) > 0.99
    assert vad.score(-60.0) < 0.01
    levels = [e for e in vad.feed(silence(1.0, 16000)) if isinstance(e, VadLevel)]
    assert levels == []  # steady digital silence is not reported at all


def test_voice_is_deterministic_and_follows_the_text() -> None:
    a = synthesize("Hello world.", 16000, "v1")
    b = synthesize("Hello world.", 16000, "v1")
    assert np.array_equal(a.samples, b.samples)
    longer = synthesize("Hello world, this is much longer.", 16000, "v1")
    assert len(longer.samples) > 2 * len(a.samples)
    assert len(a.char_starts_ms) == len(a.char_durations_ms) == len("Hello world.")
    assert a.char_starts_ms[0] == 0
    total_ms = a.char_starts_ms[-1] + a.char_durations_ms[-1]
    assert abs(len(a.samples) / 16 - total_ms) <= 1
    assert np.abs(a.samples.astype(float)).max() > 10000
    faster = synthesize("Hello world.", 16000, "v1", speed=2.0)
    assert len(faster.samples) == pytest.approx(len(a.samples) / 2, rel=0.05)
    assert len(synthesize("", 16000).samples) == 0


def test_even_alignment_covers_the_duration() -> None:
    starts, durations = even_alignment("abcd", 1000)
    assert starts == (0, 250, 500, 750) and durations == (250, 250, 250, 250)


def test_turn_chunks_alignment_and_spoken_text() -> None:
    speech = synthesize("One two three four.", 8000)
    turn = build_turn(
        7,
        "One two three four.",
        speech.samples,
        AudioFormat.ULAW_8000,
        100,
        speech.char_starts_ms,
        speech.char_durations_ms,
    )
    assert all(len(c) == 800 for c in turn.chunks[:-1])  # 100 ms of mu-law at 8 kHz
    assert "".join("".join(a.chars) for a in turn.alignments) == "One two three four."
    decoded = decode_audio(b"".join(turn.chunks), AudioFormat.ULAW_8000)
    assert len(decoded) == len(speech.samples)
    turn.started_at = 10.0
    assert turn.spoken_text(10.0) == ""
    assert turn.spoken_text(10.0 + turn.duration_s) == "One two three four."
    assert "One two three four.".startswith(turn.spoken_text(10.5))
    assert turn.is_playing(10.0 + turn.duration_s - 0.01)
    assert not turn.is_playing(10.0 + turn.duration_s)
    turn.sent = len(turn.chunks) - 1
    stale = turn.stale_chunks(3)
    assert [c for c, _ in stale] == [turn.chunks[-1]] * 3
    assert text_deltas("a bc  d") == ["a", " bc", "  d"]


def test_resample_keeps_duration_and_shape() -> None:
    x = tone(0.5, 8000, freq=200)
    y = resample(x, 8000, 44100)
    assert len(y) == round(0.5 * 44100)
    assert np.array_equal(resample(x, 8000, 8000), x)


def test_signed_url_grants() -> None:
    grants = SignedUrls()
    token = grants.issue("a", ttl=10.0, now=100.0)
    assert grants.check(token, "a", 105.0) == "valid"
    assert grants.check(token, "a", 110.0) == "expired"
    assert grants.check(token, "b", 105.0) == "invalid"
    assert grants.check("forged", "a", 105.0) == "invalid"
