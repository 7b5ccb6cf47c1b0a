#!/usr/bin/env python3
"""The least a client with 20 ms chunks can cost on this machine: bare programs that do
piagent's conversation I/O and none of its work, measured as ``bench_vs_sdk.py`` measures
the daemon and the SDK.

The client (this file run with ``--client SHAPE``; standard library only) works every 20 ms,
on absolute deadlines as ``WavSpeaker`` does, and each period:

* writes one prebuilt, masked WebSocket text frame of a 20 ms ``user_audio_chunk`` (16 kHz
  PCM, base64 in JSON: 888 bytes on the wire) to a loopback TCP connection;
* appends 20 ms of 16 kHz samples (640 bytes) to a WAV file, unbuffered, then rewrites its
  44-byte header in place: the speaker timeline interface.md promises, valid at every moment.

It comes in two shapes (``SHAPES``):

* ``asyncio``, piagent's: one event loop, a timer callback a period, the socket a transport
  whose reads arrive in a protocol callback;
* ``threads``, the SDK's: a thread sleeping to each period's deadline writes a blocking
  socket, another blocks reading it.

The other end (a thread of this process, as ``bench_vs_sdk.py``'s simulator is) reads what
arrives and sends a 100 ms agent audio message (a 4.3 KB unmasked text frame) every 100 ms,
which the client reads and drops. No JSON, base64, websockets, numpy, playback or protocol
work is done on either path: what a client costs is wake-ups, its event loop's or threads'
own work, and the system calls. A client of the same shape that does that work too can
approach its shape's figure and never go below it.

Each client measures itself from the period after ``--settle`` seconds over ``--seconds``:
CPU (user and system, every thread, ``getrusage``) as CPU-seconds per minute, and context
switches per second (its wake-ups). The parent counts the frames that arrived.

    .venv/bin/python scripts/bench_floor.py [--seconds 40] [--settle 2] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import select
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

Figures = dict[str, Any]
SHAPES = ("asyncio", "threads")
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


class _Periods:
    """The client's work each 20 ms period, the same in both clients, and the measuring
    window: from the period after ``settle`` seconds to ``seconds`` later."""

    def __init__(
        self, send: Callable[[bytes], object], file: BinaryIO, seconds: float, settle: float
    ) -> None:
        self._send, self._file, self._fd = send, file, file.fileno()
        self._frame, self._samples = _uplink_frame(), bytes(2 * RATE * 20 // 1000)
        self._first = round(settle / PERIOD_S)
        self._last = self._first + round(seconds / PERIOD_S)
        self._written = 0
        self._before = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        self.count = 0
        file.write(_wav_header(0))

    def tick(self) -> Figures | None:
        """One period's I/O; the figures after the window's last one."""
        self.count += 1
        self._send(self._frame)
        self._file.write(self._samples)
        self._written += len(self._samples)
        os.pwrite(self._fd, _wav_header(self._written), 0)
        if self.count == self._first:
            self._before = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        if self.count < self._last:
            return None
        usage, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        return _figures(self._before[0], usage, wall - self._before[1], self.count)


async def _asyncio_client(port: int, file: BinaryIO, seconds: float, settle: float) -> Figures:
    """piagent's shape: one event loop, a timer callback a period, the socket a transport."""
    loop = asyncio.get_running_loop()

    class Sink(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            pass  # read and dropped: no parsing, no work

    transport, _ = await loop.create_connection(Sink, "127.0.0.1", port)
    periods = _Periods(transport.write, file, seconds, settle)
    done: asyncio.Future[Figures] = loop.create_future()
    start = loop.time()

    def tick() -> None:
        figures = periods.tick()
        if figures is not None:
            done.set_result(figures)
        else:
            loop.call_at(start + periods.count * PERIOD_S, tick)

    tick()
    figures = await done
    transport.close()
    return figures


def _threads_client(port: int, file: BinaryIO, seconds: float, settle: float) -> Figures:
    """A threaded shape, as the SDK's: a thread sleeping to each period's deadline writes a
    blocking socket; another blocks reading it."""
    conn = socket.create_connection(("127.0.0.1", port))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def drain() -> None:
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass  # read and dropped

    threading.Thread(target=drain, name="floor-reader", daemon=True).start()
    periods = _Periods(conn.sendall, file, seconds, settle)
    start = time.monotonic()
    while (figures := periods.tick()) is None:
        time.sleep(max(0.0, start + periods.count * PERIOD_S - time.monotonic()))
    conn.close()
    return figures


def _figures(
    before: resource.struct_rusage, after: resource.struct_rusage, wall: float, ticks: int
) -> Figures:
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    switches = (after.ru_nvcsw + after.ru_nivcsw) - (before.ru_nvcsw + before.ru_nivcsw)
    return {
        "cpu_per_minute": (user + system) / wall * 60,
        "system_per_minute": system / wall * 60,
        "wakeups_per_s": switches / wall,
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
        due = time.monotonic() + DOWNLINK_S
        with conn:
            while True:
                readable, _, _ = select.select([conn], [], [], max(0.0, due - time.monotonic()))
                try:
                    if not readable:
                        conn.sendall(message)
                        due += DOWNLINK_S
                        continue
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                self.received += len(data)

    def join(self) -> None:
        self._thread.join(5)
        self._listener.close()


def measure(shape: str = "asyncio", seconds: float = 40.0, settle: float = 2.0) -> Figures:
    """One run of the bare client of ``shape`` (``SHAPES``); its figures, with ``frames``
    (uplink frames received)."""
    server = _Server()
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        result = subprocess.run(
            [
                sys.executable,
                __file__,
                "--client",
                shape,
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
    figures: Figures = json.loads(result.stdout)
    figures["frames"] = server.received / UPLINK_BYTES
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="measured (40)")
    parser.add_argument("--settle", type=float, default=2.0, help="before measuring (2)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each; medians (3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    runs: dict[str, list[Figures]] = {shape: [] for shape in SHAPES}
    for _ in range(args.runs):  # alternating
        for shape in SHAPES:
            runs[shape].append(measure(shape, args.seconds, args.settle))
    medians = {
        shape: statistics.median(r["cpu_per_minute"] for r in shape_runs)
        for shape, shape_runs in runs.items()
    }
    if args.json:
        print(json.dumps({"runs": runs, "cpu_per_minute": medians}, indent=2))
        return 0
    print("| the bare 20 ms client | CPU s per minute (runs) | of which system | wake-ups/s |")
    print("|---|---|---|---|")
    for shape, shape_runs in runs.items():
        cpus = ", ".join(f"{r['cpu_per_minute']:.2f}" for r in shape_runs)
        system = statistics.median(r["system_per_minute"] for r in shape_runs)
        wakeups = statistics.median(r["wakeups_per_s"] for r in shape_runs)
        print(f"| {shape} | {medians[shape]:.2f} ({cpus}) | {system:.2f} | {wakeups:.0f} |")
    frames = ", ".join(f"{r['frames']:.0f} of {r['ticks']}" for rs in runs.values() for r in rs)
    print(f"uplink frames received, of the periods in all: {frames}")
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--client"]:
    shape, port, speaker, seconds, settle = sys.argv[2:7]
    # Unbuffered, as WavSpeaker's: each period is one write of samples and one of the header.
    with open(speaker, "wb", buffering=0) as speaker_file:
        args = (int(port), speaker_file, float(seconds), float(settle))
        if shape == "asyncio":
            figures = asyncio.run(_asyncio_client(*args))
        else:
            figures = _threads_client(*args)
    print(json.dumps(figures))
    sys.exit(0)

if __name__ == "__main__":
    sys.exit(main())
