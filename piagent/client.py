"""AgentClient: runs the appliance's commands and feeds it events; the device's one policy lives
in ``piagent.appliance``, the I/O of one connection in ``piagent.conversation``.

Owns: the ``Appliance`` and the one way events reach it (``_feed``, in order, also when a
subscriber acts in turn); the button's ``Gestures``, fed the same way (their actions become
appliance events, their timers run with the appliance's); the commands' execution (a
``Conversation`` per connection, a probe that opens none, the held turn and the uplink's mode
in ``TurnUplink``, the speaker's flush, timers on the event loop); handing every announcement
(``piagent.announcements``) to every subscriber in order, none dropped (the journal's lines
are one subscriber); and the figures ``status`` shows.

Concurrency: everything runs on one event loop. ``run`` owns a ``TaskGroup`` with the playback
watcher, each conversation and each probe. The control methods (``press``, ``say``, ``feed``
...) never block; they must be called from the loop's thread (hardware adapters hop there).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from piagent.announcements import (
    Announcement,
    Subscriber,
    TurnLatency,
    log_announcement,
)
from piagent.appliance import Appliance, State, gestures
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
)
from piagent.appliance.events import (
    AgentAudio,
    Booted,
    ButtonDown,
    ButtonUp,
    ConnectionClosed,
    Context,
    Event,
    HandsFree,
    HangUpRequested,
    MicHealth,
    MuteRequested,
    PlaybackDrained,
    ProbeAnswered,
    Reloaded,
    Timer,
    TimerFired,
    Typed,
    VoiceOver,
    WordHeard,
)
from piagent.appliance.rules import Uplink
from piagent.clientconfig import (
    ClientOptions,
    endpoint_from_config,
    initiation_from_config,
    options_from_config,
)
from piagent.conversation import AudioSink, Conversation, Line, Parts, ToolRunner, VadLevel
from piagent.errors import PiagentError
from piagent.logs import journal_fields
from piagent.protocol.messages import ConversationInitiationClientData
from piagent.protocol.session import Ending, Session
from piagent.transport import Endpoint, LinkSettings, probe_service
from piagent.uplink import TurnUplink

logger = logging.getLogger(__name__)

Samples = npt.NDArray[np.int16]
ClientState = State  # the appliance's state is what the LEDs show (interface.md ``status``)


class NotConnected(PiagentError):
    """A request that needs a live conversation came while there was none."""


@dataclass(slots=True)
class ClientStatus:
    """A snapshot for ``piagent ctl status``."""

    state: State
    conversation_id: str | None
    latency: TurnLatency | None
    last_ending: Ending | None
    vad_score: float
    dropped_frames: int
    turns: int


class AgentClient:
    """Conversations with one agent; see the module docstring."""

    def __init__(
        self,
        endpoint: Endpoint,
        initiation: ConversationInitiationClientData,
        options: ClientOptions,
        *,
        source_rate: int,
        sink: AudioSink,
        tools: ToolRunner | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        booted: bool = True,
        button: gestures.ButtonOptions | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._initiation = initiation
        self._options = options
        self._source_rate = source_rate
        self._sink = sink
        self._tools = tools
        self._clock = clock
        self._appliance = Appliance(options.policy(), rng or random.Random())
        self._gestures = gestures.Gestures(button)  # the button's gesture memory
        self._uplink = TurnUplink(options.hold_frames)
        self._audio_needed = True  # as the microphone starts: delivering
        # Told when microphone frames start or stop having anywhere to go (``TurnUplink.
        # needed``), after the event that changed it; the daemon lets a WAV microphone rest.
        self.when_audio_needed: Callable[[bool], None] | None = None
        self._conv: Conversation | None = None
        self._group: asyncio.TaskGroup | None = None
        self._connect_waiting = False  # Connect came before ``run``
        self._timers: dict[Timer | gestures.GestureTimer, tuple[float, asyncio.TimerHandle]] = {}
        self._events: collections.deque[Event | gestures.Input] = collections.deque()
        self._feeding = False
        self._playing = asyncio.Event()  # agent audio was queued: the watcher waits it out
        self._subscribers: list[Subscriber] = [log_announcement]
        self._sending_voice = False
        self._latency: TurnLatency | None = None
        self._last_ending: Ending | None = None
        self._conversation_id: str | None = None
        self._turns = 0
        self._dropped_frames = 0
        if booted:
            self.boot()

    # ------------------------------------------------------------------------------------------
    # Status

    @property
    def state(self) -> State:
        """The state the LEDs show."""
        return self._appliance.state

    @property
    def sending_voice(self) -> bool:
        """True while the last frame sent was the user's real audio (not silence)."""
        return self._sending_voice

    @property
    def muted(self) -> bool:
        """Whether the microphone is muted."""
        return self._appliance.muted

    @property
    def held(self) -> bool:
        """Whether a turn is held open (the button pressed, or toggled on)."""
        return self._appliance.held

    @property
    def hands_free(self) -> bool:
        """Whether hands-free talking is on (tap mode)."""
        return self._appliance.hands_free

    @property
    def vad_score(self) -> float:
        """The server's last voice-activity score (0-1)."""
        return self._conv.vad_score if self._conv is not None else 0.0

    @property
    def source_rate(self) -> int:
        """Sample rate (Hz) of the frames given to ``feed``."""
        return self._source_rate

    @source_rate.setter
    def source_rate(self, rate: int) -> None:
        """The microphone's rate changed (it opened late): resample from the new rate."""
        if rate == self._source_rate:
            return
        self._source_rate = rate
        self._uplink.restart()  # held frames are at the old rate
        if self._conv is not None:
            self._conv.set_source_rate(rate)

    def status(self) -> ClientStatus:
        """A snapshot of state, conversation and figures."""
        conv = self._conv
        return ClientStatus(
            state=self.state,
            conversation_id=conv.conversation_id if conv else None,
            latency=self._latency,
            last_ending=self._last_ending,
            vad_score=self.vad_score,
            dropped_frames=self._dropped_frames + (conv.dropped_frames if conv else 0),
            turns=self._turns,
        )

    def subscribe(self, subscriber: Subscriber) -> None:
        """Hand every announcement to ``subscriber`` from now on, in order (on the loop)."""
        self._subscribers.append(subscriber)

    # ------------------------------------------------------------------------------------------
    # Control: called on the event loop, never block

    def boot(self) -> None:
        """The devices are open: ready for a press."""
        self._feed(Booted(self._clock()))

    def press(self) -> None:
        """The user starts talking: opens a conversation when there is none; a barge-in when
        the agent is speaking (its playback stops at once)."""
        self._feed(ButtonDown(self._clock()))

    def release(self) -> None:
        """The user stops talking: the turn is over, a reply is awaited."""
        self._feed(ButtonUp(self._clock(), captured=self._uplink.held_frames > 0))

    def set_hands_free(self, on: bool) -> None:
        """Tap mode: microphone audio flows without holding; the server's turn detection ends
        each turn. Turning it on opens a conversation."""
        self._feed(HandsFree(self._clock(), on))

    def set_muted(self, muted: bool) -> None:
        """Mute the microphone: silence is sent instead of its audio."""
        self._feed(MuteRequested(self._clock(), muted))

    def handle_button(self, event: gestures.Input) -> None:
        """A raw edge of the push-to-talk button or a key (``gpio``, ``keyboard``), timed on
        this client's clock: its gestures decide what it means (``appliance.gestures``)."""
        self._feed(event)

    def set_mic_health(self, healthy: bool) -> None:
        """The microphone became healthy or unhealthy."""
        self._feed(MicHealth(self._clock(), healthy))

    def say(self, text: str) -> None:
        """A typed user message: interrupts the agent; opens a conversation when needed."""
        self._feed(Typed(self._clock(), text))

    def heard_word(self, word: str) -> None:
        """The wake word (a tap of the button: hands-free) or the stop word (an interruption)."""
        self._feed(WordHeard(self._clock(), word))

    def voice_over(self) -> None:
        """Echo cancellation heard the user start talking over the agent."""
        self._feed(VoiceOver(self._clock()))

    def send_context(self, text: str, context_id: str | None = None) -> None:
        """A contextual update for the agent; held until a conversation is up."""
        self._feed(Context(self._clock(), text, context_id))

    def send_activity(self) -> None:
        """Tell the agent the user is present."""
        self._live_session().send_user_activity()
        self._flush()

    def send_feedback(self, score: str | None) -> None:
        """Rate the agent's last turn (``like``, ``dislike``, None to clear)."""
        self._live_session().send_feedback(score)
        self._flush()

    def hang_up(self, *, let_finish: bool = False) -> None:
        """End the conversation (and stop trying to open one); with ``let_finish`` the agent's
        words already received play out first (the ``hang_up`` client tool)."""
        self._feed(HangUpRequested(self._clock(), let_finish))

    def reload(
        self,
        endpoint: Endpoint,
        initiation: ConversationInitiationClientData,
        options: ClientOptions,
        *,
        tools: ToolRunner | None = None,
    ) -> None:
        """New settings (after SIGHUP): used from the next connection; clears a fatal error."""
        self._endpoint, self._initiation, self._options = endpoint, initiation, options
        if tools is not None:
            self._tools = tools
        self._feed(Reloaded(self._clock(), options.policy()))

    def feed(self, frame: Samples) -> None:
        """One microphone frame (int16 mono at ``source_rate``), in real time."""
        conv = self._conv
        send = conv.send_audio if conv is not None else _discard
        self._sending_voice = self._uplink.feed(frame, send)

    def _live_session(self) -> Session:
        session = self._conv.live_session() if self._conv is not None else None
        if session is None:
            raise NotConnected("no conversation is open")
        return session

    def _flush(self) -> None:
        if self._conv is not None:
            self._conv.flush()

    # ------------------------------------------------------------------------------------------
    # Events in, commands out

    def _feed(self, event: Event | gestures.Input) -> None:
        """The one way into the appliance. An event fed while another is being handled (a
        subscriber acting in turn) waits for it, so that each is handled whole and in order."""
        self._events.append(event)
        if self._feeding:
            return
        self._feeding = True
        try:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, gestures.INPUTS):
                    self._gesture(event)
                    continue
                if isinstance(event, ConnectionClosed):
                    self._closed(event.ending)
                elif isinstance(event, AgentAudio):
                    self._playing.set()
                for command in self._appliance.handle(event):
                    self._execute(command)
        finally:
            self._feeding = False
        needed = self._uplink.needed
        hook = self.when_audio_needed
        if needed != self._audio_needed and hook is not None:
            hook(needed)
        self._audio_needed = needed

    def _gesture(self, event: gestures.Input) -> None:
        """Run the button's gestures, judged against the appliance's state now; the controls
        they use feed the appliance after this event, in order."""
        status = gestures.Status(self.held, self.hands_free, self.muted)
        for action in self._gestures.handle(event, status):
            match action:
                case gestures.Press():
                    self.press()
                case gestures.Release():
                    self.release()
                case gestures.SetHandsFree(on=on):
                    self.set_hands_free(on)
                case gestures.RequestHangUp():
                    self.hang_up()
                case gestures.SetMuted(muted=muted):
                    self.set_muted(muted)
                case gestures.StartGestureTimer(timer=timer, at=at):
                    self._start_timer(timer, at)
                case gestures.CancelGestureTimer(timer=timer):
                    self._cancel_timer(timer)

    def _closed(self, ending: Ending) -> None:
        if self._conv is not None:
            self._dropped_frames += self._conv.dropped_frames
        self._conv = None
        self._sending_voice = False
        self._last_ending = ending

    def _execute(self, command: Command) -> None:
        conv = self._conv
        match command:
            case Connect():
                self._connect()
            case Probe():
                assert self._group is not None  # probes follow a failed connection: running
                self._group.create_task(self._probe())
            case HangUp(drain=drain):
                if conv is not None:
                    conv.hang_up(drain=drain)
            case Send(message=message):
                if conv is not None:
                    conv.send(message)
            case SetUplink(mode=mode):
                self._uplink.mode = mode
                if mode is not Uplink.VOICE:
                    self._sending_voice = False
            case StartTurn():
                self._uplink.start_turn()
            case StopTurn():
                self._uplink.stop_turn()
            case ReplayTurn():
                if conv is not None:
                    self._uplink.replay(conv.send_audio)
            case ForgetTurn():
                self._uplink.forget()
            case FlushPlayback(barge_in=barge_in):
                self._sink.flush()
                if conv is not None:
                    conv.silence(barge_in=barge_in)
            case StartTimer(timer=timer, at=at):
                self._start_timer(timer, at)
            case CancelTimer(timer=timer):
                self._cancel_timer(timer)
            case TurnAnswered(turn=turn, reply_ms=reply_ms):
                ping = conv.session.last_ping_ms if conv and conv.session else None
                conversation_id = conv.conversation_id if conv else None
                self._latency = TurnLatency(turn, reply_ms, ping, conversation_id)
                self._turns += 1
                self._announce(self._latency)
            case StateEntered(state=state):
                logger.debug("state %s", state.value, extra=journal_fields(state=state.value))
                self._announce(command)
            case ConversationEnded(at=at):
                self._announce(command)
                self._feed(gestures.ConversationOver(at))  # a tap's pending hang-up is moot
            case ConversationBegan() | PlayEarcon():
                self._announce(command)

    def _announce(self, announcement: Announcement) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(announcement)
            except Exception:
                logger.exception("a subscriber failed on %s", type(announcement).__name__)

    def _show(self, line: Line | VadLevel) -> None:
        self._announce(line)

    # ------------------------------------------------------------------------------------------
    # Running the commands

    def _connect(self) -> None:
        options = self._options
        parts = Parts(
            endpoint=self._endpoint,
            initiation=self._initiation,
            settings=LinkSettings(options.connect_timeout, options.stall_timeout),
            max_backlog=max(10, int(options.stall_timeout * 1000 / options.chunk_ms)),
            sink=self._sink,
            tools=self._tools,
            feed=self._feed,
            show=self._show,
            clock=self._clock,
        )
        self._conv = Conversation(parts, self._source_rate)
        if self._group is None:
            self._connect_waiting = True
            return
        self._group.create_task(self._conv.run())

    async def _probe(self) -> None:
        ok = await probe_service(self._endpoint, limit=self._options.connect_timeout)
        self._feed(ProbeAnswered(self._clock(), ok))

    def _start_timer(self, timer: Timer | gestures.GestureTimer, at: float) -> None:
        self._cancel_timer(timer)
        loop = asyncio.get_running_loop()
        handle = loop.call_later(max(0.0, at - self._clock()), self._fire, timer)
        self._timers[timer] = (at, handle)

    def _cancel_timer(self, timer: Timer | gestures.GestureTimer) -> None:
        entry = self._timers.pop(timer, None)
        if entry is not None:
            entry[1].cancel()

    def _fire(self, timer: Timer | gestures.GestureTimer) -> None:
        entry = self._timers.pop(timer, None)
        if entry is not None:
            # Never earlier than it was asked for: the loop may round its deadline down.
            at = max(self._clock(), entry[0])
            if isinstance(timer, Timer):
                self._feed(TimerFired(at, timer))
            else:
                self._feed(gestures.GestureTimerFired(at, timer))

    # ------------------------------------------------------------------------------------------
    # The loop

    async def run(self) -> None:
        """Run conversations as the appliance asks, forever; cancel to stop (a live
        conversation is closed with 1000)."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                if self._connect_waiting and self._conv is not None:
                    self._connect_waiting = False
                    group.create_task(self._conv.run())
                await self._watch_playback()
        finally:
            self._group = None
            for _, handle in self._timers.values():
                handle.cancel()
            self._timers.clear()

    async def _watch_playback(self) -> None:
        """Tell the appliance when queued agent audio has been heard, also after the socket
        has closed (the agent's last words)."""
        while True:
            await self._playing.wait()
            self._playing.clear()
            await self._sink.wait_drained()
            if not self._playing.is_set():
                self._feed(PlaybackDrained(self._clock()))


def _discard(samples: Samples) -> None:
    """Where frames go while no conversation is open."""


__all__ = [
    "AgentClient",
    "Announcement",
    "AudioSink",
    "ClientOptions",
    "ClientState",
    "ClientStatus",
    "Line",
    "NotConnected",
    "ToolRunner",
    "TurnLatency",
    "endpoint_from_config",
    "initiation_from_config",
    "options_from_config",
]
