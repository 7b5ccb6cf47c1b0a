"""A ctypes binding to Debian's ``libspeexdsp1``: the MDF echo canceller and its preprocessor.

Owns the few C calls piagent makes into speexdsp (``speex_echo.h``, ``speex_preprocess.h`` of
speexdsp 1.2): ``SpeexEcho`` wraps one ``SpeexEchoState`` (a frequency-domain adaptive filter,
MDF, fed one capture frame and the matching playback frame) together with one
``SpeexPreprocessState`` linked to it, which suppresses the residual echo the filter leaves
(and, optionally, noise). Nothing is compiled: the library is the distribution's
(``apt-get install libspeexdsp1``, in Raspberry Pi OS for arm64 and armhf alike), loaded at
run time; ``SpeexUnavailable`` says how to install it when it is missing.

Imports ctypes and numpy only; no devices.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Final

import numpy as np

from piagent.audio.codecs import Samples
from piagent.errors import PiagentError

__all__ = ["SpeexEcho", "SpeexUnavailable", "load_speexdsp"]

# Request numbers from speex_echo.h and speex_preprocess.h (speexdsp 1.2).
_ECHO_SET_SAMPLING_RATE: Final = 24
_PREPROCESS_SET_DENOISE: Final = 0
_PREPROCESS_SET_NOISE_SUPPRESS: Final = 18
_PREPROCESS_SET_ECHO_SUPPRESS: Final = 20
_PREPROCESS_SET_ECHO_SUPPRESS_ACTIVE: Final = 22
_PREPROCESS_SET_ECHO_STATE: Final = 24

_SONAME: Final = "libspeexdsp.so.1"
_library: ctypes.CDLL | None = None


class SpeexUnavailable(PiagentError):
    """libspeexdsp cannot be loaded; the message says which package to install."""


def load_speexdsp() -> ctypes.CDLL:
    """The library, loaded once and its signatures declared; ``SpeexUnavailable`` if absent."""
    global _library
    if _library is not None:
        return _library
    names = [_SONAME]
    found = ctypes.util.find_library("speexdsp")
    if found and found != _SONAME:
        names.append(found)
    errors: list[str] = []
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            errors.append(str(exc))
            continue
        _declare(lib)
        _library = lib
        return lib
    raise SpeexUnavailable(
        f"cannot load {_SONAME} ({'; '.join(errors)}); install it with: "
        "sudo apt-get install libspeexdsp1"
    )


def _declare(lib: ctypes.CDLL) -> None:
    ptr, i16p, c_int = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16), ctypes.c_int
    lib.speex_echo_state_init.argtypes = [c_int, c_int]
    lib.speex_echo_state_init.restype = ptr
    lib.speex_echo_state_destroy.argtypes = [ptr]
    lib.speex_echo_state_destroy.restype = None
    lib.speex_echo_state_reset.argtypes = [ptr]
    lib.speex_echo_state_reset.restype = None
    lib.speex_echo_cancellation.argtypes = [ptr, i16p, i16p, i16p]
    lib.speex_echo_cancellation.restype = None
    lib.speex_echo_ctl.argtypes = [ptr, c_int, ptr]
    lib.speex_echo_ctl.restype = c_int
    lib.speex_preprocess_state_init.argtypes = [c_int, c_int]
    lib.speex_preprocess_state_init.restype = ptr
    lib.speex_preprocess_state_destroy.argtypes = [ptr]
    lib.speex_preprocess_state_destroy.restype = None
    lib.speex_preprocess_run.argtypes = [ptr, i16p]
    lib.speex_preprocess_run.restype = c_int
    lib.speex_preprocess_ctl.argtypes = [ptr, c_int, ptr]
    lib.speex_preprocess_ctl.restype = c_int


class SpeexEcho:
    """One MDF echo canceller plus its residual-echo suppressor, for one mono stream.

    ``frame`` is the number of samples per call (160 = 10 ms at 16 kHz), ``tail`` the filter
    length in samples (the echo path it can model: bulk delay left after alignment plus the
    room's reverb), ``rate`` in Hz. ``suppress_db`` is how far the preprocessor pushes residual
    echo down while the far end plays (negative dB; speex's default is -40), ``suppress_active_db``
    the same while the near end talks too (default -15: gentler, to keep the talker), and
    ``denoise`` switches speex's noise suppressor on.
    """

    def __init__(
        self,
        *,
        frame: int = 160,
        tail: int = 2048,
        rate: int = 16000,
        suppress_db: int = -40,
        suppress_active_db: int = -15,
        denoise: bool = False,
    ) -> None:
        self._lib = load_speexdsp()
        self._frame = frame
        self._echo: int | None = self._lib.speex_echo_state_init(frame, tail)
        self._pre: int | None = self._lib.speex_preprocess_state_init(frame, rate)
        if not self._echo or not self._pre:
            self.close()
            raise SpeexUnavailable("speexdsp could not allocate its state")
        self._echo_ctl(_ECHO_SET_SAMPLING_RATE, rate)
        self._pre_ctl(_PREPROCESS_SET_DENOISE, int(denoise))
        self._pre_ctl(_PREPROCESS_SET_NOISE_SUPPRESS, -15)
        self._pre_ctl(_PREPROCESS_SET_ECHO_SUPPRESS, suppress_db)
        self._pre_ctl(_PREPROCESS_SET_ECHO_SUPPRESS_ACTIVE, suppress_active_db)
        self._lib.speex_preprocess_ctl(self._pre, _PREPROCESS_SET_ECHO_STATE, self._echo)

    def _echo_ctl(self, request: int, value: int) -> None:
        arg = ctypes.c_int32(value)
        self._lib.speex_echo_ctl(self._echo, request, ctypes.byref(arg))

    def _pre_ctl(self, request: int, value: int) -> None:
        arg = ctypes.c_int32(value)
        self._lib.speex_preprocess_ctl(self._pre, request, ctypes.byref(arg))

    def process(self, near: Samples, far: Samples) -> Samples:
        """The capture frame ``near`` with the echo of ``far`` (the playback frame whose echo
        ``near`` holds, aligned) removed and its residue suppressed: a new int16 array."""
        if self._echo is None or self._pre is None:
            raise ValueError("the canceller is closed")
        if len(near) != self._frame or len(far) != self._frame:
            raise ValueError(f"frames must be {self._frame} samples, got {len(near)}/{len(far)}")
        i16p = ctypes.POINTER(ctypes.c_int16)
        rec = np.ascontiguousarray(near, dtype=np.int16)
        play = np.ascontiguousarray(far, dtype=np.int16)
        out = np.empty(self._frame, dtype=np.int16)
        self._lib.speex_echo_cancellation(
            self._echo,
            rec.ctypes.data_as(i16p),
            play.ctypes.data_as(i16p),
            out.ctypes.data_as(i16p),
        )
        self._lib.speex_preprocess_run(self._pre, out.ctypes.data_as(i16p))
        return out

    def reset(self) -> None:
        """Forget the learnt echo path (the filter starts converging again)."""
        if self._echo is not None:
            self._lib.speex_echo_state_reset(self._echo)

    def close(self) -> None:
        """Free the C state; idempotent."""
        if self._pre is not None:
            self._lib.speex_preprocess_state_destroy(self._pre)
            self._pre = None
        if self._echo is not None:
            self._lib.speex_echo_state_destroy(self._echo)
            self._echo = None

    def __del__(self) -> None:
        self.close()
