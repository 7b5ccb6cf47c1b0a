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
Thresholds are each model's own (micro: its .json; open: 0.5) unless ``--threshold``.

    .venv/bin/python scripts/bench_wake.py [--minutes 60] [--engines micro,open]
                                           [--cpu-seconds 60] [--threshold P]

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


def measure_cpu(
    engine: str, model: str, seconds: float, threshold: float | None
) -> tuple[float, float]:
    listener = WakeListener(WakeConfig(engine=engine, model=model, threshold=threshold))  # type: ignore[arg-type]
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
    parser.add_argument("--threshold", type=float, default=None)
    args = parser.parse_args()
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
        config = WakeConfig(engine=engine, threshold=args.threshold)
        try:
            listener = WakeListener(config, bank=models)
        except WakeUnavailable as exc:
            print(f"{engine}: skipped: {exc}")
            continue
        by_model = {m: Row(engine, m, t) for m, t in zip(models, listener.thresholds, strict=True)}
        run_positives(listener, by_model, models)
        run_negatives(listener, by_model, args.minutes)
        listener.close()
        for model, row in by_model.items():
            row.cpu, row.rtf = measure_cpu(engine, model, args.cpu_seconds, args.threshold)
        rows += by_model.values()
    heads = ["engine", "model", "thr", "det%", *CONDITION_HEADS, *VOICE_HEADS, "FA/h", "FAclip",
             "CPU%", "RTF"]  # fmt: skip
    table = [heads]
    for r in rows:
        table.append(
            [r.engine, r.model, f"{r.threshold:.2f}", r.rate()]
            + [r.rate(f"c{i}") for i in range(len(CONDITION_HEADS))]
            + [r.rate(f"v{i}") for i in range(len(VOICE_HEADS))]
            + [f"{r.false_on_stream * 60 / args.minutes:.1f}", str(r.false_on_clips)]
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
            print(f"missed {r.engine}/{r.model} ({len(r.missed)}): {shown}")
    print(f"bench took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
