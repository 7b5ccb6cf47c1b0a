"""The status the daemon shows ``piagent ctl status`` (interface.md): one JSON-ready object
built from the client's snapshot, the devices and the LEDs when asked; nothing is polled.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from piagent.assembly import Audio, rate_or
from piagent.client import AgentClient
from piagent.gpio import StatusLeds


def describe(
    client: AgentClient, audio: Audio, leds: StatusLeds, gpio_problem: str | None
) -> dict[str, Any]:
    """The ``piagent ctl status --json`` object."""
    status = client.status()
    latency = status.latency
    mic = audio.mic
    return {
        "state": client.state.value,
        "conversation_id": status.conversation_id,
        "latency_ms": {
            "turn": latency.turn,
            "reply_ms": round(latency.reply_ms) if latency.reply_ms is not None else None,
            "ping_ms": latency.ping_ms,
        }
        if latency
        else None,
        "devices": {
            "input": {
                "name": mic.name,
                "rate": rate_or(mic, None),
                "healthy": mic.healthy,
                # Frames the loop could not take in time, samples at full scale, and
                # PortAudio's overflow flags (the device's buffer ran over).
                "overruns": getattr(mic, "overruns", 0),
                "clipped": getattr(mic, "clipped", 0),
                "xruns": getattr(mic, "xruns", 0),
            },
            "output": {
                "name": audio.output_name(),
                "rate": audio.output_rate,
                "healthy": audio.output_healthy(),
                "underruns": audio.playback.underruns,
                "xruns": audio.output_xruns(),
            },
        },
        "leds": leds.describe(),
        "gpio": {"ok": gpio_problem is None, "problem": gpio_problem},
        "muted": client.muted,
        "volume": round(audio.playback.volume, 3),
        "turns": status.turns,
        "last_ending": status.last_ending.describe() if status.last_ending else None,
        "dropped_frames": status.dropped_frames,
        "underruns": audio.playback.underruns,
        "threads": _thread_counts(),
    }


def _thread_counts() -> dict[str, int]:
    """Threads Python started (the loop's included) and the process's native threads: a
    native thread Python does not know of is a library's (PortAudio's callback thread, lgpio's
    notifier; a BLAS pool would be one too)."""
    try:
        native = sum(1 for _ in Path("/proc/self/task").iterdir())
    except OSError:  # not Linux
        native = -1
    return {"python": threading.active_count(), "native": native}
