"""PushToTalk and StatusLeds over gpiozero's MockFactory, on a real event loop.

The button is driven through its mock pin (``drive_low``/``drive_high``), from the loop's
thread or from another thread as lgpio would. ``PushToTalk`` only hands each raw edge to the
event loop, timed: the tests check that every edge arrives there, in order, and nothing after
close; what the edges mean (debouncing, modes, long and double presses) is the appliance's, on
a fake clock in tests/appliance/test_gestures.py. A few gestures go end to end here, through
real pins into a real ``AgentClient`` (not running: a press opens no socket), checking the
state they leave; they wait for that state rather than for fixed times.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from types import MappingProxyType, SimpleNamespace
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin
from gpiozero.threads import GPIOThread

from piagent.announcements import Announcement
from piagent.appliance import State
from piagent.appliance.commands import PlayEarcon
from piagent.appliance.gestures import ButtonOptions, Edge, Input
from piagent.client import AgentClient, ClientOptions
from piagent.config import (
    DEFAULT_LED_PATTERNS,
    LED_STATES,
    ButtonConfig,
    LedConfig,
    LedKind,
    LedPattern,
)
from piagent.errors import ConfigError
from piagent.gpio import (
    ButtonSink,
    PushToTalk,
    StatusLeds,
    button_options,
    follow,
    make_pin_factory,
    needs_pwm,
)
from piagent.protocol.messages import ConversationInitiationClientData
from piagent.transport import Endpoint
from tests.fakes import PacedSink

PIN = 17


class Recorder:
    """A sink for the button's and the keyboard's typed events: what arrived, on which thread,
    in order; ``then`` gets each one too (the client, end to end)."""

    def __init__(self, then: ButtonSink | None = None) -> None:
        self.events: list[Input] = []
        self.threads: set[int] = set()
        self._arrived: asyncio.Queue[Input] = asyncio.Queue()
        self._then = then

    def __call__(self, event: Input) -> None:
        self.events.append(event)
        self.threads.add(threading.get_ident())
        self._arrived.put_nowait(event)
        if self._then is not None:
            self._then(event)

    async def next(self, within: float = 2.0) -> Input:
        """The next event to arrive (waiting for it, not for a fixed time)."""
        async with asyncio.timeout(within):
            return await self._arrived.get()


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
    base = ButtonConfig(pin=PIN, bounce_ms=5, long_press_s=0.05, double_press_s=0.4, mode="hold")
    return replace(base, **changes)


def ticks() -> Callable[[], float]:
    """A clock that reads 100, 101, 102 ...: which edge got which time shows."""
    counter = itertools.count(100)
    return lambda: float(next(counter))


def bounce(pin: MockPin, final_low: bool, edges: int = 7) -> None:
    """A bouncing contact: ``edges`` alternating edges at once, ending low when
    ``final_low`` (pressed, with the pull-up) or high."""
    for i in reversed(range(edges)):  # i == 0 is the last edge
        if (i % 2 == 0) == final_low:
            pin.drive_low()
        else:
            pin.drive_high()


# --- the button: edges in, nothing remembered ----------------------------------------------


def test_every_edge_reaches_the_loop_in_order_and_timed(factory: MockFactory) -> None:
    async def main() -> None:
        recorder = Recorder()
        button = PushToTalk(button_config(), recorder, clock=ticks(), pin_factory=factory)
        pin = factory.pin(PIN)
        try:
            # from another thread, as lgpio calls back on its own; no debouncing here
            await asyncio.to_thread(bounce, pin, True, 5)
            edges = [await recorder.next() for _ in range(5)]
        finally:
            button.close()
        assert edges == [Edge(100.0 + i, i % 2 == 0) for i in range(5)]
        assert recorder.threads == {threading.get_ident()}  # handed over to the loop's thread

    asyncio.run(main())


def test_active_high_wiring_without_pull_up(factory: MockFactory) -> None:
    async def main() -> None:
        recorder, config = Recorder(), button_config(pull_up=False)
        button = PushToTalk(config, recorder, clock=ticks(), pin_factory=factory)
        pin = factory.pin(PIN)
        assert pin.state is False  # pulled down
        pin.drive_high()
        assert await recorder.next() == Edge(100.0, True)
        pin.drive_low()
        assert await recorder.next() == Edge(101.0, False)
        button.close()

    asyncio.run(main())


def test_edges_after_close_and_after_the_loop_closed_are_ignored(factory: MockFactory) -> None:
    events: list[Input] = []
    buttons: list[PushToTalk] = []

    async def opened() -> None:
        buttons.append(PushToTalk(button_config(), events.append, pin_factory=factory))

    asyncio.run(opened())
    pin = factory.pin(PIN)
    pin.drive_low()  # the callback meets a closed loop: no error
    pin.drive_high()
    buttons[0].close()
    buttons[0].close()
    assert events == []

    async def closed_in_flight() -> None:
        button = PushToTalk(button_config(), events.append, pin_factory=factory)
        factory.pin(PIN).drive_low()  # handed over to the loop ...
        button.close()  # ... which runs it after close(): dropped
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(closed_in_flight())
    assert events == []


def test_button_needs_a_pin(factory: MockFactory) -> None:
    loop = asyncio.new_event_loop()
    with pytest.raises(ValueError, match=r"gpio\.button\.pin"):
        PushToTalk(button_config(pin=None), Recorder(), loop=loop)
    loop.close()


def test_button_options_come_from_the_config() -> None:
    options = button_options(button_config(mode="tap", bounce_ms=30))
    assert (options.mode, options.bounce_s, options.long_press_s) == ("tap", 0.03, 0.05)
    assert (options.double_press_s, options.long_press, options.double_press) == (0.4, True, True)
    off = button_options(button_config(long_press_action="none", double_press_action="none"))
    assert not off.long_press and not off.double_press


# --- end to end: real pins, the client's gestures ------------------------------------------


class Wired:
    """A button's pin wired to a client; the earcons the client asked for."""

    def __init__(self, pin: MockPin, client: AgentClient) -> None:
        self.pin = pin
        self.client = client
        self.earcons: list[str] = []
        self._changed = asyncio.Event()
        client.subscribe(self._heard)

    def _heard(self, announcement: Announcement) -> None:
        if isinstance(announcement, PlayEarcon):
            self.earcons.append(announcement.kind)
        self._changed.set()

    async def until(self, predicate: Callable[[], bool], within: float = 2.0) -> None:
        """Wait until the client's announcements leave ``predicate`` true (its timers run
        in real time), not for a fixed time."""
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


def idle_client(button: ButtonOptions | None = None) -> AgentClient:
    """A real client that is never run: a press opens no socket (call on the loop)."""
    return AgentClient(
        Endpoint("demo", "ws://127.0.0.1:9", "http://127.0.0.1:9"),
        ConversationInitiationClientData(),
        ClientOptions(),
        source_rate=16000,
        sink=PacedSink(16000),
        button=button,
    )


@asynccontextmanager
async def wired(factory: MockFactory, **button: Any) -> AsyncIterator[Wired]:
    """A ``PushToTalk`` feeding an ``idle_client``."""
    config = button_config(**button)
    client = idle_client(button_options(config))
    push_to_talk = PushToTalk(config, client.handle_button, pin_factory=factory)
    try:
        yield Wired(factory.pin(PIN), client)
    finally:
        push_to_talk.close()


def test_a_bouncing_hold_is_one_turn(factory: MockFactory) -> None:
    async def main() -> None:
        async with wired(factory) as w:
            await asyncio.to_thread(bounce, w.pin, True)
            await w.until(lambda: w.client.held)
            await asyncio.to_thread(bounce, w.pin, False)
            await w.until(lambda: not w.client.held)
            assert w.earcons == ["press", "release"]  # one press, one release

    asyncio.run(main())


def test_a_long_press_in_toggle_mode_hangs_up(factory: MockFactory) -> None:
    async def main() -> None:
        async with wired(factory, mode="toggle") as w:
            w.pin.drive_low()
            await w.until(lambda: w.client.held)
            await w.until(lambda: not w.client.held)  # held long_press_s: hung up
            assert w.client.state is State.READY
            w.pin.drive_high()

    asyncio.run(main())


def test_tap_double_press_mutes_and_leaves_no_conversation(factory: MockFactory) -> None:
    async def main() -> None:
        async with wired(factory, mode="tap", bounce_ms=0) as w:
            w.pin.drive_low()
            await w.until(lambda: w.client.hands_free)
            w.pin.drive_high()
            w.pin.drive_low()
            await w.until(lambda: w.client.muted)
            assert not w.client.hands_free and w.client.state is State.MUTED
            w.pin.drive_high()

    asyncio.run(main())


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
    arrived: list[Input] = []

    async def main() -> None:
        recorder = Recorder()
        button = PushToTalk(button_config(), recorder, pin_factory=mock)
        await asyncio.to_thread(mock.pin(PIN).drive_low)
        arrived.append(await recorder.next())
        button.close()

    asyncio.run(main())
    leds.close()
    mock.reset()
    assert [edge.pressed for edge in arrived if isinstance(edge, Edge)] == [True]


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
