"""The two questions piagent asks alsa-lib directly, through ctypes, because PortAudio
cannot answer them: where the system's ALSA configuration lives (``snd_config_topdir``) and
which channel counts a PCM really accepts (its hw_params channel range).

PortAudio 19.6 reports only a device's maximum channel count, and quietly pads a mono stream
on a stereo-only device to two channels, capturing the left one only; alsa-lib's own
``snd_pcm_hw_params_get_channels_min`` tells the truth. Every function returns None (or a
documented default) when libasound cannot be loaded or the PCM cannot be opened: callers then
fall back to probing through PortAudio.

Callers hold ``portaudio.portaudio_access()`` around these calls: alsa-lib prints its errors
on fd 2 and keeps process-wide configuration state that PortAudio shares. No I/O at import.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Final

__all__ = ["channel_range", "config_topdir"]

_STREAM_PLAYBACK: Final = 0  # SND_PCM_STREAM_PLAYBACK
_STREAM_CAPTURE: Final = 1  # SND_PCM_STREAM_CAPTURE
_NONBLOCK: Final = 1  # SND_PCM_NONBLOCK: a busy device fails at once instead of waiting
_DEFAULT_TOPDIR: Final = "/usr/share/alsa"  # Debian's and Raspberry Pi OS's ALSA_CONFIG_DIR


@functools.cache
def _libasound() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL("libasound.so.2")
    except OSError:
        return None
    pointer = ctypes.POINTER(ctypes.c_void_p)
    lib.snd_config_topdir.restype = ctypes.c_char_p
    lib.snd_config_topdir.argtypes = []
    lib.snd_pcm_open.restype = ctypes.c_int
    lib.snd_pcm_open.argtypes = [pointer, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    lib.snd_pcm_close.restype = ctypes.c_int
    lib.snd_pcm_close.argtypes = [ctypes.c_void_p]
    lib.snd_pcm_hw_params_malloc.restype = ctypes.c_int
    lib.snd_pcm_hw_params_malloc.argtypes = [pointer]
    lib.snd_pcm_hw_params_free.restype = None
    lib.snd_pcm_hw_params_free.argtypes = [ctypes.c_void_p]
    lib.snd_pcm_hw_params_any.restype = ctypes.c_int
    lib.snd_pcm_hw_params_any.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    for name in ("snd_pcm_hw_params_get_channels_min", "snd_pcm_hw_params_get_channels_max"):
        function = getattr(lib, name)
        function.restype = ctypes.c_int
        function.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint)]
    return lib


def config_topdir() -> str:
    """alsa-lib's configuration directory ($ALSA_CONFIG_DIR or the compiled-in one), which
    holds ``alsa.conf``, the file alsa-lib reads when $ALSA_CONFIG_PATH is not set."""
    lib = _libasound()
    topdir = lib.snd_config_topdir() if lib is not None else None
    return topdir.decode() if isinstance(topdir, bytes) and topdir else _DEFAULT_TOPDIR


def channel_range(pcm: str, *, is_input: bool) -> tuple[int, int] | None:
    """(min, max) channels the ALSA PCM ``pcm`` accepts in one direction, or None when it
    cannot be opened now (missing, busy, or no libasound)."""
    lib = _libasound()
    if lib is None:
        return None
    handle = ctypes.c_void_p()
    stream = _STREAM_CAPTURE if is_input else _STREAM_PLAYBACK
    if lib.snd_pcm_open(ctypes.byref(handle), pcm.encode(), stream, _NONBLOCK) < 0:
        return None
    params = ctypes.c_void_p()
    try:
        if lib.snd_pcm_hw_params_malloc(ctypes.byref(params)) < 0:
            return None
        try:
            low, high = ctypes.c_uint(), ctypes.c_uint()
            if (
                lib.snd_pcm_hw_params_any(handle, params) < 0
                or lib.snd_pcm_hw_params_get_channels_min(params, ctypes.byref(low)) < 0
                or lib.snd_pcm_hw_params_get_channels_max(params, ctypes.byref(high)) < 0
            ):
                return None
            return low.value, high.value
        finally:
            lib.snd_pcm_hw_params_free(params)
    finally:
        lib.snd_pcm_close(handle)
