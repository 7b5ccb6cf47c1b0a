"""The configuration schema: one frozen dataclass per section, every key with its default.

Owns what a valid configuration is made of: each field's type, default, unit and range
(documented beside it), the file locations and environment names (``DEFAULT_CONFIG_PATH``,
``CONFIG_ENV``, ``API_KEY_ENV``, ``API_KEY_CREDENTIAL``), the allowed words of each choice, the
device states the LEDs show (``LED_STATES``) and their built-in patterns. Mappings inside the
dataclasses are read-only ``types.MappingProxyType`` objects; lists are tuples. Relative paths
are kept as written (relative to the daemon's working directory).

Validation lives in ``sections``; nothing here reads a file or the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias

DEFAULT_CONFIG_PATH: Final = Path("/etc/piagent/config.yaml")
CONFIG_ENV: Final = "PIAGENT_CONFIG"
API_KEY_ENV: Final = "ELEVENLABS_API_KEY"
API_KEY_CREDENTIAL: Final = "elevenlabs_api_key"  # file name in $CREDENTIALS_DIRECTORY

AudioBackend: TypeAlias = Literal["pyaudio", "wav"]
AecEngine: TypeAlias = Literal["auto", "speex", "webrtc"]
PinFactory: TypeAlias = Literal["mock", "lgpio", "rpigpio", "pigpio", "native"]
ButtonMode: TypeAlias = Literal["hold", "toggle", "tap"]
LedKind: TypeAlias = Literal["single", "per_state", "pwm", "rgb", "none"]
LedMode: TypeAlias = Literal["solid", "blink", "pulse", "off"]
LogLevel: TypeAlias = Literal["debug", "info", "warning", "error"]
WakeEngine: TypeAlias = Literal["micro", "open"]
DynamicValue: TypeAlias = str | int | float | bool
Color: TypeAlias = tuple[float, float, float]  # red, green, blue, each 0.0-1.0

AUDIO_BACKENDS: Final[tuple[AudioBackend, ...]] = ("pyaudio", "wav")
# auto: the best measured engine that loads here (speex, then webrtc); see piagent/audio/aec.py.
AEC_ENGINE_CHOICES: Final[tuple[AecEngine, ...]] = ("auto", "speex", "webrtc")
PIN_FACTORIES: Final[tuple[PinFactory, ...]] = ("mock", "lgpio", "rpigpio", "pigpio", "native")
BUTTON_MODES: Final[tuple[ButtonMode, ...]] = ("hold", "toggle", "tap")
LED_KINDS: Final[tuple[LedKind, ...]] = ("single", "per_state", "pwm", "rgb", "none")
LED_MODES: Final[tuple[LedMode, ...]] = ("solid", "blink", "pulse", "off")
LOG_LEVELS: Final[tuple[LogLevel, ...]] = ("debug", "info", "warning", "error")
# micro: pymicro-wakeword (microWakeWord); open: pyopen-wakeword (openWakeWord).
WAKE_ENGINES: Final[tuple[WakeEngine, ...]] = ("micro", "open")
# The models each engine's package bundles (pymicro-wakeword 2.5, pyopen-wakeword 1.1); a
# model of one's own is a file path with the engine's suffix. Neither bundles a "stop" model.
WAKE_MODELS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "micro": ("okay_nabu", "hey_jarvis", "hey_mycroft", "alexa"),
        "open": ("okay_nabu", "hey_jarvis", "hey_mycroft", "alexa", "hey_rhasspy"),
    }
)
WAKE_MODEL_SUFFIXES: Final[Mapping[str, str]] = MappingProxyType(
    {"micro": ".json", "open": ".tflite"}
)
# The device states the LEDs show (``piagent ctl status``'s ``state``).
LED_STATES: Final = (
    "booting",
    "ready",
    "connecting",
    "waiting",
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
    # How hard a reasoning LLM thinks: one of REASONING_EFFORTS; only some models take it.
    reasoning_effort: str | None = None
    # The agent's procedures available in the conversation; () = none of them. The agent
    # must allow it (enable_procedure_ids_from_client); None: not sent.
    procedure_ids: tuple[str, ...] | None = None
    tts: TtsConfig = field(default_factory=TtsConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    # {{name}} placeholders filled by the agent; a read-only mapping name -> value.
    dynamic_variables: Mapping[str, DynamicValue] = field(default_factory=_frozen)
    user_id: str | None = None  # end-user ID reported to the agent's owner


@dataclass(frozen=True, slots=True)
class EchoPathConfig:
    """``audio.input.echo``: a simulated speaker-to-mic echo path (wav backend only): the mic
    hears what the speaker played through it, added to its file (piagent/audio/room.py)."""

    delay_ms: float = 50.0  # bulk delay from speaker to mic in ms (0-1000)
    gain_db: float = -10.0  # echo level relative to what played, in dB (-60-20)
    impulse_response: Path | None = None  # room response, 16-bit mono WAV; None: pure delay
    drive: float = 0.0  # the speaker's soft clipping (0 = linear, 0-4)


@dataclass(frozen=True, slots=True)
class AudioInputConfig:
    """``audio.input``: the microphone."""

    device: str | int = "default"  # ALSA device name, or PortAudio device index (>= 0)
    rate: int | None = None  # capture rate in Hz (8000-192000); None: negotiate
    file: Path | None = None  # WAV file read in real time (wav backend only)
    gain_db: float = 0.0  # software gain in dB (-30-30)
    chunk_ms: int = 20  # capture chunk in ms (10-100)
    echo: EchoPathConfig | None = None  # wav backend only; None: the mic hears no speaker


@dataclass(frozen=True, slots=True)
class AudioOutputConfig:
    """``audio.output``: the speaker."""

    device: str | int = "default"  # ALSA device name, or PortAudio device index (>= 0)
    rate: int | None = None  # playback rate in Hz (8000-192000); None: negotiate
    file: Path | None = None  # WAV file written in real time (wav backend only)
    volume: float = 0.8  # initial software volume, 0.0-1.0
    jitter_ms: int = 60  # jitter buffer in ms (0-500)


@dataclass(frozen=True, slots=True)
class AecConfig:
    """``audio.aec``: in-process acoustic echo cancellation (full duplex on an open speaker)."""

    enabled: bool = False
    engine: AecEngine = "auto"  # one of AEC_ENGINE_CHOICES
    tail_ms: int = 128  # echo path the filter models after alignment, in ms (32-512)
    delay_ms: float | None = None  # speaker-to-mic latency in ms (0-500); None: measured
    suppress_db: int = -40  # residual echo suppression in dB (-90-0; speex only)
    noise_suppression: bool = False  # the engine's noise suppressor as well


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """``audio``: devices and how they are used."""

    backend: AudioBackend = "pyaudio"  # pyaudio (ALSA/PortAudio devices) | wav (files)
    input: AudioInputConfig = field(default_factory=AudioInputConfig)
    output: AudioOutputConfig = field(default_factory=AudioOutputConfig)
    half_duplex: bool = True  # mic sends silence while the agent speaks, unless button held
    aec: AecConfig = field(default_factory=AecConfig)
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
        "waiting": LedPattern("pulse", 0.6, (1.0, 0.75, 0.0), 2.0),  # amber, slow
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
class WakeConfig:
    """``wake``: the spoken wake word (a press) and stop word (an interruption), beside the button.

    A model is one of WAKE_MODELS[engine] (bundled), or a file path ending in the engine's
    WAKE_MODEL_SUFFIXES (micro: the model's .json beside its .tflite; open: a .tflite).
    """

    engine: WakeEngine = "micro"  # micro (pymicro-wakeword) | open (pyopen-wakeword)
    model: str = "okay_nabu"  # the wake word's model
    stop_model: str | None = None  # the stop word's model; None: no stop word
    # Detection probability (0.0-1.0); None: the model's own (micro: its .json's cutoff; open: 0.5)
    threshold: float | None = None
    stop_threshold: float | None = None
    refractory_s: float = 2.0  # seconds (0.2-30) after a detection before that word counts again


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
    wake: WakeConfig | None = None  # None: no wake word (section absent, or enabled: false)
