"""The push-to-talk button's gestures, sans-I/O: timed edges in, control actions out.

Owns ``Gestures``, the recognizer that turns the raw level changes of the button (and the
development keyboard's keys) into what the user meant: ``ButtonOptions`` (its settings, built
from ``gpio.button`` by the I/O side), the typed inputs (``Edge``, ``KeyPressed``,
``GestureTimerFired``, ``ConversationOver``), the ``Status`` of the appliance each input is
judged against, and the typed outputs: the control actions (``Press``, ``Release``,
``SetHandsFree``, ``RequestHangUp``, ``SetMuted``) and the timer requests
(``StartGestureTimer``, ``CancelGestureTimer``). The runner (``AgentClient``) feeds the inputs,
turns the actions into appliance events and runs the timers; the input adapters
(``piagent.gpio``, ``piagent.keyboard``) only hand over edges and keys and remember nothing.

Button semantics (every edge is debounced first: a level counts once it has been stable for
``bounce_s``; a glitch shorter than that is ignored; a button held down at start counts only
from its next press):

- ``hold``: ``Press`` on the press, ``Release`` on the release.
- ``toggle``: a press opens a turn (``Press``), the next one ends it (``Release``); releases do
  nothing.
- ``tap``: a press opens a hands-free conversation (``SetHandsFree(True)``); the next press
  hangs up (``RequestHangUp``). With double presses on, that hang-up waits ``double_press_s``
  so that a double press can still mute mid-conversation without ending it.
- Long press (held ``long_press_s`` with ``long_press`` on; toggle and tap modes only, since in
  hold mode holding is talking): ``RequestHangUp``; the release that ends it does nothing, so
  no half turn is left behind. In tap mode only a press that opened the conversation can
  become a long press (the other one already hangs up).
- Double press (the second press settles within ``double_press_s`` of the first, with
  ``double_press`` on): the second press toggles mute (``SetMuted(not muted)``) and does
  nothing else; its release and its holding do nothing. The first press has already acted
  (``Press`` is never delayed, so a barge-in stops the agent at once), so a double press
  settles to "microphone closed, mute toggled": in hold mode the first press was a short,
  empty turn; in toggle mode a turn the first press opened is ended with ``Release``; in tap
  mode a conversation the first press opened is hung up again and a hang-up it asked for is
  cancelled, leaving the conversation as it was. A long press is never half of a double
  press, and a third press starts afresh.
- ``ConversationOver`` (the appliance ended the conversation itself: idle time-out, error):
  a tap mode hang-up still pending has nothing left to end, and the next press opens.

Keys (a terminal reports no key-up, so whatever the mode): ``Key.TALK`` opens a turn, or ends
the open one; ``Key.MUTE`` toggles mute; ``Key.HANG_UP`` hangs up.

Whether a turn is held, hands-free talking is on or the microphone muted is the appliance's to
know: each input comes with its ``Status``; the recognizer keeps only its gestures' memory.
Nothing here reads a clock (every input carries ``at``, seconds on the runner's monotonic
clock) or starts a timer itself (it asks, and is told when one fires).

Pure: imports nothing that does I/O.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Literal, TypeAlias

logger = logging.getLogger(__name__)

Mode = Literal["hold", "toggle", "tap"]


@dataclass(frozen=True, slots=True)
class ButtonOptions:
    """How the button's gestures are read (seconds)."""

    mode: Mode = "hold"
    bounce_s: float = 0.03  # a level counts once stable this long; 0: every edge counts
    long_press_s: float = 1.5  # held this long: a long press
    double_press_s: float = 0.4  # a second press within this long: a double press
    long_press: bool = True  # a long press hangs up (not in hold mode)
    double_press: bool = True  # a double press toggles mute


class GestureTimer(enum.Enum):
    """The recognizer's timers; at most one of each is armed at a time."""

    SETTLE = "settle"  # the raw level has been stable for bounce_s: it counts
    LONG_PRESS = "long_press"  # still held after long_press_s: a long press
    HANG_UP = "hang_up"  # tap mode's hang-up, held back for a possible double press


class Key(enum.Enum):
    """What a key of the development keyboard asks for."""

    TALK = "talk"
    MUTE = "mute"
    HANG_UP = "hang_up"


@dataclass(frozen=True, slots=True)
class Status:
    """What the appliance says now: a turn held open, hands-free talking, muted."""

    held: bool = False
    hands_free: bool = False
    muted: bool = False


# --- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Edge:
    """The button's raw level changed (before debouncing); ``pressed``: the new level."""

    at: float
    pressed: bool


@dataclass(frozen=True, slots=True)
class KeyPressed:
    """A key of the development keyboard."""

    at: float
    key: Key


@dataclass(frozen=True, slots=True)
class GestureTimerFired:
    """A timer the recognizer asked for is due."""

    at: float
    timer: GestureTimer


@dataclass(frozen=True, slots=True)
class ConversationOver:
    """The appliance ended a conversation (or gave up opening one)."""

    at: float


Input: TypeAlias = Edge | KeyPressed | GestureTimerFired | ConversationOver
INPUTS = (Edge, KeyPressed, GestureTimerFired, ConversationOver)  # for isinstance()

# --- outputs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Press:
    """The user starts talking (a turn held open)."""


@dataclass(frozen=True, slots=True)
class Release:
    """The user's turn is over."""


@dataclass(frozen=True, slots=True)
class SetHandsFree:
    """Turn hands-free talking on (tap mode's press) or off."""

    on: bool


@dataclass(frozen=True, slots=True)
class RequestHangUp:
    """End the conversation."""


@dataclass(frozen=True, slots=True)
class SetMuted:
    """Mute or unmute the microphone."""

    muted: bool


@dataclass(frozen=True, slots=True)
class StartGestureTimer:
    """Arm ``timer`` to fire at ``at`` (replacing an armed one)."""

    timer: GestureTimer
    at: float


@dataclass(frozen=True, slots=True)
class CancelGestureTimer:
    """Disarm ``timer`` (nothing happens if it is not armed)."""

    timer: GestureTimer


Action: TypeAlias = (
    Press
    | Release
    | SetHandsFree
    | RequestHangUp
    | SetMuted
    | StartGestureTimer
    | CancelGestureTimer
)


class Gestures:
    """The button's gesture recognizer; see the module docstring. ``handle`` is its one entry
    point."""

    def __init__(self, options: ButtonOptions | None = None) -> None:
        self.options = options if options is not None else ButtonOptions()
        # In hold mode holding is talking, for as long as the user speaks: a long press there
        # is a long turn, never a hang-up (the idle timeout or ``ctl hangup`` end those).
        self._long_press = self.options.long_press and self.options.mode != "hold"
        self._level = False  # the last raw level
        self._pressed = False  # the debounced one
        self._first_press_at: float | None = None  # a possible double press's first press
        self._spent = False  # this press is used up (a long press, or a double's second)
        self._opened = False  # tap: the last press opened the conversation
        self._timers: dict[GestureTimer, float] = {}
        self._status = Status()
        self._out: list[Action] = []

    @property
    def is_pressed(self) -> bool:
        """The debounced state of the button."""
        return self._pressed

    def handle(self, event: Input, status: Status) -> list[Action]:
        """Take one input, judged against the appliance's ``status`` now; return what to do
        about it, in order."""
        self._out = []
        self._status = status
        match event:
            case Edge(at=at, pressed=pressed):
                self._on_edge(at, pressed)
            case KeyPressed(key=key):
                self._on_key(key)
            case GestureTimerFired(at=at, timer=timer):
                self._on_timer(at, timer)
            case ConversationOver():  # pragma: no branch (the last kind of input)
                self._opened = False
                self._cancel(GestureTimer.HANG_UP)
        return self._out

    # ------------------------------------------------------------------------------------------
    # Debouncing

    def _on_edge(self, at: float, pressed: bool) -> None:
        self._level = pressed
        self._cancel(GestureTimer.SETTLE)
        if pressed == self._pressed:
            return  # back where it was before bounce_s passed: a glitch, ignored
        if self.options.bounce_s <= 0:
            self._settled(at)
        else:
            self._schedule(GestureTimer.SETTLE, at + self.options.bounce_s)

    def _settled(self, at: float) -> None:
        self._pressed = self._level
        logger.debug("button %s", "pressed" if self._pressed else "released")
        if self._pressed:
            self._on_press(at)
        else:
            self._on_release()

    # ------------------------------------------------------------------------------------------
    # Gestures

    def _on_press(self, at: float) -> None:
        options, status = self.options, self._status
        first = self._first_press_at
        if first is not None and at - first <= options.double_press_s:
            self._first_press_at = None
            self._spent = True
            self._on_double_press()
            return
        self._first_press_at = at if options.double_press else None
        self._spent = False
        arm_long_press = self._long_press
        if options.mode == "hold":
            self._emit(Press())  # at once: a barge-in must not wait
        elif options.mode == "toggle":
            self._emit(Release() if status.held else Press())
        else:  # tap
            self._opened = not status.hands_free
            if self._opened:
                self._emit(SetHandsFree(True))
            else:
                arm_long_press = False  # this press hangs up already
                if options.double_press:  # wait: it may be the first of a double (mute)
                    self._schedule(GestureTimer.HANG_UP, at + options.double_press_s)
                else:
                    self._hang_up()
        if arm_long_press:
            self._schedule(GestureTimer.LONG_PRESS, at + options.long_press_s)

    def _on_release(self) -> None:
        self._cancel(GestureTimer.LONG_PRESS)
        if self._spent:
            return  # the end of a long press or of a double press's second press
        if self.options.mode == "hold" and self._status.held:
            self._emit(Release())

    def _on_held(self) -> None:
        logger.info("button: long press, hanging up")
        self._spent = True
        self._first_press_at = None  # a long press is never half of a double press
        self._hang_up()

    def _on_double_press(self) -> None:
        self._cancel(GestureTimer.LONG_PRESS)
        mode, status = self.options.mode, self._status
        if mode == "toggle" and status.held:
            self._emit(Release())
        elif mode == "tap" and GestureTimer.HANG_UP in self._timers:
            self._cancel(GestureTimer.HANG_UP)  # mute mid-conversation without ending it
        elif mode == "tap" and self._opened:
            self._hang_up()  # undo the open of the first press
        muted = not status.muted
        logger.info("button: double press, %s", "muting" if muted else "unmuting")
        self._emit(SetMuted(muted))

    def _on_key(self, key: Key) -> None:
        status = self._status
        if key is Key.TALK:
            logger.info("keyboard: %s", "turn ended" if status.held else "talking")
            self._emit(Release() if status.held else Press())
        elif key is Key.MUTE:
            logger.info("keyboard: %s", "unmuted" if status.muted else "muted")
            self._emit(SetMuted(not status.muted))
        else:
            logger.info("keyboard: hang up")
            self._hang_up()

    def _hang_up(self) -> None:
        self._cancel(GestureTimer.HANG_UP)
        self._opened = False
        self._emit(RequestHangUp())

    # ------------------------------------------------------------------------------------------
    # Timers

    def _on_timer(self, at: float, timer: GestureTimer) -> None:
        due = self._timers.get(timer)
        if due is None or at < due:
            return  # cancelled, or re-armed later, since the runner set it
        del self._timers[timer]
        if timer is GestureTimer.SETTLE:
            self._settled(at)
        elif timer is GestureTimer.LONG_PRESS:
            self._on_held()
        else:
            self._hang_up()  # tap mode's hang-up: no second press came

    def _schedule(self, timer: GestureTimer, at: float) -> None:
        self._timers[timer] = at
        self._emit(StartGestureTimer(timer, at))

    def _cancel(self, timer: GestureTimer) -> None:
        if self._timers.pop(timer, None) is not None:
            self._emit(CancelGestureTimer(timer))

    def _emit(self, action: Action) -> None:
        self._out.append(action)


__all__ = [
    "INPUTS",
    "Action",
    "ButtonOptions",
    "CancelGestureTimer",
    "ConversationOver",
    "Edge",
    "GestureTimer",
    "GestureTimerFired",
    "Gestures",
    "Input",
    "Key",
    "KeyPressed",
    "Mode",
    "Press",
    "Release",
    "RequestHangUp",
    "SetHandsFree",
    "SetMuted",
    "StartGestureTimer",
    "Status",
]
