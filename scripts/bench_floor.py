#!/usr/bin/env python3
"""The least a client with 20 ms chunks can cost on this machine: a bare asyncio program that
does piagent's conversation I/O and none of its work, measured the way ``bench_vs_sdk.py``
measures the daemon and the SDK.

The client (this file run with ``--client``; standard library only) ticks on asyncio's clock
every 20 ms, on absolute deadlines as ``WavSpeaker`` does, and at each tick:

* writes one prebuilt, masked WebSocket text frame of a 20 ms ``user_audio_chunk`` (16 kHz
  PCM, base64 in JSON: 888 bytes on the wire) to a loopback TCP connection;
* appends 20 ms of 16 kHz samples (640 bytes) to a WAV file, unbuffered, then rewrites its
  44-byte header in place: the speaker timeline interface.md promises, valid at every moment.

The other end (a thread of this process, as ``bench_vs_sdk.py``'s simulator is) reads what
arrives and sends a 100 ms agent audio message (a 4.3 KB unmasked text frame) every 100 ms,
which the client reads and drops. No JSON, base64, websockets, numpy, playback or protocol
work is done on either path: what the client costs is wake-ups, the event loop's own work
and the system calls. The conversation benchmark's daemon does all of that and its work too,
so its CPU can approach this figure and never go below it.

The client measures itself from its first tick after ``--settle`` seconds over ``--seconds``:
CPU (user and system, every thread, ``getrusage``) as CPU-seconds per minute, and context
switches per second (its wake-ups). The parent checks that every frame arrived.

    .venv/bin/python scripts/bench_floor.py [--seconds 40] [--settle 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

PERIOD_S = 0.02
RATE = 16_000
DOWNLINK_S = 0.1  # one agent audio message every 100 ms


def _uplink_frame() -> bytes:
    """A masked client text frame holding a 20 ms ``user_audio_chunk`` (RFC 6455 §5.2)."""
    payload = json.dumps(
        {"user_audio_chunk": base64.b64encode(bytes(2 * RATE * 20 // 1000)).decode()},
        separators=(",", ":"),
    ).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BBH", 0x81, 0x80 | 126, len(payload)) + mask + masked


def _downlink_frame() -> bytes:
    """An unmasked server text frame holding 100 ms of agent audio."""
    audio = base64.b64encode(bytes(2 * RATE // 10)).decode()
    payload = json.dumps(
        {"type": "audio", "audio_event": {"audio_base_64": audio, "event_id": 1}}
    ).encode()
    return struct.pack("!BBH", 0x81, 126, len(payload)) + payload


UPLINK_BYTES = len(_uplink_frame())


def _wav_header(data_bytes: int) -> bytes:
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        *(b"RIFF", data_bytes + 36, b"WAVE", b"fmt ", 16, 1, 1, RATE, 2 * RATE, 2, 16),
        *(b"data", data_bytes),
    )


async def _client(port: int, file: BinaryIO, seconds: float, settle: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()

    class Sink(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            pass  # read and dropped: no parsing, no work

    transport, _ = await loop.create_connection(Sink, "127.0.0.1", port)
    frame, period = _uplink_frame(), bytes(2 * RATE * 20 // 1000)
    done: asyncio.Future[dict[str, Any]] = loop.create_future()
    file.write(_wav_header(0))
    fd = file.fileno()
    start = loop.time()
    first = round(settle / PERIOD_S)
    last = first + round(seconds / PERIOD_S)
    state = {"k": 0, "written": 0}
    before: list[Any] = []

    def tick() -> None:
        k = state["k"] = state["k"] + 1
        transport.write(frame)
        file.write(period)
        state["written"] += len(period)
        os.pwrite(fd, _wav_header(state["written"]), 0)
        if k == first:
            before[:] = [resource.getrusage(resource.RUSAGE_SELF), time.monotonic()]
        if k == last:
            usage, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
            done.set_result(_figures(before[0], usage, wall - before[1], k))
            return
        loop.call_at(start + k * PERIOD_S, tick)

    tick()
    figures = await done
    transport.close()
    return figures


def _figures(
    before: resource.struct_rusage, after: resource.struct_rusage, wall: float, ticks: int
) -> dict[str, Any]:
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    switches = (after.ru_nvcsw + after.ru_nivcsw) - (before.ru_nvcsw + before.ru_nivcsw)
    return {
        "cpu_per_minute": (user + system) / wall * 60,
        "system_per_minute": system / wall * 60,
        "wakeups_per_s": switches / wall,
        "involuntary_per_s": (after.ru_nivcsw - before.ru_nivcsw) / wall,
        "ticks": ticks,
    }


class _Server:
    """The far end: counts what arrives, sends an agent audio message every 100 ms."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.received = 0
        self._thread = threading.Thread(target=self._serve, name="floor-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        message = _downlink_frame()
        conn.settimeout(DOWNLINK_S)
        due = time.monotonic() + DOWNLINK_S
        with conn:
            while True:
                conn.settimeout(max(0.0, due - time.monotonic()))
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    try:
                        conn.sendall(message)
                    except OSError:
                        return
                    due += DOWNLINK_S
                    continue
                except OSError:
                    return
                if not data:
                    return
                self.received += len(data)

    def join(self) -> None:
        self._thread.join(5)
        self._listener.close()


def measure(seconds: float = 40.0, settle: float = 2.0) -> dict[str, Any]:
    """One run of the bare client; its figures, with ``frames`` (uplink frames received)."""
    server = _Server()
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        result = subprocess.run(
            [
                sys.executable,
                __file__,
                "--client",
                *(str(server.port), str(Path(tmp) / "speaker.wav"), str(seconds), str(settle)),
            ],
            capture_output=True,
            text=True,
            timeout=seconds + settle + 30,
            check=False,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
    server.join()
    if result.returncode != 0:
        raise RuntimeError(f"the floor client failed: {result.stderr.strip()}")
    figures: dict[str, Any] = json.loads(result.stdout)
    figures["frames"] = server.received / UPLINK_BYTES
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="measured (40)")
    parser.add_argument("--settle", type=float, default=2.0, help="before measuring (2)")
    parser.add_argument("--runs", type=int, default=3, help="runs; the median is printed (3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    runs = [measure(args.seconds, args.settle) for _ in range(args.runs)]
    cpu = statistics.median(r["cpu_per_minute"] for r in runs)
    if args.json:
        print(json.dumps({"runs": runs, "cpu_per_minute": cpu}, indent=2))
        return 0
    print("| the bare 20 ms client (run) | CPU s per minute | of which system | wake-ups/s |")
    print("|---|---|---|---|")
    for i, run in enumerate(runs, 1):
        print(
            f"| {i} | {run['cpu_per_minute']:.3f} | {run['system_per_minute']:.3f} "
            f"| {run['wakeups_per_s']:.0f} |"
        )
    print(f"| median | {cpu:.3f} | | |")
    frames = ", ".join(f"{run['frames']:.0f} of {run['ticks']}" for run in runs)
    print(f"uplink frames received, of the ticks in all: {frames}")
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--client"]:
    port, speaker, seconds, settle = sys.argv[2:6]
    # Unbuffered, as WavSpeaker's: each period is one write of samples and one of the header.
    with open(speaker, "wb", buffering=0) as speaker_file:
        figures = asyncio.run(_client(int(port), speaker_file, float(seconds), float(settle)))
    print(json.dumps(figures))
    sys.exit(0)

if __name__ == "__main__":
    sys.exit(main())
