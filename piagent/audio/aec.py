"""In-process acoustic echo cancellation: ``EchoCanceller``, 10 ms at a time, engine by choice.

Owns the canceller the mic path runs when ``audio.aec.enabled`` is set: one 10 ms frame of the
near end (the mic, int16 at 16 kHz, ``FRAME_SAMPLES`` samples) and the far-end reference
aligned to it (what the speaker played, as ``echoref.EchoReference.aligned`` returns it) go in;
the near end with the echo removed comes out. It also keeps the running figures the near-end
detector (``nearend``) and ``ctl status`` can use: ``erle_db`` and ``far_active``.

Engines (``audio.aec.engine``), chosen by measurement (``scripts/bench_aec.py``; README section
"Echo cancellation" has the table):

* ``speex``: speexdsp's MDF adaptive filter plus its residual-echo suppressor, through ctypes
  over Debian's ``libspeexdsp1`` (``speexdsp.py``); packaged for arm64 and armhf alike, nothing
  to compile. Measured: 35 dB ERLE on a linear path, 22 dB with soft clipping, the near end
  kept at 20 dB SNR under double talk, 0.09 ms CPU per 10 ms frame here; converges in ~4 s.
* ``webrtc``: WebRTC's AEC3 through livekit's ``AudioProcessingModule`` (``pip install
  livekit``). More ERLE (65 dB) and instant convergence, but its suppressor took the near end
  down to about 0 dB SNR under double talk, which defeats barge-in; 0.17 ms CPU per frame;
  livekit ships aarch64 wheels only (no armv7l wheel, so not on armhf Raspberry Pi OS), and it
  is a 10.6 MB wheel (plus protobuf). Kept as an option, not a dependency.

``auto`` is speex when libspeexdsp loads, else webrtc when livekit imports. A missing engine
raises ``AecUnavailable``, whose message names ``audio.aec.engine`` and the install command, so
the daemon can log it and run on without echo cancellation.

Imports numpy, ``speexdsp`` and (lazily, for its engine only) livekit; no devices, no asyncio.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Final, Literal, Protocol, TypeAlias

import numpy as np

from piagent.audio.codecs import Samples
from piagent.audio.speexdsp import SpeexEcho, SpeexUnavailable, load_speexdsp
from piagent.errors import PiagentError

__all__ = [
    "AEC_ENGINES",
    "FRAME_MS",
    "FRAME_SAMPLES",
    "RATE",
    "AecEngineName",
    "AecUnavailable",
    "EchoCanceller",
    "engine_problem",
]

RATE: Final = 16000  # Hz: the canceller's only rate (the agent's input rate)
FRAME_MS: Final = 10
FRAME_SAMPLES: Final = RATE * FRAME_MS // 1000

AecEngineName: TypeAlias = Literal["speex", "webrtc"]
AEC_ENGINES: Final[tuple[AecEngineName, ...]] = ("speex", "webrtc")
_AUTO_ORDER: Final[tuple[AecEngineName, ...]] = ("speex", "webrtc")  # best measured first

_FAR_ACTIVE_DBFS: Final = -55.0  # a reference frame quieter than this plays nothing audible
_ERLE_SMOOTHING: Final = 0.05  # per frame: ~200 ms to follow a change
_FULL_SCALE: Final = 32768.0


class AecUnavailable(PiagentError):
    """The configured engine cannot run here; the message names ``audio.aec.engine``."""


class _Engine(Protocol):
    def process(self, near: Samples, far: Samples) -> Samples: ...
    def reset(self) -> None: ...
    def close(self) -> None: ...


class _WebrtcEngine:
    """AEC3 (plus its high-pass filter) from livekit's bundled WebRTC audio processing."""

    def __init__(self, noise_suppression: bool) -> None:
        self._noise_suppression = noise_suppression
        self._rtc: Any = _import_livekit()
        self._apm: Any = None
        self.reset()

    def process(self, near: Samples, far: Samples) -> Samples:
        rtc = self._rtc
        reverse = rtc.AudioFrame(np.ascontiguousarray(far, np.int16).tobytes(), RATE, 1, len(far))
        self._apm.process_reverse_stream(reverse)
        # The reference is already aligned: no further delay to tell AEC3 about.
        self._apm.set_stream_delay_ms(0)
        frame = rtc.AudioFrame(np.ascontiguousarray(near, np.int16).tobytes(), RATE, 1, len(near))
        self._apm.process_stream(frame)
        return np.frombuffer(frame.data, dtype=np.int16).copy()

    def reset(self) -> None:
        self._apm = self._rtc.AudioProcessingModule(
            echo_cancellation=True,
            noise_suppression=self._noise_suppression,
            high_pass_filter=True,
        )

    def close(self) -> None:
        self._apm = None


def _import_livekit() -> Any:
    try:
        # By name: livekit is optional, so type checking must not need it installed.
        rtc = importlib.import_module("livekit.rtc")
    except ImportError as exc:
        raise AecUnavailable(
            f"audio.aec.engine: webrtc needs the livekit package ({exc}); install it with "
            "'pip install livekit' (aarch64 and x86_64 wheels only: not on armhf), or use speex"
        ) from exc
    return rtc


def _problem(name: str) -> str | None:
    try:
        if name == "speex":
            load_speexdsp()
        elif name == "webrtc":
            _import_livekit()
        else:
            return f"unknown engine {name!r} (known: auto, {', '.join(AEC_ENGINES)})"
    except SpeexUnavailable as exc:
        return f"speex: {exc}"
    except AecUnavailable as exc:
        return str(exc).removeprefix("audio.aec.engine: ")
    return None


def engine_problem(name: str) -> str | None:
    """None when engine ``name`` (``auto`` included) can run here, else why not: a sentence
    naming the fix, without the key path (``AecUnavailable`` adds ``audio.aec.engine``)."""
    if name != "auto":
        return _problem(name)
    problems = [_problem(n) for n in _AUTO_ORDER]
    if all(problems):
        return "auto found no engine: " + "; ".join(p for p in problems if p)
    return None


def _choose(engine: str) -> AecEngineName:
    problem = engine_problem(engine)
    if problem is not None:
        raise AecUnavailable(f"audio.aec.engine: {problem}")
    if engine in AEC_ENGINES:
        return engine
    return next(n for n in _AUTO_ORDER if _problem(n) is None)


def _level(samples: Samples) -> float:
    """Mean square of a frame, full scale = 1."""
    x = samples.astype(np.float64) / _FULL_SCALE
    return float(np.dot(x, x)) / max(1, len(x))


class EchoCanceller:
    """Removes the far end's echo from the near end, one 10 ms frame at a time (16 kHz int16).

    ``engine`` is ``auto``, ``speex`` or ``webrtc``; ``tail_ms`` the echo path speex models
    after alignment (bulk delay left over plus the room's reverb, ms); ``suppress_db`` and
    ``suppress_active_db`` speex's residual-echo suppression (negative dB) with the far end
    alone and during double talk; ``noise_suppression`` switches on the engine's noise
    suppressor. Raises ``AecUnavailable`` when the engine cannot run here.

    Not thread-safe: call ``process`` from one place, the mic period path.
    """

    def __init__(
        self,
        engine: str = "auto",
        *,
        tail_ms: int = 128,
        suppress_db: int = -40,
        suppress_active_db: int = -15,
        noise_suppression: bool = False,
    ) -> None:
        self._name = _choose(engine)
        self._engine: _Engine
        if self._name == "speex":
            tail = 1 << max(8, round(math.log2(RATE * tail_ms / 1000)))  # MDF wants a power of 2
            self._engine = SpeexEcho(
                frame=FRAME_SAMPLES,
                tail=tail,
                rate=RATE,
                suppress_db=suppress_db,
                suppress_active_db=suppress_active_db,
                denoise=noise_suppression,
            )
        else:
            self._engine = _WebrtcEngine(noise_suppression)
        self._near_power = 0.0
        self._out_power = 0.0
        self._far_db = -120.0
        self._frames = 0

    @property
    def engine(self) -> AecEngineName:
        """The engine in use (what ``auto`` chose)."""
        return self._name

    @property
    def frames(self) -> int:
        """Frames processed since the start or the last reset."""
        return self._frames

    @property
    def far_active(self) -> bool:
        """Whether the last reference frame carried audible sound."""
        return self._far_db > _FAR_ACTIVE_DBFS

    @property
    def far_dbfs(self) -> float:
        """The last reference frame's RMS level (dBFS)."""
        return self._far_db

    @property
    def erle_db(self) -> float:
        """Echo return loss enhancement so far (dB): how much quieter the output is than the
        mic while the far end plays, smoothed over ~200 ms. 0 before any far-end sound."""
        if self._out_power <= 0.0 or self._near_power <= 0.0:
            return 0.0
        return 10.0 * math.log10(self._near_power / self._out_power)

    def process(self, near: Samples, far: Samples) -> Samples:
        """The near-end frame with the echo of ``far`` removed (a new int16 array).

        ``near``: ``FRAME_SAMPLES`` mic samples; ``far``: the same number of reference samples,
        aligned so that their echo is in ``near`` (``EchoReference.aligned``); silence when
        nothing played."""
        if len(near) != FRAME_SAMPLES or len(far) != FRAME_SAMPLES:
            raise ValueError(
                f"frames must be {FRAME_SAMPLES} samples (10 ms at 16 kHz), "
                f"got {len(near)} near and {len(far)} far"
            )
        out = self._engine.process(near, far)
        self._frames += 1
        far_power = _level(far)
        self._far_db = 10.0 * math.log10(far_power) if far_power > 0 else -120.0
        if self.far_active:
            a = _ERLE_SMOOTHING
            self._near_power += a * (_level(near) - self._near_power)
            self._out_power += a * (max(_level(out), 1e-12) - self._out_power)
        return out

    def reset(self) -> None:
        """Forget the learnt echo path (after the speaker or the mic changed)."""
        self._engine.reset()
        self._near_power = self._out_power = 0.0
        self._frames = 0

    def close(self) -> None:
        """Free the engine; idempotent."""
        self._engine.close()
