#!/usr/bin/env python3
"""``piagent run`` with its conversation hot paths timed in place, for ``bench_vs_sdk.py
--sections``: where each CPU-second of a conversation goes, counted as the daemon spends it.

Each section is a function of piagent (or of asyncio, for the socket) wrapped so that every call
adds its thread CPU time (``time.thread_time_ns``: user and kernel time of the calling thread,
so a syscall's kernel work counts where it was made) and one to its count. Sections nest
(``tick`` holds the speaker's and the microphone's parts, and those hold the socket write), so
the table says which holds which. On each SIGUSR1 the process writes the running totals and the
main thread's CPU time to ``OUT.N.json`` (N = 1, 2, ...): the bench signals at the
conversation's start and end and takes the difference. What no section holds is the rest of
the main thread: waking up, the event loop's own work, timers, status.

The timing costs a few microseconds a call of its own, so a run with sections is for the
breakdown, not for the CPU comparison.

    python scripts/daemon_costs.py OUT run --config CONFIG
"""

from __future__ import annotations

import functools
import importlib
import json
import runpy
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

# (name, module, class, method, the section it is part of, or "")
_MIC = "microphone: frame to the link"
_SOCKET = ("asyncio.selector_events", "_SelectorSocketTransport")
SECTIONS = (
    ("tick", "piagent.audio.wavio", "WavSpeaker", "_tick", ""),
    ("speaker: Playback.read", "piagent.audio.playback", "Playback", "read", "tick"),
    ("speaker: file writes", "piagent.audio.wavio", "WavSpeaker", "_append", "tick"),
    (_MIC, "piagent.audio.wavmic", "WavMicrophone", "deliver_due", "tick"),
    ("uplink: Link.send_audio", "piagent.transport", "Link", "send_audio", _MIC),
    ("socket writes (uplink, pongs, any message)", *_SOCKET, "write", ""),
    ("downlink: read and handle", *_SOCKET, "_read_ready", ""),
)

_totals: dict[str, list[int]] = {name: [0, 0] for name, *_ in SECTIONS}


def _timed(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    total = _totals[name]
    clock = time.thread_time_ns

    @functools.wraps(method)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return method(*args, **kwargs)
        finally:
            total[0] += clock() - start
            total[1] += 1

    return timed


def _install() -> None:
    for name, module, cls, method, _ in SECTIONS:
        owner = getattr(importlib.import_module(module), cls)
        setattr(owner, method, _timed(name, getattr(owner, method)))


def _snapshots(out: str) -> Callable[[int, FrameType | None], None]:
    count = [0]

    def snapshot(signum: int, frame: FrameType | None) -> None:
        count[0] += 1
        data = {
            "main_thread_ns": time.thread_time_ns(),  # handlers run on the main thread
            "sections": {name: list(total) for name, total in _totals.items()},
            "parents": {name: parent for name, *_, parent in SECTIONS},
        }
        Path(f"{out}.{count[0]}.json").write_text(json.dumps(data))

    return snapshot


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    _install()
    signal.signal(signal.SIGUSR1, _snapshots(out))
    sys.argv = ["piagent", *args]
    runpy.run_module("piagent", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
