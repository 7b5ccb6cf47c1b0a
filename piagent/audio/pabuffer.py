"""How much buffer PortAudio gives an ALSA capture stream, and how piagent asks for more.

PyAudio opens every stream with the device's ``defaultLowInputLatency`` (or
``defaultLowOutputLatency``) as PortAudio's suggested latency; it has no parameter for it.
PortAudio's ALSA host sizes the hardware buffer from that latency plus one period, so a
20 ms period on a typical card gets a buffer of two periods (40 ms). For capture that leaves
20 ms of slack: a callback that starts more than one period late (a garbage collection, a
large agent message being decoded, a busy core on a Pi Zero 2 W) overflows the card and
loses audio, and the count of PortAudio input overflows climbs.

A bigger capture buffer costs no latency: PortAudio still wakes once per period and hands
each period over as soon as it is complete; the extra periods are only room to catch up in.
So before opening a microphone, :func:`ask_capture_latency` writes the wanted latency into
the ``PaDeviceInfo`` record PortAudio keeps for the device, which is where PyAudio reads it
from (``Pa_GetDeviceInfo`` returns a pointer to PortAudio's own record; its layout is
PortAudio's public ``PaDeviceInfo``, version 2). With ``CAPTURE_PERIODS`` (4) the buffer holds
four periods: three of slack. The record lives as long as the PortAudio initialisation it
came from, so the write is made right before each open, with ``PORTAUDIO_LOCK`` held.

Playback keeps PortAudio's choice: every extra period there is latency, and it delays the
silence after an interruption.

The PortAudio library is the one PyAudio's extension module uses (looked up through that
module, so a statically linked PortAudio is found too). When it cannot be reached, or the
record does not read back as written, nothing changes and the stream opens with PortAudio's
default buffer. Owns :data:`CAPTURE_PERIODS` and :func:`ask_capture_latency`. No I/O at
import.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from typing import Any, Final

__all__ = ["CAPTURE_PERIODS", "ask_capture_latency", "capture_latency"]

logger = logging.getLogger(__name__)

# Periods the capture buffer holds: one being filled, the rest slack for a late callback.
CAPTURE_PERIODS: Final = 4
_PA_DEVICE_INFO_VERSION: Final = 2


class _PaDeviceInfo(ctypes.Structure):
    """PortAudio's public ``PaDeviceInfo`` (structVersion 2)."""

    _fields_ = (
        ("structVersion", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("hostApi", ctypes.c_int),
        ("maxInputChannels", ctypes.c_int),
        ("maxOutputChannels", ctypes.c_int),
        ("defaultLowInputLatency", ctypes.c_double),
        ("defaultLowOutputLatency", ctypes.c_double),
        ("defaultHighInputLatency", ctypes.c_double),
        ("defaultHighOutputLatency", ctypes.c_double),
        ("defaultSampleRate", ctypes.c_double),
    )


@functools.cache
def _device_info_function() -> Any:
    """``Pa_GetDeviceInfo`` of the PortAudio PyAudio's extension uses, or None."""
    try:
        from pyaudio import _portaudio

        library = ctypes.CDLL(_portaudio.__file__)
        function = library.Pa_GetDeviceInfo
    except (ImportError, AttributeError, OSError) as exc:
        logger.debug("PortAudio's device records are out of reach (%s)", exc)
        return None
    function.restype = ctypes.POINTER(_PaDeviceInfo)
    function.argtypes = [ctypes.c_int]
    return function


def capture_latency(period_frames: int, rate: int) -> float:
    """The suggested latency (s) that makes PortAudio's ALSA host give a capture stream with
    this period a buffer of ``CAPTURE_PERIODS`` periods.

    PortAudio's buffer is the latency plus one period, and its period stays the user's as
    long as the latency is at most three periods (it aims at four periods per buffer)."""
    return (CAPTURE_PERIODS - 1) * period_frames / rate


def ask_capture_latency(pa: Any, index: int, seconds: float) -> bool:
    """Make ``pa.open`` suggest ``seconds`` of latency for capture on device ``index``.

    ``pa`` is a live ``pyaudio.PyAudio`` (PortAudio initialised); the caller holds
    ``PORTAUDIO_LOCK`` and opens the stream next. True when PortAudio's record now says so,
    False when it was left alone (no reachable PortAudio, an unknown record version, or a
    value PortAudio already prefers: never lower than its own)."""
    function = _device_info_function()
    if function is None:
        return False
    record = function(index)
    if not record or record.contents.structVersion != _PA_DEVICE_INFO_VERSION:
        return False
    if record.contents.defaultLowInputLatency >= seconds:
        return False
    record.contents.defaultLowInputLatency = seconds
    # PyAudio reads the same record: check that it is the one it will use.
    seen = float(pa.get_device_info_by_index(index)["defaultLowInputLatency"])
    if abs(seen - seconds) > 1e-9:
        logger.debug("PortAudio's record for device %d did not take the latency", index)
        return False
    return True
