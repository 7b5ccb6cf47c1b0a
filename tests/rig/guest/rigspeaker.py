"""The rig's speaker: a process that records the other side of the snd-aloop card, so that
what the daemon plays ends up in a file, as a fixed-format USB DAC would play it.

Runs inside the emulated system (stdlib only). It starts ``arecord`` on the capture side
first, at the format given, which fixes the daemon's playback side to that rate and channel
count. Everything recorded is appended to ``speaker.raw`` (S16_LE, interleaved); every 20 ms
block also appends a line ``BYTE_OFFSET MONOTONIC_NS`` to ``speaker.idx``, the moment the
block was read, so that a test can put a sample on the system's clock.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="hw:Loopback,1,1")
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/var/lib/rigspeaker"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    block = args.rate // 50 * args.channels * 2
    arecord = subprocess.Popen(
        [
            "arecord",
            "-q",
            "-D",
            args.device,
            "-t",
            "raw",
            "-f",
            "S16_LE",
            "-r",
            str(args.rate),
            "-c",
            str(args.channels),
            "--buffer-time=500000",
            "--period-time=20000",
        ],
        stdout=subprocess.PIPE,
    )
    assert arecord.stdout is not None
    raw_path = args.out / "speaker.raw"
    offset = raw_path.stat().st_size if raw_path.exists() else 0  # appending after a restart
    with (
        (args.out / "speaker.raw").open("ab", buffering=0) as raw,
        (args.out / "speaker.idx").open("a", buffering=1) as index,
    ):
        while True:
            data = arecord.stdout.read(block)
            if not data:
                break
            now = time.monotonic_ns()
            raw.write(data)
            offset += len(data)
            index.write(f"{offset} {now}\n")


if __name__ == "__main__":
    main()
