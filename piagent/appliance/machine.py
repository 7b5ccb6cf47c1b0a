"""Appliance: what the whole device does about a press, a drop, a queue, a silence or a timer.

Typed events and the time come in through ``handle``; typed commands and announcements come
back out, for the I/O side to run and to hand to its subscribers. The appliance has no clock
of its own (every event carries ``at``), starts no timers itself (it asks for them and is told
when they fire) and does no I/O, so every behaviour here is tested on a fake clock.

What it decides:

* conversations are opened on demand (a press, a typed message, hands-free talking) or kept
  open (``always_connected``), and closed after ``idle_timeout`` without speech either way, at
  ``max_duration``, on request, or after the server's last words;
* the user's turn is held from the press until it is answered, so that audio captured while a
  conversation opens, while the service queues it (``queue_status``), or while a dropped
  conversation is replaced is sent once audio can be heard;
* a transient drop while the appliance is in use (a turn awaits its answer, the agent speaks,
  the user talks, hands-free is on) reconnects at once into a new conversation and sends the
  unanswered turn again; a drop while idle just ends the conversation;
* after a stall or a failed connection the appliance is ``offline``: it retries with backoff
  for a user who is waiting, and otherwise only checks that the service answers (``Probe``),
  never opening a conversation nobody asked for (conversations are billed);
* a queue wait that times out (``timed_out``, close code 3008) is reported and retried;
* a fatal ending (a rejected key, an override the agent refuses) is ``error`` until a press or
  a reload; a microphone missing for ``mic_grace`` shows as ``error`` while nothing happens.

The state moves only through ``table.TRANSITIONS``; every move is logged at DEBUG and
announced as ``StateEntered``.
"""

from __future__ import annotations

import enum
import logging
import random

from piagent.appliance.commands import (
    CancelTimer,
    Command,
    Connect,
    ConversationBegan,
    ConversationEnded,
    FlushPlayback,
    ForgetTurn,
    HangUp,
    PlayEarcon,
    Probe,
    ReplayTurn,
    Send,
    SetUplink,
    StartTimer,
    StartTurn,
    StateEntered,
    StopTurn,
    TurnAnswered,
    Uplink,
)
from piagent.appliance.events import (
    AgentAudio,
    Booted,
    ButtonDown,
    ButtonUp,
    ConnectionClosed,
    Context,
    ConversationStarted,
    Event,
    HandsFree,
    HangUpRequested,
    Interrupted,
    MicHealth,
    MuteRequested,
    PlaybackDrained,
    ProbeAnswered,
    QueueAdmitted,
    QueueTimedOut,
    QueueWaiting,
    Reloaded,
    ServerEnding,
    Timer,
    TimerFired,
    Typed,
    UserHeard,
    VoiceActivity,
)
from piagent.appliance.options import Backoff, Options
from piagent.appliance.table import State, Trigger, can, transition
from piagent.protocol.messages import ContextualUpdate, UserMessage
from piagent.protocol.session import Ending, EndReason

logger = logging.getLogger(__name__)

QUEUE_TIMEOUT_CLOSE = 3008  # the close code of a queue wait that timed out
PENDING_LIMIT = 32  # contextual updates held while no conversation is open; oldest dropped


class Link(enum.Enum):
    """Where the one conversation's connection stands."""

    DOWN = "down"  # none
    OPENING = "opening"  # asked for; metadata not yet here
    QUEUED = "queued"  # the service holds it in its queue and discards our audio
    UP = "up"  # audio flows both ways


# The states whose display follows what happens inside a conversation; the others are moved
# only by the life of the connection.
_ACTIVITY = frozenset({State.READY, State.LISTENING, State.THINKING, State.SPEAKING})
# The trigger that moves an activity state to another one.
_ACTIVITY_TRIGGERS: dict[tuple[State, State], Trigger] = {
    (State.READY, State.LISTENING): Trigger.TALK,
    (State.THINKING, State.LISTENING): Trigger.TALK,
    (State.SPEAKING, State.LISTENING): Trigger.TALK,
    (State.LISTENING, State.THINKING): Trigger.TURN_OVER,
    (State.READY, State.THINKING): Trigger.AWAIT,
    (State.SPEAKING, State.THINKING): Trigger.AWAIT,
    (State.READY, State.SPEAKING): Trigger.REPLY,
    (State.LISTENING, State.SPEAKING): Trigger.REPLY,
    (State.THINKING, State.SPEAKING): Trigger.REPLY,
    (State.SPEAKING, State.READY): Trigger.QUIET,
    (State.THINKING, State.READY): Trigger.NO_REPLY,
    (State.LISTENING, State.READY): Trigger.NOTHING_SAID,
}


class Appliance:
    """The device's policy; see the module docstring. ``handle`` is its one entry point."""

    def __init__(self, options: Options, rng: random.Random | None = None) -> None:
        self.options = options
        self._rng = rng or random.Random()
        self._backoff = Backoff(options.backoff_initial, options.backoff_max, self._rng)
        self._state = State.BOOTING
        self._out: list[Command] = []
        self._link = Link.DOWN
        self._started = False  # metadata arrived on the current connection
        self._hanging_up = False  # we asked the current connection to close
        self._queue_timed_out = False
        self._held = False  # the button is down
        self._hands_free = False
        self._muted = False
        self._playing = False  # agent audio is queued for the speaker
        self._mic_missing = False
        self._fatal: Ending | None = None
        self._turn_held = False  # the runner holds a user turn that is not yet answered
        self._awaiting: float | None = None  # when the unanswered turn ended
        self._heard = False  # the server heard the turn that awaits its answer
        self._typed: str | None = None  # the unanswered turn, when it was typed
        self._pending: list[ContextualUpdate] = []
        self._uplink = Uplink.HOLD
        self._last_activity = 0.0
        self._timers: dict[Timer, float] = {}
        self._detail = ""

    # ------------------------------------------------------------------------------------------
    # What the I/O side may read

    @property
    def state(self) -> State:
        """The state the LEDs show."""
        return self._state

    @property
    def muted(self) -> bool:
        """Whether the microphone is muted."""
        return self._muted

    @property
    def uplink(self) -> Uplink:
        """What becomes of microphone frames now."""
        return self._uplink

    @property
    def timers(self) -> dict[Timer, float]:
        """The armed timers and when they are due."""
        return dict(self._timers)

    # ------------------------------------------------------------------------------------------
    # The entry point

    def handle(self, event: Event) -> list[Command]:
        """Take one event; return what to do about it, in order."""
        self._out = []
        at = event.at
        match event:
            case Booted():
                self._go(Trigger.BOOTED, at)
                if self.options.always_connected:
                    self._want(at)
            case ButtonDown():
                self._on_press(at)
            case ButtonUp():
                self._on_release(at)
            case HandsFree(on=on):
                self._hands_free = on
                self._touch(at)
                self._emit(PlayEarcon("press" if on else "release"))
                if on:
                    self._want(at)
            case Typed(text=text):
                self._on_typed(at, text)
            case Context(text=text):
                self._on_context(text)
            case HangUpRequested(let_finish=let_finish):
                self._on_hang_up(at, let_finish)
            case MuteRequested(muted=muted):
                self._muted = muted
            case MicHealth(healthy=healthy):
                self._on_mic_health(at, healthy)
            case Reloaded(options=options):
                self._on_reload(at, options)
            case ConversationStarted(conversation_id=conversation_id):
                self._on_started(at, conversation_id)
            case QueueWaiting():
                self._on_queued(at)
            case QueueAdmitted():
                self._on_admitted(at)
            case QueueTimedOut():
                logger.warning("the service's queue wait timed out")
                self._queue_timed_out = True
            case UserHeard():
                self._on_user_heard(at)
            case VoiceActivity():
                self._touch(at)
            case AgentAudio(turn=turn):
                self._on_agent_audio(at, turn)
            case Interrupted():
                self._playing = False
                self._emit(FlushPlayback())
            case ServerEnding():
                self._on_server_ending(at)
            case ConnectionClosed(ending=ending):
                self._on_closed(at, ending)
            case ProbeAnswered(ok=ok):
                self._on_probe(at, ok)
            case PlaybackDrained():
                self._on_drained(at)
            case TimerFired(timer=timer):  # pragma: no branch (the last kind of event)
                self._on_timer(at, timer)
        self._sync_uplink()
        self._settle(at)
        return self._out

    # ------------------------------------------------------------------------------------------
    # The user

    def _on_press(self, at: float) -> None:
        self._held = True
        self._touch(at)
        if self._fatal is not None:
            logger.info("retrying after the user pressed again")
            self._fatal = None
        if self._playing:
            self._barge_in()
        self._awaiting = None
        self._typed = None
        self._cancel(Timer.REPLY)
        self._turn_held = True
        self._emit(StartTurn())
        self._emit(PlayEarcon("press"))  # after the barge-in flush, which would drop it
        self._want(at)

    def _on_release(self, at: float) -> None:
        if not self._held:
            return
        self._held = False
        self._touch(at)
        self._emit(StopTurn())
        self._emit(PlayEarcon("release"))
        if self._muted:  # nothing was captured: there is no turn to answer
            self._forget_turn()
            return
        self._await_answer(at, heard=False)

    def _on_typed(self, at: float, text: str) -> None:
        self._touch(at)
        if self._playing:
            self._barge_in()
        if self._turn_held and not self._held:
            self._forget_turn()
        self._typed = text
        self._await_answer(at, heard=True)
        if self._link is Link.UP:
            self._emit(Send(UserMessage(text)))
        else:
            self._want(at)

    def _on_context(self, text: str) -> None:
        message = ContextualUpdate(text)
        if self._link is Link.UP:
            self._emit(Send(message))
            return
        self._pending.append(message)
        del self._pending[:-PENDING_LIMIT]

    def _on_hang_up(self, at: float, let_finish: bool) -> None:
        self._held = False
        self._hands_free = False
        self._pending.clear()
        self._abandon_turn()
        self._cancel(Timer.RETRY)
        if self._link is not Link.DOWN:
            logger.info("hanging up (hang-up)")
            self._hang_up(drain=let_finish)
            if not let_finish:
                self._playing = False
                self._emit(FlushPlayback())
        if self._state in (State.CONNECTING, State.WAITING):
            self._go(Trigger.ENDED, at)
        elif self._state is State.OFFLINE and Timer.PROBE not in self._timers:
            self._schedule(Timer.PROBE, at + self._backoff.next_delay())

    def _on_mic_health(self, at: float, healthy: bool) -> None:
        if healthy:
            self._cancel(Timer.MIC_GRACE)
            if self._mic_missing:
                logger.info("the microphone is back")
                self._mic_missing = False
        elif not self._mic_missing:
            self._schedule(Timer.MIC_GRACE, at + self.options.mic_grace)

    def _on_reload(self, at: float, options: Options) -> None:
        self.options = options
        self._backoff = Backoff(options.backoff_initial, options.backoff_max, self._rng)
        self._fatal = None
        if self._state is State.OFFLINE:  # new settings: try them now
            self._cancel(Timer.PROBE)
            if Timer.RETRY in self._timers:
                self._cancel(Timer.RETRY)
                self._dial(at)
            else:
                self._emit(Probe())
        if options.always_connected:
            self._want(at)

    # ------------------------------------------------------------------------------------------
    # The conversation

    def _on_started(self, at: float, conversation_id: str) -> None:
        self._started = True
        self._emit(ConversationBegan(conversation_id, at))
        self._touch(at)
        self._schedule(Timer.MAX_DURATION, at + self.options.max_duration)
        self._schedule(Timer.IDLE, at + self.options.idle_timeout)
        if self._link is Link.OPENING:
            self._open(at)

    def _on_queued(self, at: float) -> None:
        if self._link is Link.DOWN or self._link is Link.QUEUED:
            return
        logger.info("the service queued the conversation: holding the user's audio")
        self._link = Link.QUEUED
        self._cancel(Timer.REPLY)  # time in the queue is not time waiting for an answer
        self._go(Trigger.QUEUED, at)

    def _on_admitted(self, at: float) -> None:
        if self._link is not Link.QUEUED:
            return
        logger.info("the service admitted the conversation")
        self._link = Link.OPENING
        if self._started:
            self._open(at)

    def _open(self, at: float) -> None:
        """Audio can be heard from now on: send what was held, then follow the user."""
        self._link = Link.UP
        if self._hanging_up:
            return
        for message in self._pending:
            self._emit(Send(message))
        self._pending.clear()
        if self._turn_held:
            self._emit(ReplayTurn())
        if self._typed is not None:
            self._emit(Send(UserMessage(self._typed)))
        if self._awaiting is not None:
            self._arm_reply(max(self._awaiting, at))
        if self._muted:
            trigger = Trigger.OPEN_MUTED
        elif self._held or self._hands_free:
            trigger = Trigger.OPEN_TALKING
        elif self._awaiting is not None:
            trigger = Trigger.OPEN_AWAITING
        else:
            trigger = Trigger.OPEN_IDLE
        self._go(trigger, at)

    def _on_user_heard(self, at: float) -> None:
        self._touch(at)
        if self._awaiting is None:
            if self._hands_free:  # the end of hands-free speech starts the wait
                self._await_answer(at, heard=True)
            return
        if not self._heard:
            self._heard = True
            self._arm_reply(self._awaiting)

    def _on_agent_audio(self, at: float, turn: int) -> None:
        self._playing = True
        self._touch(at)
        if self._awaiting is None:
            return
        self._emit(TurnAnswered(turn, (at - self._awaiting) * 1000.0, at))
        self._awaiting = None
        self._typed = None
        self._cancel(Timer.REPLY)
        if self._turn_held and not self._held:
            self._forget_turn()

    def _on_server_ending(self, at: float) -> None:
        if self._playing:
            self._schedule(Timer.LAST_WORDS, at + self.options.ending_grace)
        else:
            self._schedule(Timer.CLOSE, at + self.options.close_grace)

    def _on_drained(self, at: float) -> None:
        self._playing = False
        self._touch(at)  # idle time counts from the agent's last word heard, not received
        if Timer.LAST_WORDS in self._timers:
            self._cancel(Timer.LAST_WORDS)
            self._schedule(Timer.CLOSE, at + self.options.close_grace)

    def _on_closed(self, at: float, ending: Ending) -> None:
        hung_up = self._hanging_up
        queue_timeout = self._queue_timed_out or ending.code == QUEUE_TIMEOUT_CLOSE
        self._link = Link.DOWN
        self._started = self._hanging_up = self._queue_timed_out = False
        for timer in (Timer.IDLE, Timer.MAX_DURATION, Timer.REPLY, Timer.LAST_WORDS, Timer.CLOSE):
            self._cancel(timer)
        if not ending.before_metadata:
            self._backoff.reset()
        if ending.cut_turn is not None:
            logger.warning("agent turn %d was cut off: %s", ending.cut_turn, ending.describe())
        in_use = not hung_up and (
            self._held
            or self._hands_free
            or self._awaiting is not None
            or self._playing
            or self.options.always_connected
        )
        reason = ending.reason
        if hung_up or (not reason.is_error and not queue_timeout):
            self._end_normally(at, ending, again=self.options.always_connected and not hung_up)
        elif not reason.retryable and not queue_timeout:
            self._fail(at, ending)
        elif queue_timeout:
            self._emit(ConversationEnded(ending, at, retrying=in_use))
            logger.warning("%s: the queue wait timed out", ending.describe())
            if in_use:
                self._detail = "queue wait timed out"
                if can(self._state, Trigger.DROPPED):
                    self._go(Trigger.DROPPED, at)
                self._schedule(Timer.RETRY, at + self._backoff.next_delay())
            else:
                self._end(at)
        elif reason is EndReason.STALLED or ending.before_metadata:
            self._emit(ConversationEnded(ending, at, retrying=True))
            self._detail = reason.value
            self._go(Trigger.UNREACHABLE, at)
            delay = self._backoff.next_delay()
            what = "retrying" if in_use else "checking for the service again"
            logger.warning("%s; %s in %.1f s", ending.describe(), what, delay)
            self._schedule(Timer.RETRY if in_use else Timer.PROBE, at + delay)
        elif in_use:
            self._emit(ConversationEnded(ending, at, retrying=True))
            logger.warning("%s; reconnecting into a new conversation", ending.describe())
            self._emit(PlayEarcon("offline"))
            self._detail = reason.value
            self._go(Trigger.DROPPED, at)
            self._dial(at)
        else:
            self._emit(ConversationEnded(ending, at, retrying=False))
            logger.info("%s while idle: the conversation is over", ending.describe())
            self._end(at)

    def _end_normally(self, at: float, ending: Ending, *, again: bool) -> None:
        log = logger.warning if ending.reason.is_error else logger.info
        log("conversation ended: %s", ending.describe())
        self._emit(ConversationEnded(ending, at, retrying=again))
        self._end(at)
        if again:
            self._want(at)

    def _end(self, at: float) -> None:
        self._abandon_turn()
        if self._state in (State.CONNECTING, State.WAITING):
            self._go(Trigger.ENDED, at)

    def _fail(self, at: float, ending: Ending) -> None:
        logger.error("%s; not retrying: %s", ending.describe(), ending.reason.advice)
        self._emit(ConversationEnded(ending, at, retrying=False))
        self._fatal = ending
        self._detail = ending.reason.value
        self._pending.clear()
        self._abandon_turn()
        self._cancel(Timer.RETRY)
        self._cancel(Timer.PROBE)
        self._emit(PlayEarcon("error"))
        self._go(Trigger.FATAL, at)

    def _on_probe(self, at: float, ok: bool) -> None:
        if self._state is not State.OFFLINE:
            return  # a press took over meanwhile
        if ok:
            logger.info("the service answers again")
            self._backoff.reset()
            self._go(Trigger.REACHABLE, at)
        else:
            self._schedule(Timer.PROBE, at + self._backoff.next_delay())

    # ------------------------------------------------------------------------------------------
    # Timers

    def _on_timer(self, at: float, timer: Timer) -> None:
        due = self._timers.get(timer)
        if due is None or at < due:
            return  # cancelled, or re-armed later, since the runner set it
        del self._timers[timer]
        match timer:
            case Timer.IDLE:
                self._on_idle(at)
            case Timer.MAX_DURATION:
                logger.info("hanging up (maximum length)")
                self._hang_up(drain=False)
            case Timer.REPLY:
                heard = self._heard
                logger.info("no reply to the user's turn%s", "" if heard else " (no speech heard)")
                self._abandon_turn()
            case Timer.RETRY:
                self._dial(at)
            case Timer.PROBE:
                self._emit(Probe())
            case Timer.MIC_GRACE:
                self._mic_missing = True
            case Timer.LAST_WORDS:
                self._schedule(Timer.CLOSE, at + self.options.close_grace)
            case Timer.CLOSE:  # pragma: no branch (the last kind of timer)
                logger.info("hanging up (server ended the conversation)")
                self._hang_up(drain=False)

    def _on_idle(self, at: float) -> None:
        due = self._last_activity + self.options.idle_timeout
        busy = self._held or self._playing or self._awaiting is not None
        if self._link is Link.QUEUED or busy:
            self._touch(at)  # someone is talking, waiting or queued: not idle yet
            due = at + self.options.idle_timeout
        if at < due:
            self._schedule(Timer.IDLE, due)
            return
        logger.info("hanging up (idle)")
        self._hang_up(drain=True)

    # ------------------------------------------------------------------------------------------
    # Helpers

    def _want(self, at: float) -> None:
        """A conversation is wanted: open one unless one is open or opening."""
        if self._link is Link.DOWN and self._state is not State.BOOTING:
            self._cancel(Timer.RETRY)
            self._cancel(Timer.PROBE)
            self._dial(at)

    def _dial(self, at: float) -> None:
        self._link = Link.OPENING
        self._emit(Connect())
        if self._state is not State.CONNECTING:
            self._go(Trigger.DIAL, at)

    def _hang_up(self, *, drain: bool) -> None:
        self._hanging_up = True
        self._emit(HangUp(drain=drain))

    def _barge_in(self) -> None:
        self._playing = False
        self._emit(FlushPlayback(barge_in=self._link is Link.UP))

    def _await_answer(self, at: float, *, heard: bool) -> None:
        self._awaiting = at
        self._heard = heard
        if self._link is Link.UP:
            self._arm_reply(at)

    def _arm_reply(self, since: float) -> None:
        limit = self.options.reply_timeout if self._heard else self.options.empty_turn_timeout
        self._schedule(Timer.REPLY, since + limit)

    def _forget_turn(self) -> None:
        self._turn_held = False
        self._emit(ForgetTurn())

    def _abandon_turn(self) -> None:
        """No answer will come: forget the turn (a press still going on keeps its own)."""
        self._awaiting = None
        self._typed = None
        self._cancel(Timer.REPLY)
        if self._turn_held and not self._held:
            self._forget_turn()

    def _touch(self, at: float) -> None:
        self._last_activity = at

    def _schedule(self, timer: Timer, at: float) -> None:
        self._timers[timer] = at
        self._emit(StartTimer(timer, at))

    def _cancel(self, timer: Timer) -> None:
        if self._timers.pop(timer, None) is not None:
            self._emit(CancelTimer(timer))

    def _emit(self, command: Command) -> None:
        self._out.append(command)

    def _sync_uplink(self) -> None:
        if self._link is not Link.UP:
            mode = Uplink.HOLD
        else:
            talking = self._held or self._hands_free
            gated = self.options.half_duplex and not self._held and self._playing
            voice = talking and not self._muted and not gated
            mode = Uplink.VOICE if voice else Uplink.SILENCE
        if mode is not self._uplink:
            self._uplink = mode
            self._emit(SetUplink(mode))

    def _settle(self, at: float) -> None:
        """Move the display to what is happening now (through the table, one step at a time)."""
        if self._state is State.ERROR and self._fatal is None and not self._mic_missing:
            self._go(Trigger.CLEARED, at)
        if self._state is State.MUTED and not self._muted:
            self._go(Trigger.UNMUTE, at)
        if self._state not in _ACTIVITY:
            return
        if self._muted:
            self._go(Trigger.MUTE, at)
            return
        if self._uplink is Uplink.VOICE:
            target = State.LISTENING
        elif self._playing:
            target = State.SPEAKING
        elif self._awaiting is not None and self._link is Link.UP:
            target = State.THINKING
        else:
            target = State.READY
        if target is not self._state:
            self._go(_ACTIVITY_TRIGGERS[self._state, target], at)
        if self._state is State.READY and self._mic_missing and self._link is Link.DOWN:
            self._detail = "no microphone"
            self._go(Trigger.MIC_LOST, at)

    def _go(self, trigger: Trigger, at: float) -> None:
        previous = self._state
        self._state = transition(previous, trigger)
        logger.debug("appliance %s -> %s (%s)", previous.value, self._state.value, trigger.value)
        detail = self._detail if self._state in (State.OFFLINE, State.ERROR) else ""
        self._emit(StateEntered(self._state, previous, trigger, at, detail))


__all__ = ["PENDING_LIMIT", "QUEUE_TIMEOUT_CLOSE", "Appliance", "Link"]
