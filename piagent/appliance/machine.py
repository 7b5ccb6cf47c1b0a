"""Appliance: what the whole device does about a press, a drop, a queue, a silence or a timer.

Typed events and the time come in through ``handle``; typed commands and announcements come
back out, for the I/O side to run and to hand to its subscribers. The appliance has no clock
of its own (every event carries ``at``), starts no timers itself (it asks for them and is told
when they fire) and does no I/O, so every behaviour here is tested on a fake clock.

What it decides: when conversations open and close; that the user's turn is held from the
press until its answer has been heard, and sent (again) once audio can be heard (after the
queue admits it, after a drop while in use); ``offline`` after a stall or a failed connection,
checked without a conversation; ``error`` for fatal endings and a missing microphone. The
state moves only through ``table.TRANSITIONS``, each move logged and announced.
"""

from __future__ import annotations

import logging
import random

from piagent.appliance import commands as cmd
from piagent.appliance import events as ev
from piagent.appliance.events import Timer
from piagent.appliance.options import Backoff, Options
from piagent.appliance.rules import (
    ACTIVITY,
    ACTIVITY_TRIGGERS,
    Link,
    Next,
    Uplink,
    activity,
    is_queue_timeout,
    is_unreachable,
    judge,
    uplink_mode,
)
from piagent.appliance.table import State, Trigger, can, transition
from piagent.protocol.messages import ContextualUpdate, UserMessage
from piagent.protocol.session import Ending

logger = logging.getLogger(__name__)

PENDING_LIMIT = 32  # contextual updates held while no conversation is open; oldest dropped


class Appliance:
    """The device's policy; see the module docstring. ``handle`` is its one entry point."""

    def __init__(self, options: Options, rng: random.Random | None = None) -> None:
        self.options = options
        self._rng = rng or random.Random()
        self._backoff = Backoff(options.backoff_initial, options.backoff_max, self._rng)
        self._state = State.BOOTING
        self._out: list[cmd.Command] = []
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
        self._answering: float | None = None  # ... and while its answer plays: when it ended
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
    def held(self) -> bool:
        """The button holds a turn open (pressed, or toggled on)."""
        return self._held

    @property
    def hands_free(self) -> bool:
        """Hands-free talking is on (tap mode)."""
        return self._hands_free

    # ------------------------------------------------------------------------------------------
    # The entry point

    def handle(self, event: ev.Event) -> list[cmd.Command]:
        """Take one event; return what to do about it, in order."""
        self._out = []
        at = event.at
        match event:
            case ev.Booted():
                self._go(Trigger.BOOTED, at)
                if self.options.always_connected:
                    self._want(at)
            case ev.ButtonDown():
                self._on_press(at)
            case ev.ButtonUp(captured=captured):
                self._on_release(at, captured)
            case ev.HandsFree(on=on):
                self._set_hands_free(at, on)
            case ev.WordHeard(word=word):
                self._on_word(at, word)
            case ev.VoiceOver():
                if self._playing and (self._hands_free or self._held):
                    self._touch(at)
                    self._barge_in()
            case ev.Typed(text=text):
                self._on_typed(at, text)
            case ev.Context(text=text, context_id=context_id):
                self._on_context(ContextualUpdate(text, context_id))
            case ev.HangUpRequested(let_finish=let_finish):
                self._on_hang_up(at, let_finish)
            case ev.MuteRequested(muted=muted):
                self._muted = muted
            case ev.MicHealth(healthy=healthy):
                self._on_mic_health(at, healthy)
            case ev.Reloaded(options=options):
                self._on_reload(at, options)
            case ev.ConversationStarted(conversation_id=conversation_id):
                self._on_started(at, conversation_id)
            case ev.QueueWaiting():
                self._on_queued(at)
            case ev.QueueAdmitted():
                self._on_admitted(at)
            case ev.QueueTimedOut():
                logger.warning("the service's queue wait timed out")
                self._queue_timed_out = True
            case ev.UserHeard():
                self._on_user_heard(at)
            case ev.VoiceActivity():
                self._touch(at)
            case ev.AgentAudio(turn=turn):
                self._on_agent_audio(at, turn)
            case ev.Interrupted():
                self._playing = False
                self._emit(cmd.FlushPlayback())
                self._answered()
            case ev.ServerEnding():
                self._on_server_ending(at)
            case ev.ConnectionClosed(ending=ending):
                self._on_closed(at, ending)
            case ev.ProbeAnswered(ok=ok):
                self._on_probe(at, ok)
            case ev.PlaybackDrained():
                self._on_drained(at)
            case ev.TimerFired(timer=timer):  # pragma: no branch (the last kind of event)
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
        self._awaiting = self._answering = None
        self._typed = None
        self._cancel(Timer.REPLY)
        self._turn_held = True
        self._emit(cmd.StartTurn())
        self._emit(cmd.PlayEarcon("press"))  # after the barge-in flush, which would drop it
        self._want(at)

    def _on_release(self, at: float, captured: bool) -> None:
        if not self._held:
            return
        self._held = False
        self._touch(at)
        self._emit(cmd.StopTurn())
        self._emit(cmd.PlayEarcon("release"))
        if self._muted or not captured:  # nothing was heard: there is no turn to answer
            self._forget_turn()
            return
        self._await_answer(at, heard=False)

    def _set_hands_free(self, at: float, on: bool) -> None:
        self._hands_free = on
        self._touch(at)
        self._emit(cmd.PlayEarcon("press" if on else "release"))
        if on:
            self._want(at)

    def _on_word(self, at: float, word: str) -> None:
        """The wake word opens a hands-free conversation as a tap would; in one, it and the
        stop word interrupt the agent (the user's speech then reaches the server)."""
        if word == "wake" and not self._hands_free:
            self._set_hands_free(at, True)
        elif self._playing:
            self._touch(at)
            self._barge_in()

    def _on_typed(self, at: float, text: str) -> None:
        self._touch(at)
        if self._playing:
            self._barge_in()
        self._answering = None
        if self._turn_held and not self._held:
            self._forget_turn()
        self._typed = text
        self._await_answer(at, heard=True)
        if self._link is Link.UP:
            self._emit(cmd.Send(UserMessage(text)))
        else:
            self._want(at)

    def _on_context(self, message: ContextualUpdate) -> None:
        if self._link is Link.UP:
            self._emit(cmd.Send(message))
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
                self._emit(cmd.FlushPlayback())
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
                self._emit(cmd.Probe())
        if options.always_connected:
            self._want(at)

    # ------------------------------------------------------------------------------------------
    # The conversation

    def _on_started(self, at: float, conversation_id: str) -> None:
        self._started = True
        self._emit(cmd.ConversationBegan(conversation_id, at))
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
            self._emit(cmd.Send(message))
        self._pending.clear()
        if self._turn_held:
            self._emit(cmd.ReplayTurn())
        if self._typed is not None:
            self._emit(cmd.Send(UserMessage(self._typed)))
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
        self._emit(cmd.TurnAnswered(turn, (at - self._awaiting) * 1000.0, at))
        # The turn is kept until its answer has been heard: a drop midway asks it again.
        self._answering, self._awaiting = self._awaiting, None
        self._cancel(Timer.REPLY)

    def _on_server_ending(self, at: float) -> None:
        if self._playing:
            self._schedule(Timer.LAST_WORDS, at + self.options.ending_grace)
        else:
            self._schedule(Timer.CLOSE, at + self.options.close_grace)

    def _on_drained(self, at: float) -> None:
        self._playing = False
        self._touch(at)  # idle time counts from the agent's last word heard, not received
        self._answered()
        if Timer.LAST_WORDS in self._timers:
            self._cancel(Timer.LAST_WORDS)
            self._schedule(Timer.CLOSE, at + self.options.close_grace)

    def _on_closed(self, at: float, ending: Ending) -> None:
        hung_up = self._hanging_up
        queue = is_queue_timeout(ending, timed_out=self._queue_timed_out)
        self._link = Link.DOWN
        self._started = self._hanging_up = self._queue_timed_out = False
        for timer in (
            Timer.IDLE,
            Timer.MAX_DURATION,
            Timer.REPLY,
            Timer.LAST_WORDS,
            Timer.CLOSE,
        ):
            self._cancel(timer)
        if self._answering is not None and self._heard:
            # Its answer was cut off: the turn the server had heard awaits it again. (A turn it
            # never heard, a press without a word, took whatever came next as its answer.)
            self._awaiting, self._answering = self._answering, None
        self._answered()
        in_use = not hung_up and (
            self._held
            or self._hands_free
            or self._awaiting is not None
            or self.options.always_connected
        )
        always = self.options.always_connected
        next_ = judge(ending, hung_up=hung_up, in_use=in_use, queue=queue, always_connected=always)
        unreachable = is_unreachable(ending, queue=queue)
        if not ending.before_metadata and not (next_ is Next.RECONNECT and not unreachable):
            self._backoff.reset()  # a conversation worked; a drop in use keeps counting
        delay: float | None = None
        if next_ in (Next.RECONNECT, Next.PROBE):
            delay = self._backoff.next_delay()
            drop = next_ is Next.RECONNECT and not unreachable and not queue
            if drop and self._backoff.attempts == 1:
                delay = 0.0  # a drop of a working conversation: at once, the first time
        self._emit(cmd.ConversationEnded(ending, at, next_, delay))
        match next_:
            case Next.OVER | Next.AGAIN:
                self._end(at)
                if next_ is Next.AGAIN:
                    self._want(at)
            case Next.FATAL:
                self._fail(at, ending)
            case Next.PROBE | Next.RECONNECT:  # pragma: no branch (the last ones)
                assert delay is not None
                self._detail = "queue wait timed out" if queue else ending.reason.value
                if unreachable:
                    self._go(Trigger.UNREACHABLE, at)
                elif can(self._state, Trigger.DROPPED):
                    self._emit(cmd.PlayEarcon("offline"))
                    self._go(Trigger.DROPPED, at)
                if next_ is Next.PROBE:
                    self._schedule(Timer.PROBE, at + delay)
                elif delay == 0.0:
                    self._dial(at)
                else:
                    self._schedule(Timer.RETRY, at + delay)

    def _end(self, at: float) -> None:
        self._abandon_turn()
        self._hands_free = False  # the button's next press opens a new conversation
        if self._state in (State.CONNECTING, State.WAITING, State.LISTENING, State.THINKING):
            self._go(Trigger.ENDED, at)

    def _fail(self, at: float, ending: Ending) -> None:
        self._fatal = ending
        self._detail = ending.reason.value
        self._pending.clear()
        self._abandon_turn()
        self._cancel(Timer.RETRY)
        self._cancel(Timer.PROBE)
        self._emit(cmd.PlayEarcon("error"))
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
                self._emit(cmd.Probe())
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
        self._emit(cmd.Connect())
        if self._state is not State.CONNECTING:
            self._go(Trigger.DIAL, at)

    def _hang_up(self, *, drain: bool) -> None:
        self._hanging_up = True
        self._emit(cmd.HangUp(drain=drain))

    def _barge_in(self) -> None:
        self._playing = False
        self._emit(cmd.FlushPlayback(barge_in=self._link is Link.UP))

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
        self._emit(cmd.ForgetTurn())

    def _answered(self) -> None:
        """The answer has been heard (or cut short by the user): the turn is done."""
        if self._answering is None:
            return
        self._answering = None
        self._typed = None
        self._backoff.reset()  # a whole answer came through: the service is well again
        if self._turn_held and not self._held:
            self._forget_turn()

    def _abandon_turn(self) -> None:
        """No answer will come: forget the turn (a press still going on keeps its own)."""
        self._awaiting = None
        self._answering = None
        self._typed = None
        self._cancel(Timer.REPLY)
        if self._turn_held and not self._held:
            self._forget_turn()

    def _touch(self, at: float) -> None:
        self._last_activity = at

    def _schedule(self, timer: Timer, at: float) -> None:
        self._timers[timer] = at
        self._emit(cmd.StartTimer(timer, at))

    def _cancel(self, timer: Timer) -> None:
        if self._timers.pop(timer, None) is not None:
            self._emit(cmd.CancelTimer(timer))

    def _emit(self, command: cmd.Command) -> None:
        self._out.append(command)

    def _sync_uplink(self) -> None:
        talking = self._held or self._hands_free
        gated = self.options.half_duplex and not self._held and self._playing
        mode = uplink_mode(self._link, voice=talking and not self._muted and not gated)
        if mode is not self._uplink:
            self._uplink = mode
            self._emit(cmd.SetUplink(mode))

    def _settle(self, at: float) -> None:
        """Move the display to what is happening now (through the table, one step at a time)."""
        if self._state is State.ERROR and self._fatal is None and not self._mic_missing:
            self._go(Trigger.CLEARED, at)
        if self._state is State.MUTED and not self._muted:
            self._go(Trigger.UNMUTE, at)
        if self._state not in ACTIVITY:
            return
        if self._muted:
            self._go(Trigger.MUTE, at)
            return
        awaiting = self._awaiting is not None and self._link is Link.UP
        target = activity(self._uplink, playing=self._playing, awaiting=awaiting)
        if target is not self._state:
            self._go(ACTIVITY_TRIGGERS[self._state, target], at)
        if self._state is State.READY and self._mic_missing and self._link is Link.DOWN:
            self._detail = "no microphone"
            self._go(Trigger.MIC_LOST, at)

    def _go(self, trigger: Trigger, at: float) -> None:
        previous = self._state
        self._state = transition(previous, trigger)
        logger.debug("appliance %s -> %s (%s)", previous.value, self._state.value, trigger.value)
        detail = self._detail if self._state in (State.OFFLINE, State.ERROR) else ""
        self._emit(cmd.StateEntered(self._state, previous, trigger, at, detail))


__all__ = ["PENDING_LIMIT", "Appliance", "Link"]
