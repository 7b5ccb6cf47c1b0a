"""One agent turn, prepared for sending: text parts, audio chunks with alignment, playback clock.

Owns ``AgentTurn``: the turn's ``event_id`` and text, its audio cut into fixed-length chunks in
the agent's output format (each with the ``alignment`` of the characters that start inside it,
times relative to the chunk), and the playback bookkeeping the interruption logic needs: when
the first chunk went out, how many were sent, and which text had been "spoken" by a given
moment (protocol.md §5: ``agent_response_correction`` carries the part said before the barge-in).

The client starts playing at the first chunk and plays in real time, so the agent counts as
speaking until ``started_at + duration_s`` even when every chunk has already been sent.

Pure: no asyncio, no I/O; times are plain floats from the caller's clock.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from scipy.signal import resample_poly

from piagent.audio.codecs import Samples, encode_audio, to_int16
from piagent.protocol.messages import Alignment, AudioFormat

__all__ = ["AgentTurn", "build_turn", "resample", "text_deltas"]


def text_deltas(text: str) -> list[str]:
    """The streamed pieces of ``text`` for ``agent_chat_response_part`` deltas: one per word."""
    return re.findall(r"\s*\S+", text) or ([text] if text else [])


@dataclass(slots=True)
class AgentTurn:
    """A turn ready to send. Mutable only in its playback fields."""

    event_id: int
    text: str
    chunks: tuple[bytes, ...]
    alignments: tuple[Alignment, ...]
    chunk_s: float
    duration_s: float
    char_starts_ms: tuple[int, ...]
    started_at: float | None = None
    sent: int = 0
    interrupted_at: float | None = None

    @property
    def has_audio(self) -> bool:
        return bool(self.chunks)

    def due_at(self, index: int, pace: float) -> float:
        """When chunk ``index`` should go out, on the clock of ``started_at``."""
        assert self.started_at is not None
        return self.started_at + index * self.chunk_s / pace

    @property
    def playback_end(self) -> float | None:
        """When the client finishes playing the turn (None before the first chunk)."""
        return None if self.started_at is None else self.started_at + self.duration_s

    def is_playing(self, now: float) -> bool:
        """Whether the agent still counts as speaking at ``now``."""
        if self.interrupted_at is not None:
            return False
        end = self.playback_end
        return end is None or now < end

    def spoken_text(self, at: float) -> str:
        """The part of the text whose characters had started playing by ``at``."""
        if self.started_at is None:
            return ""
        elapsed_ms = (at - self.started_at) * 1000.0
        count = sum(1 for start in self.char_starts_ms if start < elapsed_ms)
        return self.text[:count].rstrip()

    def stale_chunks(self, count: int) -> list[tuple[bytes, Alignment | None]]:
        """``count`` chunks still to be sent after an interruption: the ones that would have
        come next, padded with repeats of the last chunk when the turn has fewer left."""
        if not self.chunks or count <= 0:
            return []
        rest = [(c, a) for c, a in zip(self.chunks, self.alignments, strict=True)][self.sent :]
        stale: list[tuple[bytes, Alignment | None]] = list(rest[:count])
        while len(stale) < count:
            stale.append((self.chunks[-1], None))
        return stale


def build_turn(
    event_id: int,
    text: str,
    samples: Samples | None,
    audio_format: AudioFormat,
    chunk_ms: int,
    char_starts_ms: tuple[int, ...],
    char_durations_ms: tuple[int, ...],
) -> AgentTurn:
    """Cut ``samples`` (at the format's rate; None for a text-only turn) into chunks."""
    if samples is None or len(samples) == 0:
        return AgentTurn(event_id, text, (), (), chunk_ms / 1000.0, 0.0, char_starts_ms)
    rate = audio_format.sample_rate
    per_chunk = rate * chunk_ms // 1000
    count = -(-len(samples) // per_chunk)
    chunks: list[bytes] = []
    alignments: list[Alignment] = []
    timings = list(zip(text, char_starts_ms, char_durations_ms, strict=True))
    for index in range(count):
        piece = samples[index * per_chunk : (index + 1) * per_chunk]
        chunks.append(encode_audio(piece, audio_format))
        lo_ms = index * chunk_ms
        hi_ms = float("inf") if index == count - 1 else lo_ms + chunk_ms
        inside = [(c, s - lo_ms, d) for c, s, d in timings if lo_ms <= s < hi_ms]
        alignments.append(
            Alignment(
                chars=tuple(c for c, _, _ in inside),
                char_start_times_ms=tuple(s for _, s, _ in inside),
                char_durations_ms=tuple(d for _, _, d in inside),
            )
        )
    duration_s = float(len(samples)) / rate
    return AgentTurn(
        event_id,
        text,
        tuple(chunks),
        tuple(alignments),
        chunk_ms / 1000.0,
        duration_s,
        char_starts_ms,
    )


def resample(samples: Samples, from_rate: int, to_rate: int) -> Samples:
    """A whole utterance at another rate, in one polyphase pass (the parrot's replay)."""
    if from_rate == to_rate or len(samples) == 0:
        return samples
    common = math.gcd(from_rate, to_rate)
    converted = resample_poly(samples.astype(np.float64), to_rate // common, from_rate // common)
    return to_int16(converted)
