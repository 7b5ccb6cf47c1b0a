#!/usr/bin/env python3
"""Speech fixtures for the wake-word bench and tests, synthesised with espeak-ng (no recordings).

Owns how the fixtures are made, all at 16 kHz int16 mono:

* ``speak``: espeak-ng (22050 Hz WAV) resampled with scipy's polyphase filter, leading and
  trailing silence trimmed; cached as .npy under ``~/.cache/piagent-bench/wake``
  (``$PIAGENT_BENCH_CACHE``); nothing is written into the repository;
* backgrounds: white and pink noise, babble (four other voices talking at once) and the
  agent's own voice (a voice no fixture speaker uses, saying agent-like sentences), each mixed
  at a signal-to-noise ratio measured on the phrase's own level;
* ``positives``: one model's phrase in every ``VOICES`` x ``RATES`` x ``CONDITIONS``, each a clip
  of 1 s background, the phrase, 1.5 s background, with where the phrase is;
* ``negatives``: the false-accept stream: a few minutes of varied sentences (near misses such as
  "okay", "hey", "stop", "jar" and "nap" among them, no wake phrase) spoken by several voices
  once, then cut into an hour (or ``minutes``) by drawing sentences at random levels with random
  gaps over backgrounds that change every half minute (quiet, white, pink, babble, the agent).
  The hour repeats its few minutes of speech many times over: it measures false accepts on
  varied synthetic speech and noise, not on an hour of real rooms.

    .venv/bin/python scripts/wake_fixtures.py [--minutes M]   # build the cache, say what it has
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import tempfile
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import signal

RATE: Final = 16000
Samples = npt.NDArray[np.int16]
Floats = npt.NDArray[np.float64]

# What each bundled model is trained to hear; "stop" has no bundled model (negatives only).
PHRASES: Final = {
    "okay_nabu": "okay nabu",
    "hey_jarvis": "hey jarvis",
    "hey_mycroft": "hey mycroft",
    "alexa": "alexa",
    "hey_rhasspy": "hey rhasspy",
}
# espeak-ng voices with variants (+f female, +m male timbres): accents US, GB, Scottish,
# Caribbean, RP, New York.
VOICES: Final = ("en-us", "en-gb+f4", "en-us+f3", "en-gb-scotland+m3", "en-029+m2", "en-us-nyc+m5")
RATES: Final = (150, 190)  # words per minute (espeak-ng's default is 175)
AGENT_VOICE: Final = "en-gb-x-gbcwmd"  # the agent's own voice: no fixture speaker uses it
BABBLE_VOICES: Final = ("en-gb-x-rp+f2", "en-us+m7", "en-gb-x-gbclan", "en+f5")
# (name, background, SNR in dB of the phrase over it; None: no background)
CONDITIONS: Final = (
    ("clean", "none", None),
    ("white 20 dB", "white", 20.0),
    ("white 10 dB", "white", 10.0),
    ("pink 10 dB", "pink", 10.0),
    ("babble 10 dB", "babble", 10.0),
    ("babble 5 dB", "babble", 5.0),
    ("agent 6 dB", "agent", 6.0),
    ("agent 0 dB", "agent", 0.0),
)
SPEECH_RMS: Final = 3000.0  # the phrase's level, about -21 dBFS
LEAD_S: Final = 1.0
TAIL_S: Final = 1.5

SENTENCES: Final = (
    "Okay, let me check the weather for tomorrow morning.",
    "Hey, did you remember to buy milk on the way home?",
    "Stop by the bakery if you have a minute.",
    "The jar on the top shelf is full of buttons.",
    "I took a short nap after lunch and felt much better.",
    "Can you set a timer for twelve minutes, please?",
    "Alexander will be late because the train was cancelled.",
    "The microphone on the laptop picks up a lot of noise.",
    "We should paint the kitchen a lighter shade of blue.",
    "Jars of honey were lined up along the window sill.",
    "Okay everyone, the meeting starts in five minutes.",
    "Hey there, how was the concert last night?",
    "Please stop the music, the baby is sleeping.",
    "My neighbour Nabil fixed the fence on Saturday.",
    "The bus was crowded, so I walked to the station.",
    "Turn off the lights in the living room when you leave.",
    "Mike, could you pass me the salt and the pepper?",
    "A lexicon lists the words of a language and their meanings.",
    "The garden looks lovely after all the rain this week.",
    "Is it going to be sunny on the coast on Sunday?",
    "Remind me to call the dentist before noon.",
    "The recipe needs two eggs, flour, sugar and a pinch of salt.",
    "Harvest festival tickets are on sale at the town hall.",
    "No, I said the blue one, not the black one.",
    "Could you read me the news headlines, please?",
    "The cat is asleep on the sofa again.",
    "Jarvis Street is closed for repairs until Friday.",
    "Let's order pizza tonight and watch a film.",
    "The printer is out of paper and the toner is low.",
    "We need to leave at half past seven at the latest.",
)
AGENT_SENTENCES: Final = (
    "Sure, I can help with that. What would you like to know?",
    "Tomorrow will be mostly cloudy with a high of fourteen degrees.",
    "I have set a timer for ten minutes. Anything else?",
    "Here is a quick summary of today's news.",
    "That sounds like a great plan. Let me know if I can help.",
    "I'm sorry, I did not catch that. Could you say it again?",
)


def cache_dir() -> Path:
    root = os.environ.get("PIAGENT_BENCH_CACHE") or Path.home() / ".cache" / "piagent-bench"
    path = Path(root) / "wake"
    path.mkdir(parents=True, exist_ok=True)
    return path


def speak(text: str, voice: str = "en-us", wpm: int = 175) -> Samples:
    """``text`` in ``voice`` at ``wpm`` words a minute, 16 kHz, silence trimmed (cached)."""
    key = hashlib.sha256(f"{voice}|{wpm}|{text}".encode()).hexdigest()[:20]
    cached = cache_dir() / f"{key}.npy"
    if cached.exists():
        return np.load(cached)  # type: ignore[no-any-return]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "out.wav"
        command = ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(path), text]
        subprocess.run(command, check=True, capture_output=True)
        with wave.open(str(path), "rb") as wav:
            rate = wav.getframerate()
            raw = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    gcd = np.gcd(RATE, rate)
    resampled = signal.resample_poly(raw.astype(np.float64), RATE // gcd, rate // gcd)
    loud = np.flatnonzero(np.abs(resampled) > 0.02 * np.max(np.abs(resampled)))
    trimmed = resampled[loud[0] : loud[-1] + 1] if loud.size else resampled
    samples: Samples = np.clip(np.round(trimmed), -32768, 32767).astype(np.int16)
    np.save(cached, samples)
    return samples


def read_wav(path: Path) -> Samples:
    """A 16-bit mono WAV file (a recording) at 16 kHz."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise ValueError(f"{path}: expected 16-bit mono WAV")
        rate = wav.getframerate()
        raw = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    if rate == RATE:
        return raw.astype(np.int16)
    gcd = np.gcd(RATE, rate)
    resampled = signal.resample_poly(raw.astype(np.float64), RATE // gcd, rate // gcd)
    samples: Samples = np.clip(np.round(resampled), -32768, 32767).astype(np.int16)
    return samples


def rms(x: npt.NDArray[np.floating] | Samples) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def white(n: int, rng: np.random.Generator) -> Floats:
    return rng.standard_normal(n)


def pink(n: int, rng: np.random.Generator) -> Floats:
    """1/f noise: white noise shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum /= np.sqrt(np.maximum(freqs, 20.0))
    return np.fft.irfft(spectrum, n)


def _talk(n: int, voice: str, sentences: tuple[str, ...], rng: np.random.Generator) -> Floats:
    """``n`` samples of ``voice`` saying ``sentences`` in random order with short pauses."""
    out: list[Floats] = []
    have = 0
    while have < n:
        said = speak(sentences[rng.integers(len(sentences))], voice).astype(np.float64)
        pause = np.zeros(int(rng.uniform(0.1, 0.6) * RATE))
        out += [said, pause]
        have += len(said) + len(pause)
    start = int(rng.integers(0, max(1, have - n)))
    joined: Floats = np.concatenate(out)
    return joined[start : start + n]


def background(kind: str, n: int, rng: np.random.Generator) -> Floats:
    """``n`` samples of one background at unit RMS (zeros for ``none``)."""
    if kind == "none":
        return np.zeros(n)
    if kind == "white":
        x = white(n, rng)
    elif kind == "pink":
        x = pink(n, rng)
    elif kind == "babble":
        x = np.sum([_talk(n, v, SENTENCES, rng) for v in BABBLE_VOICES], axis=0)
    elif kind == "agent":
        x = _talk(n, AGENT_VOICE, AGENT_SENTENCES, rng)
    else:
        raise ValueError(kind)
    level = rms(x)
    return x / level if level else x


@dataclass(frozen=True, slots=True)
class Clip:
    """One positive fixture: ``audio`` holds the phrase at samples [start, end)."""

    model: str
    voice: str
    wpm: int
    condition: str
    audio: Samples
    start: int
    end: int


def mix(
    phrase: Samples, kind: str, snr_db: float | None, rng: np.random.Generator
) -> tuple[Samples, int, int]:
    """The phrase at ``SPEECH_RMS`` between lead and tail, over the background: (audio, start,
    end)."""
    lead, tail = int(LEAD_S * RATE), int(TAIL_S * RATE)
    speech = phrase.astype(np.float64) * (SPEECH_RMS / max(rms(phrase), 1.0))
    n = lead + len(speech) + tail
    out = np.zeros(n)
    out[lead : lead + len(speech)] = speech
    if snr_db is not None:
        out += background(kind, n, rng) * SPEECH_RMS / 10 ** (snr_db / 20)
    audio = np.clip(np.round(out), -32768, 32767).astype(np.int16)
    return audio, lead, lead + len(speech)


def positives(model: str, seed: int = 1) -> Iterator[Clip]:
    """Every voice x rate x condition of ``model``'s phrase."""
    rng = np.random.default_rng(seed)
    for voice in VOICES:
        for wpm in RATES:
            phrase = speak(PHRASES[model], voice, wpm)
            for name, kind, snr in CONDITIONS:
                yield Clip(model, voice, wpm, name, *mix(phrase, kind, snr, rng))


NEGATIVE_VOICES: Final = (*VOICES, "en-gb-x-rp+f2", "en-us+m7")
NEGATIVE_BACKGROUNDS: Final = (("none", None), ("white", 20.0), ("pink", 10.0),
                               ("babble", 10.0), ("agent", 6.0), ("agent", 0.0))  # fmt: skip
BLOCK_S: Final = 30  # one background (and its level) per block


def negative_sentences() -> list[Samples]:
    """Every sentence in three voices and a rate each: the few minutes the stream is cut from
    (plus the bare word "stop", said by every voice)."""
    said = []
    for index, text in enumerate(SENTENCES):
        for turn in range(3):
            voice = NEGATIVE_VOICES[(index + 3 * turn) % len(NEGATIVE_VOICES)]
            said.append(speak(text, voice, RATES[(index + turn) % len(RATES)]))
    said += [speak("stop", voice) for voice in NEGATIVE_VOICES]
    return said


def negatives(minutes: float, seed: int = 2) -> Iterator[Samples]:
    """The false-accept stream in ``BLOCK_S`` blocks (int16), ``minutes`` long in all."""
    rng = np.random.default_rng(seed)
    pool = negative_sentences()
    for _ in range(max(1, round(minutes * 60 / BLOCK_S))):
        n = BLOCK_S * RATE
        kind, snr = NEGATIVE_BACKGROUNDS[rng.integers(len(NEGATIVE_BACKGROUNDS))]
        level = SPEECH_RMS * 10 ** (rng.uniform(-12.0, 3.0) / 20)
        out = np.zeros(n)
        at = int(rng.uniform(0.0, 2.0) * RATE)
        while at < n:
            said = pool[rng.integers(len(pool))].astype(np.float64)
            said *= level * 10 ** (rng.uniform(-3.0, 3.0) / 20) / max(rms(said), 1.0)
            part = said[: n - at]
            out[at : at + len(part)] += part
            at += len(said) + int(rng.uniform(0.2, 3.0) * RATE)
        if snr is not None:
            out += background(kind, n, rng) * level / 10 ** (snr / 20)
        else:
            out += white(n, rng) * 3.0  # a quiet room's floor, about -80 dBFS
        yield np.clip(np.round(out), -32768, 32767).astype(np.int16)


def negatives_description(minutes: float) -> str:
    speech_s = sum(len(s) for s in negative_sentences()) / RATE
    return (
        f"{minutes:g} min cut from {speech_s / 60:.1f} min of espeak-ng speech "
        f"({len(SENTENCES)} sentences x 3 voices + 'stop' x {len(NEGATIVE_VOICES)}), "
        f"sentences drawn at random levels and gaps over {BLOCK_S} s blocks of quiet, "
        "white, pink, babble or the agent's voice"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="false-accept stream length")
    args = parser.parse_args()
    count = 0
    for model in PHRASES:
        count += sum(1 for _ in positives(model))
    print(f"positives: {count} clips ({len(PHRASES)} phrases) in {cache_dir()}")
    print(f"negatives: {negatives_description(args.minutes)}")


if __name__ == "__main__":
    main()
