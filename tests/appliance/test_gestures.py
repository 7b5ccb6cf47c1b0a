"""The button's gestures on a fake clock: every documented semantic of the recognizer.

Each test drives a ``Gestures`` through ``Button``: raw edges (and keys) at chosen moments, the
recognizer's timers fired as the clock passes them, and its actions applied to a real
``Appliance``, whose ``held``, ``hands_free`` and ``muted`` are the status the next input is
judged against (what ``AgentClient`` does at run time). Nothing sleeps. Times as the config
might set them, short: 5 ms debounce, 0.2 s long press, 0.15 s double press.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from piagent.appliance import Appliance, Options
from piagent.appliance import events as ev
from piagent.appliance.gestures import (
    Action,
    ButtonOptions,
    CancelGestureTimer,
    ConversationOver,
    Edge,
    Gestures,
    GestureTimer,
    GestureTimerFired,
    Input,
    Key,
    KeyPressed,
    Press,
    Release,
    RequestHangUp,
    SetHandsFree,
    SetMuted,
    StartGestureTimer,
    Status,
)

BOUNCE = 0.005
SETTLE = 0.025  # longer than the debounce: an edge counts
LONG = 0.2
DOUBLE = 0.15
GAP = DOUBLE + 0.02  # a pause that ends any double-press window
HELD = LONG + 0.08  # long enough to make a long press


class Button:
    """A recognizer, the appliance it drives, a fake clock, and the calls made, by name."""

    def __init__(self, **options: Any) -> None:
        settings: dict[str, Any] = {
            "bounce_s": BOUNCE,
            "long_press_s": LONG,
            "double_press_s": DOUBLE,
        }
        settings.update(options)
        self.gestures = Gestures(ButtonOptions(**settings))
        self.appliance = Appliance(Options(), random.Random(7))
        self.appliance.handle(ev.Booted(0.0))
        self.now = 0.0
        self.calls: list[str] = []
        self.moments: list[float] = []  # when each call was made
        self.timers: dict[GestureTimer, float] = {}

    @property
    def status(self) -> Status:
        a = self.appliance
        return Status(held=a.held, hands_free=a.hands_free, muted=a.muted)

    def feed(self, event: Input) -> list[Action]:
        out = self.gestures.handle(event, self.status)
        for action in out:
            self._apply(action)
        return out

    def _apply(self, action: Action) -> None:
        at = self.now
        match action:
            case Press():
                self._call("press", ev.ButtonDown(at))
            case Release():
                self._call("release", ev.ButtonUp(at))
            case SetHandsFree(on=on):
                self._call(f"hands_free {'on' if on else 'off'}", ev.HandsFree(at, on))
            case RequestHangUp():
                self._call("hang_up", ev.HangUpRequested(at))
            case SetMuted(muted=muted):
                self._call("mute" if muted else "unmute", ev.MuteRequested(at, muted))
            case StartGestureTimer(timer=timer, at=due):
                self.timers[timer] = due
            case CancelGestureTimer(timer=timer):
                del self.timers[timer]  # only what is armed is cancelled

    def _call(self, name: str, event: ev.Event) -> None:
        self.calls.append(name)
        self.moments.append(self.now)
        self.appliance.handle(event)

    def advance(self, seconds: float) -> None:
        """Move the clock on, firing due timers in order at their moments."""
        end = self.now + seconds
        while (timer := self._next_timer(end)) is not None:
            self.now = max(self.now, self.timers.pop(timer))
            self.feed(GestureTimerFired(self.now, timer))
        self.now = end

    def _next_timer(self, end: float) -> GestureTimer | None:
        """The armed timer due first, if it is due by ``end``."""
        first = min(self.timers, key=self.timers.__getitem__, default=None)
        return first if first is not None and self.timers[first] <= end else None

    def edge(self, pressed: bool) -> None:
        self.feed(Edge(self.now, pressed))

    def down(self, wait: float = SETTLE) -> None:
        self.edge(True)
        self.advance(wait)

    def up(self, wait: float = SETTLE) -> None:
        self.edge(False)
        self.advance(wait)

    def click(self) -> None:
        self.down()
        self.up()

    def key(self, key: Key) -> None:
        self.feed(KeyPressed(self.now, key))

    def conversation_over(self) -> None:
        self.feed(ConversationOver(self.now))

    @property
    def talking(self) -> bool:
        return self.appliance.held or self.appliance.hands_free


# --- hold ---------------------------------------------------------------------------------


def test_hold_presses_on_the_debounced_edge_and_releases() -> None:
    b = Button()
    assert not b.gestures.is_pressed
    b.edge(True)
    b.advance(BOUNCE - 0.001)
    assert b.calls == [] and not b.gestures.is_pressed  # not stable for bounce_s yet
    b.advance(SETTLE)
    # press() comes on the debounced edge, not after the double-press window
    assert b.calls == ["press"] and b.moments == [BOUNCE]
    assert b.appliance.held and b.gestures.is_pressed and b.talking
    b.up()
    assert b.calls == ["press", "release"] and not b.appliance.held and not b.gestures.is_pressed


def test_hold_mode_a_long_hold_is_a_long_turn_not_a_hang_up() -> None:
    # Holding is talking: a user speaking for longer than long_press_s is not hung up on.
    b = Button()
    b.down(HELD * 10)
    assert b.calls == ["press"] and b.appliance.held and b.timers == {}
    b.up()
    assert b.calls == ["press", "release"]


def test_hold_long_press_disabled_is_a_long_turn() -> None:
    b = Button(long_press=False)
    b.down(HELD)
    assert b.calls == ["press"] and b.appliance.held
    b.up()
    assert b.calls == ["press", "release"] and not b.appliance.held


def test_hold_release_after_the_turn_was_hung_up_elsewhere_does_nothing() -> None:
    b = Button()
    b.down()
    b.appliance.handle(ev.HangUpRequested(b.now))  # ctl hangup while the button is held
    b.up()
    assert b.calls == ["press"] and not b.appliance.held


def test_hold_double_press_toggles_mute_and_leaves_the_mic_closed() -> None:
    b = Button()
    b.click()
    b.down()
    assert b.calls == ["press", "release", "mute"] and b.appliance.muted
    assert not b.appliance.held
    b.advance(LONG * 2)  # the second press never becomes a long press
    b.up(GAP)
    assert b.calls == ["press", "release", "mute"]
    b.click()  # a fresh press after the window: a turn again
    b.click()  # ... and a second double press unmutes
    assert b.calls[3:] == ["press", "release", "unmute"] and not b.appliance.muted


def test_double_press_window_is_measured_from_the_first_press() -> None:
    b = Button()
    b.down(DOUBLE)  # pressed at BOUNCE and held through the window
    b.up()
    b.down()  # soon after the release, but DOUBLE after the first press: a press of its own
    assert b.calls == ["press", "release", "press"]


@pytest.mark.parametrize(("after", "double"), [(DOUBLE - 0.001, True), (DOUBLE + 0.001, False)])
def test_double_press_window_ends_double_press_s_after_the_first(
    after: float, double: bool
) -> None:
    b = Button()
    b.click()  # pressed at BOUNCE
    b.advance(after - 2 * SETTLE)
    b.down()  # settles ``after`` seconds after the first press
    assert b.calls == (["press", "release", "mute"] if double else ["press", "release", "press"])


def test_hold_double_press_disabled_is_two_turns() -> None:
    b = Button(double_press=False)
    b.click()
    b.click()
    assert b.calls == ["press", "release", "press", "release"] and not b.appliance.muted


def test_triple_press_is_a_double_then_a_fresh_press() -> None:
    b = Button()
    for _ in range(3):
        b.click()
    assert b.calls == ["press", "release", "mute", "press", "release"]


# --- toggle -------------------------------------------------------------------------------


def test_toggle_press_starts_next_press_ends() -> None:
    b = Button(mode="toggle")
    b.click()
    assert b.calls == ["press"] and b.appliance.held and b.talking  # release: nothing
    b.advance(GAP)
    b.down()
    assert b.calls == ["press", "release"] and not b.appliance.held
    b.up()
    assert b.calls == ["press", "release"]


def test_toggle_double_press_from_idle_settles_closed() -> None:
    b = Button(mode="toggle")
    b.click()
    b.click()
    assert not b.talking
    assert b.calls == ["press", "release", "mute"] and b.appliance.muted


def test_toggle_double_press_while_talking_settles_closed() -> None:
    b = Button(mode="toggle")
    b.click()
    b.advance(GAP)
    b.click()  # ends the turn ...
    b.click()  # ... and this makes it a double press: mute, still closed
    b.advance(GAP)
    b.click()  # the next press opens a turn again
    assert b.calls == ["press", "release", "mute", "press"]
    assert b.appliance.held and b.appliance.muted


def test_toggle_long_press_hangs_up() -> None:
    b = Button(mode="toggle")
    b.down(HELD)
    assert b.calls == ["press", "hang_up"] and b.moments[1] == pytest.approx(BOUNCE + LONG)
    b.up(GAP)
    assert b.calls == ["press", "hang_up"] and not b.talking  # its release does nothing
    b.click()
    assert b.calls == ["press", "hang_up", "press"] and b.appliance.held


def test_toggle_long_press_is_never_half_of_a_double_press() -> None:
    b = Button(mode="toggle", long_press_s=DOUBLE / 2)
    b.down(DOUBLE / 2 + SETTLE)  # a long press, ended within the double-press window
    b.up()
    b.down()
    assert b.calls == ["press", "hang_up", "press"]


def test_toggle_long_press_disabled_holds_the_turn_open() -> None:
    b = Button(mode="toggle", long_press=False)
    b.down(HELD)
    b.up()
    assert b.calls == ["press"] and b.appliance.held


# --- tap ----------------------------------------------------------------------------------


def test_tap_opens_hands_free_and_next_press_hangs_up() -> None:
    b = Button(mode="tap")
    b.click()
    assert b.calls == ["hands_free on"] and b.appliance.hands_free and b.talking
    b.advance(GAP)
    pressed_at = b.now + BOUNCE
    b.down()
    assert b.calls == ["hands_free on"]  # the hang-up waits for the double-press window
    b.advance(DOUBLE)
    assert b.calls == ["hands_free on", "hang_up"] and not b.appliance.hands_free
    assert b.moments[1] == pytest.approx(pressed_at + DOUBLE)
    b.up()
    assert b.calls == ["hands_free on", "hang_up"]


def test_tap_hang_up_is_immediate_without_double_press() -> None:
    b = Button(mode="tap", double_press=False)
    b.click()
    b.click()
    assert b.calls == ["hands_free on", "hang_up"] and b.timers == {}


def test_tap_double_press_mutes_mid_conversation() -> None:
    b = Button(mode="tap")
    b.click()
    b.advance(GAP)
    b.click()
    b.click()
    b.advance(GAP)  # the cancelled hang-up stays cancelled
    assert b.talking
    assert b.calls == ["hands_free on", "mute"] and b.appliance.hands_free and b.appliance.muted


def test_tap_double_press_from_idle_leaves_no_conversation() -> None:
    b = Button(mode="tap")
    b.click()
    b.click()
    assert not b.talking
    assert b.calls == ["hands_free on", "hang_up", "mute"] and b.appliance.muted


def test_tap_double_press_after_the_conversation_ended_only_mutes() -> None:
    b = Button(mode="tap")
    b.click()
    b.appliance.handle(ev.HangUpRequested(b.now))  # the appliance ended it meanwhile ...
    b.conversation_over()  # ... and the runner says so
    b.click()
    assert b.calls == ["hands_free on", "mute"]


def test_tap_long_press_on_opening_hangs_up_once() -> None:
    b = Button(mode="tap")
    b.down(HELD)
    b.up()
    assert b.calls == ["hands_free on", "hang_up"]
    b.advance(GAP)
    b.down(HELD)  # opens again; the long press hangs up again
    b.up(GAP)
    assert b.calls == ["hands_free on", "hang_up"] * 2


def test_tap_press_that_hangs_up_is_never_a_long_press() -> None:
    b = Button(mode="tap", double_press=False)
    b.click()
    b.advance(GAP)
    b.down(HELD)
    assert b.calls == ["hands_free on", "hang_up"] and b.timers == {}


def test_tap_long_press_disabled() -> None:
    b = Button(mode="tap", long_press=False)
    b.down(HELD)
    assert b.calls == ["hands_free on"] and b.timers == {}


def test_conversation_over_lets_the_next_press_open() -> None:
    b = Button(mode="tap")
    b.click()
    b.appliance.handle(ev.HangUpRequested(b.now))  # the client hung up by itself (idle) ...
    b.conversation_over()  # ... and says so
    b.advance(GAP)
    b.click()
    assert b.calls == ["hands_free on", "hands_free on"] and b.appliance.hands_free


def test_conversation_over_cancels_a_pending_hang_up() -> None:
    b = Button(mode="tap")
    b.click()
    b.advance(GAP)
    b.down()  # the hang-up waits for the double-press window ...
    assert GestureTimer.HANG_UP in b.timers
    b.appliance.handle(ev.HangUpRequested(b.now))
    b.conversation_over()  # ... but the conversation ended meanwhile: nothing left to end
    b.up(GAP)
    assert b.calls == ["hands_free on"] and b.timers == {}
    b.conversation_over()  # nothing pending: nothing to do
    assert b.timers == {}


# --- debouncing -----------------------------------------------------------------------------


def bounce(b: Button, final: bool, edges: int = 6) -> None:
    """A bouncing contact: alternating edges 1 ms apart, ending at ``final``."""
    for i in reversed(range(edges)):  # i == 0 is the last edge
        b.edge((i % 2 == 0) == final)
        b.advance(0.001)


def test_bouncing_contact_makes_one_press_and_one_release() -> None:
    b = Button(double_press=False)
    bounce(b, True)
    b.advance(SETTLE)
    assert b.calls == ["press"]
    bounce(b, False)
    b.advance(SETTLE)
    assert b.calls == ["press", "release"]


def test_glitch_shorter_than_bounce_is_ignored() -> None:
    b = Button()
    b.edge(True)
    b.edge(False)  # at the same moment: far shorter than bounce_s
    b.advance(SETTLE)
    assert b.calls == [] and not b.gestures.is_pressed and b.timers == {}
    b.down()
    b.edge(False)  # a glitch while held: no release
    b.advance(BOUNCE / 2)
    b.edge(True)
    b.advance(SETTLE)
    assert b.calls == ["press"] and b.gestures.is_pressed
    b.up()
    assert b.calls == ["press", "release"]


def test_zero_bounce_acts_on_each_edge() -> None:
    b = Button(bounce_s=0, double_press=False)
    b.edge(True)
    assert b.calls == ["press"] and b.timers == {}  # at once, no timer
    b.edge(False)
    assert b.calls == ["press", "release"] and b.moments == [0.0, 0.0]


def test_a_stale_or_early_timer_firing_is_ignored() -> None:
    g = Gestures(ButtonOptions(bounce_s=BOUNCE))
    status = Status()
    assert g.handle(GestureTimerFired(1.0, GestureTimer.LONG_PRESS), status) == []  # unarmed
    assert g.handle(Edge(0.0, True), status) == [StartGestureTimer(GestureTimer.SETTLE, BOUNCE)]
    assert g.handle(GestureTimerFired(BOUNCE / 2, GestureTimer.SETTLE), status) == []  # early
    assert g.handle(GestureTimerFired(BOUNCE, GestureTimer.SETTLE), status) == [Press()]


def test_default_options_are_the_configs() -> None:
    options = Gestures().options
    assert options == ButtonOptions()
    assert (options.mode, options.bounce_s, options.long_press_s) == ("hold", 0.03, 1.5)
    assert (options.double_press_s, options.long_press, options.double_press) == (0.4, True, True)


# --- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hold", "toggle", "tap"])
def test_talk_key_toggles_a_turn_whatever_the_mode(mode: str) -> None:
    # A terminal reports no key-up: each talk key opens a turn or ends the open one.
    b = Button(mode=mode)
    b.key(Key.TALK)
    assert b.calls == ["press"] and b.appliance.held
    b.key(Key.TALK)  # at once: keys make no double presses
    assert b.calls == ["press", "release"] and not b.appliance.held
    assert b.timers == {}


def test_mute_and_hang_up_keys() -> None:
    b = Button()
    b.key(Key.MUTE)
    assert b.calls == ["mute"] and b.appliance.muted
    b.key(Key.MUTE)
    assert b.calls == ["mute", "unmute"] and not b.appliance.muted
    b.key(Key.TALK)
    b.key(Key.HANG_UP)
    assert b.calls[2:] == ["press", "hang_up"] and not b.talking
    b.key(Key.TALK)  # after a hang-up, the talk key talks again
    assert b.calls[-1] == "press"


def test_hang_up_key_takes_over_a_pending_tap_hang_up() -> None:
    b = Button(mode="tap")
    b.click()
    b.advance(GAP)
    b.down()  # a hang-up waiting for the double-press window
    b.key(Key.HANG_UP)
    b.up(GAP)
    assert b.calls == ["hands_free on", "hang_up"] and b.timers == {}
