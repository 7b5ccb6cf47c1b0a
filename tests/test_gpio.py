"""PushToTalk and StatusLeds over gpiozero's MockFactory, on a real event loop in real time.

The button is driven through its mock pin (``drive_low``/``drive_high``), from the loop's
thread or from another thread as lgpio would; what it does is seen through a recording
``Controls`` that behaves like the client (held, hands-free, muted), so each test asserts the
calls in order and the state they leave. Times are short: 5 ms debounce, 0.2 s long press,
0.15 s double press.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import replace
from types import MappingProxyType, SimpleNamespace
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin
from gpiozero.threads import GPIOThread

from piagent.config import (
    DEFAULT_LED_PATTERNS,
    LED_STATES,
    ButtonConfig,
    LedConfig,
    LedKind,
    LedPattern,
)
from piagent.errors import ConfigError
from piagent.gpio import PushToTalk, StatusLeds, follow, make_pin_factory, needs_pwm

PIN = 17
BOUNCE_MS = 5
SETTLE = 0.025  # a wait long enough for an edge to pass the debounce
LONG = 0.2
DOUBLE = 0.15
GAP = DOUBLE + 0.02  # a pause that ends any double-press window
HELD = LONG + 0.08  # long enough to make a long press


class RecordingControls:
    """A ``Controls`` that keeps what the client would: the calls, and the state they leave."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.times: list[float] = []  # time.monotonic() of each call (the loop's clock)
        self.held = False
        self.hands_free = False
        self.muted = False

    def _record(self, call: str) -> None:
        self.calls.append(call)
        self.times.append(time.monotonic())

    def press(self) -> None:
        self._record("press")
        self.held = True

    def release(self) -> None:
        self._record("release")
        self.held = False

    def set_hands_free(self, on: bool) -> None:
        self._record(f"hands_free {'on' if on else 'off'}")
        self.hands_free = on

    def hang_up(self) -> None:
        self._record("hang_up")
        self.held = self.hands_free = False

    def set_muted(self, muted: bool) -> None:
        self._record("mute" if muted else "unmute")
        self.muted = muted


def gpiozero_threads() -> list[threading.Thread]:
    """gpiozero's blink, source and hold threads still alive."""
    return [t for t in threading.enumerate() if isinstance(t, GPIOThread) and t.is_alive()]


@pytest.fixture(autouse=True)
def no_threads_left() -> Iterator[None]:
    yield
    assert gpiozero_threads() == []  # close() stopped every device's threads


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    mock = MockFactory(pin_class=MockPin)
    yield mock
    mock.reset()


@pytest.fixture
def pwm_factory() -> Iterator[MockFactory]:
    mock = MockFactory(pin_class=MockPWMPin)
    yield mock
    mock.reset()


MakeLeds = Callable[[LedConfig, MockFactory], StatusLeds]


@pytest.fixture
def make_leds() -> Iterator[MakeLeds]:
    """``StatusLeds(...)``, closed after the test even when it fails."""
    made: list[StatusLeds] = []

    def make(config: LedConfig, factory: MockFactory) -> StatusLeds:
        made.append(StatusLeds(config, pin_factory=factory))
        return made[-1]

    yield make
    for leds in made:
        leds.close()


def button_config(**changes: Any) -> ButtonConfig:
    base = ButtonConfig(
        pin=PIN, bounce_ms=BOUNCE_MS, long_press_s=LONG, double_press_s=DOUBLE, mode="hold"
    )
    return replace(base, **changes)


Script = Callable[[MockPin, PushToTalk, RecordingControls], Awaitable[None]]


def run_button(factory: MockFactory, config: ButtonConfig, script: Script) -> RecordingControls:
    """Run ``script`` against a PushToTalk on a fresh event loop; the controls it drove."""
    controls = RecordingControls()

    async def main() -> None:
        button = PushToTalk(config, controls, pin_factory=factory)
        try:
            await script(factory.pin(PIN), button, controls)
        finally:
            button.close()

    asyncio.run(main())
    return controls


async def down(pin: MockPin, wait: float = SETTLE) -> None:
    pin.drive_low()
    await asyncio.sleep(wait)


async def up(pin: MockPin, wait: float = SETTLE) -> None:
    pin.drive_high()
    await asyncio.sleep(wait)


async def click(pin: MockPin) -> None:
    await down(pin)
    await up(pin)


# --- hold ---------------------------------------------------------------------------------


def test_hold_presses_while_held_and_releases(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        assert not button.is_pressed
        edge = time.monotonic()
        await down(pin)
        # press() comes on the debounced edge, not after the double-press window
        assert c.calls == ["press"] and c.held and button.is_pressed and button.is_talking
        assert c.times[0] - edge < DOUBLE / 2
        await up(pin)
        assert c.calls == ["press", "release"] and not c.held and not button.is_pressed

    run_button(factory, button_config(), script)


def test_hold_mode_a_long_hold_is_a_long_turn_not_a_hang_up(factory: MockFactory) -> None:
    # Holding is talking: a user speaking for longer than long_press_s is not hung up on.
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        await down(pin, HELD)
        assert c.calls == ["press"] and c.held
        await up(pin)
        assert c.calls == ["press", "release"]

    run_button(factory, button_config(), script)


def test_hold_long_press_disabled_is_a_long_turn(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        await down(pin, HELD)
        assert c.calls == ["press"] and c.held
        await up(pin)

    c = run_button(factory, button_config(long_press_action="none"), script)
    assert c.calls == ["press", "release"] and not c.held


def test_hold_double_press_toggles_mute_and_leaves_the_mic_closed(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        await click(pin)
        await down(pin)
        assert c.calls == ["press", "release", "mute"] and c.muted and not c.held
        await asyncio.sleep(LONG)  # the second press never becomes a long press
        await up(pin, GAP)
        assert c.calls == ["press", "release", "mute"]
        await click(pin)  # a fresh press after the window: a turn again
        await click(pin)  # ... and a second double press unmutes
        assert c.calls[3:] == ["press", "release", "unmute"] and not c.muted

    run_button(factory, button_config(), script)


def test_hold_double_press_disabled_is_two_turns(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        await click(pin)
        await click(pin)

    c = run_button(factory, button_config(double_press_action="none"), script)
    assert c.calls == ["press", "release", "press", "release"] and not c.muted


def test_triple_press_is_a_double_then_a_fresh_press(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        for _ in range(3):
            await click(pin)

    c = run_button(factory, button_config(), script)
    assert c.calls == ["press", "release", "mute", "press", "release"]


# --- toggle -------------------------------------------------------------------------------


def test_toggle_press_starts_next_press_ends(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        await click(pin)
        assert c.calls == ["press"] and c.held and button.is_talking  # release: nothing
        await asyncio.sleep(GAP)
        await down(pin)
        assert c.calls == ["press", "release"] and not c.held
        await up(pin)

    c = run_button(factory, button_config(mode="toggle"), script)
    assert c.calls == ["press", "release"]


def test_toggle_double_press_from_idle_settles_closed(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        await click(pin)
        await click(pin)
        assert not button.is_talking

    c = run_button(factory, button_config(mode="toggle"), script)
    assert c.calls == ["press", "release", "mute"] and not c.held and c.muted


def test_toggle_double_press_while_talking_settles_closed(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        await click(pin)
        await asyncio.sleep(GAP)
        await click(pin)  # ends the turn ...
        await click(pin)  # ... and this makes it a double press: mute, still closed
        await asyncio.sleep(GAP)
        await click(pin)  # the next press opens a turn again

    c = run_button(factory, button_config(mode="toggle"), script)
    assert c.calls == ["press", "release", "mute", "press"] and c.held and c.muted


def test_toggle_long_press_hangs_up(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        await down(pin, HELD)
        await up(pin, GAP)
        assert c.calls == ["press", "hang_up"] and not button.is_talking
        await click(pin)

    c = run_button(factory, button_config(mode="toggle"), script)
    assert c.calls == ["press", "hang_up", "press"] and c.held


# --- tap ----------------------------------------------------------------------------------


def test_tap_opens_hands_free_and_next_press_hangs_up(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        await click(pin)
        assert c.calls == ["hands_free on"] and c.hands_free and button.is_talking
        await asyncio.sleep(GAP)
        await down(pin)
        assert c.calls == ["hands_free on"]  # the hang-up waits for the double-press window
        await asyncio.sleep(DOUBLE)
        assert c.calls == ["hands_free on", "hang_up"] and not c.hands_free
        await up(pin)

    run_button(factory, button_config(mode="tap"), script)


def test_tap_hang_up_is_immediate_without_double_press(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        await click(pin)
        await click(pin)

    c = run_button(factory, button_config(mode="tap", double_press_action="none"), script)
    assert c.calls == ["hands_free on", "hang_up"]


def test_tap_double_press_mutes_mid_conversation(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        await click(pin)
        await asyncio.sleep(GAP)
        await click(pin)
        await click(pin)
        await asyncio.sleep(GAP)  # the cancelled hang-up stays cancelled
        assert button.is_talking

    c = run_button(factory, button_config(mode="tap"), script)
    assert c.calls == ["hands_free on", "mute"] and c.hands_free and c.muted


def test_tap_double_press_from_idle_leaves_no_conversation(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        await click(pin)
        await click(pin)
        assert not button.is_talking

    c = run_button(factory, button_config(mode="tap"), script)
    assert c.calls == ["hands_free on", "hang_up", "mute"] and not c.hands_free and c.muted


def test_tap_long_press_on_opening_hangs_up_once(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        await down(pin, HELD)
        await up(pin)
        assert c.calls == ["hands_free on", "hang_up"]
        await asyncio.sleep(GAP)
        await down(pin, HELD)  # opens again; the long press hangs up again
        await up(pin, GAP)

    c = run_button(factory, button_config(mode="tap"), script)
    assert c.calls == ["hands_free on", "hang_up"] * 2


def test_conversation_ended_lets_the_next_press_open(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        await click(pin)
        c.hang_up()  # the client hung up by itself (idle time-out) ...
        button.conversation_ended()  # ... and the service says so
        await asyncio.sleep(GAP)
        await click(pin)

    c = run_button(factory, button_config(mode="tap"), script)
    assert c.calls == ["hands_free on", "hang_up", "hands_free on"] and c.hands_free


# --- debouncing, wiring, threads ----------------------------------------------------------


def bounce(pin: MockPin, final_low: bool, edges: int = 6) -> None:
    """A bouncing contact: alternating edges about 1 ms apart, ending at ``final_low``."""
    for i in reversed(range(edges)):  # i == 0 is the last edge
        if (i % 2 == 0) == final_low:
            pin.drive_low()
        else:
            pin.drive_high()
        time.sleep(0.001)


def test_bouncing_contact_makes_one_press_and_one_release(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        # from another thread, as lgpio calls back on its own thread
        await asyncio.to_thread(bounce, pin, True)
        assert pin.state is False and len(pin.states) > 6
        await asyncio.sleep(SETTLE)
        assert c.calls == ["press"]
        await asyncio.to_thread(bounce, pin, False)
        await asyncio.sleep(SETTLE)
        assert c.calls == ["press", "release"]

    c = run_button(factory, button_config(double_press_action="none"), script)
    assert c.calls == ["press", "release"]


def test_glitch_shorter_than_bounce_is_ignored(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        pin.drive_low()
        pin.drive_high()  # within the same loop turn: far shorter than 10 ms
        await asyncio.sleep(SETTLE)
        assert c.calls == [] and not button.is_pressed
        await down(pin)
        pin.drive_high()  # a glitch while held: no release
        pin.drive_low()
        await asyncio.sleep(SETTLE)
        assert c.calls == ["press"] and button.is_pressed
        await up(pin)

    c = run_button(factory, button_config(), script)
    assert c.calls == ["press", "release"]


def test_zero_bounce_acts_on_each_edge(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        await down(pin, 0.005)
        await up(pin, 0.005)

    c = run_button(factory, button_config(bounce_ms=0, double_press_action="none"), script)
    assert c.calls == ["press", "release"]


def test_active_high_wiring_without_pull_up(factory: MockFactory) -> None:
    async def script(pin: MockPin, button: PushToTalk, c: RecordingControls) -> None:
        assert pin.state is False  # pulled down
        pin.drive_high()
        await asyncio.sleep(SETTLE)
        assert c.calls == ["press"] and button.is_pressed
        pin.drive_low()
        await asyncio.sleep(SETTLE)

    c = run_button(factory, button_config(pull_up=False), script)
    assert c.calls == ["press", "release"]


def test_edges_after_close_and_after_the_loop_closed_are_ignored(factory: MockFactory) -> None:
    controls = RecordingControls()
    buttons: list[PushToTalk] = []

    async def main() -> None:
        buttons.append(PushToTalk(button_config(), controls, pin_factory=factory))

    asyncio.run(main())
    pin = factory.pin(PIN)
    pin.drive_low()  # the callback meets a closed loop: no error
    pin.drive_high()
    buttons[0].close()
    buttons[0].close()
    assert controls.calls == []

    async def after_close() -> None:
        button = PushToTalk(button_config(), controls, pin_factory=factory)
        button.close()
        button._on_edge(True)  # an edge queued before close() runs after it
        await asyncio.sleep(SETTLE)

    asyncio.run(after_close())
    assert controls.calls == []


def test_button_needs_a_pin(factory: MockFactory) -> None:
    loop = asyncio.new_event_loop()
    with pytest.raises(ValueError, match=r"gpio\.button\.pin"):
        PushToTalk(button_config(pin=None), RecordingControls(), loop=loop)
    loop.close()


# --- LEDs ---------------------------------------------------------------------------------

# The default patterns with short periods, so that a blink or pulse is seen within ~0.1 s.
FAST = MappingProxyType({s: replace(p, period_s=0.1) for s, p in DEFAULT_LED_PATTERNS.items()})
# BCM 2 and 3 have pull-ups on a Pi: a closed LED there floats high, so start at 4.
PER_STATE_PINS = MappingProxyType({state: 4 + i for i, state in enumerate(LED_STATES)})
RGB_PINS = MappingProxyType({"red": 22, "green": 23, "blue": 24})


def led_config(kind: LedKind, pins: Mapping[str, int], **changes: Any) -> LedConfig:
    return LedConfig(kind=kind, pins=MappingProxyType(dict(pins)), patterns=FAST, **changes)


def wait_for_changes(pin: MockPin, count: int = 2, timeout: float = 1.0) -> list[float]:
    """The states ``pin`` went through since ``clear_states`` once it changed ``count`` times
    (a blink or pulse running in gpiozero's thread)."""
    deadline = time.monotonic() + timeout
    while len(pin.states) <= count and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(pin.states) > count, f"{pin} did not change: {pin.states}"
    return [float(s.state) for s in pin.states]


def assert_blinking(pin: MockPin, peak: float = 1.0) -> None:
    pin.clear_states()
    values = wait_for_changes(pin)
    assert min(values) == 0.0
    assert max(values) == pytest.approx(peak)


@pytest.mark.parametrize("state", LED_STATES)
def test_single_led_shows_every_state(
    factory: MockFactory, state: str, make_leds: MakeLeds
) -> None:
    leds = make_leds(led_config("single", {"led": 5}), factory)
    pin = factory.pin(5)
    assert leds.state == "booting"
    leds.show(state)
    pattern = FAST[state]
    if pattern.mode == "solid":
        assert pin.state is True and leds.is_lit and leds.describe() == {"led": 1.0}
    else:  # blink, and pulse as a blink: on/off only
        assert_blinking(pin)
    leds.close()
    assert pin.state is False and leds.describe() == {}


@pytest.mark.parametrize("state", LED_STATES)
def test_per_state_leds_light_only_the_states_pin(
    factory: MockFactory, state: str, make_leds: MakeLeds
) -> None:
    leds = make_leds(led_config("per_state", PER_STATE_PINS), factory)
    pins = {s: factory.pin(p) for s, p in PER_STATE_PINS.items()}
    leds.show(state)
    others = [pin for s, pin in pins.items() if s != state]
    for pin in others:
        pin.clear_states()
    if FAST[state].mode == "solid":
        assert pins[state].state is True
    else:
        assert_blinking(pins[state])
    assert all(pin.states == [(0.0, False)] for pin in others)  # dark all along
    values = leds.describe()
    values.pop(state)
    assert set(values) == set(LED_STATES) - {state} and set(values.values()) == {0.0}
    leds.close()
    assert all(p.state is False for p in pins.values())


def test_per_state_shared_pin_and_missing_state(factory: MockFactory, make_leds: MakeLeds) -> None:
    pins = {"listening": 5, "speaking": 5, "error": 6}
    leds = make_leds(led_config("per_state", pins), factory)
    green, red = factory.pin(5), factory.pin(6)
    leds.show("listening")
    assert green.state is True and red.state is False
    leds.show("error")
    assert green.state is False
    assert_blinking(red)
    leds.show("ready")  # no pin for ready: all dark
    assert green.state is False and red.state is False and not leds.is_lit
    assert leds.describe() == {"listening": 0.0, "speaking": 0.0, "error": 0.0}
    leds.close()


@pytest.mark.parametrize("state", LED_STATES)
def test_pwm_led_shows_every_state(
    pwm_factory: MockFactory, state: str, make_leds: MakeLeds
) -> None:
    leds = make_leds(led_config("pwm", {"led": 12}), pwm_factory)
    pin = pwm_factory.pin(12)
    leds.show(state)
    pattern = FAST[state]
    if pattern.mode == "solid":
        assert pin.state == pytest.approx(pattern.brightness)
        assert leds.describe() == {"led": pytest.approx(pattern.brightness)}
    else:  # full-brightness blink/pulse by gpiozero; dimmed ones as a source wave
        assert_blinking(pin, pattern.brightness)
    leds.close()
    assert pin.state == 0.0


def test_pwm_pulse_fades(pwm_factory: MockFactory, make_leds: MakeLeds) -> None:
    slow = {s: replace(p, period_s=0.4) for s, p in FAST.items()}
    dimmed = replace(slow["thinking"], brightness=0.5)
    config = LedConfig(
        kind="pwm",
        pins=MappingProxyType({"led": 12}),
        patterns=MappingProxyType({**slow, "muted": dimmed}),
    )
    leds = make_leds(config, pwm_factory)
    pin = pwm_factory.pin(12)
    for state, peak in (("thinking", 1.0), ("muted", 0.5)):
        leds.show(state)
        pin.clear_states()
        values = wait_for_changes(pin, count=6)
        assert any(0.0 < v < peak for v in values), values  # in between: a fade, not a blink
        assert max(values) <= peak + 1e-9
    leds.close()


@pytest.mark.parametrize("state", LED_STATES)
def test_rgb_led_shows_every_state(
    pwm_factory: MockFactory, state: str, make_leds: MakeLeds
) -> None:
    leds = make_leds(led_config("rgb", RGB_PINS), pwm_factory)
    pins = [pwm_factory.pin(p) for p in RGB_PINS.values()]
    leds.show(state)
    pattern = FAST[state]
    color = [c * pattern.brightness for c in pattern.color]
    if pattern.mode == "solid":
        assert [p.state for p in pins] == pytest.approx(color)
        assert list(leds.describe().values()) == pytest.approx(color)
        assert list(leds.describe()) == ["red", "green", "blue"]
    else:
        lit = max(range(3), key=lambda i: color[i])
        for p in pins:
            p.clear_states()
        wait_for_changes(pins[lit])
        time.sleep(0.05)
        for p, peak in zip(pins, color, strict=True):
            assert max(float(s.state) for s in p.states) == pytest.approx(peak)
    leds.close()
    assert [p.state for p in pins] == [0.0, 0.0, 0.0]


def test_off_pattern_and_active_low(
    factory: MockFactory, pwm_factory: MockFactory, make_leds: MakeLeds
) -> None:
    patterns = MappingProxyType({**FAST, "offline": LedPattern("off")})
    single = make_leds(
        LedConfig(kind="single", pins=MappingProxyType({"led": 5}), active_high=False), factory
    )
    pin = factory.pin(5)
    single.show("listening")
    assert pin.state is False and single.describe() == {"led": 1.0}  # lit by pulling low
    single.close()
    assert pin.state is True  # off
    kinds: list[tuple[LedKind, Mapping[str, int]]] = [("pwm", {"led": 12}), ("rgb", RGB_PINS)]
    for kind, pins in kinds:
        leds = make_leds(replace(led_config(kind, pins), patterns=patterns), pwm_factory)
        leds.show("offline")
        assert not leds.is_lit and set(leds.describe().values()) == {0.0}
        leds.close()


def test_no_leds(factory: MockFactory, make_leds: MakeLeds) -> None:
    for config in (LedConfig(kind="none"), LedConfig(kind="single")):  # none, or no pins
        leds = make_leds(config, factory)
        leds.show("listening")
        leds.set_vad(1.0)
        assert leds.state == "listening" and leds.describe() == {} and not leds.is_lit
        leds.close()
    with pytest.raises(ValueError, match="unknown LED state"):
        StatusLeds(LedConfig(kind="none")).show("sleeping")


def test_vad_modulates_brightness_only_while_listening(
    factory: MockFactory, pwm_factory: MockFactory, make_leds: MakeLeds
) -> None:
    pwm = make_leds(led_config("pwm", {"led": 12}), pwm_factory)
    rgb = make_leds(led_config("rgb", RGB_PINS), pwm_factory)
    single = make_leds(led_config("single", {"led": 5}), factory)
    for leds in (pwm, rgb, single):
        leds.show("ready")
        leds.set_vad(1.0)  # not listening: no effect
    assert pwm.describe() == {"led": pytest.approx(0.1)}
    assert rgb.describe() == {"red": 0.0, "green": 0.0, "blue": pytest.approx(0.1)}
    for leds in (pwm, rgb, single):
        leds.show("listening")
    for score, level in ((0.0, 0.3), (0.5, 0.65), (1.0, 1.0), (2.0, 1.0), (-1.0, 0.3)):
        for leds in (pwm, rgb, single):
            leds.set_vad(score)
        assert pwm.describe()["led"] == pytest.approx(level)
        assert rgb.describe() == {"red": 0.0, "green": pytest.approx(level), "blue": 0.0}
        assert single.describe() == {"led": 1.0}  # on/off LEDs cannot dim
    for leds in (pwm, rgb, single):
        leds.show("thinking")  # a pulse: vad no longer applies
        leds.set_vad(0.0)
        leds.close()


def test_show_same_state_keeps_the_rhythm(factory: MockFactory, make_leds: MakeLeds) -> None:
    leds = make_leds(led_config("single", {"led": 5}), factory)
    pin = factory.pin(5)
    leds.show("error")
    wait_for_changes(pin, count=1)
    pin.clear_states()
    leds.show("error")  # no restart: the blink goes on undisturbed
    assert len(pin.states) == 1
    leds.close()
    leds.close()
    leds.show("ready")  # after close: nothing happens
    assert leds.describe() == {}


def test_follow_applies_state_and_vad_on_each_change(
    pwm_factory: MockFactory, make_leds: MakeLeds
) -> None:
    leds = make_leds(led_config("pwm", {"led": 12}), pwm_factory)
    client = SimpleNamespace(state="ready", vad=0.0)  # what the client reports

    async def main() -> None:
        changed = asyncio.Event()
        task = asyncio.create_task(follow(lambda: client.state, lambda: client.vad, leds, changed))
        await asyncio.sleep(0)
        assert leds.state == "ready" and leds.describe()["led"] == pytest.approx(0.1)
        client.state, client.vad = "listening", 1.0
        await asyncio.sleep(0.01)
        assert leds.state == "ready"  # nothing until the service says something changed
        changed.set()
        await asyncio.sleep(0)
        assert leds.state == "listening" and leds.describe()["led"] == pytest.approx(1.0)
        client.vad = 0.0
        changed.set()
        await asyncio.sleep(0)
        assert leds.describe()["led"] == pytest.approx(0.3) and not changed.is_set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    leds.close()


# --- pin factories ------------------------------------------------------------------------


def test_make_pin_factory_mock_and_default() -> None:
    assert make_pin_factory(None) is None
    for pwm, pin_class in ((True, MockPWMPin), (False, MockPin)):
        mock = make_pin_factory("mock", pwm=pwm)
        assert isinstance(mock, MockFactory) and mock.pin_class is pin_class
        mock.close()
    assert needs_pwm(LedConfig(kind="rgb", pins=RGB_PINS))
    assert not needs_pwm(LedConfig(kind="pwm"))  # no pins: nothing to drive
    assert not needs_pwm(LedConfig(kind="single", pins=MappingProxyType({"led": 5})))


def test_make_pin_factory_mock_with_leds_and_button(make_leds: MakeLeds) -> None:
    """One factory serves the button and PWM LEDs, as the service will use it."""
    mock = make_pin_factory("mock", pwm=True)
    leds = make_leds(led_config("rgb", RGB_PINS), mock)
    controls = RecordingControls()

    async def main() -> None:
        button = PushToTalk(button_config(), controls, pin_factory=mock)
        await asyncio.to_thread(mock.pin(PIN).drive_low)
        await asyncio.sleep(SETTLE)
        button.close()

    asyncio.run(main())
    leds.close()
    mock.reset()
    assert controls.calls == ["press"]


@pytest.mark.parametrize("name", ["lgpio", "rpigpio", "pigpio", "native"])
def test_unavailable_pin_factory_names_the_key(name: str) -> None:
    try:
        factory = make_pin_factory(name)  # type: ignore[arg-type]
    except ConfigError as exc:
        assert exc.key_path == "gpio.pin_factory"
        assert name in str(exc) and "mock" in str(exc)
        assert exc.__cause__ is not None
    else:  # on a Raspberry Pi with the library installed
        factory.close()
        pytest.skip(f"{name} works on this machine")
