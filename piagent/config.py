"""piagent's configuration: YAML in, frozen dataclasses out, every problem reported at once.

Owns the schema (each key's type, default, unit and range, documented on the dataclass
fields), loading ``/etc/piagent/config.yaml`` or ``$PIAGENT_CONFIG`` (:func:`load_config`),
validating plain data (:func:`parse_config`) and resolving the ElevenLabs API key into a
:class:`Secret` that never prints (:func:`resolve_api_key`).

Validation collects every problem in one pass, each a ``ConfigError`` naming its dotted key
path, and raises them together as one ``ConfigProblems`` (exit status 78). Mappings inside the
dataclasses are read-only ``types.MappingProxyType`` objects; lists are tuples. Relative paths
are kept as written (relative to the daemon's working directory).

Imports nothing from piagent but ``errors``; no I/O or environment reads at import time.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
import stat
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias, TypeVar
from urllib.parse import urlsplit

import yaml

from piagent.errors import ConfigError, ConfigProblems

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH: Final = Path("/etc/piagent/config.yaml")
CONFIG_ENV: Final = "PIAGENT_CONFIG"
API_KEY_ENV: Final = "ELEVENLABS_API_KEY"
API_KEY_CREDENTIAL: Final = "elevenlabs_api_key"  # file name in $CREDENTIALS_DIRECTORY

AudioBackend: TypeAlias = Literal["pyaudio", "wav"]
PinFactory: TypeAlias = Literal["mock", "lgpio", "rpigpio", "pigpio", "native"]
ButtonMode: TypeAlias = Literal["hold", "toggle", "tap"]
LedKind: TypeAlias = Literal["single", "per_state", "pwm", "rgb", "none"]
LedMode: TypeAlias = Literal["solid", "blink", "pulse", "off"]
LogLevel: TypeAlias = Literal["debug", "info", "warning", "error"]
DynamicValue: TypeAlias = str | int | float | bool
Color: TypeAlias = tuple[float, float, float]  # red, green, blue, each 0.0-1.0

AUDIO_BACKENDS: Final[tuple[AudioBackend, ...]] = ("pyaudio", "wav")
PIN_FACTORIES: Final[tuple[PinFactory, ...]] = ("mock", "lgpio", "rpigpio", "pigpio", "native")
BUTTON_MODES: Final[tuple[ButtonMode, ...]] = ("hold", "toggle", "tap")
LED_KINDS: Final[tuple[LedKind, ...]] = ("single", "per_state", "pwm", "rgb", "none")
LED_MODES: Final[tuple[LedMode, ...]] = ("solid", "blink", "pulse", "off")
LOG_LEVELS: Final[tuple[LogLevel, ...]] = ("debug", "info", "warning", "error")
# The device states the LEDs show (``piagent ctl status``'s ``state``).
LED_STATES: Final = (
    "booting",
    "ready",
    "connecting",
    "listening",
    "thinking",
    "speaking",
    "muted",
    "offline",
    "error",
)
BUILTIN_TOOLS: Final = ("current_time", "set_volume", "hang_up", "set_led")
# LED names that ``gpio.leds.pins`` accepts, per kind.
LED_PIN_NAMES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "single": ("led",),
        "pwm": ("led",),
        "rgb": ("red", "green", "blue"),
        "per_state": LED_STATES,
        "none": (),
    }
)
MAX_BCM_PIN: Final = 27

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PY_TARGET = re.compile(r"{0}(\.{0})*:{0}(\.{0})*".format(r"[A-Za-z_][A-Za-z0-9_]*"))
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z]{2,4})?")
_NO_SPACE = re.compile(r"\S+")
_HEX_COLOR = re.compile(r"#([0-9a-fA-F]{2})([0-9a-fA-F]{2})([0-9a-fA-F]{2})")
_FILE_MODE = re.compile(r"(?:0o|0)?([0-7]{3})")


class Secret:
    """A secret string that never shows itself: repr, str and format give ``Secret('***')``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: call this only where it is sent (an HTTP header), never to log."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return repr(self)


def _frozen() -> Mapping[str, Any]:
    """An empty read-only mapping (the default of mapping fields)."""
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class TtsConfig:
    """``agent.tts``: voice-setting overrides; None is not sent (the agent's own setting)."""

    stability: float | None = None  # 0.0-1.0
    similarity_boost: float | None = None  # 0.0-1.0
    speed: float | None = None  # speech-rate multiplier, 0.7-5.0 (1.0 = normal)
    model_id: str | None = None  # TTS model, e.g. eleven_flash_v2_5


@dataclass(frozen=True, slots=True)
class LlmConfig:
    """``agent.llm``: sent as ``custom_llm_extra_body``; None is not sent."""

    temperature: float | None = None  # 0.0-2.0
    max_tokens: int | None = None  # 1-100000


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """``agent``: which agent to talk to, where, and the conversation overrides to send."""

    agent_id: str  # required: the agent's ID from the ElevenLabs dashboard
    server: str = "wss://api.elevenlabs.io"  # WebSocket base URL (no path), trailing / removed
    api_base: str = "https://api.elevenlabs.io"  # REST base URL (signed URLs, voices)
    api_key_file: Path | None = None  # file holding the API key (see resolve_api_key)
    prompt: str | None = None  # system-prompt override; None: not sent
    first_message: str | None = None  # first utterance override; "" = wait for the user
    language: str | None = None  # language override such as en or pt-br
    voice_id: str | None = None  # voice override (an ID from ``piagent voices``)
    tts: TtsConfig = field(default_factory=TtsConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    # {{name}} placeholders filled by the agent; a read-only mapping name -> value.
    dynamic_variables: Mapping[str, DynamicValue] = field(default_factory=_frozen)
    user_id: str | None = None  # end-user ID reported to the agent's owner


@dataclass(frozen=True, slots=True)
class AudioInputConfig:
    """``audio.input``: the microphone."""

    device: str | int = "default"  # ALSA device name, or PortAudio device index (>= 0)
    rate: int | None = None  # capture rate in Hz (8000-192000); None: negotiate
    file: Path | None = None  # WAV file read in real time (wav backend only)
    gain_db: float = 0.0  # software gain in dB (-30-30)
    chunk_ms: int = 20  # capture chunk in ms (10-100)


@dataclass(frozen=True, slots=True)
class AudioOutputConfig:
    """``audio.output``: the speaker."""

    device: str | int = "default"  # ALSA device name, or PortAudio device index (>= 0)
    rate: int | None = None  # playback rate in Hz (8000-192000); None: negotiate
    file: Path | None = None  # WAV file written in real time (wav backend only)
    volume: float = 0.8  # initial software volume, 0.0-1.0
    jitter_ms: int = 60  # jitter buffer in ms (0-500)


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """``audio``: devices and how they are used."""

    backend: AudioBackend = "pyaudio"  # pyaudio (ALSA/PortAudio devices) | wav (files)
    input: AudioInputConfig = field(default_factory=AudioInputConfig)
    output: AudioOutputConfig = field(default_factory=AudioOutputConfig)
    half_duplex: bool = True  # mic sends silence while the agent speaks, unless button held
    earcons: bool = True  # short generated sounds on press, release, error, offline


@dataclass(frozen=True, slots=True)
class ButtonConfig:
    """``gpio.button``: the push-to-talk button (wired to ground when ``pull_up``)."""

    pin: int | None = 17  # BCM pin 0-27; None: no button
    mode: ButtonMode = "hold"  # hold: talk while held | toggle: press on/off | tap: start a turn
    pull_up: bool = True  # internal pull-up (button to ground) or pull-down (button to 3V3)
    bounce_ms: int = 30  # debounce time in ms (0-500)
    long_press_s: float = 1.5  # seconds (0.3-10) held that make a long press
    double_press_s: float = 0.4  # seconds (0.1-2) between two presses that make a double press
    long_press_action: Literal["hangup", "none"] = "hangup"
    double_press_action: Literal["mute", "none"] = "mute"


@dataclass(frozen=True, slots=True)
class LedPattern:
    """How the LEDs show one state."""

    mode: LedMode = "solid"  # solid | blink | pulse (fades; blinks on on/off LEDs) | off
    brightness: float = 1.0  # 0.0-1.0 (pwm and rgb LEDs; on/off LEDs light when > 0)
    color: Color = (1.0, 1.0, 1.0)  # rgb LEDs only
    period_s: float = 1.0  # seconds (0.05-60) of one blink or pulse cycle


# What each state shows when gpio.leds.patterns does not say (field by field).
DEFAULT_LED_PATTERNS: Final[Mapping[str, LedPattern]] = MappingProxyType(
    {
        "booting": LedPattern("blink", 1.0, (1.0, 1.0, 1.0), 1.0),  # white
        "ready": LedPattern("solid", 0.1, (0.0, 0.0, 1.0)),  # dim blue
        "connecting": LedPattern("blink", 1.0, (1.0, 0.75, 0.0), 0.5),  # amber
        "listening": LedPattern("solid", 1.0, (0.0, 1.0, 0.0)),  # green
        "thinking": LedPattern("pulse", 1.0, (0.0, 1.0, 1.0), 1.0),  # cyan
        "speaking": LedPattern("pulse", 1.0, (0.0, 0.0, 1.0), 0.6),  # blue
        "muted": LedPattern("blink", 0.3, (1.0, 0.0, 1.0), 2.0),  # magenta
        "offline": LedPattern("blink", 1.0, (1.0, 0.25, 0.0), 3.0),  # orange
        "error": LedPattern("blink", 1.0, (1.0, 0.0, 0.0), 0.2),  # red, fast
    }
)


@dataclass(frozen=True, slots=True)
class LedConfig:
    """``gpio.leds``: status LEDs."""

    kind: LedKind = "single"  # single on/off LED | per_state LEDs | one pwm LED | rgb | none
    # LED name -> BCM pin (read-only mapping); empty: no LED driven. Names by kind:
    # single/pwm {led}, rgb {red, green, blue} (all three), per_state {<state>: pin}.
    pins: Mapping[str, int] = field(default_factory=_frozen)
    active_high: bool = True  # LED lights when the pin is high (false: wired to 3V3)
    # state -> pattern, every state in LED_STATES present (read-only mapping).
    patterns: Mapping[str, LedPattern] = field(default_factory=lambda: DEFAULT_LED_PATTERNS)


@dataclass(frozen=True, slots=True)
class GpioConfig:
    """``gpio``: button and LEDs."""

    pin_factory: PinFactory | None = None  # gpiozero pin factory; None: gpiozero's choice
    button: ButtonConfig = field(default_factory=ButtonConfig)
    leds: LedConfig = field(default_factory=LedConfig)
    keyboard: bool = False  # space/enter on the terminal act as the button (development)


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """``control``: the local control socket used by ``piagent ctl``."""

    socket: Path = Path("/run/piagent/control.sock")  # UNIX socket path
    mode: int = 0o660  # socket file mode (permission bits, at most 0o777)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """``session``: conversation lifetime and reconnection, all in seconds."""

    idle_timeout: float = 30.0  # no speech either way for this long: hang up (1-3600)
    max_duration: float = 600.0  # hard cap on one conversation (10-7200)
    always_connected: bool = False  # keep a conversation open (reconnect) even when idle
    connect_timeout: float = 10.0  # to open the WebSocket and get the metadata (1-120)
    stall_timeout: float = 15.0  # no frame and no pong for this long: reconnect (2-120)
    backoff_initial: float = 0.5  # first reconnect delay (0.05-60)
    backoff_max: float = 30.0  # longest reconnect delay (backoff_initial-3600)


@dataclass(frozen=True, slots=True)
class CommandToolConfig:
    """``tools.commands.<name>``: a client tool that runs a program (no shell)."""

    name: str
    command: tuple[str, ...]  # argv; the first element is an absolute executable path
    timeout: float = 10.0  # seconds (0.1-300) before the program is killed
    description: str = ""  # for people reading the config


@dataclass(frozen=True, slots=True)
class PythonToolConfig:
    """``tools.python.<name>``: a client tool that calls a Python function."""

    name: str
    target: str  # "package.module:function"
    timeout: float = 10.0  # seconds (0.1-300)


@dataclass(frozen=True, slots=True)
class ToolsConfig:
    """``tools``: the client tools this terminal answers (names unique across all three)."""

    builtins: tuple[str, ...] = BUILTIN_TOOLS  # a subset of BUILTIN_TOOLS
    commands: Mapping[str, CommandToolConfig] = field(default_factory=_frozen)  # read-only
    python: Mapping[str, PythonToolConfig] = field(default_factory=_frozen)  # read-only


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """``logging``."""

    level: LogLevel = "info"
    journal: bool | Literal["auto"] = "auto"  # auto: to journald when started by systemd


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration file."""

    agent: AgentConfig
    audio: AudioConfig = field(default_factory=AudioConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    tools: ToolsConfig = field(default_factory=ToolsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


# --- Typed field readers -------------------------------------------------------------------
# A converter turns one raw YAML value into a typed value or raises _Invalid; a _Reader applies
# converters to the keys of one mapping, records each problem under its key path and returns
# the default instead, so one pass finds everything.

T = TypeVar("T")
S = TypeVar("S", bound=str)
Convert: TypeAlias = Callable[[object], T]
_MISSING: Final = object()


class _Invalid(Exception):
    def __init__(self, hint: str = "") -> None:
        super().__init__(hint)
        self.hint = hint


def _show(raw: object) -> str:
    """A raw value as the problem message shows it (YAML spelling; long strings cut)."""
    if raw is None or isinstance(raw, bool):
        return {None: "null", True: "true", False: "false"}[raw]
    if isinstance(raw, str):
        return repr(raw if len(raw) <= 60 else raw[:57] + "...")
    if isinstance(raw, int | float):
        return repr(raw)
    if isinstance(raw, list) and len(text := repr(raw)) <= 60:
        return text
    return "a mapping" if isinstance(raw, Mapping) else f"a {type(raw).__name__}"


def _did_you_mean(word: object, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _int(lo: int, hi: int) -> Convert[int]:
    def convert(raw: object) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
            raise _Invalid
        return raw

    return convert


def _float(lo: float, hi: float) -> Convert[float]:
    def convert(raw: object) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not lo <= raw <= hi:
            raise _Invalid  # NaN fails the range test too
        return float(raw)

    return convert


def _bool(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise _Invalid
    return raw


def _str(pattern: re.Pattern[str] | None = _NO_SPACE, *, empty: bool = False) -> Convert[str]:
    """A string matching ``pattern`` (default: non-empty, no whitespace) or any string."""

    def convert(raw: object) -> str:
        if isinstance(raw, bool):  # YAML 1.1 reads no, yes, on, off as booleans
            raise _Invalid(" (YAML reads yes/no/on/off as booleans: quote the value)")
        if not isinstance(raw, str) or (pattern and not pattern.fullmatch(raw)):
            raise _Invalid
        if not raw and not empty:
            raise _Invalid
        return raw

    return convert


def _choice(options: tuple[S, ...]) -> Convert[S]:
    def convert(raw: object) -> S:
        for option in options:
            if raw == option and isinstance(raw, str):
                return option
        raise _Invalid(_did_you_mean(raw, options) if isinstance(raw, str) else "")

    return convert


def _optional(convert: Convert[T]) -> Convert[T | None]:
    return lambda raw: None if raw is None else convert(raw)


def _path(raw: object) -> Path:
    if not isinstance(raw, str) or not raw or "\0" in raw:
        raise _Invalid
    return Path(raw)


def _url(schemes: tuple[str, ...], *, bare: bool) -> Convert[str]:
    """A URL with one of ``schemes``, a host, no credentials, query or fragment; no path if bare."""

    def convert(raw: object) -> str:
        if not isinstance(raw, str) or not _NO_SPACE.fullmatch(raw):
            raise _Invalid
        try:
            parts = urlsplit(raw)
            parts.port  # noqa: B018 -- raises ValueError for a bad port
        except ValueError:
            raise _Invalid from None
        if (
            parts.scheme not in schemes
            or not parts.hostname
            or parts.username is not None
            or parts.query
            or parts.fragment
            or (bare and parts.path not in ("", "/"))
        ):
            raise _Invalid
        return raw.rstrip("/")

    return convert


def _hex_color(raw: str) -> Color:
    match = _HEX_COLOR.fullmatch(raw)
    if not match:
        raise _Invalid
    red, green, blue = (int(part, 16) / 255 for part in match.groups())
    return (red, green, blue)


def _color(raw: object) -> Color:
    if isinstance(raw, str):
        return _hex_color(raw)
    if not isinstance(raw, list) or len(raw) != 3:
        raise _Invalid
    red, green, blue = (_float(0.0, 1.0)(part) for part in raw)
    return (red, green, blue)


def _file_mode(raw: object) -> int:
    if isinstance(raw, str) and (match := _FILE_MODE.fullmatch(raw)):
        return int(match.group(1), 8)
    return _int(0, 0o777)(raw)


def _journal(raw: object) -> bool | Literal["auto"]:
    return "auto" if raw == "auto" else _bool(raw)


def _dynamic_value(raw: object) -> DynamicValue:
    if isinstance(raw, float) and not math.isfinite(raw):
        raise _Invalid
    if not isinstance(raw, str | int | float):  # bool is an int
        raise _Invalid
    return raw


def _argv(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(a, str) for a in raw):
        raise _Invalid
    if not Path(raw[0]).is_absolute():
        raise _Invalid(" (the first element must be an absolute path; no shell is used)")
    return tuple(raw)


class _Context:
    """The problems found so far, and every reader, to report unknown keys at the end."""

    def __init__(self) -> None:
        self.problems: list[ConfigError] = []
        self.readers: list[_Reader] = []

    def add(self, key_path: str, message: str) -> None:
        self.problems.append(ConfigError(key_path, message))

    def failed(self, *key_paths: str) -> bool:
        return any(p.key_path in key_paths for p in self.problems)

    def finish(self) -> None:
        for reader in self.readers:
            reader.report_unknown_keys()


class _Reader:
    """One mapping of the file: typed readers for its keys, each recording what it read."""

    def __init__(self, ctx: _Context, path: str, data: object) -> None:
        self.ctx, self.path, self.seen = ctx, path, set[Hashable]()
        self.data: Mapping[Hashable, object] = data if isinstance(data, Mapping) else {}
        self.valid = data is None or isinstance(data, Mapping)  # else its keys go unreported
        if not self.valid:
            ctx.add(path, f"expected a mapping, got {_show(data)}")
        ctx.readers.append(self)

    def key(self, name: object) -> str:
        return f"{self.path}.{name}" if self.path else str(name)

    def read(
        self, name: str, default: T, convert: Convert[T], expected: str, *, required: bool = False
    ) -> T:
        """The value of key ``name`` converted, or ``default`` if absent or invalid."""
        self.seen.add(name)
        raw = self.data.get(name, _MISSING)
        if raw is _MISSING:
            if required and self.valid:
                self.ctx.add(self.key(name), f"missing: expected {expected}")
            return default
        try:
            return convert(raw)
        except _Invalid as exc:
            self.ctx.add(self.key(name), f"expected {expected}, got {_show(raw)}{exc.hint}")
            return default

    def integer(self, name: str, default: int, lo: int, hi: int, what: str) -> int:
        return self.read(name, default, _int(lo, hi), f"{what} ({lo}-{hi})")

    def opt_integer(self, name: str, lo: int, hi: int, what: str) -> int | None:
        return self.read(name, None, _optional(_int(lo, hi)), f"{what} ({lo}-{hi})")

    def number(self, name: str, default: float, lo: float, hi: float, what: str) -> float:
        return self.read(name, default, _float(lo, hi), f"{what} ({lo:g}-{hi:g})")

    def opt_number(self, name: str, lo: float, hi: float, what: str) -> float | None:
        return self.read(name, None, _optional(_float(lo, hi)), f"{what} ({lo:g}-{hi:g})")

    def flag(self, name: str, default: bool) -> bool:
        return self.read(name, default, _bool, "true or false")

    def choice(self, name: str, default: S, options: tuple[S, ...]) -> S:
        return self.read(name, default, _choice(options), "one of " + ", ".join(options))

    def text(
        self, name: str, what: str = "a non-empty string", *, empty: bool = False
    ) -> str | None:
        """An optional free-text string (None when absent or null)."""
        return self.read(name, None, _optional(_str(None, empty=empty)), what)

    def section(self, name: str) -> _Reader:
        self.seen.add(name)
        return _Reader(self.ctx, self.key(name), self.data.get(name))

    def entries(self, name: str) -> list[tuple[str, str, object]]:
        """A mapping whose keys the user names: (key, key path, value) for each string key."""
        sub = self.section(name)
        sub.seen.update(sub.data)
        found = []
        for key, value in sub.data.items():
            if isinstance(key, str):
                found.append((key, sub.key(key), value))
            else:
                self.ctx.add(sub.key(key), f"expected a name (a string), got {_show(key)}")
        return found

    def report_unknown_keys(self) -> None:
        known = sorted(str(k) for k in self.seen)
        for key in self.data:
            if key not in self.seen:
                hint = _did_you_mean(key, known) or f" (known keys: {', '.join(known)})"
                self.ctx.add(self.key(key), f"unknown key{hint}")


# --- Sections ------------------------------------------------------------------------------


def _agent(r: _Reader) -> AgentConfig:
    d = AgentConfig(agent_id="")
    tts, llm = r.section("tts"), r.section("llm")
    expected_id = "the agent's ID from the ElevenLabs dashboard (a string without spaces)"
    raw_id = r.data.get("agent_id", _MISSING)
    agent_id = d.agent_id
    if raw_id is None or raw_id is _MISSING:
        # The shipped example has agent_id: null: say what to do, not which type is expected.
        r.seen.add("agent_id")
        if r.valid:
            said = "got null" if raw_id is None else "missing"
            required = "required: set it to your agent's ID (ElevenLabs dashboard)"
            r.ctx.add(r.key("agent_id"), f"{required}; {said}")
    else:
        agent_id = r.read("agent_id", d.agent_id, _str(), expected_id, required=True)
    return AgentConfig(
        agent_id=agent_id,
        server=r.read(
            "server",
            d.server,
            _url(("ws", "wss"), bare=True),
            "a ws:// or wss:// URL with a host and no path, e.g. wss://api.elevenlabs.io",
        ),
        api_base=r.read(
            "api_base",
            d.api_base,
            _url(("http", "https"), bare=False),
            "an http:// or https:// URL without a query, e.g. https://api.elevenlabs.io",
        ),
        api_key_file=r.read("api_key_file", None, _optional(_path), "a file path"),
        prompt=r.text("prompt"),
        first_message=r.text("first_message", "a string", empty=True),
        language=r.read(
            "language", None, _optional(_str(_LANGUAGE)), "a language code such as en or pt-br"
        ),
        voice_id=r.read("voice_id", None, _optional(_str()), "a voice ID (no spaces)"),
        tts=TtsConfig(
            stability=tts.opt_number("stability", 0.0, 1.0, "a number"),
            similarity_boost=tts.opt_number("similarity_boost", 0.0, 1.0, "a number"),
            speed=tts.opt_number("speed", 0.7, 5.0, "a speed multiplier"),
            model_id=tts.read("model_id", None, _optional(_str()), "a TTS model ID"),
        ),
        llm=LlmConfig(
            temperature=llm.opt_number("temperature", 0.0, 2.0, "a number"),
            max_tokens=llm.opt_integer("max_tokens", 1, 100_000, "an integer"),
        ),
        dynamic_variables=_dynamic_variables(r),
        user_id=r.text("user_id"),
    )


def _dynamic_variables(r: _Reader) -> Mapping[str, DynamicValue]:
    found: dict[str, DynamicValue] = {}
    for name, key_path, raw in r.entries("dynamic_variables"):
        if not _NAME.fullmatch(name):
            r.ctx.add(key_path, "invalid variable name: expected letters, digits and _")
        elif name.startswith("system__"):
            r.ctx.add(key_path, "the system__ prefix is reserved for the platform's variables")
        else:
            try:
                found[name] = _dynamic_value(raw)
            except _Invalid:
                r.ctx.add(key_path, f"expected a string, number or boolean, got {_show(raw)}")
    return MappingProxyType(found)


def _device(raw: object) -> str | int:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    return _str(None)(raw)


_DEVICE_EXPECTED = "an ALSA device name or a PortAudio device index (>= 0)"


def _audio(r: _Reader) -> AudioConfig:
    d, i, o = AudioConfig(), r.section("input"), r.section("output")
    rate, hz = "an integer sample rate in Hz", (8000, 192_000)
    backend = r.choice("backend", d.backend, AUDIO_BACKENDS)
    config = AudioConfig(
        backend=backend,
        input=AudioInputConfig(
            device=i.read("device", d.input.device, _device, _DEVICE_EXPECTED),
            rate=i.opt_integer("rate", *hz, rate),
            file=i.read("file", d.input.file, _optional(_path), "a WAV file path"),
            gain_db=i.number("gain_db", d.input.gain_db, -30.0, 30.0, "a gain in dB"),
            chunk_ms=i.integer("chunk_ms", d.input.chunk_ms, 10, 100, "an integer number of ms"),
        ),
        output=AudioOutputConfig(
            device=o.read("device", d.output.device, _device, _DEVICE_EXPECTED),
            rate=o.opt_integer("rate", *hz, rate),
            file=o.read("file", d.output.file, _optional(_path), "a WAV file path"),
            volume=o.number("volume", d.output.volume, 0.0, 1.0, "a volume"),
            jitter_ms=o.integer("jitter_ms", d.output.jitter_ms, 0, 500, "an integer number of ms"),
        ),
        half_duplex=r.flag("half_duplex", d.half_duplex),
        earcons=r.flag("earcons", d.earcons),
    )
    if backend == "wav":
        for device, sub in (("input", config.input), ("output", config.output)):
            if sub.file is None and not r.ctx.failed(f"audio.{device}.file"):
                r.ctx.add(f"audio.{device}.file", "required when audio.backend is wav")
    return config


def _gpio(r: _Reader) -> GpioConfig:
    d, b = GpioConfig(), r.section("button")
    bcm = f"a BCM pin number (0-{MAX_BCM_PIN}) or null"
    button = ButtonConfig(
        pin=b.read("pin", d.button.pin, _optional(_int(0, MAX_BCM_PIN)), bcm),
        mode=b.choice("mode", d.button.mode, BUTTON_MODES),
        pull_up=b.flag("pull_up", d.button.pull_up),
        bounce_ms=b.integer("bounce_ms", d.button.bounce_ms, 0, 500, "an integer number of ms"),
        long_press_s=b.number("long_press_s", d.button.long_press_s, 0.3, 10.0, "seconds"),
        double_press_s=b.number("double_press_s", d.button.double_press_s, 0.1, 2.0, "seconds"),
        long_press_action=b.choice(
            "long_press_action", d.button.long_press_action, ("hangup", "none")
        ),
        double_press_action=b.choice(
            "double_press_action", d.button.double_press_action, ("mute", "none")
        ),
    )
    return GpioConfig(
        pin_factory=r.read(
            "pin_factory",
            None,
            _optional(_choice(PIN_FACTORIES)),
            "null or one of " + ", ".join(PIN_FACTORIES),
        ),
        button=button,
        leds=_leds(r.section("leds"), button.pin),
        keyboard=r.flag("keyboard", d.keyboard),
    )


def _leds(r: _Reader, button_pin: int | None) -> LedConfig:
    d = LedConfig()
    kind = r.choice("kind", d.kind, LED_KINDS)
    names = LED_PIN_NAMES[kind]
    pins: dict[str, int] = {}
    used = {button_pin: "gpio.button.pin"} if button_pin is not None else {}
    for name, key_path, raw in r.entries("pins"):
        if name not in names:
            expected = f"(expected {', '.join(names) or 'no pins'})"
            r.ctx.add(
                key_path, f"unknown LED for kind {kind} {expected}{_did_you_mean(name, names)}"
            )
        elif isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= MAX_BCM_PIN:
            r.ctx.add(key_path, f"expected a BCM pin number (0-{MAX_BCM_PIN}), got {_show(raw)}")
        elif raw in used and (kind != "per_state" or used[raw] == "gpio.button.pin"):
            r.ctx.add(key_path, f"BCM pin {raw} is already used by {used[raw]}")
        else:
            pins[name] = raw
            used.setdefault(raw, key_path)
    missing = [n for n in names if n not in pins and not r.ctx.failed(r.key(f"pins.{n}"))]
    if kind == "rgb" and pins and missing:
        r.ctx.add(
            r.key("pins"), f"kind rgb needs red, green and blue; missing {', '.join(missing)}"
        )
    return LedConfig(
        kind=kind,
        pins=MappingProxyType(pins),
        active_high=r.flag("active_high", d.active_high),
        patterns=_patterns(r),
    )


def _patterns(r: _Reader) -> Mapping[str, LedPattern]:
    patterns = dict(DEFAULT_LED_PATTERNS)
    for state, key_path, raw in r.entries("patterns"):
        if state not in patterns:
            r.ctx.add(key_path, f"unknown state{_did_you_mean(state, LED_STATES)}")
            continue
        p, d = _Reader(r.ctx, key_path, raw), patterns[state]
        patterns[state] = LedPattern(
            mode=p.choice("mode", d.mode, LED_MODES),
            brightness=p.number("brightness", d.brightness, 0.0, 1.0, "a brightness"),
            color=p.read("color", d.color, _color, '"#rrggbb" or [red, green, blue] (each 0-1)'),
            period_s=p.number("period_s", d.period_s, 0.05, 60.0, "seconds"),
        )
    return MappingProxyType(patterns)


def _control(r: _Reader) -> ControlConfig:
    d = ControlConfig()
    return ControlConfig(
        socket=r.read("socket", d.socket, _path, "a socket path"),
        mode=r.read("mode", d.mode, _file_mode, 'a file mode such as 0o660 or "0660" (<= 0o777)'),
    )


def _session(r: _Reader) -> SessionConfig:
    d, s = SessionConfig(), "seconds"
    config = SessionConfig(
        idle_timeout=r.number("idle_timeout", d.idle_timeout, 1, 3600, s),
        max_duration=r.number("max_duration", d.max_duration, 10, 7200, s),
        always_connected=r.flag("always_connected", d.always_connected),
        connect_timeout=r.number("connect_timeout", d.connect_timeout, 1, 120, s),
        stall_timeout=r.number("stall_timeout", d.stall_timeout, 2, 120, s),
        backoff_initial=r.number("backoff_initial", d.backoff_initial, 0.05, 60, s),
        backoff_max=r.number("backoff_max", d.backoff_max, 0.05, 3600, s),
    )
    if config.backoff_max < config.backoff_initial and not r.ctx.failed(
        "session.backoff_initial", "session.backoff_max"
    ):
        r.ctx.add("session.backoff_max", "must be at least session.backoff_initial")
    return config


def _tools(r: _Reader) -> ToolsConfig:
    d, timeout = ToolsConfig(), ("timeout", 10.0, 0.1, 300, "seconds")
    owners: dict[str, str] = {}  # tool name -> key path that defined it

    def claim(name: str, key_path: str) -> bool:
        if not _NAME.fullmatch(name):
            r.ctx.add(key_path, "invalid tool name: expected letters, digits and _")
        elif name in owners:
            r.ctx.add(key_path, f"tool {name!r} is already defined by {owners[name]}")
        else:
            owners[name] = key_path
            return True
        return False

    builtins = r.read("builtins", d.builtins, _builtin_list, "a list of built-in tool names")
    for index, name in enumerate(builtins):
        if name not in BUILTIN_TOOLS:
            hint = _did_you_mean(name, BUILTIN_TOOLS) or f" (known: {', '.join(BUILTIN_TOOLS)})"
            r.ctx.add(f"tools.builtins[{index}]", f"unknown built-in tool {name!r}{hint}")
        else:
            claim(name, f"tools.builtins[{index}]")
    commands: dict[str, CommandToolConfig] = {}
    for name, key_path, raw in r.entries("commands"):
        c = _Reader(r.ctx, key_path, raw)
        tool = CommandToolConfig(
            name=name,
            command=c.read(
                "command", (), _argv, "a list [/absolute/program, args...]", required=True
            ),
            timeout=c.number(*timeout),
            description=c.read("description", "", _str(None, empty=True), "a string"),
        )
        if claim(name, key_path):
            commands[name] = tool
    python: dict[str, PythonToolConfig] = {}
    for name, key_path, raw in r.entries("python"):
        p = _Reader(r.ctx, key_path, raw)
        target = p.read("target", "", _str(_PY_TARGET), '"package.module:function"', required=True)
        py_tool = PythonToolConfig(name=name, target=target, timeout=p.number(*timeout))
        if claim(name, key_path):
            python[name] = py_tool
    kept = tuple(n for n in builtins if n in BUILTIN_TOOLS)
    return ToolsConfig(kept, MappingProxyType(commands), MappingProxyType(python))


def _builtin_list(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        raise _Invalid
    return tuple(raw)


def _logging(r: _Reader) -> LoggingConfig:
    d = LoggingConfig()
    return LoggingConfig(
        level=r.choice("level", d.level, LOG_LEVELS),
        journal=r.read("journal", d.journal, _journal, "auto, true or false"),
    )


def parse_config(data: object, source: str = "<config>") -> Config:
    """Validate already-parsed YAML (a mapping) into a Config.

    Raises ConfigProblems listing every problem, each naming its key path. ``source`` names the
    file in the exception. An empty document (None) counts as an empty mapping.
    """
    if data is not None and not isinstance(data, Mapping):
        sections = "agent, audio, gpio, control, session, tools, logging"
        message = f"expected a mapping of sections ({sections}) at the top level, got {_show(data)}"
        raise ConfigProblems(source, [ConfigError("", message)])
    ctx = _Context()
    r = _Reader(ctx, "", data)
    config = Config(
        agent=_agent(r.section("agent")),
        audio=_audio(r.section("audio")),
        gpio=_gpio(r.section("gpio")),
        control=_control(r.section("control")),
        session=_session(r.section("session")),
        tools=_tools(r.section("tools")),
        logging=_logging(r.section("logging")),
    )
    ctx.finish()
    if ctx.problems:
        raise ConfigProblems(source, ctx.problems)
    return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        first_seen: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in first_seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found {key!r} twice (first on line {first_seen[key]})",
                    key_node.start_mark,
                )
            if isinstance(key, Hashable):
                first_seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def config_path(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] = os.environ
) -> Path:
    """The config file to read: ``path``, else ``$PIAGENT_CONFIG``, else the default."""
    if path is not None:
        return Path(path)
    return Path(env.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the config file (see config_path); raises ConfigProblems."""
    source = config_path(path)
    name = str(source)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        problem = ConfigError("", f"cannot read the config file: {exc.strerror or exc}")
        raise ConfigProblems(name, [problem]) from exc
    except UnicodeDecodeError as exc:
        problem = ConfigError("", f"not UTF-8 text (byte {exc.start})")
        raise ConfigProblems(name, [problem]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: safe
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = ConfigError("", f"YAML syntax error at {where}: {exc.problem or exc.context}")
        raise ConfigProblems(name, [problem]) from exc
    except yaml.YAMLError as exc:
        raise ConfigProblems(name, [ConfigError("", f"YAML error: {exc}")]) from exc
    return parse_config(data, name)


def check_config(path: str | os.PathLike[str] | None = None) -> Config:
    """``piagent check-config``: load_config, plus the configured API key file must be usable."""
    config = load_config(path)
    if config.agent.api_key_file is not None:
        try:
            resolve_api_key(config.agent, {})
        except ConfigError as exc:
            raise ConfigProblems(str(config_path(path)), [exc]) from exc
    return config


def resolve_api_key(agent: AgentConfig, env: Mapping[str, str] = os.environ) -> Secret | None:
    """The ElevenLabs API key, or None (a public agent needs none).

    From the first of: the file ``agent.api_key_file``; ``$ELEVENLABS_API_KEY``; the systemd
    credential ``$CREDENTIALS_DIRECTORY/elevenlabs_api_key``. Whitespace around it is dropped.
    Raises ConfigError (naming the key or file, never the secret) when the chosen source is
    unreadable or empty; warns when ``agent.api_key_file`` is readable by group or others.
    """
    if agent.api_key_file is not None:
        return _read_key_file(agent.api_key_file, "agent.api_key_file", check_mode=True)
    value = env.get(API_KEY_ENV, "").strip()
    if value:
        if not _NO_SPACE.fullmatch(value):
            raise ConfigError(f"${API_KEY_ENV}", "expected the API key alone, without spaces")
        return Secret(value)
    credentials = env.get("CREDENTIALS_DIRECTORY")
    if credentials and (path := Path(credentials, API_KEY_CREDENTIAL)).exists():
        # The unit's SetCredential= fallback is a lone newline when /etc/piagent/api_key does
        # not exist: a blank credential means "no key" (a public agent), not an error.
        try:
            blank = not path.read_bytes().strip()
        except OSError:
            blank = False  # reported with its reason by _read_key_file
        if blank:
            return None
        return _read_key_file(path, "", check_mode=False)
    return None


def _read_key_file(path: Path, key_path: str, *, check_mode: bool) -> Secret:
    where = f"the API key file {path}"
    try:
        with path.open("rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            data = file.read(65536)
    except OSError as exc:
        raise ConfigError(key_path, f"cannot read {where}: {exc.strerror or exc}") from None
    if check_mode and mode & (stat.S_IRGRP | stat.S_IROTH):
        logger.warning(
            "%s is readable by group or others (mode %04o); run: chmod 600 %s",
            where,
            stat.S_IMODE(mode),
            path,
        )
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(key_path, f"{where} is not UTF-8 text") from None  # no key bytes
    if not value:
        raise ConfigError(key_path, f"{where} is empty")
    if not _NO_SPACE.fullmatch(value):
        raise ConfigError(key_path, f"{where} must hold the key alone (found spaces or lines)")
    return Secret(value)
