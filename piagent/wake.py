"""The spoken wake word and stop word: a streaming detector over the microphone's 16 kHz audio.

Owns ``WakeListener``: 16 kHz int16 mono frames of any length in (the daemon's 20 ms mic
periods, resampled), ``Detection`` values out, each saying which word was heard (``wake``:
act as a button press; ``stop``: interrupt the agent) and the sample position in the stream
at which it was recognised. One utterance gives one detection: after a detection its word is
quiet for ``wake.refractory_s`` and until the model's probability has fallen below the
threshold again. Also owns ``wake_problems`` (what ``piagent check-config`` says about the
``wake`` section on this machine) and ``WakeUnavailable``.

The engines are the packages pymicro-wakeword (``micro``: microWakeWord, a streaming model on
10 ms feature frames, its models' own cutoffs in their .json) and pyopen-wakeword (``open``:
openWakeWord, a shared mel-spectrogram and embedding model every 80 ms, then one small model
per word). Both ship their models and the TensorFlow Lite C library inside the wheel; nothing
is downloaded. An engine is imported only when a ``WakeListener`` is made (or checked), so a
daemon without a ``wake`` section never loads it. Neither package bundles a "stop" model: the
stop word is any second model, bundled or a file of one's own (``wake.stop_model``).

Not thread-safe, and it does not need to be: call ``feed`` from the one task that reads the
microphone. Imports nothing from the daemon (no asyncio, no devices).

Wiring it into the daemon (service.py and the appliance own that side):

* at start, when ``config.wake`` is not None: ``WakeListener(config.wake)``; on
  ``WakeUnavailable`` log its message (it names ``wake.engine`` or the model's key and what to
  do), show it as the status detail, and run on with the button (``listener = None``);
* in the microphone's task, every 20 ms period, whatever the uplink's mode (the wake word must
  be heard while idle): the period resampled to 16 kHz (the uplink's own frames when the
  agent takes pcm_16000; the echo-cancelled ones where there are), ``listener.feed(frame)``.
  ``micro`` costs about 0.1 ms a period here and runs inline; ``open`` works in 80 ms bursts
  (several ms each here, more on a Pi): run it off the loop or not at all;
* each ``Detection``: ``wake`` -> the event a button press makes (opens a conversation, or a
  turn in one; a barge-in while the agent speaks); ``stop`` -> the interruption a press makes
  while the agent speaks (nothing otherwise). Log ``word``, ``model``, ``probability``;
* ``listener.reset()`` after the daemon's own earcon or anything the listener should forget;
  ``listener.close()`` at exit.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

from piagent.config.schema import WAKE_MODEL_SUFFIXES, WakeConfig
from piagent.errors import ConfigError

if TYPE_CHECKING:
    from pymicro_wakeword import MicroWakeWord
    from pyopen_wakeword import OpenWakeWord

__all__ = [
    "RATE",
    "Detection",
    "WakeListener",
    "WakeUnavailable",
    "Word",
    "wake_problems",
]

RATE: Final = 16000  # Hz: what both engines take (int16 mono)
OPEN_THRESHOLD: Final = 0.5  # openWakeWord's usual cutoff (its models carry none)
# The distribution each engine comes in, for the messages.
ENGINE_PACKAGES: Final = {"micro": "pymicro-wakeword", "open": "pyopen-wakeword"}

Word: TypeAlias = Literal["wake", "stop"]
Samples: TypeAlias = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class Detection:
    """One recognised word: ``sample`` is the stream position (16 kHz samples fed since the
    listener was made; ``reset`` does not rewind it) at the end of the frame it was heard in."""

    word: Word
    model: str
    sample: int
    probability: float

    @property
    def seconds(self) -> float:
        return self.sample / RATE


class WakeUnavailable(ConfigError):
    """The configured engine or a model cannot be loaded here (no wheel for this platform, a
    missing model file). A ``ConfigError`` naming the key: ``piagent check-config`` exits 78;
    the daemon logs it and runs on with the button."""


class _Engine(Protocol):
    """One engine's models over shared features: the probabilities each chunk produced."""

    thresholds: tuple[float, ...]

    def score(self, pcm: bytes) -> list[list[float]]: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


def _is_file(model: str, engine: str) -> bool:
    return model.endswith(WAKE_MODEL_SUFFIXES[engine])


def _model_key(index: int) -> str:
    """The config key a model came from: the first is the wake word's, the next the stop's."""
    return "wake.model" if index == 0 else "wake.stop_model"


def _unavailable(engine: str, exc: BaseException) -> WakeUnavailable:
    package = ENGINE_PACKAGES[engine]
    machine = platform.machine() or "this machine"
    return WakeUnavailable(
        "wake.engine",
        f"{engine} ({package}) is not available on {machine}: {type(exc).__name__}: {exc}. "
        f"It has wheels for 64-bit Linux (aarch64, x86_64) only; on a Raspberry Pi install "
        f"the 64-bit OS (then scripts/install.sh installs it), or remove the wake section: "
        f"the button works without it",
    )


class _MicroEngine:
    """microWakeWord: 10 ms feature frames shared by every model; each model's probability is
    the mean of its last few outputs (the model's sliding window)."""

    def __init__(self, models: Sequence[str], thresholds: Sequence[float | None]) -> None:
        try:
            from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model
        except ImportError as exc:
            raise _unavailable("micro", exc) from exc
        self._features = MicroWakeWordFeatures()
        self._frames = 0  # feature frames so far (10 ms each)
        self._models: list[MicroWakeWord] = []
        for index, model in enumerate(models):
            try:
                if _is_file(model, "micro"):
                    self._models.append(MicroWakeWord.from_config(model))
                else:
                    self._models.append(MicroWakeWord.from_builtin(Model(model)))
            except (OSError, ValueError, KeyError) as exc:
                raise WakeUnavailable(_model_key(index), f"cannot load {model}: {exc}") from exc
        self.thresholds = tuple(
            m.probability_cutoff if t is None else t
            for m, t in zip(self._models, thresholds, strict=True)
        )

    def score(self, pcm: bytes) -> list[list[float]]:
        scores: list[list[float]] = [[] for _ in self._models]
        for features in self._features.process_streaming(pcm):
            self._frames += 1
            for model, found in zip(self._models, scores, strict=True):
                probability = model.process_streaming_prob(features)
                # A model runs once per ``stride`` feature frames and says 0.0 in between: only
                # its real outputs count (a 0.0 would look like the word being let go of).
                if probability is not None and self._frames % model.stride == 0:
                    found.append(probability)
        return scores

    def reset(self) -> None:
        self._features.reset()
        self._frames = 0
        for model in self._models:
            model.reset()  # reloads the model: its streaming state lives in the interpreter

    def close(self) -> None:
        for model in self._models:
            model.close()


class _OpenEngine:
    """openWakeWord: one mel-spectrogram and embedding pipeline (80 ms steps) shared by every
    model; each model scores the last embeddings."""

    def __init__(self, models: Sequence[str], thresholds: Sequence[float | None]) -> None:
        try:
            from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures
        except ImportError as exc:
            raise _unavailable("open", exc) from exc
        try:
            self._features = OpenWakeWordFeatures.from_builtin()
        except (OSError, ValueError) as exc:
            raise _unavailable("open", exc) from exc
        self._models: list[OpenWakeWord] = []
        for index, model in enumerate(models):
            try:
                if _is_file(model, "open"):
                    self._models.append(OpenWakeWord.from_model(model))
                else:
                    self._models.append(OpenWakeWord.from_builtin(Model(model)))
            except (OSError, ValueError) as exc:
                raise WakeUnavailable(_model_key(index), f"cannot load {model}: {exc}") from exc
        self.thresholds = tuple(OPEN_THRESHOLD if t is None else t for t in thresholds)
        # The feature pipeline starts with 8 s of silence to fill its windows; work through it
        # now, not in the first 20 ms frame the microphone delivers.
        self.score(bytes(2 * 1280))

    def score(self, pcm: bytes) -> list[list[float]]:
        scores: list[list[float]] = [[] for _ in self._models]
        for embeddings in self._features.process_streaming(pcm):
            for model, found in zip(self._models, scores, strict=True):
                found.extend(model.process_streaming(embeddings))
        return scores

    def reset(self) -> None:
        # The models forget their embeddings (and wait for a full window of new ones); the
        # features' own reset would bring back the 8 s of silence to work through.
        for model in self._models:
            model.reset()

    def close(self) -> None:
        for model in self._models:
            model.close()
        self._features.close()


def _load_engine(engine: str, models: Sequence[str], thresholds: Sequence[float | None]) -> _Engine:
    if engine == "open":
        return _OpenEngine(models, thresholds)
    return _MicroEngine(models, thresholds)


class WakeListener:
    """The wake (and stop) word detector over one 16 kHz stream; see the module docstring.

    Making one loads the engine and its models (tens of milliseconds for ``micro``; about a
    second of CPU for ``open``, which also works through its warm-up): do it once, at start,
    and raises ``WakeUnavailable`` when the engine or a model cannot be loaded here.
    """

    def __init__(self, config: WakeConfig, *, bank: Sequence[str] = ()) -> None:
        """``bank``: measure these models of ``config.engine`` instead, over one feature
        pipeline, each reported as a ``wake`` detection under its model's name, with its own
        threshold unless ``config.threshold`` says (scripts/bench_wake.py)."""
        self.config = config
        models = list(bank) or [config.model]
        thresholds = [config.threshold] * len(models)
        self._words: list[Word] = ["wake"] * len(models)
        if config.stop_model is not None and not bank:
            models.append(config.stop_model)
            thresholds.append(config.stop_threshold)
            self._words.append("stop")
        self._engine = _load_engine(config.engine, models, thresholds)
        self._names = tuple(models)
        self._refractory = round(config.refractory_s * RATE)
        self._quiet_until = [0] * len(models)  # sample position, per word
        self._armed = [True] * len(models)
        self._samples = 0
        self._odd = b""  # half a sample left over from bytes of odd length

    @property
    def samples(self) -> int:
        """Samples fed so far (the position of the next one)."""
        return self._samples

    @property
    def thresholds(self) -> tuple[float, ...]:
        """The probability each word's model must reach: wake, then stop (if any)."""
        return self._engine.thresholds

    def feed(self, frame: Samples | bytes) -> list[Detection]:
        """Take the next audio (int16 samples, or their little-endian bytes) and return what
        was heard in it: usually nothing, at most one detection per word."""
        if isinstance(frame, bytes):
            pcm = self._odd + frame
            self._odd = pcm[len(pcm) - len(pcm) % 2 :]
            pcm = pcm[: len(pcm) - len(self._odd)]
        else:
            pcm = np.asarray(frame, dtype="<i2").tobytes()
        if not pcm:
            return []
        self._samples += len(pcm) // 2
        found: list[Detection] = []
        scores = self._engine.score(pcm)
        for index, (word, probabilities) in enumerate(zip(self._words, scores, strict=True)):
            if not probabilities:
                continue
            peak = max(probabilities)
            threshold = self._engine.thresholds[index]
            if not self._armed[index]:
                # Quiet until the refractory time is over and the word has been let go of.
                self._armed[index] = self._samples >= self._quiet_until[index] and peak < threshold
            elif peak >= threshold:
                self._armed[index] = False
                self._quiet_until[index] = self._samples + self._refractory
                found.append(Detection(word, self._names[index], self._samples, peak))
        return found

    def reset(self) -> None:
        """Forget what was heard (say, after the agent's own voice): the models start afresh.
        The stream position goes on; a word in its refractory time stays quiet."""
        self._engine.reset()
        self._odd = b""

    def close(self) -> None:
        """Release the models (the listener is unusable afterwards)."""
        self._engine.close()


def wake_problems(config: WakeConfig) -> list[ConfigError]:
    """What stops the ``wake`` section working on this machine (``piagent check-config``):
    the engine is loaded with its models, then released. Empty when all is well."""
    problems: list[ConfigError] = []
    for key, model in (("wake.model", config.model), ("wake.stop_model", config.stop_model)):
        if model is not None and _is_file(model, config.engine) and not Path(model).is_file():
            problems.append(ConfigError(key, f"no such model file: {model}"))
    if problems:
        return problems
    try:
        WakeListener(config).close()
    except WakeUnavailable as exc:
        problems.append(exc)
    return problems
