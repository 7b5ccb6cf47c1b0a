"""Channel counts: which to try on a device, and mono <-> interleaved conversion.

Owns the choice of channel counts to probe (:func:`channel_candidates`), the capture downmix
(:func:`downmix`: N interleaved int16 channels to their mean, computed in int32 so it cannot
overflow) and the playback upmix (:class:`Upmixer`: one mono signal copied to N interleaved
channels in a buffer allocated once, because it runs in PortAudio's callback 50 times a
second). piagent is mono inside; only the PortAudio adapters (``audio.devices``) see more
channels.

Pure: imports numpy only; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["Upmixer", "channel_candidates", "describe_channels", "downmix"]


def channel_candidates(max_channels: int, min_channels: int | None = None) -> tuple[int, ...]:
    """Channel counts to try, best first: 1, then 2, then ``max_channels``.

    ``min_channels`` is the device's own minimum when alsa-lib could tell (None otherwise):
    counts below it are left out, because PortAudio 19.6 pads a mono request on a stereo-only
    device by itself and then captures the left channel only (and plays silence on the right).
    A minimum above 2 is tried before the maximum. Empty when the device has no channels.
    """
    if max_channels < 1:
        return ()
    floor = max(1, min_channels or 1)
    ordered: list[int] = []
    for count in (1, 2, floor, max_channels):
        if floor <= count <= max_channels and count not in ordered:
            ordered.append(count)
    return tuple(ordered)


def describe_channels(channels: int | Sequence[int]) -> str:
    """``mono``, ``2 channels``, or ``1, 2 or 8 channels`` for a list."""
    if isinstance(channels, int):
        return "mono" if channels == 1 else f"{channels} channels"
    counts = [str(c) for c in channels]
    if len(counts) <= 1:
        return describe_channels(int(counts[0])) if counts else "no channels"
    return f"{', '.join(counts[:-1])} or {counts[-1]} channels"


def downmix(interleaved: npt.NDArray[np.int16], channels: int) -> npt.NDArray[np.int32]:
    """The mean of ``channels`` interleaved int16 channels, per frame, as int32.

    The sum is taken in int32 (16 channels of full scale cannot overflow it) and divided
    with floor division: equal channels give their value back exactly. A trailing partial
    frame is an error. Returns int32 so the caller can apply gain before clipping to int16.
    """
    if channels == 1:
        return interleaved.astype(np.int32)
    if interleaved.size % channels:
        raise ValueError(f"{interleaved.size} samples are not whole frames of {channels}")
    frames = interleaved.reshape(-1, channels)
    total: npt.NDArray[np.int32] = frames.sum(axis=1, dtype=np.int32)
    total //= channels
    return total


class Upmixer:
    """Mono int16 samples to ``channels`` interleaved little-endian channels, as bytes.

    The same signal on every channel. The interleaved buffer is allocated once and grown
    only when PortAudio asks for a longer period than before; one broadcast assignment fills
    it, and ``bytes`` (what PyAudio's callback must return) is the only allocation per call.
    """

    def __init__(self, channels: int, frames: int = 0) -> None:
        if channels < 1:
            raise ValueError("channels must be at least 1")
        self.channels = channels
        self._buffer: npt.NDArray[np.int16] = np.zeros((frames, channels), dtype="<i2")

    def silence(self, frames: int) -> bytes:
        """``frames`` frames of silence."""
        return bytes(frames * self.channels * 2)

    def upmix(self, samples: npt.NDArray[np.int16]) -> bytes:
        """``samples`` (mono int16) copied onto every channel, interleaved."""
        if self.channels == 1:
            return samples.astype("<i2", copy=False).tobytes()
        frames = samples.shape[0]
        if frames > self._buffer.shape[0]:
            self._buffer = np.zeros((frames, self.channels), dtype="<i2")
        view = self._buffer[:frames]
        view[...] = samples[:, np.newaxis]  # broadcast: no per-channel loop, no temporary
        return view.tobytes()
