"""Speech-like audio for the simulator's text answers, and its list of premade voices.

Owns ``synthesize``: deterministic, generated in code, no TTS engine. Each character becomes a
short segment (vowels: harmonics of a gliding pitch shaped by two formants; voiced consonants:
a softer low buzz; unvoiced ones: a noise burst; spaces and punctuation: pauses), so the audio's
length and rhythm follow the text and every character has a start time and duration for the
``alignment`` of ``audio`` events (protocol.md §4). The pitch follows the voice, so a
``tts.voice_id`` override is audible. Also owns ``PREMADE_VOICES`` for ``GET /v1/voices``
(protocol.md §10).

Pure: numpy only, no I/O.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from piagent.audio.codecs import Samples, to_int16

__all__ = ["PREMADE_VOICES", "Speech", "Voice", "even_alignment", "synthesize", "voice_json"]


@dataclass(frozen=True, slots=True)
class Voice:
    """A premade voice as ``/v1/voices`` lists it; ``pitch_hz`` is the synthesizer's pitch."""

    voice_id: str
    name: str
    description: str
    labels: dict[str, str] = field(default_factory=dict)
    pitch_hz: float = 150.0


PREMADE_VOICES: tuple[Voice, ...] = (
    Voice(
        "21m00Tcm4TlvDq8ikWAM",
        "Rachel",
        "Calm, young American female voice for narration.",
        {"accent": "american", "gender": "female", "age": "young", "use_case": "narration"},
        210.0,
    ),
    Voice(
        "pNInz6obpgDQGcFmaJgB",
        "Adam",
        "Deep middle-aged American male voice.",
        {"accent": "american", "gender": "male", "age": "middle_aged", "use_case": "narration"},
        105.0,
    ),
    Voice(
        "EXAVITQu4vr4xnSDxMaL",
        "Sarah",
        "Soft young American female voice for news.",
        {"accent": "american", "gender": "female", "age": "young", "use_case": "news"},
        195.0,
    ),
    Voice(
        "ErXwobaYiN019PkySvjV",
        "Antoni",
        "Well-rounded young American male voice.",
        {"accent": "american", "gender": "male", "age": "young", "use_case": "conversational"},
        125.0,
    ),
)


def voice_json(voice: Voice, http_base: str) -> dict[str, object]:
    """The ``Voice`` object of ``GET /v1/voices`` (the fields a client is likely to read)."""
    return {
        "voice_id": voice.voice_id,
        "name": voice.name,
        "category": "premade",
        "labels": dict(voice.labels),
        "description": voice.description,
        "preview_url": f"{http_base}/v1/voices/{voice.voice_id}/preview.wav",
        "settings": {
            "stability": 0.5,
            "similarity_boost": 0.75,
            "style": 0.0,
            "use_speaker_boost": True,
            "speed": 1.0,
        },
        "available_for_tiers": [],
        "is_owner": False,
        "is_legacy": False,
    }


@dataclass(frozen=True, slots=True)
class Speech:
    """Synthesized speech: samples at ``rate`` and each character's timing in milliseconds."""

    samples: Samples
    rate: int
    char_starts_ms: tuple[int, ...]
    char_durations_ms: tuple[int, ...]


# (F1, F2) in Hz for each vowel letter; other letters are consonants.
_VOWELS = {
    "a": (730.0, 1090.0),
    "e": (530.0, 1840.0),
    "i": (270.0, 2290.0),
    "o": (570.0, 840.0),
    "u": (300.0, 870.0),
    "y": (300.0, 2000.0),
}
_VOICED_CONSONANTS = frozenset("bdgjlmnrvwz")
_PAUSES_MS = {" ": 60, ",": 150, ";": 180, ":": 180, ".": 250, "!": 250, "?": 250, "\n": 250}


def _pitch_of(voice_id: str) -> float:
    for voice in PREMADE_VOICES:
        if voice.voice_id == voice_id:
            return voice.pitch_hz
    return 100.0 + zlib.crc32(voice_id.encode()) % 120  # stable across runs, unlike hash()


def _segment_ms(char: str) -> int:
    lower = char.lower()
    if lower in _VOWELS:
        return 95
    if lower.isalnum():
        return 65
    return _PAUSES_MS.get(char, 40)


def _harmonic_weights(f0: float, formants: tuple[float, float], top_hz: float) -> list[float]:
    count = max(1, int(top_hz // f0))
    weights = []
    for k in range(1, count + 1):
        freq = k * f0
        resonance = sum(1.0 / (1.0 + ((freq - f) / 90.0) ** 2) for f in formants)
        weights.append((0.15 + resonance) / k)
    return weights


def synthesize(text: str, rate: int, voice_id: str = "", speed: float = 1.0) -> Speech:
    """Deterministic speech-like audio for ``text`` at ``rate`` Hz (same input, same samples)."""
    speed = min(max(speed, 0.5), 4.0)
    durations = [max(1, round(_segment_ms(c) / speed)) for c in text]
    starts = [int(s) for s in np.concatenate(([0], np.cumsum(durations)[:-1]))] if text else []
    total_ms = int(sum(durations))
    n = rate * total_ms // 1000
    if n == 0:
        return Speech(np.zeros(0, dtype=np.int16), rate, (), ())
    base = _pitch_of(voice_id)
    t = np.arange(n) / rate
    progress = t / max(t[-1], 1e-9)
    # A falling declination with a slow wobble, so it sounds less like a test tone.
    f0 = base * (1.08 - 0.16 * progress + 0.03 * np.sin(2 * np.pi * 3.0 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    rng = np.random.default_rng(zlib.crc32(text.encode()))
    out: npt.NDArray[np.float64] = np.zeros(n)
    top_hz = min(3500.0, 0.45 * rate)
    ramp_len = max(1, rate * 8 // 1000)
    for char, start_ms, dur_ms in zip(text, starts, durations, strict=True):
        lo, hi = rate * int(start_ms) // 1000, min(n, rate * (int(start_ms) + dur_ms) // 1000)
        if hi <= lo:
            continue
        lower = char.lower()
        seg_phase = phase[lo:hi]
        if lower in _VOWELS or lower in _VOICED_CONSONANTS:
            formants = _VOWELS.get(lower, (300.0, 1500.0))
            level = 1.0 if lower in _VOWELS else 0.45
            weights = _harmonic_weights(base, formants, top_hz)
            seg = sum(w * np.sin(k * seg_phase) for k, w in enumerate(weights, start=1))
            seg = level * np.asarray(seg) / sum(weights)
        elif lower.isalnum():
            noise = rng.standard_normal(hi - lo + 1)
            seg = 0.35 * np.diff(noise) / 2.0  # differenced noise: a hiss, like /s/ or /t/
        else:
            continue  # a pause
        ramp = min(ramp_len, (hi - lo) // 2)
        if ramp:
            window = np.ones(hi - lo)
            fade = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp))
            window[:ramp] = fade
            window[-ramp:] = fade[::-1]
            seg = seg * window
        out[lo:hi] = seg
    peak = float(np.max(np.abs(out)))
    if peak > 0:
        out *= 0.5 * 32767 / peak
    return Speech(
        to_int16(out),
        rate,
        tuple(int(s) for s in starts),
        tuple(durations),
    )


def even_alignment(text: str, duration_ms: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Character starts and durations spreading ``text`` evenly over ``duration_ms``
    (for audio that was not synthesized from the text, such as the parrot's replay)."""
    if not text:
        return (), ()
    bounds = [duration_ms * i // len(text) for i in range(len(text) + 1)]
    starts = tuple(bounds[:-1])
    durations = tuple(b - a for a, b in itertools.pairwise(bounds))
    return starts, durations
