"""The push-to-talk button and the status LEDs, over gpiozero.

Owns :class:`PushToTalk` (one gpiozero ``DigitalInputDevice`` whose raw edges become timed ``Edge``
events for the appliance's gesture recognizer, ``piagent.appliance.gestures``, which
``AgentClient`` runs: debouncing, the hold/toggle/tap modes and the long-press and
double-press gestures are decided there; the button remembers nothing),
:func:`button_options` (``gpio.button`` as the recognizer's settings), :class:`StatusLeds`
(the state each LED kind shows, and voice activity shown as brightness while listening),
:func:`follow` (the coroutine that keeps the LEDs in step with the client) and
:func:`make_pin_factory` (``gpio.pin_factory``). Devices take a ``pin_factory``; nothing is
opened at import time.

Threads: gpiozero calls ``when_pressed``/``when_released`` on a thread of its own (lgpio's
callback thread on a Pi, the caller of ``drive_low()`` with mock pins). That callback does one
thing: it stamps the edge with the runner's clock and hands it over with
``loop.call_soon_threadsafe(...)``, tolerating a closed loop at shutdown; every other line here
runs on the event loop, with no locks. The LEDs' blink, pulse and source threads and the
button's hold thread are gpiozero's own; they only touch their own pins.

Imports nothing from piagent at run time but ``appliance.gestures``, ``config`` and ``errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, TypeAlias

from gpiozero import LED, PWMLED, RGBLED, DigitalInputDevice
from gpiozero.pins.mock import MockFactory, MockPWMPin

from piagent.appliance.gestures import ButtonOptions, Edge, Input
from piagent.config import (
    LED_STATES,
    ButtonConfig,
    LedConfig,
    LedPattern,
    PinFactory,
)
from piagent.errors import ConfigError

logger = logging.getLogger(__name__)

Factory: TypeAlias = Any  # a gpiozero pin factory (gpiozero has no type hints)
# Where the button's and the keyboard's typed events go: ``AgentClient.handle_button``.
ButtonSink: TypeAlias = Callable[[Input], None]

# gpio.pin_factory -> (module, class) of the gpiozero factory, imported only when chosen.
_FACTORIES: Final[Mapping[str, tuple[str, str]]] = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory"),
    "native": ("gpiozero.pins.native", "NativeFactory"),
}
_PACKAGES: Final[Mapping[str, str]] = {
    "lgpio": "python3-lgpio (or pip install lgpio)",
    "rpigpio": "python3-rpi.gpio (or pip install RPi.GPIO)",
    "pigpio": "python3-pigpio and a running pigpiod",
    "native": "nothing, but it only runs on a Raspberry Pi",
}
VAD_FLOOR: Final = 0.3  # brightness share shown at vad_score 0 while listening
_WAVE_FPS: Final = 25  # steps per second of a dimmed blink or pulse (gpiozero's own rate)


def make_pin_factory(name: PinFactory | None, *, pwm: bool = False) -> Factory | None:
    """The gpiozero pin factory ``gpio.pin_factory`` names; None: gpiozero's default.

    ``mock`` gives a ``MockFactory`` whose pins do PWM when ``pwm`` (PWM or RGB LEDs). The
    others are imported here, not before: a factory that cannot be imported or started on
    this machine raises a ``ConfigError`` naming ``gpio.pin_factory`` that says what to do.
    """
    if name is None:
        return None
    if name == "mock":
        return MockFactory(pin_class=MockPWMPin if pwm else None)
    module_name, class_name = _FACTORIES[name]
    try:
        factory_class = getattr(importlib.import_module(module_name), class_name)
        return factory_class()
    except Exception as exc:  # ImportError, or the library's own "not a Pi" error
        raise ConfigError(
            "gpio.pin_factory",
            f"{name} is not available here ({type(exc).__name__}: {exc}); it needs "
            f"{_PACKAGES[name]}. Omit the key to let gpiozero choose, or use mock off the Pi",
        ) from exc


def needs_pwm(config: LedConfig) -> bool:
    """Whether these LEDs need PWM pins (so a mock factory must make ``MockPWMPin``)."""
    return config.kind in ("pwm", "rgb") and bool(config.pins)


def button_options(config: ButtonConfig) -> ButtonOptions:
    """``gpio.button``'s gesture settings, as the appliance's recognizer takes them."""
    return ButtonOptions(
        mode=config.mode,
        bounce_s=config.bounce_ms / 1000.0,
        long_press_s=config.long_press_s,
        double_press_s=config.double_press_s,
        long_press=config.long_press_action == "hangup",
        double_press=config.double_press_action == "mute",
    )


class PushToTalk:
    """The push-to-talk button's pin: every raw edge becomes one ``Edge``, timed by ``clock``
    (the runner's: ``AgentClient``'s is ``time.monotonic``) at the moment gpiozero reports
    it, and handed to ``sink`` on the event loop. What the edges mean is the appliance's
    business (``appliance.gestures``); nothing is remembered here.

    Create it on the event loop's thread (or pass ``loop``); ``close()`` releases the pin.
    """

    def __init__(
        self,
        config: ButtonConfig,
        sink: ButtonSink,
        *,
        clock: Callable[[], float] = time.monotonic,
        pin_factory: Factory | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if config.pin is None:
            raise ValueError("gpio.button.pin is null: there is no button to watch")
        self._sink = sink
        self._clock = clock
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._closed = False
        # pull_up: wired to ground, pressed when low; otherwise to 3V3, pressed when high.
        # gpiozero's bounce_time is left unset: mock pins ignore it; the recognizer's debounce
        # works everywhere. Long presses are timed by the runner, so the plain input device
        # will do: gpiozero's Button adds a hold thread that wakes ten times a second for as
        # long as the daemon runs.
        self._button = DigitalInputDevice(
            config.pin, pull_up=config.pull_up, pin_factory=pin_factory
        )
        self._button.when_activated = self._edge_pressed
        self._button.when_deactivated = self._edge_released

    def close(self) -> None:
        """Stop watching the pin and release it; edges still in flight are dropped."""
        if self._closed:
            return
        self._closed = True
        self._button.when_activated = None
        self._button.when_deactivated = None
        self._button.close()

    # --- gpiozero's thread -------------------------------------------------------------------

    def _edge_pressed(self) -> None:
        self._hand_over(True)

    def _edge_released(self) -> None:
        self._hand_over(False)

    def _hand_over(self, pressed: bool) -> None:
        edge = Edge(self._clock(), pressed)
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(self._deliver, edge)

    # --- the event loop ----------------------------------------------------------------------

    def _deliver(self, edge: Edge) -> None:
        if not self._closed:  # an edge queued before close() runs after it: dropped
            self._sink(edge)


def _wave(mode: str, brightness: float, period_s: float) -> tuple[Iterator[float], float]:
    """A dimmed blink or pulse as gpiozero ``source`` values and their ``source_delay``
    (``PWMLED.blink``/``pulse`` always reach full brightness)."""
    steps = max(2, round(period_s * _WAVE_FPS))
    if mode == "blink":
        half = steps // 2
        values = [brightness] * half + [0.0] * (steps - half)
    else:  # pulse: 0 up to brightness and back, as PWMLED.pulse does at full brightness
        values = [brightness * (1.0 - abs(2.0 * i / steps - 1.0)) for i in range(steps)]
    return itertools.cycle(values), period_s / steps


class StatusLeds:
    """Status LEDs: each state in ``LED_STATES`` shown with its ``LedPattern``.

    ``single``: one on/off LED (pulse blinks); ``per_state``: the state's LED shows its
    pattern, the others are off; ``pwm``: one dimmable LED; ``rgb``: one colour LED; ``none``
    (or no pins): nothing to drive. Starts showing ``booting``. Call from one thread.
    """

    def __init__(self, config: LedConfig, *, pin_factory: Factory | None = None) -> None:
        self._config = config
        self._kind = config.kind if config.pins else "none"
        self._state = ""
        self._closed = False
        # name (a key of config.pins, as ctl status reports it) -> LED, for plain LEDs.
        self._leds: dict[str, Any] = {}
        self._device: Any = None  # the one PWMLED or RGBLED
        pins, high = config.pins, config.active_high
        match self._kind:
            case "single":
                self._leds["led"] = LED(pins["led"], active_high=high, pin_factory=pin_factory)
            case "per_state":
                by_pin: dict[int, Any] = {}  # states may share a pin: one LED per pin
                for name, pin in pins.items():
                    if pin not in by_pin:
                        by_pin[pin] = LED(pin, active_high=high, pin_factory=pin_factory)
                    self._leds[name] = by_pin[pin]
            case "pwm":
                self._device = PWMLED(pins["led"], active_high=high, pin_factory=pin_factory)
            case "rgb":
                self._device = RGBLED(
                    pins["red"],
                    pins["green"],
                    pins["blue"],
                    active_high=high,
                    pin_factory=pin_factory,
                )
        self.show("booting")

    @property
    def state(self) -> str:
        """The state shown now."""
        return self._state

    @property
    def is_lit(self) -> bool:
        """Whether any LED is lit at this moment (a blinking one may be dark)."""
        return any(value > 0 for value in self.describe().values())

    def describe(self) -> dict[str, float]:
        """Each LED's current value (0-1), by its name in ``gpio.leds.pins``: ``led``; the
        states (per_state); ``red``, ``green``, ``blue`` (rgb). For ``ctl status``."""
        if self._closed:
            return {}
        if self._kind == "rgb":
            return dict(zip(("red", "green", "blue"), map(float, self._device.value), strict=True))
        if self._kind == "pwm":
            return {"led": float(self._device.value)}
        return {name: float(led.value) for name, led in self._leds.items()}

    def show(self, state: str) -> None:
        """Show ``state``'s pattern; showing the state already shown changes nothing (a blink
        keeps its rhythm)."""
        if state not in LED_STATES:
            raise ValueError(f"unknown LED state {state!r} (expected one of {LED_STATES})")
        if state == self._state or self._closed:
            return
        logger.debug("LEDs show %s", state)
        self._state = state
        pattern = self._config.patterns[state]
        match self._kind:
            case "single":
                _show_plain(self._leds["led"], pattern)
            case "per_state":
                mine = self._leds.get(state)
                for led in {id(led): led for led in self._leds.values()}.values():
                    if led is not mine:
                        led.off()
                if mine is not None:
                    _show_plain(mine, pattern)
            case "pwm":
                self._show_pwm(pattern)
            case "rgb":
                self._show_rgb(pattern)

    @property
    def shows_vad(self) -> bool:
        """Whether ``set_vad`` changes anything now: a pwm or rgb LED showing ``listening``
        with a solid pattern (the server's scores come ten times a second)."""
        pattern = self._config.patterns.get(self._state)
        return (
            not self._closed
            and self._state == "listening"
            and pattern is not None
            and pattern.mode == "solid"
            and self._kind in ("pwm", "rgb")
        )

    def set_vad(self, score: float) -> None:
        """The server's voice-activity score (0-1): while listening, with a solid pattern on
        a pwm or rgb LED, brightness follows it (``VAD_FLOOR`` of the pattern's at 0, all of
        it at 1). Plain LEDs and other states ignore it."""
        score = min(1.0, max(0.0, score))
        pattern = self._config.patterns.get(self._state)
        if not self.shows_vad or pattern is None:
            return
        scale = VAD_FLOOR + (1.0 - VAD_FLOOR) * score
        if self._kind == "pwm":
            self._device.value = pattern.brightness * scale
        else:
            self._device.value = _color(pattern, scale)

    def close(self) -> None:
        """Turn every LED off and release the pins."""
        if self._closed:
            return
        devices = [self._device] if self._device is not None else []
        devices += {id(led): led for led in self._leds.values()}.values()
        for device in devices:
            if self._kind == "pwm":
                device.source = None
            device.off()
            device.close()
        self._closed = True

    def _show_pwm(self, pattern: LedPattern) -> None:
        led, half = self._device, pattern.period_s / 2
        led.source = None  # stop a dimmed wave (on/off/value do not)
        if pattern.mode == "solid":
            led.value = pattern.brightness
        elif pattern.mode == "off" or pattern.brightness <= 0:
            led.off()
        elif pattern.brightness < 1.0:
            led.off()  # stops a running blink/pulse now, before the wave's thread starts
            values, delay = _wave(pattern.mode, pattern.brightness, pattern.period_s)
            led.source_delay = delay
            led.source = values
        elif pattern.mode == "blink":
            led.blink(on_time=half, off_time=half)
        else:
            led.pulse(fade_in_time=half, fade_out_time=half)

    def _show_rgb(self, pattern: LedPattern) -> None:
        led, half, color = self._device, pattern.period_s / 2, _color(pattern)
        match pattern.mode:
            case "solid":
                led.value = color
            case "blink":
                led.blink(on_time=half, off_time=half, on_color=color)
            case "pulse":
                led.pulse(fade_in_time=half, fade_out_time=half, on_color=color)
            case "off":
                led.off()


def _show_plain(led: Any, pattern: LedPattern) -> None:
    """An on/off LED: solid lights it (when brightness > 0); blink and pulse blink it."""
    if pattern.mode == "off" or pattern.brightness <= 0:
        led.off()
    elif pattern.mode == "solid":
        led.on()
    else:
        led.blink(on_time=pattern.period_s / 2, off_time=pattern.period_s / 2)


def _color(pattern: LedPattern, scale: float = 1.0) -> tuple[float, float, float]:
    r, g, b = (min(1.0, channel * pattern.brightness * scale) for channel in pattern.color)
    return (r, g, b)


async def follow(
    get_state: Callable[[], str],
    get_vad: Callable[[], float],
    leds: StatusLeds,
    changed: asyncio.Event,
) -> None:
    """Keep ``leds`` showing ``get_state()`` and ``get_vad()``: applied now, then after each
    time ``changed`` is set (the service sets it when the client's state or vad_score may
    have changed). Runs until cancelled; cancelling it is safe at any time."""
    while True:
        leds.show(get_state())
        leds.set_vad(get_vad())
        await changed.wait()
        changed.clear()
