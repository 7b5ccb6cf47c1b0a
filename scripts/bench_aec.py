#!/usr/bin/env python3
"""Bench the echo canceller's engines on simulated echo paths: one table, every figure.

Builds speech fixtures with espeak-ng (the far end is the agent's voice, the near end a
different one), cached under ``~/.cache/piagent-bench/aec`` (``--cache`` to move it; never
committed), then runs each engine through the same pipeline the daemon wires: the speaker's
samples recorded in an ``EchoReference``, the mic (user + ``Room`` echo) cancelled 10 ms at a
time against the reference the ``DelayEstimator`` aligned, and a ``NearEndDetector`` on the
result. Scenarios:

* linear: 80 ms bulk delay, a synthetic room (RT60 200 ms), echo 6 dB below what played;
* nonlinear: the same with the speaker soft-clipping (drive 1.5);
* change: the path moves at 20 s (110 ms, another room, 3 dB louder);
* double talk: the user talks over the agent (near end as loud as the echo at the mic);
* barge-in: ten user phrases over agent speech, latency from speech onset to detection;
* false: 10 minutes of agent speech alone through the linear path, onsets counted.

Usage: ``.venv/bin/python scripts/bench_aec.py [--engines speex,webrtc] [--false-minutes 10]``.
CPU figures are process time of the engine's ``process`` call only; compare them as ratios
within one run (they vary between machines far more than between engines).

``--cpu-only [--seconds 20]`` needs no espeak-ng (synthetic speech-like voices instead) and only
measures CPU per 10 ms frame: the speex canceller's call alone, and the daemon's whole hearing
chain (``piagent.hearing.Hearing`` with ``EchoControl``: 48 kHz mic frames resampled, the
speaker's 48 kHz periods recorded, delay estimation, canceller, near-end detector). It runs
with the installed venv on a Pi or in the rig: ``/opt/piagent/venv/bin/python
scripts/bench_aec.py --cpu-only``.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from piagent.audio.aec import FRAME_SAMPLES, RATE, EchoCanceller, engine_problem
from piagent.audio.duplex import EchoControl
from piagent.audio.echoref import DelayEstimator, EchoReference
from piagent.audio.nearend import NearEndDetector
from piagent.audio.resample import StreamResampler
from piagent.audio.room import Room, synthetic_impulse_response
from piagent.audio.wavio import read_wav
from piagent.config.schema import AecConfig
from piagent.hearing import RESYNC_MS, Hearing

Float = npt.NDArray[np.float64]
Int16 = npt.NDArray[np.int16]

AGENT_LINES = (
    "Hello, I am your voice assistant. How can I help you today?",
    "The weather this afternoon is sunny with a light breeze from the west.",
    "Tomorrow you have a meeting at ten, and lunch with Sam at half past twelve.",
    "I have set a timer for fifteen minutes. I will tell you when it is done.",
    "Here is a recipe for tomato soup. You need four tomatoes, an onion and some basil.",
    "The next train to the city leaves at seven forty and takes about half an hour.",
    "Sure, I can read the news. The local football club won its match last night.",
    "Your package is on its way and should arrive on Thursday before noon.",
)
USER_LINES = (
    "Stop, wait a moment please.",
    "No, tell me about tomorrow instead.",
    "Hey, can you turn it down?",
    "Actually, cancel that.",
)


def synth(text: str, voice: str, path: Path) -> Int16:
    """espeak-ng speech at 16 kHz, cached at ``path``."""
    if not path.exists():
        raw = path.with_suffix(".raw.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
        raw.replace(path)
    samples, rate = read_wav(path)
    resampler = StreamResampler(rate, RATE)
    return np.concatenate([resampler.process(samples), resampler.flush()])


def fixtures(cache: Path) -> tuple[list[Int16], list[Int16]]:
    cache.mkdir(parents=True, exist_ok=True)
    agent = [synth(t, "en-us", cache / f"agent{i}.wav") for i, t in enumerate(AGENT_LINES)]
    user = [synth(t, "en+f3", cache / f"user{i}.wav") for i, t in enumerate(USER_LINES)]
    return agent, user


def speech(lines: list[Int16], seconds: float, gap_s: float = 0.3) -> Int16:
    """Agent speech for ``seconds``: the lines in turn with short pauses, as a reply sounds."""
    total = int(seconds * RATE)
    out = np.zeros(total, dtype=np.int16)
    pos, k = 0, 0
    while pos < total:
        line = lines[k % len(lines)][: total - pos]
        out[pos : pos + len(line)] = line
        pos += len(line) + int(gap_s * RATE)
        k += 1
    return out


def power(x: npt.NDArray[np.generic]) -> float:
    f = np.asarray(x, dtype=np.float64)
    return float(np.dot(f, f)) / max(1, len(f))


@dataclass
class Run:
    out: Int16
    onsets: list[int] = field(default_factory=list)  # frame indices of detected onsets
    cpu_s: float = 0.0
    frames: int = 0


def pipeline(engine: str, mic: Int16, far: Int16) -> Run:
    """What the daemon does: reference ring, delay estimation, canceller, detector."""
    ref = EchoReference(RATE, capacity_s=2.0)
    estimator = DelayEstimator(ref)
    canceller = EchoCanceller(engine)
    detector = NearEndDetector()
    n = len(mic) // FRAME_SAMPLES * FRAME_SAMPLES
    run = Run(out=np.zeros(n, dtype=np.int16))
    for start in range(0, n, FRAME_SAMPLES):
        ref.record(far[start : start + FRAME_SAMPLES], start)  # the speaker's period
        near = mic[start : start + FRAME_SAMPLES]
        if estimator.observe(near, start) is not None:
            estimator.apply()
        reference = ref.aligned(start, FRAME_SAMPLES)
        t0 = time.process_time()
        clean = canceller.process(near, reference)
        run.cpu_s += time.process_time() - t0
        run.frames += 1
        if detector.update(clean, reference):
            run.onsets.append(start // FRAME_SAMPLES)
        run.out[start : start + FRAME_SAMPLES] = clean
    canceller.close()
    return run


def erle_db(echo: Int16, out: Int16, lo_s: float, hi_s: float) -> float:
    lo, hi = int(lo_s * RATE), int(hi_s * RATE)
    return 10 * math.log10(power(echo[lo:hi]) / max(power(out[lo:hi]), 1e-9))


def convergence_s(echo: Int16, out: Int16, start_s: float, target_db: float = 20.0) -> float:
    """Seconds from ``start_s`` until the 500 ms ERLE first reaches ``target_db``."""
    win = RATE // 2
    for lo in range(int(start_s * RATE), len(out) - win, RATE // 10):
        e = power(echo[lo : lo + win])
        if e > 1e3 and 10 * np.log10(e / max(power(out[lo : lo + win]), 1e-9)) >= target_db:
            return lo / RATE - start_s
    return float("nan")


def snr_db(out: Int16, clean: Float, start: int) -> float:
    """Near-end SNR of ``out`` against ``clean`` (which starts at ``start``): the best 33-tap
    linear fit of the clean near end (any engine delay up to 50 ms) against what is left."""
    pad = 800
    seg_all = out[max(0, start - pad) : start + len(clean) + pad].astype(np.float64)
    corr = np.correlate(seg_all, clean, mode="valid")
    k = int(np.argmax(np.abs(corr)))
    seg = seg_all[k : k + len(clean)]
    cols = np.stack([np.roll(clean, s) for s in range(-16, 17)], axis=1)
    weights, *_ = np.linalg.lstsq(cols, seg, rcond=None)
    fit = cols @ weights
    return 10 * math.log10(float(np.dot(fit, fit)) / max(float(np.dot(seg - fit, seg - fit)), 1e-9))


def at_level(x: Int16, like: Int16) -> Float:
    """``x`` scaled to the RMS of ``like`` over its active part."""
    act = like[np.abs(like) > 300].astype(np.float64)
    scaled: Float = np.asarray(x, np.float64) * math.sqrt(power(act) / max(power(x), 1e-9))
    return scaled


def room(delay_ms: float, gain_db: float, seed: int = 1, drive: float = 0.0) -> Room:
    ir = synthetic_impulse_response(RATE, rt60_ms=200, length_ms=150, seed=seed)
    return Room(RATE, delay_ms=delay_ms, gain_db=gain_db, impulse_response=ir, drive=drive)


def bench(engine: str, agent: list[Int16], user: list[Int16], false_min: float) -> dict[str, str]:
    res: dict[str, str] = {}
    far = speech(agent, 30)
    echo = room(80, -6).process(far)
    lin = pipeline(engine, echo, far)
    res["ERLE linear, steady (dB)"] = f"{erle_db(echo, lin.out, 20, 30):.1f}"
    res["convergence to 20 dB (s)"] = f"{convergence_s(echo, lin.out, 0):.2f}"
    res["CPU per 10 ms frame (us)"] = f"{1e6 * lin.cpu_s / lin.frames:.0f}"

    echo_nl = room(80, -6, drive=1.5).process(far)
    res["ERLE nonlinear (dB)"] = (
        f"{erle_db(echo_nl, pipeline(engine, echo_nl, far).out, 20, 30):.1f}"
    )

    path = room(80, -6)
    half = 20 * RATE
    first = path.process(far[:half])
    ir2 = synthetic_impulse_response(RATE, rt60_ms=250, length_ms=150, seed=7)
    path.change_path(delay_ms=110, gain_db=-3, impulse_response=ir2)
    echo_ch = np.concatenate([first, path.process(far[half:])])
    changed = pipeline(engine, echo_ch, far)
    res["ERLE 0-1 s after path change (dB)"] = f"{erle_db(echo_ch, changed.out, 20, 21):.1f}"
    res["ERLE 5-10 s after path change (dB)"] = f"{erle_db(echo_ch, changed.out, 25, 30):.1f}"
    res["reconvergence to 20 dB (s)"] = f"{convergence_s(echo_ch, changed.out, 20):.2f}"

    # Double talk and barge-in: user phrases over the agent, as loud as the echo at the mic.
    total = 10 + 6 * 10
    far_dt = speech(agent, total)
    echo_dt = room(80, -6).process(far_dt)
    near = np.zeros(len(far_dt))
    starts = []
    for k in range(10):
        phrase = at_level(user[k % len(user)], echo_dt)
        s = int((10 + 6 * k + 0.37 * (k % 3)) * RATE)
        near[s : s + len(phrase)] = phrase
        starts.append((s, phrase))
    mic = np.clip(echo_dt + near, -32768, 32767).astype(np.int16)
    dt = pipeline(engine, mic, far_dt)
    res["near-end SNR under double talk (dB)"] = (
        f"{np.median([snr_db(dt.out, p, s) for s, p in starts]):.1f}"
    )
    res["mic SNR before cancelling (dB)"] = (
        f"{np.median([snr_db(mic, p, s) for s, p in starts]):.1f}"
    )
    latencies, missed = [], 0
    for s, phrase in starts:
        onset = s + int(np.argmax(np.abs(phrase) > 1000))  # first clearly audible sample
        hits = [f for f in dt.onsets if onset <= (f + 1) * FRAME_SAMPLES < onset + RATE]
        if hits:
            latencies.append(((hits[0] + 1) * FRAME_SAMPLES - onset) * 1000 / RATE)
        else:
            missed += 1
    lat = f"{np.median(latencies):.0f} / {np.max(latencies):.0f}" if latencies else "-"
    res["barge-in detection median / max (ms)"] = lat
    res["barge-ins missed (of 10)"] = str(missed)
    spurious = [
        f
        for f in dt.onsets
        if not any(s <= f * FRAME_SAMPLES < s + len(p) + RATE for s, p in starts)
    ]
    res["onsets outside the user's phrases"] = str(len(spurious))

    far_long = speech(agent, false_min * 60)
    echo_long = room(80, -6).process(far_long)
    res[f"false onsets, {false_min:g} min agent alone"] = str(
        len(pipeline(engine, echo_long, far_long).onsets)
    )
    return res


TARGETS = {
    "ERLE linear, steady (dB)": ">= 30",
    "ERLE nonlinear (dB)": ">= 20",
    "near-end SNR under double talk (dB)": ">= 15",
    "barge-in detection median / max (ms)": "<= 150 incl. flush",
    "false onsets, 10 min agent alone": "0",
}


def synthetic_voice(seconds: float, rate: int, pitch_hz: float, seed: int) -> Int16:
    """Speech-like int16 without espeak-ng: harmonics of a gliding pitch shaped by two formants,
    syllables of 150-400 ms with short pauses between them, and a little noise."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    pitch = pitch_hz * (1 + 0.15 * np.sin(2 * np.pi * 0.6 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = np.zeros(n)
    for k in range(1, int(3500 / pitch_hz)):
        f = pitch_hz * k
        weight = np.exp(-(((f - 650) / 250) ** 2)) + 0.6 * np.exp(-(((f - 1900) / 400) ** 2))
        voiced += (0.1 + weight) / k * np.sin(k * phase)
    voiced /= np.abs(voiced).max()
    envelope = np.zeros(n)
    pos = 0
    while pos < n:
        length = int(rng.uniform(0.15, 0.4) * rate)
        end = min(n, pos + length)
        envelope[pos:end] = np.sin(np.pi * np.arange(end - pos) / length) ** 0.5
        pos = end + int(rng.uniform(0.03, 0.25) * rate)
    x = 12000 * envelope * voiced + rng.normal(0, 150, n)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def hearing_chain(mic: Int16, far: Int16, rate: int) -> tuple[float, int, Hearing]:
    """The daemon's hearing over ``mic`` and ``far`` (both at ``rate``), in 20 ms periods on a
    simulated clock: process time of the whole chain, 10 ms frames heard, the chain."""
    clock = [0.0]
    echo = EchoControl(
        AecConfig(enabled=True, engine="speex"), speaker_rate=rate, resync_ms=RESYNC_MS
    )
    hearing = Hearing(rate, echo=echo, clock=lambda: clock[0])
    period = rate // 50
    cpu = 0.0
    n = min(len(mic), len(far)) // period * period
    for start in range(0, n, period):
        t0 = time.process_time()
        hearing.played(far[start : start + period])
        clock[0] += period / rate
        hearing.hear(mic[start : start + period])
        cpu += time.process_time() - t0
    return cpu, n // period * 2, hearing


def cpu_only(seconds: float) -> int:
    """CPU per 10 ms frame of the speex canceller and of the whole hearing chain."""
    problem = engine_problem("speex")
    if problem is not None:
        print(f"speex: {problem}", file=sys.stderr)
        return 1
    far = synthetic_voice(seconds, RATE, 120.0, seed=1)
    near = synthetic_voice(seconds, RATE, 210.0, seed=2)
    echo = room(80, -6).process(far)
    lin = pipeline("speex", echo, far)
    # The user talks over the agent for the second half, as loud as the echo.
    half = len(far) // 2
    mic = echo.astype(np.float64)
    mic[half:] += at_level(near, echo)[half:]
    dt = pipeline("speex", np.clip(mic, -32768, 32767).astype(np.int16), far)
    card = 48000
    far48 = np.asarray(StreamResampler(RATE, card).process(far), dtype=np.int16)
    ir = synthetic_impulse_response(card, rt60_ms=200, length_ms=150, seed=1)
    echo48 = Room(card, delay_ms=80, gain_db=-6, impulse_response=ir).process(far48)
    chain_cpu, chain_frames, hearing = hearing_chain(echo48, far48, card)
    info = hearing.describe()["aec"]
    hearing.close()
    rows = [
        ("speex canceller alone, echo only (us)", 1e6 * lin.cpu_s / lin.frames),
        ("speex canceller alone, half double talk (us)", 1e6 * dt.cpu_s / dt.frames),
        ("whole hearing chain, 48 kHz in (us)", 1e6 * chain_cpu / chain_frames),
    ]
    print(f"CPU per 10 ms frame, {seconds:g} s of synthetic speech (process time)")
    for name, us in rows:
        print(f"  {name:46} {us:8.0f}   {us / 100:5.1f} % of a core")
    print(f"  ERLE (speex alone, last 5 s): {erle_db(echo, lin.out, seconds - 5, seconds):.1f} dB")
    print(f"  hearing chain at the end: {info}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default="speex,webrtc")
    parser.add_argument("--false-minutes", type=float, default=10.0)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/piagent-bench/aec")
    parser.add_argument("--cpu-only", action="store_true", help="CPU per frame, no espeak-ng")
    parser.add_argument("--seconds", type=float, default=20.0, help="--cpu-only's speech")
    args = parser.parse_args()
    if args.cpu_only:
        return cpu_only(args.seconds)
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is needed for the fixtures: apt-get install espeak-ng", file=sys.stderr)
        return 2
    agent, user = fixtures(args.cache)
    results: dict[str, dict[str, str]] = {}
    for engine in args.engines.split(","):
        problem = engine_problem(engine)
        if problem is not None:
            print(f"{engine}: skipped: {problem}", file=sys.stderr)
            continue
        print(f"running {engine} ...", file=sys.stderr, flush=True)
        results[engine] = bench(engine, agent, user, args.false_minutes)
    if not results:
        return 1
    engines = list(results)
    rows = list(next(iter(results.values())))
    width = max(len(r) for r in rows)
    print(f"{'':{width}}  " + "".join(f"{e:>14}" for e in engines) + "  target")
    for row in rows:
        cells = "".join(f"{results[e][row]:>14}" for e in engines)
        print(f"{row:{width}}  {cells}  {TARGETS.get(row, '')}")
    if "speex" in results and len(engines) > 1:
        base = float(results["speex"]["CPU per 10 ms frame (us)"])
        ratios = "".join(
            f"{float(results[e]['CPU per 10 ms frame (us)']) / base:>14.2f}" for e in engines
        )
        print(f"{'CPU relative to speex':{width}}  {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
