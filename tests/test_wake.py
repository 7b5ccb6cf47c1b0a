"""The wake word and stop word (piagent/wake.py) on speech synthesised by espeak-ng, and the
``wake`` config section's errors. Detection rates and timings belong to scripts/bench_wake.py;
these tests use phrases the bundled models hear reliably (checked across voices and rates)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest

from piagent.config import WakeConfig, parse_config
from piagent.errors import ConfigProblems
from piagent.wake import RATE, Detection, WakeListener
from tests.test_check_config import EX_CONFIG, check_config

ROOT = Path(__file__).resolve().parents[1]
Samples = npt.NDArray[np.int16]

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (scripts/setup.sh installs it): no speech to test with",
)
needs_micro = pytest.mark.skipif(
    importlib.util.find_spec("pymicro_wakeword") is None,
    reason="pymicro-wakeword is not installed (no wheel for this platform?)",
)
needs_open = pytest.mark.skipif(
    importlib.util.find_spec("pyopen_wakeword") is None,
    reason="pyopen-wakeword is not installed (pip install -e .[test])",
)


def _fixtures() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "wake_fixtures", ROOT / "scripts/wake_fixtures.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """scripts/wake_fixtures.py, caching its speech in a temporary directory of this module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PIAGENT_BENCH_CACHE", str(tmp_path_factory.mktemp("speech")))
        yield _fixtures()


def silence(seconds: float) -> Samples:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def listen(listener: WakeListener, audio: Samples, frame: int = 320) -> list[Detection]:
    """Feed ``audio`` in 20 ms frames, as the daemon's microphone path does."""
    found: list[Detection] = []
    for at in range(0, len(audio), frame):
        found += listener.feed(audio[at : at + frame])
    return found


@needs_espeak
@needs_micro
def test_a_spoken_wake_phrase_is_detected_once_where_it_was_said(fx: ModuleType) -> None:
    phrase = fx.speak("hey mycroft", "en-gb+f4", 175)
    audio = np.concatenate([silence(1.0), phrase, silence(2.0)])
    listener = WakeListener(WakeConfig(model="hey_mycroft"))
    (found,) = listen(listener, audio)
    assert found.word == "wake"
    assert found.model == "hey_mycroft"
    end = RATE + len(phrase)
    assert RATE < found.sample <= end + RATE // 2  # within half a second of the phrase's end
    assert found.seconds == found.sample / RATE
    assert found.probability >= listener.thresholds[0] == 0.95  # the model's own cutoff
    assert listener.samples == len(audio)


@needs_espeak
@needs_micro
def test_the_default_model_hears_okay_nabu(fx: ModuleType) -> None:
    audio = np.concatenate([silence(1.0), fx.speak("okay nabu", "en-us", 175), silence(2.0)])
    assert [d.word for d in listen(WakeListener(WakeConfig()), audio)] == ["wake"]


@needs_espeak
@needs_micro
def test_the_stop_word_is_told_apart_from_the_wake_word(fx: ModuleType) -> None:
    listener = WakeListener(WakeConfig(model="hey_mycroft", stop_model="alexa"))
    wake = fx.speak("hey mycroft", "en-us", 175)
    stop = fx.speak("alexa", "en-us", 190)
    audio = np.concatenate([silence(1.0), wake, silence(2.5), stop, silence(2.0)])
    found = listen(listener, audio)
    assert [(d.word, d.model) for d in found] == [("wake", "hey_mycroft"), ("stop", "alexa")]
    assert found[1].sample > RATE + len(wake) + 2 * RATE  # the stop word came second


@needs_espeak
@needs_micro
def test_speech_without_the_wake_phrase_and_noise_are_not_detected(fx: ModuleType) -> None:
    rng = np.random.default_rng(5)
    said = [
        fx.speak(text, voice) for text, voice in zip(fx.SENTENCES[:8], fx.VOICES * 2, strict=False)
    ]
    speech = np.concatenate([np.concatenate([s, silence(0.4)]) for s in said])
    noise = fx.pink(len(speech), rng) * 300.0
    audio = np.clip(speech + noise, -32768, 32767).astype(np.int16)
    listener = WakeListener(WakeConfig(stop_model="hey_mycroft"))
    assert listen(listener, audio) == []
    assert listen(listener, (fx.white(10 * RATE, rng) * 3000).astype(np.int16)) == []


@needs_espeak
@needs_micro
def test_refractory_time_one_detection_per_utterance(fx: ModuleType) -> None:
    phrase = fx.speak("hey mycroft", "en-gb+f4", 175)
    twice = np.concatenate([silence(1.0), phrase, silence(1.5), phrase, silence(2.0)])
    # The shortest refractory time still gives one detection for one utterance: the word
    # counts again only once its probability has fallen back below the threshold.
    short = WakeListener(WakeConfig(model="hey_mycroft", refractory_s=0.2))
    assert len(listen(short, np.concatenate([silence(1.0), phrase, silence(2.0)]))) == 1
    assert len(listen(WakeListener(WakeConfig(model="hey_mycroft")), twice)) == 2
    # Said again inside the refractory time: not reported again.
    long = WakeListener(WakeConfig(model="hey_mycroft", refractory_s=10.0))
    assert len(listen(long, twice)) == 1


@needs_espeak
@needs_micro
def test_bytes_of_any_length_and_reset(fx: ModuleType) -> None:
    phrase = fx.speak("hey mycroft", "en-gb+f4", 175)
    audio = np.concatenate([silence(1.0), phrase, silence(2.0)]).astype("<i2").tobytes()
    listener = WakeListener(WakeConfig(model="hey_mycroft"))
    found = []
    for at in range(0, len(audio), 333):  # odd byte counts: half samples carried over
        found += listener.feed(audio[at : at + 333])
    assert [d.model for d in found] == ["hey_mycroft"]
    assert listener.samples == len(audio) // 2
    # reset: the models start afresh; the stream position goes on.
    listener.reset()
    assert listener.samples == len(audio) // 2
    assert listener.feed(b"") == []
    assert listen(listener, silence(3.0)) == []
    found = listen(listener, np.frombuffer(audio, dtype="<i2"))
    assert [d.sample > len(audio) // 2 for d in found] == [True]


@needs_espeak
@needs_open
def test_the_open_engine_hears_its_phrase_too(fx: ModuleType) -> None:
    listener = WakeListener(WakeConfig(engine="open", model="okay_nabu", stop_model="alexa"))
    assert listener.thresholds == (0.5, 0.5)
    wake = fx.speak("okay nabu", "en-us", 175)
    stop = fx.speak("alexa", "en-gb+f4", 175)
    audio = np.concatenate([silence(1.0), wake, silence(2.5), stop, silence(2.0)])
    assert [d.word for d in listen(listener, audio)] == ["wake", "stop"]
    listener.close()


# --- The wake section of the config ----------------------------------------------------------


def problems(wake: object) -> dict[str, str]:
    with pytest.raises(ConfigProblems) as info:
        parse_config({"agent": {"agent_id": "a"}, "wake": wake})
    return {p.key_path: p.message for p in info.value.problems}


def test_the_section_absent_null_or_disabled_means_no_wake_word() -> None:
    agent = {"agent_id": "a"}
    assert parse_config({"agent": agent}).wake is None
    assert parse_config({"agent": agent, "wake": None}).wake is None
    assert parse_config({"agent": agent, "wake": {"enabled": False}}).wake is None
    assert parse_config({"agent": agent, "wake": {}}).wake == WakeConfig()
    config = parse_config(
        {
            "agent": agent,
            "wake": {
                "engine": "open",
                "model": "hey_rhasspy",
                "stop_model": "/opt/models/stop.tflite",
                "threshold": 0.6,
                "stop_threshold": 0.7,
                "refractory_s": 1.5,
            },
        }
    ).wake
    assert config == WakeConfig("open", "hey_rhasspy", "/opt/models/stop.tflite", 0.6, 0.7, 1.5)


def test_bad_values_name_their_keys() -> None:
    found = problems({"engine": "porcupine", "threshold": 2, "refractory_s": 0, "modle": "x"})
    assert found["wake.engine"] == "expected one of micro, open, got 'porcupine'"
    assert found["wake.threshold"].startswith("expected a probability (0-1), got 2")
    assert found["wake.refractory_s"].startswith("expected seconds (0.2-30)")
    assert found["wake.modle"].startswith("unknown key (did you mean 'model'?)")
    found = problems({"model": "okay_nabo", "stop_model": "stop"})
    assert "did you mean 'okay_nabu'?" in found["wake.model"]
    assert "no wake-word package bundles a stop model" in found["wake.stop_model"]
    # A model only the other engine bundles, a file with the wrong suffix, the same word twice.
    found = problems({"engine": "micro", "model": "hey_rhasspy", "stop_model": "stop.tflite"})
    assert "a model file path ending in .json" in found["wake.model"]
    assert "wake.stop_model" in found
    assert problems({"stop_model": "okay_nabu"}) == {
        "wake.stop_model": "must differ from wake.model"
    }


def test_check_config_exits_78_on_a_bad_engine(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("agent: {agent_id: a}\nwake: {engine: snowboy}\n", "utf-8")
    result = check_config(str(path))
    assert result.returncode == EX_CONFIG
    assert result.stderr == f"{path}: wake.engine: expected one of micro, open, got 'snowboy'\n"


def test_an_engine_missing_here_is_a_config_error_and_the_daemon_runs_on(tmp_path: Path) -> None:
    # As on armhf, where pip installs no pymicro-wakeword: a stand-in package that fails to
    # import, ahead of the real one on the path.
    shadow = tmp_path / "shadow" / "pymicro_wakeword"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("no wheel here (simulated)")\n')
    path = tmp_path / "config.yaml"
    path.write_text("agent: {agent_id: a}\nwake: {model: okay_nabu}\n", "utf-8")
    env = {"PYTHONPATH": os.pathsep.join([str(shadow.parent), str(ROOT)])}
    result = check_config(str(path), env=env)
    assert result.returncode == EX_CONFIG, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{path}: wake.engine: micro (pymicro-wakeword) is not available on ")
    assert "no wheel here (simulated)" in line
    assert "remove the wake section: the button works without it" in line
    # load_config (the daemon's) accepts the file without importing the engine: the daemon
    # starts, and WakeListener says why there is no wake word.
    script = (
        "import sys\n"
        "from piagent.config import load_config\n"
        "from piagent.wake import WakeListener, WakeUnavailable\n"
        f"config = load_config({str(path)!r})\n"
        "assert 'pymicro_wakeword' not in sys.modules\n"
        "try:\n"
        "    WakeListener(config.wake)\n"
        "except WakeUnavailable as exc:\n"
        "    print(exc.key_path)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | env,
        check=False,
    )
    assert (ran.returncode, ran.stdout) == (0, "wake.engine\n"), ran.stderr


def test_check_config_names_a_missing_model_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    model = tmp_path / "stop.json"
    path.write_text(f"agent: {{agent_id: a}}\nwake: {{stop_model: {model}}}\n", "utf-8")
    result = check_config(str(path))
    assert result.returncode == EX_CONFIG
    assert result.stderr == f"{path}: wake.stop_model: no such model file: {model}\n"


@needs_micro
def test_a_daemon_without_a_wake_section_never_imports_an_engine(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("agent: {agent_id: a}\n", "utf-8")
    assert check_config(str(path)).returncode == 0
    script = (
        "import sys\n"
        "import piagent.wake, piagent.service\n"
        "from piagent.config import load_config\n"
        f"assert load_config({str(path)!r}).wake is None\n"
        "print(sorted(m for m in sys.modules if 'wakeword' in m))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert (ran.returncode, ran.stdout) == (0, "[]\n"), ran.stderr
