"""Validation of the config file's sections: plain YAML data in, a ``Config`` out.

Owns ``parse_config`` and one reader function per section (``agent``, ``audio``, ``gpio`` with
its button and LEDs, ``control``, ``session``, ``tools``, ``logging``, ``wake``): which keys
each section has, each key's converter, range and the words its problem message uses, and the
checks that span keys (a wav backend needs both files, an echo path needs the wav backend, an LED
pin the button uses, backoff limits, tool names unique across the three kinds, a stop word
other than the wake word). Every problem is collected in one pass and raised together as one
``ConfigProblems`` (exit status 78), each naming its dotted key path.

Pure: no file or environment reads (``loader`` reads the file).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from piagent.config.readers import (
    LANGUAGE,
    MISSING,
    NAME,
    PY_TARGET,
    Context,
    Convert,
    Invalid,
    Reader,
    argv,
    color,
    did_you_mean,
    dynamic_value,
    file_mode,
    file_path,
    id_list,
    int_range,
    journal_setting,
    one_of,
    optional,
    show,
    string,
    url,
)
from piagent.config.schema import (
    AEC_ENGINE_CHOICES,
    AUDIO_BACKENDS,
    BUILTIN_TOOLS,
    BUTTON_MODES,
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
    AgentConfig,
    AudioConfig,
    AudioInputConfig,
    AudioOutputConfig,
    ButtonConfig,
    CommandToolConfig,
    Config,
    ControlConfig,
    DynamicValue,
    EchoPathConfig,
    GpioConfig,
    LedConfig,
    LedPattern,
    LlmConfig,
    LoggingConfig,
    PythonToolConfig,
    SessionConfig,
    ToolsConfig,
    TtsConfig,
    WakeConfig,
)
from piagent.errors import ConfigError, ConfigProblems
from piagent.protocol.overrides import REASONING_EFFORTS

__all__ = ["parse_config"]


def _agent(r: Reader) -> AgentConfig:
    d = AgentConfig(agent_id="")
    tts, llm = r.section("tts"), r.section("llm")
    expected_id = "the agent's ID from the ElevenLabs dashboard (a string without spaces)"
    raw_id = r.data.get("agent_id", MISSING)
    agent_id = d.agent_id
    if raw_id is None or raw_id is MISSING:
        # The shipped example has agent_id: null: say what to do, not which type is expected.
        r.seen.add("agent_id")
        if r.valid:
            said = "got null" if raw_id is None else "missing"
            required = "required: set it to your agent's ID (ElevenLabs dashboard)"
            r.ctx.add(r.key("agent_id"), f"{required}; {said}")
    else:
        agent_id = r.read("agent_id", d.agent_id, string(), expected_id, required=True)
    return AgentConfig(
        agent_id=agent_id,
        server=r.read(
            "server",
            d.server,
            url(("ws", "wss"), bare=True),
            "a ws:// or wss:// URL with a host and no path, e.g. wss://api.elevenlabs.io",
        ),
        api_base=r.read(
            "api_base",
            d.api_base,
            url(("http", "https"), bare=False),
            "an http:// or https:// URL without a query, e.g. https://api.elevenlabs.io",
        ),
        api_key_file=r.read("api_key_file", None, optional(file_path), "a file path"),
        prompt=r.text("prompt"),
        first_message=r.text("first_message", "a string", empty=True),
        language=r.read(
            "language", None, optional(string(LANGUAGE)), "a language code such as en or pt-br"
        ),
        voice_id=r.read("voice_id", None, optional(string()), "a voice ID (no spaces)"),
        reasoning_effort=r.read(
            "reasoning_effort",
            None,
            optional(one_of(REASONING_EFFORTS)),
            "null or one of " + ", ".join(REASONING_EFFORTS),
        ),
        procedure_ids=r.read(
            "procedure_ids",
            None,
            optional(id_list),
            "null or a list of procedure IDs (no spaces; [] for none of them)",
        ),
        tts=TtsConfig(
            stability=tts.opt_number("stability", 0.0, 1.0, "a number"),
            similarity_boost=tts.opt_number("similarity_boost", 0.0, 1.0, "a number"),
            speed=tts.opt_number("speed", 0.7, 5.0, "a speed multiplier"),
            model_id=tts.read("model_id", None, optional(string()), "a TTS model ID"),
        ),
        llm=LlmConfig(
            temperature=llm.opt_number("temperature", 0.0, 2.0, "a number"),
            max_tokens=llm.opt_integer("max_tokens", 1, 100_000, "an integer"),
        ),
        dynamic_variables=_dynamic_variables(r),
        user_id=r.text("user_id"),
    )


def _dynamic_variables(r: Reader) -> Mapping[str, DynamicValue]:
    found: dict[str, DynamicValue] = {}
    for name, key_path, raw in r.entries("dynamic_variables"):
        if not NAME.fullmatch(name):
            r.ctx.add(key_path, "invalid variable name: expected letters, digits and _")
        elif name.startswith("system__"):
            r.ctx.add(key_path, "the system__ prefix is reserved for the platform's variables")
        else:
            try:
                found[name] = dynamic_value(raw)
            except Invalid:
                r.ctx.add(key_path, f"expected a string, number or boolean, got {show(raw)}")
    return MappingProxyType(found)


def _device(raw: object) -> str | int:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    return string(None)(raw)


_DEVICE_EXPECTED = "an ALSA device name or a PortAudio device index (>= 0)"


def _audio(r: Reader) -> AudioConfig:
    d, i, o = AudioConfig(), r.section("input"), r.section("output")
    rate, hz = "an integer sample rate in Hz", (8000, 192_000)
    backend = r.choice("backend", d.backend, AUDIO_BACKENDS)
    config = AudioConfig(
        backend=backend,
        input=AudioInputConfig(
            device=i.read("device", d.input.device, _device, _DEVICE_EXPECTED),
            rate=i.opt_integer("rate", *hz, rate),
            file=i.read("file", d.input.file, optional(file_path), "a WAV file path"),
            gain_db=i.number("gain_db", d.input.gain_db, -30.0, 30.0, "a gain in dB"),
            chunk_ms=i.integer("chunk_ms", d.input.chunk_ms, 10, 100, "an integer number of ms"),
            echo=_echo_path(i),
        ),
        output=AudioOutputConfig(
            device=o.read("device", d.output.device, _device, _DEVICE_EXPECTED),
            rate=o.opt_integer("rate", *hz, rate),
            file=o.read("file", d.output.file, optional(file_path), "a WAV file path"),
            volume=o.number("volume", d.output.volume, 0.0, 1.0, "a volume"),
            jitter_ms=o.integer("jitter_ms", d.output.jitter_ms, 0, 500, "an integer number of ms"),
        ),
        half_duplex=r.flag("half_duplex", d.half_duplex),
        aec=_aec(r.section("aec")),
        earcons=r.flag("earcons", d.earcons),
    )
    if backend == "wav":
        for device, sub in (("input", config.input), ("output", config.output)):
            if sub.file is None and not r.ctx.failed(f"audio.{device}.file"):
                r.ctx.add(f"audio.{device}.file", "required when audio.backend is wav")
    elif config.input.echo is not None:
        r.ctx.add("audio.input.echo", "a simulated echo path needs audio.backend: wav")
    return config


def _echo_path(i: Reader) -> EchoPathConfig | None:
    """``audio.input.echo``: absent or null for none."""
    e = i.section("echo")
    if i.data.get("echo") is None:
        return None
    d, ms = EchoPathConfig(), "a number of ms"
    return EchoPathConfig(
        delay_ms=e.number("delay_ms", d.delay_ms, 0.0, 1000.0, ms),
        gain_db=e.number("gain_db", d.gain_db, -60.0, 20.0, "a gain in dB"),
        impulse_response=e.read(
            "impulse_response", None, optional(file_path), "a WAV file path (16-bit mono)"
        ),
        drive=e.number("drive", d.drive, 0.0, 4.0, "a soft-clipping drive"),
    )


def _aec(a: Reader) -> AecConfig:
    d = AecConfig()
    return AecConfig(
        enabled=a.flag("enabled", d.enabled),
        engine=a.choice("engine", d.engine, AEC_ENGINE_CHOICES),
        tail_ms=a.integer("tail_ms", d.tail_ms, 32, 512, "an integer number of ms"),
        delay_ms=a.opt_number("delay_ms", 0.0, 500.0, "a latency in ms, or null to measure it"),
        suppress_db=a.integer("suppress_db", d.suppress_db, -90, 0, "an integer number of dB"),
        noise_suppression=a.flag("noise_suppression", d.noise_suppression),
    )


def _gpio(r: Reader) -> GpioConfig:
    d, b = GpioConfig(), r.section("button")
    bcm = f"a BCM pin number (0-{MAX_BCM_PIN}) or null"
    button = ButtonConfig(
        pin=b.read("pin", d.button.pin, optional(int_range(0, MAX_BCM_PIN)), bcm),
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
            optional(one_of(PIN_FACTORIES)),
            "null or one of " + ", ".join(PIN_FACTORIES),
        ),
        button=button,
        leds=_leds(r.section("leds"), button.pin),
        keyboard=r.flag("keyboard", d.keyboard),
    )


def _leds(r: Reader, button_pin: int | None) -> LedConfig:
    d = LedConfig()
    kind = r.choice("kind", d.kind, LED_KINDS)
    names = LED_PIN_NAMES[kind]
    pins: dict[str, int] = {}
    used = {button_pin: "gpio.button.pin"} if button_pin is not None else {}
    for name, key_path, raw in r.entries("pins"):
        if name not in names:
            expected = f"(expected {', '.join(names) or 'no pins'})"
            r.ctx.add(
                key_path, f"unknown LED for kind {kind} {expected}{did_you_mean(name, names)}"
            )
        elif isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= MAX_BCM_PIN:
            r.ctx.add(key_path, f"expected a BCM pin number (0-{MAX_BCM_PIN}), got {show(raw)}")
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


def _patterns(r: Reader) -> Mapping[str, LedPattern]:
    patterns = dict(DEFAULT_LED_PATTERNS)
    for state, key_path, raw in r.entries("patterns"):
        if state not in patterns:
            r.ctx.add(key_path, f"unknown state{did_you_mean(state, LED_STATES)}")
            continue
        p, d = Reader(r.ctx, key_path, raw), patterns[state]
        patterns[state] = LedPattern(
            mode=p.choice("mode", d.mode, LED_MODES),
            brightness=p.number("brightness", d.brightness, 0.0, 1.0, "a brightness"),
            color=p.read("color", d.color, color, '"#rrggbb" or [red, green, blue] (each 0-1)'),
            period_s=p.number("period_s", d.period_s, 0.05, 60.0, "seconds"),
        )
    return MappingProxyType(patterns)


def _control(r: Reader) -> ControlConfig:
    d = ControlConfig()
    return ControlConfig(
        socket=r.read("socket", d.socket, file_path, "a socket path"),
        mode=r.read("mode", d.mode, file_mode, 'a file mode such as 0o660 or "0660" (<= 0o777)'),
    )


def _session(r: Reader) -> SessionConfig:
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


def _tools(r: Reader) -> ToolsConfig:
    d, timeout = ToolsConfig(), ("timeout", 10.0, 0.1, 300, "seconds")
    owners: dict[str, str] = {}  # tool name -> key path that defined it

    def claim(name: str, key_path: str) -> bool:
        if not NAME.fullmatch(name):
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
            hint = did_you_mean(name, BUILTIN_TOOLS) or f" (known: {', '.join(BUILTIN_TOOLS)})"
            r.ctx.add(f"tools.builtins[{index}]", f"unknown built-in tool {name!r}{hint}")
        else:
            claim(name, f"tools.builtins[{index}]")
    commands: dict[str, CommandToolConfig] = {}
    for name, key_path, raw in r.entries("commands"):
        c = Reader(r.ctx, key_path, raw)
        tool = CommandToolConfig(
            name=name,
            command=c.read(
                "command", (), argv, "a list [/absolute/program, args...]", required=True
            ),
            timeout=c.number(*timeout),
            description=c.read("description", "", string(None, empty=True), "a string"),
        )
        if claim(name, key_path):
            commands[name] = tool
    python: dict[str, PythonToolConfig] = {}
    for name, key_path, raw in r.entries("python"):
        p = Reader(r.ctx, key_path, raw)
        target = p.read("target", "", string(PY_TARGET), '"package.module:function"', required=True)
        py_tool = PythonToolConfig(name=name, target=target, timeout=p.number(*timeout))
        if claim(name, key_path):
            python[name] = py_tool
    kept = tuple(n for n in builtins if n in BUILTIN_TOOLS)
    return ToolsConfig(kept, MappingProxyType(commands), MappingProxyType(python))


def _builtin_list(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        raise Invalid
    return tuple(raw)


def _logging(r: Reader) -> LoggingConfig:
    d = LoggingConfig()
    return LoggingConfig(
        level=r.choice("level", d.level, LOG_LEVELS),
        journal=r.read("journal", d.journal, journal_setting, "auto, true or false"),
    )


def _wake_model(engine: str) -> Convert[str]:
    def convert(raw: object) -> str:
        if not isinstance(raw, str):
            raise Invalid
        if raw in WAKE_MODELS[engine] or (raw.endswith(WAKE_MODEL_SUFFIXES[engine]) and raw):
            return raw
        if raw == "stop":
            raise Invalid(" (no wake-word package bundles a stop model: name a model file)")
        raise Invalid(did_you_mean(raw, WAKE_MODELS[engine]))

    return convert


def _wake(r: Reader, *, present: bool) -> WakeConfig | None:
    """``wake``: None when the section is absent or null, or says ``enabled: false``."""
    d = WakeConfig()
    enabled = r.flag("enabled", True)
    engine = r.choice("engine", d.engine, WAKE_ENGINES)
    models = f"one of {', '.join(WAKE_MODELS[engine])} (bundled with engine {engine})"
    models += f", or a model file path ending in {WAKE_MODEL_SUFFIXES[engine]}"
    config = WakeConfig(
        engine=engine,
        model=r.read("model", d.model, _wake_model(engine), models),
        stop_model=r.read("stop_model", None, optional(_wake_model(engine)), "null or " + models),
        threshold=r.opt_number("threshold", 0.0, 1.0, "a probability"),
        stop_threshold=r.opt_number("stop_threshold", 0.0, 1.0, "a probability"),
        refractory_s=r.number("refractory_s", d.refractory_s, 0.2, 30.0, "seconds"),
    )
    if config.stop_model is not None and config.stop_model == config.model:
        r.ctx.add(r.key("stop_model"), f"must differ from {r.key('model')}")
    return config if present and enabled else None


def parse_config(data: object, source: str = "<config>") -> Config:
    """Validate already-parsed YAML (a mapping) into a Config.

    Raises ConfigProblems listing every problem, each naming its key path. ``source`` names the
    file in the exception. An empty document (None) counts as an empty mapping.
    """
    if data is not None and not isinstance(data, Mapping):
        sections = "agent, audio, gpio, control, session, tools, logging, wake"
        message = f"expected a mapping of sections ({sections}) at the top level, got {show(data)}"
        raise ConfigProblems(source, [ConfigError("", message)])
    ctx = Context()
    r = Reader(ctx, "", data)
    config = Config(
        agent=_agent(r.section("agent")),
        audio=_audio(r.section("audio")),
        gpio=_gpio(r.section("gpio")),
        control=_control(r.section("control")),
        session=_session(r.section("session")),
        tools=_tools(r.section("tools")),
        logging=_logging(r.section("logging")),
        wake=_wake(
            r.section("wake"), present=isinstance(data, Mapping) and data.get("wake") is not None
        ),
    )
    ctx.finish()
    if ctx.problems:
        raise ConfigProblems(source, ctx.problems)
    return config
