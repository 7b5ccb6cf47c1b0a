"""The rig's room: the speaker heard by the microphone, in real time, through the snd-aloop card.

Runs inside the emulated system, with the installed venv's Python (it needs numpy), in place of
``rigmic`` and ``rigspeaker`` (it opens the same two sides of the card, so the daemon's devices
are the same): ``arecord`` records what the daemon plays (from ``hw:Loopback,1,1``) and
``aplay`` plays into the side the daemon captures (``hw:Loopback,0,0``). Every 20 ms block that
the ear reads is written back to the microphone at once, attenuated and smeared by a few
reflections (the echo path), with the user's voice added: each ``*.raw`` file that appears in
the spool directory (S16_LE, interleaved, at the card's format) is mixed in from the next block
on, in name order, then deleted.

What the ear read is appended to ``speaker.raw`` with an index ``speaker.idx`` of ``BYTE_OFFSET
MONOTONIC_NS`` lines, one per block, as rigspeaker does. When a spool file's first block is
mixed, ``played.log`` gets ``NAME SPEAKER_OFFSET MONOTONIC_NS``: the byte offset in
``speaker.raw`` of the ear's block it was mixed with (the user's voice and that block's echo
reach the microphone together). Both streams run on the card's clock, block for block, so the
echo's delay stays what the card and aplay's buffer make it (about ``--buffer-ms`` plus a
period).

Frugal on purpose (the emulated CPU is slow): one read, a few numpy operations and one write per
20 ms block, the spool looked at every 100 ms.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

import numpy as np

# (delay in ms, gain): the direct path and two reflections, one inverted.
REFLECTIONS = ((0.0, 1.0), (3.0, 0.35), (11.0, -0.2))


def alsa(tool: str, device: str, rate: int, channels: int, buffer_ms: int) -> list[str]:
    return [
        tool,
        "-q",
        "-D",
        device,
        "-t",
        "raw",
        "-f",
        "S16_LE",
        "-r",
        str(rate),
        "-c",
        str(channels),
        f"--buffer-time={buffer_ms * 1000}",
        "--period-time=20000",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ear", default="hw:Loopback,1,1")
    parser.add_argument("--mouth", default="hw:Loopback,0,0")
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--gain-db", type=float, default=-6.0)
    parser.add_argument("--buffer-ms", type=int, default=100, help="aplay's buffer")
    parser.add_argument("--spool", type=Path, default=Path("/run/rigroom"))
    parser.add_argument("--out", type=Path, default=Path("/var/lib/rigroom"))
    args = parser.parse_args()
    args.spool.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    channels = args.channels
    frames = args.rate // 50  # 20 ms
    block = frames * channels * 2
    gain = 10 ** (args.gain_db / 20)
    taps = [(round(ms * args.rate / 1000), gain * g) for ms, g in REFLECTIONS]
    longest = max(d for d, _ in taps)
    history = np.zeros((longest, channels), dtype=np.float32)  # the ear's last samples

    # The ear first, then the mouth: both before the daemon opens its sides, so the card's
    # format is theirs.
    arecord = subprocess.Popen(
        alsa("arecord", args.ear, args.rate, channels, 500), stdout=subprocess.PIPE
    )
    aplay = subprocess.Popen(
        alsa("aplay", args.mouth, args.rate, channels, args.buffer_ms), stdin=subprocess.PIPE
    )
    assert arecord.stdout is not None and aplay.stdin is not None
    raw_path = args.out / "speaker.raw"
    offset = raw_path.stat().st_size if raw_path.exists() else 0
    user = np.zeros((0, channels), dtype=np.float32)
    count = 0
    with (
        raw_path.open("ab", buffering=0) as raw,
        (args.out / "speaker.idx").open("a", buffering=1) as index,
        (args.spool / "played.log").open("a", buffering=1) as log,
    ):
        while aplay.poll() is None:
            data = arecord.stdout.read(block)
            if len(data) < block:
                break
            now = time.monotonic_ns()
            raw.write(data)
            index.write(f"{offset + block} {now}\n")
            heard = np.frombuffer(data, dtype="<i2").reshape(frames, channels)
            padded = np.concatenate([history, heard.astype(np.float32)])
            history = padded[-longest:]
            mix = np.zeros((frames, channels), dtype=np.float32)
            for delay, g in taps:
                mix += g * padded[longest - delay : longest - delay + frames]
            if len(user) == 0 and count % 5 == 0:
                user = next_voice(args.spool, channels, log, offset, now)
            if len(user):
                n = min(frames, len(user))
                mix[:n] += user[:n]
                user = user[n:]
            offset += block
            count += 1
            try:
                aplay.stdin.write(np.clip(mix, -32768, 32767).astype("<i2").tobytes())
                aplay.stdin.flush()
            except BrokenPipeError:
                break  # aplay is gone (stopped, or the card was)
    sys.exit(1)  # a side of the card went away: systemd starts the room again


def next_voice(spool: Path, channels: int, log: TextIO, offset: int, now: int) -> np.ndarray:
    """The next spool file's samples (float32, frames x channels), logged; none: empty."""
    queued = sorted(entry.name for entry in os.scandir(spool) if entry.name.endswith(".raw"))
    if not queued:
        return np.zeros((0, channels), dtype=np.float32)
    path = spool / queued[0]
    data = path.read_bytes()
    path.unlink()
    log.write(f"{path.name} {offset} {now}\n")
    samples = np.frombuffer(data[: len(data) // (2 * channels) * 2 * channels], dtype="<i2")
    return samples.reshape(-1, channels).astype(np.float32)


if __name__ == "__main__":
    main()
