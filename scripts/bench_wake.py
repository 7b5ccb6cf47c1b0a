#!/usr/bin/env python3
"""Wake-word benchmark: every bundled model of both engines on the same fixtures, one table.

Per engine and model, side by side in one run:

* detection rate on the positive fixtures (scripts/wake_fixtures.py: the model's phrase in
  espeak-ng voices, rates and backgrounds), overall, per background condition and per voice;
  a clip counts as detected when the model fires between the phrase's start and 1 s after
  its end;
* false accepts per hour on the negative stream (an hour of other espeak-ng speech and noise
  by default, made as ``wake_fixtures.negatives`` says: looped few minutes, not real rooms),
  plus any firing on another model's phrase or outside the window in the positive clips;
* CPU while listening: a ``WakeListener`` with that model alone fed 20 ms frames of the
  negative stream, as the daemon would: ``time.process_time`` (every thread of the process)
  over the audio's duration = % of one core; RTF = wall time over audio time.

Detection and false accepts run all of an engine's models over one feature pipeline
(``WakeListener(..., bank=...)``): each model sees the same audio it would see alone.
Thresholds are each model's own (micro: its .json; open: 0.5), or each of ``--thresholds``
(a row per threshold). ``--recordings DIR`` adds real recordings, the measure that counts:
``DIR/<model>/*.wav`` each hold one utterance of the model's phrase (column rec%: detected
anywhere in the file), ``DIR/negatives/*.wav`` ordinary room audio without it (recFA/h);
16-bit mono WAV at any rate.

    .venv/bin/python scripts/bench_wake.py [--minutes 60] [--engines micro,open]
                      [--cpu-seconds 60] [--thresholds own,0.5] [--recordings DIR]

Needs espeak-ng, pymicro-wakeword and pyopen-wakeword (``pip install -e .[bench]``); an engine
that is not installed is reported and skipped. Generated audio is cached in
~/.cache/piagent-bench/wake ($PIAGENT_BENCH_CACHE), never in the repository.
"""

from __future__ import annotations

import argparse
import collections
import platform
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wake_fixtures as fx  # beside this script

from piagent.config import WAKE_ENGINES, WAKE_MODELS, WakeConfig
from piagent.wake import ENGINE_PACKAGES, RATE, WakeListener, WakeUnavailable

FRAME = RATE // 50  # 20 ms, the daemon's mic period
WINDOW_AFTER_S = 1.0  # a detection up to this long after the phrase's end counts
CONDITION_HEADS = ("clean", "w20", "w10", "p10", "b10", "b5", "ag6", "ag0")
VOICE_HEADS = ("us", "gb+f4", "us+f3", "sc+m3", "029+m2", "nyc+m5")


@dataclass
class Row:
    engine: str
    model: str
    threshold: float = 0.0
    hits: collections.Counter[str] = field(default_factory=collections.Counter)
    tries: collections.Counter[str] = field(default_factory=collections.Counter)
    false_on_clips: int = 0
    false_on_stream: int = 0
    recorded_hits: int = 0
    recorded_tries: int = 0
    recorded_false: int = 0
    recorded_seconds: float = 0.0
    cpu: float = 0.0
    rtf: float = 0.0
    missed: list[str] = field(default_factory=list)

    def rate(self, key: str = "all") -> str:
        return f"{100 * self.hits[key] / self.tries[key]:.0f}" if self.tries[key] else "-"


def frames(audio: np.ndarray) -> Iterable[np.ndarray]:
    for at in range(0, len(audio), FRAME):
        yield audio[at : at + FRAME]


def run_positives(listener: WakeListener, rows: dict[str, Row], models: list[str]) -> None:
    """Every phrase's clips back to back through one listener; hits and stray firings."""
    for phrase in models:
        for clip in fx.positives(phrase):
            base = listener.samples
            window = (base + clip.start, base + clip.end + round(WINDOW_AFTER_S * RATE) + FRAME)
            fired: set[str] = set()
            for frame in frames(clip.audio):
                for found in listener.feed(frame):
                    if found.model == phrase and window[0] <= found.sample <= window[1]:
                        fired.add(found.model)
                    else:
                        rows[found.model].false_on_clips += 1
            row = rows[phrase]
            voice = fx.VOICES.index(clip.voice)
            condition = [c[0] for c in fx.CONDITIONS].index(clip.condition)
            for key in ("all", f"c{condition}", f"v{voice}"):
                row.tries[key] += 1
                row.hits[key] += phrase in fired
            if phrase not in fired:
                row.missed.append(f"{clip.voice}@{clip.wpm}/{clip.condition}")


def run_negatives(listener: WakeListener, rows: dict[str, Row], minutes: float) -> None:
    for block in fx.negatives(minutes):
        for frame in frames(block):
            for found in listener.feed(frame):
                rows[found.model].false_on_stream += 1


def run_recordings(listener: WakeListener, rows: dict[str, Row], folder: Path) -> None:
    """Real recordings: each positive file is one utterance; the negatives' firings count."""
    for model, row in rows.items():
        for path in sorted((folder / model).glob("*.wav")):
            listener.reset()
            audio = np.concatenate([fx.read_wav(path), np.zeros(RATE, np.int16)])  # 1 s after
            fired = {d.model for f in frames(audio) for d in listener.feed(f)}
            row.recorded_tries += 1
            row.recorded_hits += model in fired
            if model not in fired:
                row.missed.append(f"recording {path.name}")
    for path in sorted((folder / "negatives").glob("*.wav")):
        audio = fx.read_wav(path)
        for frame in frames(audio):
            for found in listener.feed(frame):
                rows[found.model].recorded_false += 1
        for row in rows.values():
            row.recorded_seconds += len(audio) / RATE


def measure_cpu(engine: str, model: str, seconds: float) -> tuple[float, float]:
    listener = WakeListener(WakeConfig(engine=engine, model=model))  # type: ignore[arg-type]
    audio = np.concatenate(list(fx.negatives(seconds / 60, seed=3)))
    cpu, wall = time.process_time(), time.perf_counter()
    for frame in frames(audio):
        listener.feed(frame)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    listener.close()
    return cpu / (len(audio) / RATE), wall / (len(audio) / RATE)


def version(engine: str) -> str:
    try:
        return metadata.version(ENGINE_PACKAGES[engine])
    except metadata.PackageNotFoundError:
        return "not installed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="false-accept stream")
    parser.add_argument("--engines", default=",".join(WAKE_ENGINES))
    parser.add_argument("--cpu-seconds", type=float, default=60.0)
    parser.add_argument("--thresholds", default="own", help="own (the models') or numbers")
    parser.add_argument("--recordings", type=Path, default=None, help="real recordings")
    args = parser.parse_args()
    thresholds = [None if t == "own" else float(t) for t in args.thresholds.split(",")]
    started = time.perf_counter()
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}; " + ", ".join(
              f"{ENGINE_PACKAGES[e]} {version(e)}" for e in WAKE_ENGINES))  # fmt: skip
    clips = len(fx.VOICES) * len(fx.RATES) * len(fx.CONDITIONS)
    print(f"positives: per phrase {clips} clips = {len(fx.VOICES)} espeak-ng voices x "
          f"{len(fx.RATES)} rates {fx.RATES} wpm x {len(fx.CONDITIONS)} conditions "
          f"({', '.join(c[0] for c in fx.CONDITIONS)}); agent voice {fx.AGENT_VOICE}")  # fmt: skip
    print(f"negatives: {fx.negatives_description(args.minutes)}")
    rows: list[Row] = []
    for engine in args.engines.split(","):
        models = [m for m in WAKE_MODELS[engine] if m in fx.PHRASES]
        cost: dict[str, tuple[float, float]] = {}  # model -> (CPU, RTF): no threshold's business
        done: set[tuple[float, ...]] = set()  # open's own thresholds are 0.5: measured once
        for threshold in thresholds:
            config = WakeConfig(engine=engine, threshold=threshold)
            try:
                listener = WakeListener(config, bank=models)
            except WakeUnavailable as exc:
                print(f"{engine}: skipped: {exc}")
                break
            if listener.thresholds in done:
                listener.close()
                continue
            done.add(listener.thresholds)
            pairs = zip(models, listener.thresholds, strict=True)
            by_model = {m: Row(engine, m, t) for m, t in pairs}
            run_positives(listener, by_model, models)
            run_negatives(listener, by_model, args.minutes)
            if args.recordings is not None:
                run_recordings(listener, by_model, args.recordings)
            listener.close()
            for model, row in by_model.items():
                if model not in cost:
                    cost[model] = measure_cpu(engine, model, args.cpu_seconds)
                row.cpu, row.rtf = cost[model]
            rows += by_model.values()
    real = args.recordings is not None
    heads = ["engine", "model", "thr", "det%", *CONDITION_HEADS, *VOICE_HEADS, "FA/h", "FAclip",
             *(["rec%", "recFA/h"] if real else []), "CPU%", "RTF"]  # fmt: skip
    table = [heads]
    for r in rows:
        recorded = [
            f"{100 * r.recorded_hits / r.recorded_tries:.0f}" if r.recorded_tries else "-",
            f"{r.recorded_false * 3600 / r.recorded_seconds:.1f}" if r.recorded_seconds else "-",
        ]
        table.append(
            [r.engine, r.model, f"{r.threshold:.2f}", r.rate()]
            + [r.rate(f"c{i}") for i in range(len(CONDITION_HEADS))]
            + [r.rate(f"v{i}") for i in range(len(VOICE_HEADS))]
            + [f"{r.false_on_stream * 60 / args.minutes:.1f}", str(r.false_on_clips)]
            + (recorded if real else [])
            + [f"{100 * r.cpu:.2f}", f"{r.rtf:.4f}"]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(heads))]
    print()
    for line in table:
        print("  ".join(cell.rjust(w) if i > 1 else cell.ljust(w)
                        for i, (cell, w) in enumerate(zip(line, widths, strict=True))))  # fmt: skip
    print()
    print("det% by condition: clean, w = white, p = pink, b = babble, ag = the agent's voice, at "
          "that SNR in dB; by voice: " + ", ".join(fx.VOICES))  # fmt: skip
    print(
        "FA/h: firings on the negative stream per hour; FAclip: firings on the positive "
        "clips outside the model's own phrase window (its phrase again, or another phrase)"
    )
    for r in rows:
        if r.missed:
            shown = ", ".join(r.missed[:6]) + (" ..." if len(r.missed) > 6 else "")
            print(f"missed {r.engine}/{r.model}@{r.threshold:.2f} ({len(r.missed)}): {shown}")
    print(f"bench took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
