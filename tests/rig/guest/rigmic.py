"""The rig's microphone: a process that plays into one side of the snd-aloop card, so that
the other side is a clocked capture device with a fixed format, as a USB microphone is.

Runs inside the emulated system (stdlib only). It keeps ``aplay`` open on the playback side
at the format given (which fixes the capture side's rate and channels for whoever opens it
next), writes silence in 20 ms blocks, and plays each ``*.raw`` file that appears in the
spool directory (S16_LE, interleaved, at that format) in name order, then deletes it. The
device's clock paces everything: writes block while its buffer is full. Before each file it
writes a line to ``played.log``: the file's name and CLOCK_MONOTONIC (ns) when its first
block was handed to aplay.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="hw:Loopback,0,0")
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--spool", type=Path, default=Path("/run/rigmic"))
    args = parser.parse_args()
    args.spool.mkdir(parents=True, exist_ok=True)
    block = args.rate // 50 * args.channels * 2
    silence = bytes(block)
    log = (args.spool / "played.log").open("a", buffering=1)
    aplay = subprocess.Popen(
        [
            "aplay",
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
            "--period-time=10000",
        ],
        stdin=subprocess.PIPE,
    )
    assert aplay.stdin is not None
    while aplay.poll() is None:
        queued = sorted(p for p in args.spool.glob("*.raw"))
        if not queued:
            aplay.stdin.write(silence)
            aplay.stdin.flush()
            continue
        path = queued[0]
        data = path.read_bytes()
        path.unlink()
        log.write(f"{path.name} {time.monotonic_ns()}\n")
        for start in range(0, len(data), block):
            aplay.stdin.write(data[start : start + block])
            aplay.stdin.flush()


if __name__ == "__main__":
    main()
