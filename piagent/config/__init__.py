"""piagent's configuration: YAML in, frozen dataclasses out, every problem reported at once.

The package's modules, each owning one part:

* ``schema``: the dataclasses (each key's type, default, unit and range), file locations,
  the choices' words, the LED states and their built-in patterns;
* ``readers``: typed converters and the ``Reader`` that records problems by key path;
* ``sections``: ``parse_config``, one function per section of the file;
* ``loader``: ``load_config`` / ``check_config`` read ``/etc/piagent/config.yaml`` or
  ``$PIAGENT_CONFIG`` (``config_path``);
* ``api_key``: ``resolve_api_key`` and ``Secret``, a key that never prints.

Everything public is re-exported here: ``from piagent.config import load_config, Config`` is
the import path the rest of piagent uses. Validation collects every problem in one pass, each
a ``ConfigError`` naming its dotted key path, and raises them together as one
``ConfigProblems`` (exit status 78).

Imports nothing from piagent but ``errors`` and the protocol's list of reasoning efforts; no
I/O or environment reads at import time.
"""

from __future__ import annotations

from piagent.config.api_key import Secret, resolve_api_key
from piagent.config.loader import check_config, config_path, load_config
from piagent.config.schema import (
    AEC_ENGINE_CHOICES,
    API_KEY_CREDENTIAL,
    API_KEY_ENV,
    AUDIO_BACKENDS,
    BUILTIN_TOOLS,
    BUTTON_MODES,
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    DEFAULT_LED_PATTERNS,
    LED_KINDS,
    LED_MODES,
    LED_PIN_NAMES,
    LED_STATES,
    LOG_LEVELS,
    MAX_BCM_PIN,
    PIN_FACTORIES,
    WAKE_ENGINES,
    WAKE_MODEL_SUFFIXES,
    WAKE_MODELS,
    AecConfig,
    AecEngine,
    AgentConfig,
    AudioBackend,
    AudioConfig,
    AudioInputConfig,
    AudioOutputConfig,
    ButtonConfig,
    ButtonMode,
    Color,
    CommandToolConfig,
    Config,
    ControlConfig,
    DynamicValue,
    EchoPathConfig,
    GpioConfig,
    LedConfig,
    LedKind,
    LedMode,
    LedPattern,
    LlmConfig,
    LoggingConfig,
    LogLevel,
    PinFactory,
    PythonToolConfig,
    SessionConfig,
    ToolsConfig,
    TtsConfig,
    WakeConfig,
    WakeEngine,
)
from piagent.config.sections import parse_config
from piagent.protocol.overrides import REASONING_EFFORTS

__all__ = [
    "AEC_ENGINE_CHOICES",
    "API_KEY_CREDENTIAL",
    "API_KEY_ENV",
    "AUDIO_BACKENDS",
    "BUILTIN_TOOLS",
    "BUTTON_MODES",
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_LED_PATTERNS",
    "LED_KINDS",
    "LED_MODES",
    "LED_PIN_NAMES",
    "LED_STATES",
    "LOG_LEVELS",
    "MAX_BCM_PIN",
    "PIN_FACTORIES",
    "REASONING_EFFORTS",
    "WAKE_ENGINES",
    "WAKE_MODELS",
    "WAKE_MODEL_SUFFIXES",
    "AecConfig",
    "AecEngine",
    "AgentConfig",
    "AudioBackend",
    "AudioConfig",
    "AudioInputConfig",
    "AudioOutputConfig",
    "ButtonConfig",
    "ButtonMode",
    "Color",
    "CommandToolConfig",
    "Config",
    "ControlConfig",
    "DynamicValue",
    "EchoPathConfig",
    "GpioConfig",
    "LedConfig",
    "LedKind",
    "LedMode",
    "LedPattern",
    "LlmConfig",
    "LogLevel",
    "LoggingConfig",
    "PinFactory",
    "PythonToolConfig",
    "Secret",
    "SessionConfig",
    "ToolsConfig",
    "TtsConfig",
    "WakeConfig",
    "WakeEngine",
    "check_config",
    "config_path",
    "load_config",
    "parse_config",
    "resolve_api_key",
]
