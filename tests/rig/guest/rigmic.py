"""The rig's microphone: a process that plays into one side of the snd-aloop card, so that
the other side is a clocked capture device with a fixed format, as a USB microphone is.

Runs inside the emulated system (stdlib only). It keeps ``aplay`` open on the playback side
at the format given (which fixes the capture side's rate and channels for whoever opens it
next), writes silence in 100 ms blocks, and plays each ``*.raw`` file that appears in the
spool directory (S16_LE, interleaved, at that format) in name order, then deletes it. The
device's clock paces everything: writes block while its buffer is full. Before each file it
writes a line to ``played.log``: the file's name and CLOCK_MONOTONIC (ns) when its first
block was handed to aplay.

It is frugal on purpose: the emulated CPU is slow, and every cycle spent here is one the
daemon under test does not get. The spool is looked at once per block, aplay wakes every
50 ms, and a file is written to aplay in one piece (the pipe and aplay's 500 ms buffer
absorb it).
"""

from __future__ import annotations

import argparse
import os
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
    block = args.rate // 10 * args.channels * 2  # 100 ms
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
            "--period-time=50000",
        ],
        stdin=subprocess.PIPE,
    )
    assert aplay.stdin is not None
    while aplay.poll() is None:
        queued = sorted(
            entry.name for entry in os.scandir(args.spool) if entry.name.endswith(".raw")
        )
        if not queued:
            aplay.stdin.write(silence)
            aplay.stdin.flush()
            continue
        path = args.spool / queued[0]
        data = path.read_bytes()
        path.unlink()
        log.write(f"{path.name} {time.monotonic_ns()}\n")
        aplay.stdin.write(data)
        aplay.stdin.flush()


if __name__ == "__main__":
    main()
