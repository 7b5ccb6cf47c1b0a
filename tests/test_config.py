"""piagent.config: the example file, defaults, one-pass validation naming key paths, the API key."""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from piagent.config import (
    BUILTIN_TOOLS,
    DEFAULT_LED_PATTERNS,
    LED_STATES,
    REASONING_EFFORTS,
    AgentConfig,
    CommandToolConfig,
    Config,
    LedPattern,
    PythonToolConfig,
    Secret,
    check_config,
    config_path,
    load_config,
    parse_config,
    resolve_api_key,
)
from piagent.errors import ConfigError, ConfigProblems

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config.yaml.example"
A = "agent: {agent_id: x}\n"  # the smallest valid config
KEY = "sk_0123456789abcdef_secret"


def load_text(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def problems_of(tmp_path: Path, text: str) -> tuple[ConfigError, ...]:
    with pytest.raises(ConfigProblems) as info:
        load_text(tmp_path, text)
    assert info.value.source == str(tmp_path / "config.yaml")
    return info.value.problems


# --- The example file ----------------------------------------------------------------------


def load_example(tmp_path: Path, agent_id: str = "agent_123") -> Config:
    """The example with its agent_id placeholder (null) filled in, as a user does."""
    text = EXAMPLE.read_text(encoding="utf-8").replace("agent_id: null", f"agent_id: {agent_id}")
    return load_text(tmp_path, text)


def test_the_example_targets_elevenlabs_and_needs_an_agent_id(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, EXAMPLE.read_text(encoding="utf-8"))
    assert problem.key_path == "agent.agent_id"
    assert "set it to your agent's ID" in str(problem)
    config = load_example(tmp_path)
    assert config.agent.agent_id == "agent_123"
    assert config.agent.server == "wss://api.elevenlabs.io"


def test_the_example_shows_every_default(tmp_path: Path) -> None:
    assert load_example(tmp_path) == Config(agent=AgentConfig(agent_id="agent_123"))


def test_the_example_names_every_key() -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        for f in dataclasses.fields(value):
            assert f.name in node, f"config.yaml.example does not show {path}{f.name}"
            child = getattr(value, f.name)
            if dataclasses.is_dataclass(child):
                walk(child, node[f.name], f"{path}{f.name}.")

    walk(Config(agent=AgentConfig("demo")), data, "")


def test_the_example_says_how_to_switch_to_elevenlabs() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for needle in ("wss://api.elevenlabs.io", "api_key_file", "ELEVENLABS_API_KEY", "/etc/piagent"):
        assert needle in text


# --- Defaults and accepted forms -----------------------------------------------------------


def test_defaults_when_keys_are_absent() -> None:
    config = parse_config({"agent": {"agent_id": "x"}})
    assert config == Config(agent=AgentConfig("x"))
    assert config.agent.server == "wss://api.elevenlabs.io"
    assert config.agent.api_base == "https://api.elevenlabs.io"
    assert config.agent.first_message is None and config.agent.tts.speed is None
    assert dict(config.agent.dynamic_variables) == {}
    assert config.audio.backend == "pyaudio" and config.audio.input.device == "default"
    assert (config.audio.input.rate, config.audio.input.chunk_ms) == (None, 20)
    assert (config.audio.output.volume, config.audio.output.jitter_ms) == (0.8, 60)
    assert config.audio.half_duplex and config.audio.earcons
    assert config.gpio.pin_factory is None and not config.gpio.keyboard
    button = config.gpio.button
    assert (button.pin, button.mode, button.pull_up, button.bounce_ms) == (17, "hold", True, 30)
    assert (button.long_press_s, button.double_press_s) == (1.5, 0.4)
    assert (button.long_press_action, button.double_press_action) == ("hangup", "mute")
    assert config.gpio.leds.kind == "single" and dict(config.gpio.leds.pins) == {}
    assert set(config.gpio.leds.patterns) == set(LED_STATES)
    assert config.control.socket == Path("/run/piagent/control.sock")
    assert config.control.mode == 0o660
    session = config.session
    assert (session.idle_timeout, session.max_duration, session.always_connected) == (
        30,
        600,
        False,
    )
    assert (session.connect_timeout, session.stall_timeout) == (10, 15)
    assert (session.backoff_initial, session.backoff_max) == (0.5, 30)
    assert config.tools.builtins == BUILTIN_TOOLS
    assert dict(config.tools.commands) == {} and dict(config.tools.python) == {}
    assert (config.logging.level, config.logging.journal) == ("info", "auto")


def test_the_newer_overrides_are_read() -> None:
    agent = parse_config(
        {
            "agent": {
                "agent_id": "x",
                "reasoning_effort": "none",
                "procedure_ids": ["proc_1", "proc_2"],
                "tts": {"speed": 0.7, "stability": 0, "similarity_boost": 1},
            }
        }
    ).agent
    assert agent.reasoning_effort == "none"
    assert agent.procedure_ids == ("proc_1", "proc_2")
    assert (agent.tts.speed, agent.tts.stability, agent.tts.similarity_boost) == (0.7, 0.0, 1.0)
    assert isinstance(agent.tts.stability, float)
    defaults = parse_config({"agent": {"agent_id": "x"}}).agent
    assert (defaults.reasoning_effort, defaults.procedure_ids) == (None, None)


def test_an_empty_procedure_list_means_none_of_them() -> None:
    agent = parse_config({"agent": {"agent_id": "x", "procedure_ids": []}}).agent
    assert agent.procedure_ids == ()


def test_every_reasoning_effort_the_protocol_knows_is_accepted() -> None:
    for effort in REASONING_EFFORTS:
        config = parse_config({"agent": {"agent_id": "x", "reasoning_effort": effort}})
        assert config.agent.reasoning_effort == effort


def test_waiting_is_a_led_state_with_its_own_pattern() -> None:
    assert "waiting" in LED_STATES
    waiting = DEFAULT_LED_PATTERNS["waiting"]
    assert waiting != DEFAULT_LED_PATTERNS["connecting"]
    config = parse_config(
        {"agent": {"agent_id": "x"}, "gpio": {"leds": {"patterns": {"waiting": {"mode": "off"}}}}}
    )
    assert config.gpio.leds.patterns["waiting"] == dataclasses.replace(waiting, mode="off")


def test_an_empty_file_only_lacks_the_agent_id(tmp_path: Path) -> None:
    assert [p.key_path for p in problems_of(tmp_path, "")] == ["agent.agent_id"]


@pytest.mark.parametrize("mode", ["0o660", "0660", "432", '"0660"', '"660"', '"0o660"'])
def test_the_socket_mode_is_octal_in_any_spelling(tmp_path: Path, mode: str) -> None:
    assert load_text(tmp_path, f"{A}control: {{mode: {mode}}}").control.mode == 0o660


def test_accepted_forms(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        """
agent:
  agent_id: agent_01
  server: wss://api.eu.residency.elevenlabs.io/
  api_base: https://api.eu.residency.elevenlabs.io
  first_message: ""
  language: pt-br
  tts: {stability: 1, speed: 1.2, model_id: eleven_flash_v2_5}
  llm: {temperature: 0, max_tokens: 150}
  dynamic_variables: {user_name: Ann, visits: 3, ratio: 0.5, vip: true}
audio:
  backend: wav
  input: {device: 2, rate: 16000, file: mic.wav, gain_db: -6}
  output: {device: "hw:1,0", file: /tmp/out.wav, volume: 1}
gpio:
  pin_factory: mock
  button: {pin: null, mode: toggle}
  leds:
    kind: rgb
    pins: {red: 5, green: 6, blue: 13}
    patterns:
      listening: {color: "#FF8000"}
      error: {mode: solid, color: [1, 0, 0.5], period_s: 2}
tools:
  builtins: [hang_up]
  commands:
    lights: {command: [/usr/bin/lights, "on"], timeout: 2, description: Lights}
  python:
    weather: {target: "my_tools.weather:forecast"}
logging: {level: debug, journal: false}
""",
    )
    assert config.agent.server == "wss://api.eu.residency.elevenlabs.io"  # no trailing /
    assert config.agent.first_message == "" and config.agent.language == "pt-br"
    assert config.agent.tts.stability == 1.0 and isinstance(config.agent.tts.stability, float)
    assert config.agent.llm.temperature == 0.0 and config.agent.llm.max_tokens == 150
    assert dict(config.agent.dynamic_variables) == {
        "user_name": "Ann",
        "visits": 3,
        "ratio": 0.5,
        "vip": True,
    }
    assert config.audio.input.device == 2 and config.audio.input.file == Path("mic.wav")
    assert config.audio.input.gain_db == -6.0 and config.audio.output.device == "hw:1,0"
    assert config.gpio.button.pin is None and config.gpio.button.mode == "toggle"
    leds = config.gpio.leds
    assert dict(leds.pins) == {"red": 5, "green": 6, "blue": 13}
    assert leds.patterns["listening"] == dataclasses.replace(
        DEFAULT_LED_PATTERNS["listening"], color=(1.0, 128 / 255, 0.0)
    )
    assert leds.patterns["error"] == LedPattern("solid", 1.0, (1.0, 0.0, 0.5), 2.0)
    assert leds.patterns["speaking"] == DEFAULT_LED_PATTERNS["speaking"]
    assert config.tools.builtins == ("hang_up",)
    assert config.tools.commands["lights"] == CommandToolConfig(
        "lights", ("/usr/bin/lights", "on"), 2.0, "Lights"
    )
    assert config.tools.python["weather"] == PythonToolConfig(
        "weather", "my_tools.weather:forecast", 10.0
    )
    assert config.logging.journal is False


def test_per_state_leds_may_share_a_pin(tmp_path: Path) -> None:
    text = f"{A}gpio: {{leds: {{kind: per_state, pins: {{thinking: 22, speaking: 22}}}}}}"
    assert dict(load_text(tmp_path, text).gpio.leds.pins) == {"thinking": 22, "speaking": 22}


def test_the_config_is_frozen() -> None:
    config = parse_config({"agent": {"agent_id": "x", "dynamic_variables": {"a": 1}}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.agent.agent_id = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.agent.dynamic_variables["a"] = 2  # type: ignore[index]


# --- Bad configs: each rejected with its exact key path ------------------------------------

BAD = [
    # (id, YAML, the one key path reported, a fragment of its message)
    ("top-level-list", "- agent\n- audio\n", "", "expected a mapping of sections"),
    ("top-level-scalar", "hello\n", "", "got 'hello'"),
    ("yaml-syntax", "agent: {agent_id: x\naudio: [\n", "", "YAML syntax error at line"),
    ("yaml-tab", "agent:\n\tagent_id: x\n", "", "YAML syntax error at line 2"),
    ("duplicate-key", A + "audio: {}\naudio: {}\n", "", "found 'audio' twice (first on line 2)"),
    ("agent-missing", "audio: {}\n", "agent.agent_id", "missing"),
    ("agent-id-null", "agent: {agent_id: null}\n", "agent.agent_id", "got null"),
    ("agent-id-empty", 'agent: {agent_id: ""}\n', "agent.agent_id", "got ''"),
    ("agent-id-space", "agent: {agent_id: my agent}\n", "agent.agent_id", "got 'my agent'"),
    ("agent-id-int", "agent: {agent_id: 123}\n", "agent.agent_id", "got 123"),
    ("agent-not-mapping", "agent: x\n", "agent", "expected a mapping, got 'x'"),
    ("server-http", "agent: {agent_id: x, server: http://h}\n", "agent.server", "ws://"),
    ("server-path", A.replace("}", ", server: wss://h/v1/convai}"), "agent.server", "no path"),
    ("server-query", A.replace("}", ", server: 'wss://h?x=1'}"), "agent.server", "got"),
    ("server-no-host", A.replace("}", ", server: 'wss://'}"), "agent.server", "host"),
    ("server-bad-port", A.replace("}", ", server: 'ws://h:99999'}"), "agent.server", "got"),
    ("api-base-ftp", A.replace("}", ", api_base: ftp://h}"), "agent.api_base", "https://"),
    ("api-base-query", A.replace("}", ", api_base: 'https://h/?k=1'}"), "agent.api_base", "query"),
    ("language-word", A.replace("}", ", language: English}"), "agent.language", "pt-br"),
    ("language-no", A.replace("}", ", language: no}"), "agent.language", "quote the value"),
    ("prompt-empty", A.replace("}", ", prompt: ''}"), "agent.prompt", "non-empty"),
    ("first-message-int", A.replace("}", ", first_message: 5}"), "agent.first_message", "5"),
    ("api-key-inline", A.replace("}", ", api_key: sk}"), "agent.api_key", "'api_key_file'"),
    ("tts-speed", A.replace("}", ", tts: {speed: 6}}"), "agent.tts.speed", "(0.7-5)"),
    ("tts-stability", A.replace("}", ", tts: {stability: 1.5}}"), "agent.tts.stability", "0-1"),
    (
        "tts-type",
        A.replace("}", ", tts: {similarity_boost: hi}}"),
        "agent.tts.similarity_boost",
        "",
    ),
    ("tts-typo", A.replace("}", ", tts: {sped: 1}}"), "agent.tts.sped", "did you mean 'speed'?"),
    ("tts-speed-low", A.replace("}", ", tts: {speed: 0.5}}"), "agent.tts.speed", "got 0.5"),
    (
        "tts-similarity-high",
        A.replace("}", ", tts: {similarity_boost: 1.01}}"),
        "agent.tts.similarity_boost",
        "(0-1)",
    ),
    (
        "reasoning-effort-word",
        A.replace("}", ", reasoning_effort: meduim}"),
        "agent.reasoning_effort",
        "did you mean 'medium'?",
    ),
    (
        "reasoning-effort-bool",
        A.replace("}", ", reasoning_effort: off}"),
        "agent.reasoning_effort",
        "null or one of none, minimal, low, medium, high, xhigh, max, got false",
    ),
    (
        "procedure-ids-string",
        A.replace("}", ", procedure_ids: proc_1}"),
        "agent.procedure_ids",
        "a list of procedure IDs",
    ),
    (
        "procedure-ids-space",
        A.replace("}", ", procedure_ids: ['proc 1']}"),
        "agent.procedure_ids",
        "got ['proc 1']",
    ),
    (
        "procedure-ids-twice",
        A.replace("}", ", procedure_ids: [p1, p2, p1]}"),
        "agent.procedure_ids",
        "an ID is listed twice",
    ),
    ("llm-temperature", A.replace("}", ", llm: {temperature: 2.5}}"), "agent.llm.temperature", ""),
    ("llm-tokens-float", A.replace("}", ", llm: {max_tokens: 1.5}}"), "agent.llm.max_tokens", ""),
    (
        "llm-tokens-bool",
        A.replace("}", ", llm: {max_tokens: true}}"),
        "agent.llm.max_tokens",
        "true",
    ),
    (
        "dynvar-name",
        A.replace("}", ", dynamic_variables: {a-b: 1}}"),
        "agent.dynamic_variables.a-b",
        "name",
    ),
    (
        "dynvar-system",
        A.replace("}", ", dynamic_variables: {system__x: 1}}"),
        "agent.dynamic_variables.system__x",
        "reserved",
    ),
    (
        "dynvar-value",
        A.replace("}", ", dynamic_variables: {tags: [a]}}"),
        "agent.dynamic_variables.tags",
        "got ['a']",
    ),
    (
        "dynvar-null",
        A.replace("}", ", dynamic_variables: {v: null}}"),
        "agent.dynamic_variables.v",
        "got null",
    ),
    (
        "dynvar-list",
        A.replace("}", ", dynamic_variables: [a]}"),
        "agent.dynamic_variables",
        "mapping",
    ),
    ("unknown-section", A + "sesion: {}\n", "sesion", "did you mean 'session'?"),
    (
        "unknown-key",
        A + "audio: {inptu: {}}\n",
        "audio.inptu",
        "unknown key (did you mean 'input'?)",
    ),
    ("unknown-no-match", A + "audio: {zzz: 1}\n", "audio.zzz", "known keys: aec, backend"),
    ("backend", A + "audio: {backend: wave}\n", "audio.backend", "did you mean 'wav'?"),
    (
        "wav-no-input-file",
        A + "audio: {backend: wav, output: {file: o.wav}}\n",
        "audio.input.file",
        "required when audio.backend is wav",
    ),
    (
        "wav-no-output-file",
        A + "audio: {backend: wav, input: {file: i.wav}}\n",
        "audio.output.file",
        "wav",
    ),
    (
        "rate-word",
        A + "audio: {input: {rate: fast}}\n",
        "audio.input.rate",
        "expected an integer sample rate in Hz (8000-192000), got 'fast'",
    ),
    ("rate-low", A + "audio: {output: {rate: 4000}}\n", "audio.output.rate", "got 4000"),
    ("rate-float", A + "audio: {input: {rate: 16000.5}}\n", "audio.input.rate", ""),
    ("rate-bool", A + "audio: {input: {rate: true}}\n", "audio.input.rate", "got true"),
    ("device-negative", A + "audio: {input: {device: -1}}\n", "audio.input.device", "index"),
    ("device-empty", A + "audio: {output: {device: ''}}\n", "audio.output.device", ""),
    ("chunk-ms", A + "audio: {input: {chunk_ms: 5}}\n", "audio.input.chunk_ms", "(10-100)"),
    ("gain", A + "audio: {input: {gain_db: 31}}\n", "audio.input.gain_db", "(-30-30)"),
    ("volume-high", A + "audio: {output: {volume: 1.5}}\n", "audio.output.volume", "(0-1)"),
    ("volume-word", A + "audio: {output: {volume: loud}}\n", "audio.output.volume", ""),
    ("jitter", A + "audio: {output: {jitter_ms: 600}}\n", "audio.output.jitter_ms", "(0-500)"),
    (
        "half-duplex-str",
        A + "audio: {half_duplex: 'yes please'}\n",
        "audio.half_duplex",
        "true or false",
    ),
    ("audio-not-mapping", A + "audio: 5\n", "audio", "expected a mapping, got 5"),
    ("file-not-str", A + "audio: {input: {file: 3}}\n", "audio.input.file", "path"),
    ("pin-high", A + "gpio: {button: {pin: 28}}\n", "gpio.button.pin", "BCM pin number (0-27)"),
    ("pin-name", A + "gpio: {button: {pin: GPIO17}}\n", "gpio.button.pin", "GPIO17"),
    (
        "button-mode",
        A + "gpio: {button: {mode: push}}\n",
        "gpio.button.mode",
        "one of hold, toggle, tap",
    ),
    (
        "long-press",
        A + "gpio: {button: {long_press_s: 0.1}}\n",
        "gpio.button.long_press_s",
        "seconds (0.3-10)",
    ),
    ("double-press", A + "gpio: {button: {double_press_s: 3}}\n", "gpio.button.double_press_s", ""),
    ("bounce", A + "gpio: {button: {bounce_ms: 1000}}\n", "gpio.button.bounce_ms", "(0-500)"),
    (
        "long-action",
        A + "gpio: {button: {long_press_action: mute}}\n",
        "gpio.button.long_press_action",
        "hangup, none",
    ),
    ("pull-up", A + "gpio: {button: {pull_up: 1}}\n", "gpio.button.pull_up", "got 1"),
    ("pin-factory", A + "gpio: {pin_factory: rpi}\n", "gpio.pin_factory", "mock"),
    ("led-kind", A + "gpio: {leds: {kind: neon}}\n", "gpio.leds.kind", "single"),
    (
        "led-pin-conflict",
        A + "gpio: {leds: {pins: {led: 17}}}\n",
        "gpio.leds.pins.led",
        "already used by gpio.button.pin",
    ),
    ("led-pin-range", A + "gpio: {leds: {pins: {led: 99}}}\n", "gpio.leds.pins.led", "got 99"),
    (
        "led-name-for-kind",
        A + "gpio: {leds: {kind: single, pins: {red: 5}}}\n",
        "gpio.leds.pins.red",
        "unknown LED for kind single (expected led)",
    ),
    (
        "led-rgb-typo",
        A + "gpio: {leds: {kind: rgb, pins: {red: 5, green: 6, blu: 13, blue: 19}}}\n",
        "gpio.leds.pins.blu",
        "did you mean 'blue'?",
    ),
    (
        "led-rgb-missing",
        A + "gpio: {leds: {kind: rgb, pins: {red: 5, green: 6}}}\n",
        "gpio.leds.pins",
        "missing blue",
    ),
    (
        "led-rgb-same-pin",
        A + "gpio: {leds: {kind: rgb, pins: {red: 5, green: 5, blue: 6}}}\n",
        "gpio.leds.pins.green",
        "already used by gpio.leds.pins.red",
    ),
    (
        "led-pattern-state",
        A + "gpio: {leds: {patterns: {speeking: {}}}}\n",
        "gpio.leds.patterns.speeking",
        "did you mean 'speaking'?",
    ),
    (
        "led-pattern-mode",
        A + "gpio: {leds: {patterns: {error: {mode: flash}}}}\n",
        "gpio.leds.patterns.error.mode",
        "",
    ),
    (
        "led-color-hex",
        A + "gpio: {leds: {patterns: {error: {color: '#ff00zz'}}}}\n",
        "gpio.leds.patterns.error.color",
        "#rrggbb",
    ),
    (
        "led-color-name",
        A + "gpio: {leds: {patterns: {error: {color: red}}}}\n",
        "gpio.leds.patterns.error.color",
        "",
    ),
    (
        "led-color-short",
        A + "gpio: {leds: {patterns: {error: {color: [1, 0]}}}}\n",
        "gpio.leds.patterns.error.color",
        "",
    ),
    (
        "led-color-255",
        A + "gpio: {leds: {patterns: {error: {color: [255, 0, 0]}}}}\n",
        "gpio.leds.patterns.error.color",
        "",
    ),
    (
        "led-period",
        A + "gpio: {leds: {patterns: {error: {period_s: 0}}}}\n",
        "gpio.leds.patterns.error.period_s",
        "",
    ),
    (
        "led-brightness",
        A + "gpio: {leds: {patterns: {ready: {brightness: 2}}}}\n",
        "gpio.leds.patterns.ready.brightness",
        "",
    ),
    (
        "led-pattern-key",
        A + "gpio: {leds: {patterns: {ready: {colour: red}}}}\n",
        "gpio.leds.patterns.ready.colour",
        "did you mean 'color'?",
    ),
    ("control-mode-decimal", A + "control: {mode: 660}\n", "control.mode", "got 660"),
    ("control-mode-text", A + "control: {mode: rw-rw----}\n", "control.mode", "0o660"),
    ("control-socket", A + "control: {socket: 5}\n", "control.socket", ""),
    ("idle-zero", A + "session: {idle_timeout: 0}\n", "session.idle_timeout", "seconds (1-3600)"),
    ("idle-bool", A + "session: {idle_timeout: true}\n", "session.idle_timeout", "got true"),
    ("idle-unit", A + "session: {idle_timeout: 30s}\n", "session.idle_timeout", "got '30s'"),
    ("max-duration", A + "session: {max_duration: 10000}\n", "session.max_duration", ""),
    (
        "backoff-order",
        A + "session: {backoff_initial: 10, backoff_max: 5}\n",
        "session.backoff_max",
        "at least session.backoff_initial",
    ),
    ("stall", A + "session: {stall_timeout: 1}\n", "session.stall_timeout", "(2-120)"),
    (
        "always-connected",
        A + "session: {always_connected: sometimes}\n",
        "session.always_connected",
        "",
    ),
    (
        "builtin-typo",
        A + "tools: {builtins: [hang_up, hangup]}\n",
        "tools.builtins[1]",
        "did you mean 'hang_up'?",
    ),
    (
        "builtin-twice",
        A + "tools: {builtins: [hang_up, hang_up]}\n",
        "tools.builtins[1]",
        "already defined by tools.builtins[0]",
    ),
    ("builtins-string", A + "tools: {builtins: hang_up}\n", "tools.builtins", "list"),
    (
        "command-relative",
        A + "tools: {commands: {lights: {command: [lights, 'on']}}}\n",
        "tools.commands.lights.command",
        "absolute path",
    ),
    (
        "command-string",
        A + "tools: {commands: {lights: {command: /bin/lights on}}}\n",
        "tools.commands.lights.command",
        "list",
    ),
    (
        "command-missing",
        A + "tools: {commands: {lights: {timeout: 3}}}\n",
        "tools.commands.lights.command",
        "missing",
    ),
    (
        "command-empty",
        A + "tools: {commands: {lights: {command: []}}}\n",
        "tools.commands.lights.command",
        "",
    ),
    (
        "command-timeout",
        A + "tools: {commands: {lights: {command: [/bin/x], timeout: 0}}}\n",
        "tools.commands.lights.timeout",
        "(0.1-300)",
    ),
    (
        "command-not-mapping",
        A + "tools: {commands: {lights: /bin/x}}\n",
        "tools.commands.lights",
        "mapping",
    ),
    (
        "tool-name",
        A + "tools: {commands: {bad-name: {command: [/bin/x]}}}\n",
        "tools.commands.bad-name",
        "invalid tool name",
    ),
    (
        "tool-vs-builtin",
        A + "tools: {commands: {hang_up: {command: [/bin/x]}}}\n",
        "tools.commands.hang_up",
        "already defined by tools.builtins[2]",
    ),
    (
        "tool-vs-command",
        A + "tools: {commands: {x: {command: [/bin/x]}}, python: {x: {target: 'm:f'}}}\n",
        "tools.python.x",
        "already defined by tools.commands.x",
    ),
    (
        "python-target-dot",
        A + "tools: {python: {w: {target: weather.forecast}}}\n",
        "tools.python.w.target",
        "package.module:function",
    ),
    (
        "python-target-digit",
        A + "tools: {python: {w: {target: '1mod:f'}}}\n",
        "tools.python.w.target",
        "",
    ),
    (
        "python-timeout",
        A + "tools: {python: {w: {target: 'm:f', timeout: 301}}}\n",
        "tools.python.w.timeout",
        "",
    ),
    (
        "log-level",
        A + "logging: {level: verbose}\n",
        "logging.level",
        "debug, info, warning, error",
    ),
    ("journal", A + "logging: {journal: maybe}\n", "logging.journal", "auto, true or false"),
    (
        "int-key",
        A + "tools: {commands: {1: {command: [/bin/x]}}}\n",
        "tools.commands.1",
        "expected a name",
    ),
]


@pytest.mark.parametrize(
    ("text", "key_path", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_a_bad_config_is_rejected_naming_its_key_path(
    tmp_path: Path, text: str, key_path: str, fragment: str
) -> None:
    problems = problems_of(tmp_path, text)
    assert [p.key_path for p in problems] == [key_path], [str(p) for p in problems]
    assert fragment in problems[0].message
    assert str(problems[0]).startswith(f"{key_path}: " if key_path else problems[0].message)


def test_bad_configs_cover_the_required_variety() -> None:
    assert len(BAD) >= 25
    assert len({b[0] for b in BAD}) == len(BAD)


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    text = """
agent: {server: http://example.com}
audio:
  inptu: {rate: 16000}
  output: {volume: 2}
gpio: {button: {pin: 40, mode: holdd}}
session: {idle_timeout: -1}
tools: {builtins: [set_volum]}
"""
    problems = problems_of(tmp_path, text)
    assert sorted(p.key_path for p in problems) == sorted(
        [
            "agent.agent_id",
            "agent.server",
            "audio.inptu",
            "audio.output.volume",
            "gpio.button.pin",
            "gpio.button.mode",
            "session.idle_timeout",
            "tools.builtins[0]",
        ]
    )
    with pytest.raises(ConfigProblems) as info:
        load_text(tmp_path, text)
    assert isinstance(info.value, ConfigError)  # so `except ConfigError` -> exit 78 covers it
    lines = str(info.value).splitlines()
    assert lines == info.value.lines() and len(lines) == len(problems)
    source = str(tmp_path / "config.yaml")
    assert f"{source}: gpio.button.mode: expected one of hold, toggle, tap" in str(info.value)


def test_the_exact_message_for_a_bad_rate() -> None:
    with pytest.raises(ConfigProblems) as info:
        parse_config({"agent": {"agent_id": "x"}, "audio": {"input": {"rate": "fast"}}}, "c.yaml")
    assert info.value.lines() == [
        "c.yaml: audio.input.rate: expected an integer sample rate in Hz (8000-192000), got 'fast'"
    ]


def test_a_yaml_syntax_error_gives_its_line(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, "agent:\n  agent_id: x\n  server: [\n")
    assert problem.key_path == "" and "line 4" in problem.message


def test_an_unreadable_file_is_one_problem(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigProblems) as info:
        load_config(missing)
    (problem,) = info.value.problems
    assert problem.key_path == "" and "cannot read the config file" in problem.message
    assert info.value.lines() == [f"{missing}: {problem.message}"]
    with pytest.raises(ConfigProblems, match="cannot read"):
        load_config(tmp_path)  # a directory
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"agent: {agent_id: \xff}\n")
    with pytest.raises(ConfigProblems, match="not UTF-8"):
        load_config(binary)


def test_the_config_path_comes_from_the_argument_the_environment_or_etc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("agent: {agent_id: from_env}\n", encoding="utf-8")
    assert config_path(None, {}) == Path("/etc/piagent/config.yaml")
    assert config_path(None, {"PIAGENT_CONFIG": str(path)}) == path
    assert config_path("x.yaml", {"PIAGENT_CONFIG": str(path)}) == Path("x.yaml")
    monkeypatch.setenv("PIAGENT_CONFIG", str(path))
    assert load_config().agent.agent_id == "from_env"


# --- The API key ---------------------------------------------------------------------------


def key_file(directory: Path, content: str, mode: int = 0o600, name: str = "api_key") -> Path:
    path = directory / name
    path.write_text(content, encoding="utf-8")
    path.chmod(mode)
    return path


def agent_with(api_key_file: Path | None) -> AgentConfig:
    return AgentConfig("x", api_key_file=api_key_file)


def test_the_key_file_comes_first(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    key_file(creds, "from-credential", name="elevenlabs_api_key")
    env = {"ELEVENLABS_API_KEY": "from-env", "CREDENTIALS_DIRECTORY": str(creds)}
    secret = resolve_api_key(agent_with(key_file(tmp_path, f"  {KEY}\n")), env)
    assert secret is not None and secret.reveal() == KEY


def test_then_the_environment(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    key_file(creds, "from-credential", name="elevenlabs_api_key")
    env = {"ELEVENLABS_API_KEY": f" {KEY}\n", "CREDENTIALS_DIRECTORY": str(creds)}
    secret = resolve_api_key(agent_with(None), env)
    assert secret is not None and secret.reveal() == KEY


def test_then_the_systemd_credential(tmp_path: Path) -> None:
    key_file(tmp_path, KEY + "\n", mode=0o400, name="elevenlabs_api_key")
    for env in (
        {"CREDENTIALS_DIRECTORY": str(tmp_path)},
        {"ELEVENLABS_API_KEY": "  ", "CREDENTIALS_DIRECTORY": str(tmp_path)},
    ):
        secret = resolve_api_key(agent_with(None), env)
        assert secret is not None and secret.reveal() == KEY


def test_a_blank_systemd_credential_means_no_key(tmp_path: Path) -> None:
    # The unit's SetCredential= fallback when /etc/piagent/api_key does not exist.
    key_file(tmp_path, "\n", mode=0o400, name="elevenlabs_api_key")
    assert resolve_api_key(agent_with(None), {"CREDENTIALS_DIRECTORY": str(tmp_path)}) is None


def test_no_key_anywhere_is_none(tmp_path: Path) -> None:
    assert resolve_api_key(agent_with(None), {}) is None
    assert resolve_api_key(agent_with(None), {"CREDENTIALS_DIRECTORY": str(tmp_path)}) is None


def test_a_missing_key_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_api_key(agent_with(tmp_path / "absent"), {"ELEVENLABS_API_KEY": KEY})
    assert info.value.key_path == "agent.api_key_file"
    assert str(tmp_path / "absent") in info.value.message
    with pytest.raises(ConfigError, match="cannot read") as info:
        resolve_api_key(agent_with(tmp_path), {})  # a directory
    assert info.value.key_path == "agent.api_key_file"


@pytest.mark.parametrize("content", ["", " \n\n"])
def test_an_empty_key_file_names_the_key(tmp_path: Path, content: str) -> None:
    with pytest.raises(ConfigError, match="is empty") as info:
        resolve_api_key(agent_with(key_file(tmp_path, content)), {})
    assert info.value.key_path == "agent.api_key_file"


def test_a_key_file_with_several_words_is_refused_without_showing_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_api_key(agent_with(key_file(tmp_path, f"{KEY}\nsecond line\n")), {})
    assert info.value.key_path == "agent.api_key_file"
    assert KEY not in str(info.value) and "second" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_a_key_file_readable_by_others_warns_without_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = key_file(tmp_path, KEY, mode=0o644)
    with caplog.at_level(logging.DEBUG, logger="piagent"):
        secret = resolve_api_key(agent_with(path), {})
    assert secret is not None and secret.reveal() == KEY
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert str(path) in text and "chmod 600" in text and "0644" in text
    for record in caplog.records:
        assert KEY not in record.getMessage() and KEY not in repr(record.args)
    assert KEY not in caplog.text


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_key_file_does_not_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    path = key_file(tmp_path, KEY, mode=mode)
    with caplog.at_level(logging.DEBUG, logger="piagent"):
        assert resolve_api_key(agent_with(path), {}) is not None
    assert not caplog.records


def test_a_group_readable_key_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = key_file(tmp_path, KEY, mode=0o640)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    with caplog.at_level(logging.WARNING, logger="piagent"):
        resolve_api_key(agent_with(path), {})
    assert "chmod 600" in caplog.text


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Permission denied") as info:
        resolve_api_key(agent_with(key_file(tmp_path, KEY, mode=0o000)), {})
    assert info.value.key_path == "agent.api_key_file"


def test_check_config_checks_the_configured_key_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"agent: {{agent_id: x, api_key_file: {tmp_path / 'absent'}}}\n", "utf-8")
    assert load_config(path).agent.api_key_file == tmp_path / "absent"
    with pytest.raises(ConfigProblems) as info:
        check_config(path)
    assert [p.key_path for p in info.value.problems] == ["agent.api_key_file"]
    key_file(tmp_path, KEY, name="absent")
    assert check_config(path).agent.agent_id == "x"


def test_a_secret_never_shows_itself(tmp_path: Path) -> None:
    secret = Secret(KEY)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>40}"]
    shown += ["%s" % secret, "%r" % secret, "{}".format(secret), repr([secret])]  # noqa: UP031, UP032
    for text in shown:
        assert KEY not in text
    assert repr(secret) == str(secret) == "Secret('***')"
    assert secret.reveal() == KEY
    with pytest.raises(AttributeError):
        secret.__dict__  # noqa: B018 -- slots: nothing for vars() or a debugger's repr to show


def test_no_repr_of_the_config_contains_the_key(tmp_path: Path) -> None:
    path = key_file(tmp_path, KEY)
    config = parse_config({"agent": {"agent_id": "x", "api_key_file": str(path)}})
    secret = resolve_api_key(config.agent, {"ELEVENLABS_API_KEY": "other"})
    assert secret is not None and secret.reveal() == KEY
    for text in (repr(config), str(config), repr(config.agent), repr(secret), str(secret)):
        assert KEY not in text
