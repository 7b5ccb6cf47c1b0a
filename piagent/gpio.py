"""The push-to-talk button and the status LEDs, over gpiozero.

Owns :class:`PushToTalk` (one gpiozero ``Button``: debouncing, the hold/toggle/tap modes and
the long-press and double-press gestures, turned into calls on :class:`Controls`, which
``AgentClient`` satisfies), :class:`StatusLeds` (the state each LED kind shows, and voice
activity shown as brightness while listening), :func:`follow` (the coroutine that keeps the
LEDs in step with the client) and :func:`make_pin_factory` (``gpio.pin_factory``). Devices
take a ``pin_factory``; nothing is opened at import time.

Threads: gpiozero calls ``when_pressed``/``when_released`` on a thread of its own (lgpio's
callback thread on a Pi, the caller of ``drive_low()`` with mock pins). That callback does one
thing, ``loop.call_soon_threadsafe(...)``, and tolerates a closed loop at shutdown; every other
line here runs on the event loop, with no locks. The LEDs' blink, pulse and source threads and
the button's hold thread are gpiozero's own; they only touch their own pins.

Button semantics (every edge is debounced first: a level counts once it has been stable for
``bounce_ms``; a glitch shorter than that is ignored):

- ``hold``: ``press()`` on the press, ``release()`` on the release.
- ``toggle``: a press calls ``press()``, the next one ``release()``; releases do nothing.
- ``tap``: a press opens a hands-free conversation (``set_hands_free(True)``); the next press
  hangs up (``hang_up()``). With double presses enabled that hang-up waits ``double_press_s``
  so that a double press can still mute mid-conversation without ending it.
- Long press (held ``long_press_s``, ``long_press_action: hangup``; toggle and tap modes
  only, since in hold mode holding is talking): ``hang_up()``; the release that ends it does
  nothing, so no half turn is left behind. In tap mode only a press that opened the
  conversation can become a long press (the other one already hangs up).
- Double press (the second press starts within ``double_press_s`` of the first,
  ``double_press_action: mute``): the second press toggles mute (``set_muted(not muted)``)
  and does nothing else; its release and its holding do nothing. The first press has already
  acted (``press()`` is never delayed, so a barge-in stops the agent at once), so a double
  press settles to "microphone closed, mute toggled": in hold mode the first press was a
  short, empty turn; in toggle mode a turn the first press opened is ended with
  ``release()``; in tap mode a conversation the first press opened is hung up again and a
  hang-up it asked for is cancelled, leaving the conversation as it was. A long press is
  never half of a double press, and a third press starts afresh.

Imports nothing from piagent at run time but ``config`` and ``errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias

from gpiozero import LED, PWMLED, RGBLED, Button
from gpiozero.pins.mock import MockFactory, MockPWMPin

from piagent.config import (
    LED_STATES,
    ButtonConfig,
    LedConfig,
    LedPattern,
    PinFactory,
)
from piagent.errors import ConfigError

if TYPE_CHECKING:
    from piagent.client import AgentClient

logger = logging.getLogger(__name__)

Factory: TypeAlias = Any  # a gpiozero pin factory (gpiozero has no type hints)

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


class Controls(Protocol):
    """What the button drives: ``AgentClient`` satisfies it."""

    def press(self) -> None: ...
    def release(self) -> None: ...
    def set_hands_free(self, on: bool) -> None: ...
    def hang_up(self) -> None: ...
    def set_muted(self, muted: bool) -> None: ...

    @property
    def muted(self) -> bool: ...
    @property
    def held(self) -> bool: ...
    @property
    def hands_free(self) -> bool: ...


if TYPE_CHECKING:

    def _client_is_controls(client: AgentClient) -> Controls:
        return client  # mypy checks that AgentClient satisfies Controls


class PushToTalk:
    """The push-to-talk button: debounced edges become ``Controls`` calls (module docstring).

    Create it on the event loop's thread (or pass ``loop``); ``close()`` releases the pin.
    """

    def __init__(
        self,
        config: ButtonConfig,
        controls: Controls,
        *,
        pin_factory: Factory | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if config.pin is None:
            raise ValueError("gpio.button.pin is null: there is no button to watch")
        self._config = config
        self._controls = controls
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._bounce_s = config.bounce_ms / 1000.0
        # In hold mode holding is talking, for as long as the user speaks: a long press there
        # is a long turn, never a hang-up (the idle timeout or ``ctl hangup`` end those).
        self._long_press = config.long_press_action == "hangup" and config.mode != "hold"
        self._double_press = config.double_press_action == "mute"
        self._closed = False
        # Debouncing: the last level seen and the debounced one (a button held down at start
        # counts only from its next press).
        self._level = False
        self._is_pressed = False
        self._settle: asyncio.TimerHandle | None = None
        # Gestures.
        self._first_press_at: float | None = None  # loop time of a possible double's first
        self._spent = False  # this press is used up (long press or double's second)
        self._long_timer: asyncio.TimerHandle | None = None
        self._hang_up_timer: asyncio.TimerHandle | None = None  # tap mode's deferred hang-up
        # Whether a turn or a hands-free conversation is open is the client's to know (the
        # appliance's ``held`` and ``hands_free``); the button keeps only its gestures' memory.
        self._opened = False  # tap: the last press opened the conversation
        # pull_up: wired to ground, pressed when low; otherwise to 3V3, pressed when high.
        # gpiozero's bounce_time is left unset: mock pins ignore it; ours works everywhere.
        # Long presses are timed here, on the loop; a short hold_time only keeps gpiozero's
        # hold thread (which waits hold_time while the button is down) from delaying close().
        self._button = Button(
            config.pin, pull_up=config.pull_up, hold_time=0.01, pin_factory=pin_factory
        )
        self._button.when_pressed = self._edge_pressed
        self._button.when_released = self._edge_released

    # --- gpiozero's thread -------------------------------------------------------------------

    def _edge_pressed(self) -> None:
        self._hand_over(True)

    def _edge_released(self) -> None:
        self._hand_over(False)

    def _hand_over(self, level: bool) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(self._on_edge, level)

    # --- the event loop ----------------------------------------------------------------------

    @property
    def is_pressed(self) -> bool:
        """The debounced state of the button."""
        return self._is_pressed

    @property
    def is_talking(self) -> bool:
        """Whether a turn is held open (hold/toggle) or a hands-free one (tap)."""
        return self._controls.held or self._controls.hands_free

    def conversation_ended(self) -> None:
        """The client ended the conversation itself (idle time-out, error): a tap mode
        hang-up still pending has nothing left to end."""
        self._opened = False
        self._cancel_hang_up()

    def close(self) -> None:
        """Stop watching the pin and release it; edges still in flight are ignored."""
        if self._closed:
            return
        self._closed = True
        if self._settle is not None:
            self._settle.cancel()
        self._cancel_long_press()
        self._cancel_hang_up()
        self._button.when_pressed = None
        self._button.when_released = None
        self._button.close()

    def _cancel_hang_up(self) -> None:
        if self._hang_up_timer is not None:
            self._hang_up_timer.cancel()
            self._hang_up_timer = None

    def _cancel_long_press(self) -> None:
        if self._long_timer is not None:
            self._long_timer.cancel()
            self._long_timer = None

    def _on_edge(self, level: bool) -> None:
        """A raw edge: it counts once the level has been stable for ``bounce_ms``."""
        if self._closed:
            return
        self._level = level
        if self._settle is not None:
            self._settle.cancel()
            self._settle = None
        if level == self._is_pressed:
            return  # back where it was before bounce_ms passed: a glitch, ignored
        if self._bounce_s <= 0:
            self._settled()
        else:
            self._settle = self._loop.call_later(self._bounce_s, self._settled)

    def _settled(self) -> None:
        self._settle = None
        self._is_pressed = self._level
        logger.debug("button %s", "pressed" if self._is_pressed else "released")
        if self._is_pressed:
            self._on_press()
        else:
            self._on_release()

    def _on_press(self) -> None:
        now = self._loop.time()
        first = self._first_press_at
        if first is not None and now - first <= self._config.double_press_s:
            self._first_press_at = None
            self._spent = True
            self._on_double_press()
            return
        self._first_press_at = now if self._double_press else None
        self._spent = False
        arm_long_press = self._long_press
        match self._config.mode:
            case "hold":
                self._controls.press()  # at once: a barge-in must not wait
            case "toggle":
                if not self._controls.held:
                    self._controls.press()
                else:
                    self._controls.release()
            case "tap":
                self._opened = not self._controls.hands_free
                if self._opened:
                    self._controls.set_hands_free(True)
                else:
                    arm_long_press = False  # this press hangs up already
                    if self._double_press:  # wait: it may be the first of a double (mute)
                        self._hang_up_timer = self._loop.call_later(
                            self._config.double_press_s, self._deferred_hang_up
                        )
                    else:
                        self._hang_up()
        if arm_long_press:
            self._long_timer = self._loop.call_later(self._config.long_press_s, self._on_held)

    def _on_release(self) -> None:
        self._cancel_long_press()
        if self._spent:
            self._spent = False
            return  # the end of a long press or of a double press's second press
        if self._config.mode == "hold" and self._controls.held:
            self._controls.release()

    def _on_held(self) -> None:
        self._long_timer = None
        logger.info("button: long press, hanging up")
        self._spent = True
        self._first_press_at = None  # a long press is never half of a double press
        self._hang_up()

    def _on_double_press(self) -> None:
        self._cancel_long_press()
        match self._config.mode:
            case "toggle" if self._controls.held:
                self._controls.release()
            case "tap" if self._hang_up_timer is not None:
                self._cancel_hang_up()  # mute mid-conversation without ending it
            case "tap" if self._opened:
                self._hang_up()  # undo the open of the first press
        muted = not self._controls.muted
        logger.info("button: double press, %s", "muting" if muted else "unmuting")
        self._controls.set_muted(muted)

    def _deferred_hang_up(self) -> None:
        self._hang_up_timer = None
        self._hang_up()

    def _hang_up(self) -> None:
        self._cancel_hang_up()
        self._opened = False
        self._controls.hang_up()


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

    def set_vad(self, score: float) -> None:
        """The server's voice-activity score (0-1): while listening, with a solid pattern on
        a pwm or rgb LED, brightness follows it (``VAD_FLOOR`` of the pattern's at 0, all of
        it at 1). Plain LEDs and other states ignore it."""
        score = min(1.0, max(0.0, score))
        pattern = self._config.patterns.get(self._state)
        if self._closed or self._state != "listening" or pattern is None:
            return
        if pattern.mode != "solid" or self._kind not in ("pwm", "rgb"):
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
