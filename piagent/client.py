"""AgentClient: conversations with the agent, opened on demand and kept alive by reconnecting.

Owns the life of conversations: opening one on the first press (or typed message), holding the
audio captured from the moment of the press until the socket is up, streaming microphone frames
(real speech while talking, digital silence otherwise, protocol.md §8), playing agent audio
through an ``AudioSink`` and silencing it at once on an interruption or a barge-in, running
client tools, hanging up after ``idle_timeout`` seconds without speech either way or at
``max_duration``, and reconnecting with backoff after transient failures while stopping, with
one log line that says what to fix, after fatal ones. It derives the appliance state the LEDs
show (``ClientState``) and per-turn latencies for ``status``.

Concurrency: everything here runs on one event loop; ``run`` is the one long-lived coroutine,
and inside it each conversation owns a ``TaskGroup`` (socket pump, supervisor, tool calls). The
control methods (``press``, ``say``, ``feed``, ...) are plain methods that never block; they
must be called from the loop's thread (hardware adapters hop there first).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, cast

import numpy as np
import numpy.typing as npt

from piagent import __version__
from piagent.appliance.options import Backoff
from piagent.audio.codecs import decode_audio, encode_audio
from piagent.audio.resample import StreamResampler
from piagent.config import AgentConfig, Config, Secret
from piagent.errors import PiagentError
from piagent.logs import journal_fields
from piagent.protocol.messages import (
    AgentConfigOverride,
    AgentResponse,
    AgentResponseCorrection,
    AgentToolResponse,
    Audio,
    ClientErrorEvent,
    ClientMessage,
    ClientToolCall,
    ClientToolResult,
    ContextualUpdate,
    ConversationConfigOverride,
    ConversationInitiationClientData,
    ConversationInitiationMetadata,
    ErrorEvent,
    FlatErrorEvent,
    Interruption,
    Ping,
    PromptOverride,
    SourceInfo,
    TtsConfigOverride,
    UnknownMessage,
    UserMessage,
    UserTranscript,
    VadScore,
)
from piagent.protocol.session import (
    ConversationEnded,
    Ending,
    EndReason,
    Session,
    SessionEvent,
    SessionState,
)
from piagent.transport import (
    CLOSE_TIMEOUT,
    ConnectFailed,
    Endpoint,
    Link,
    LinkSettings,
    open_socket,
    resolve_url,
)

logger = logging.getLogger(__name__)

Samples = npt.NDArray[np.int16]


class NotConnected(PiagentError):
    """A request that needs a live conversation came while there was none."""


class ClientState(enum.Enum):
    """What the appliance is doing, as the LEDs show it (interface.md ``status``)."""

    READY = "ready"
    CONNECTING = "connecting"
    LISTENING = "listening"  # user audio is being sent right now
    THINKING = "thinking"  # the user's turn is over, no agent audio yet
    SPEAKING = "speaking"  # agent audio is playing
    MUTED = "muted"
    OFFLINE = "offline"  # waiting to reconnect after a transient failure
    ERROR = "error"  # a fatal failure: waits for a press or a config reload


class AudioSink(Protocol):
    """Where agent audio goes: the speaker's playback buffer."""

    @property
    def rate(self) -> int:
        """Sample rate (Hz) of what ``play`` takes."""
        ...

    @property
    def is_playing(self) -> bool:
        """True while queued audio remains to be heard."""
        ...

    def play(self, samples: Samples) -> None:
        """Queue int16 mono samples at ``rate``; returns at once."""

    def flush(self) -> None:
        """Drop everything queued: silent within one device period."""

    def mark_end(self) -> None:
        """The agent's turn has no more audio: play what is queued without waiting for more."""

    async def wait_drained(self) -> None:
        """Return once everything queued has been played."""


class ToolRunner(Protocol):
    """Runs client tool calls (``piagent.tools.ToolRegistry`` is one)."""

    async def run(self, call: ClientToolCall) -> ClientMessage | None:
        """The result to send, or None when the call expects no response."""
        ...


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Conversation policy (seconds unless stated)."""

    idle_timeout: float = 30.0
    max_duration: float = 600.0
    always_connected: bool = False
    connect_timeout: float = 10.0
    stall_timeout: float = 15.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    half_duplex: bool = True  # send silence while the agent speaks, unless the user holds
    chunk_ms: int = 20  # microphone frame length, for the hold buffer's bound
    hold_limit: float = 30.0  # most audio held while connecting; older frames are dropped
    ending_grace: float = 10.0  # after the server announced the end, wait this long for it
    # "thinking" ends without a reply: after empty_turn_timeout when the server never heard a
    # user turn (the button was pressed with nothing said), else after reply_timeout.
    empty_turn_timeout: float = 5.0
    reply_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class TurnLatency:
    """Figures of one agent turn."""

    turn: int  # the agent turn's event_id
    reply_ms: float | None  # release (or end of speech, or a typed message) to first audio
    ping_ms: int | None  # the server's last round-trip estimate


@dataclass(frozen=True, slots=True)
class Notice:
    """Something to show a person: a state change, a transcript line, a turn summary."""

    kind: str  # state | user | agent | correction | turn | started | ended | tool | error
    text: str


@dataclass(slots=True)
class ClientStatus:
    """A snapshot for ``piagent ctl status``."""

    state: ClientState
    conversation_id: str | None
    latency: TurnLatency | None
    last_ending: Ending | None
    vad_score: float
    dropped_frames: int
    turns: int


@dataclass(slots=True)
class _Conversation:
    """Per-connection state that dies with the socket."""

    link: Link
    started: float
    up: StreamResampler | None = None  # microphone rate -> input format rate
    down: StreamResampler | None = None  # output format rate -> speaker rate
    down_turn: int | None = None  # the agent turn whose samples ``down`` holds
    hang_up: asyncio.Event = field(default_factory=asyncio.Event)
    let_finish: bool = False  # a hang-up waits for the agent's queued words
    active_at: float | None = None  # when metadata arrived
    group: asyncio.TaskGroup | None = None  # owns the supervisor and tool calls
    tools: set[asyncio.Task[None]] = field(default_factory=set)


def initiation_from_config(agent: AgentConfig) -> ConversationInitiationClientData:
    """The ``conversation_initiation_client_data`` the config asks for (protocol.md §3.2).

    Only what the user set is sent: an agent that does not allow an override rejects the whole
    conversation, so a key left out of the config must not appear on the wire, not even empty.
    Dynamic variables keep their YAML types (string, number, boolean)."""
    prompt = PromptOverride(prompt=agent.prompt) if agent.prompt is not None else None
    override = ConversationConfigOverride(
        agent=AgentConfigOverride(
            prompt=prompt, first_message=agent.first_message, language=agent.language
        ),
        tts=TtsConfigOverride(
            voice_id=agent.voice_id,
            stability=agent.tts.stability,
            speed=agent.tts.speed,
            similarity_boost=agent.tts.similarity_boost,
            model_id=agent.tts.model_id,
        ),
    )
    llm = {
        key: value
        for key, value in (
            ("temperature", agent.llm.temperature),
            ("max_tokens", agent.llm.max_tokens),
        )
        if value is not None
    }
    return ConversationInitiationClientData(
        conversation_config_override=override,
        custom_llm_extra_body=llm or None,
        dynamic_variables=dict(agent.dynamic_variables) or None,
        user_id=agent.user_id,
        source_info=SourceInfo(source="unknown", version=f"piagent/{__version__}"),
    )


def options_from_config(config: Config) -> ClientOptions:
    """Conversation policy from the ``session`` and ``audio`` sections."""
    session = config.session
    return ClientOptions(
        idle_timeout=session.idle_timeout,
        max_duration=session.max_duration,
        always_connected=session.always_connected,
        connect_timeout=session.connect_timeout,
        stall_timeout=session.stall_timeout,
        backoff_initial=session.backoff_initial,
        backoff_max=session.backoff_max,
        half_duplex=config.audio.half_duplex,
        chunk_ms=config.audio.input.chunk_ms,
    )


def endpoint_from_config(agent: AgentConfig, api_key: Secret | None) -> Endpoint:
    """Where to connect; the key is revealed only into the endpoint, whose repr hides it."""
    return Endpoint(
        agent.agent_id, agent.server, agent.api_base, api_key.reveal() if api_key else None
    )


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
    ) -> None:
        self._endpoint = endpoint
        self._initiation = initiation
        self._options = options
        self._source_rate = source_rate
        self._sink = sink
        self._tools = tools
        self._clock = clock
        self._rng = rng or random.Random()
        self._backoff = Backoff(options.backoff_initial, options.backoff_max, self._rng)
        self._want = asyncio.Event()
        self._playing = asyncio.Event()  # set when audio is queued; the watcher waits it out
        self._wake = asyncio.Event()  # cuts a backoff wait short
        self._conv: _Conversation | None = None
        self._connecting = False
        self._offline = False
        self._fatal: Ending | None = None
        self._last_ending: Ending | None = None
        self._held = False
        self._hands_free = False
        self._muted = False
        self._sending_voice = False
        self._spoke_since_press = False
        self._awaiting_reply_since: float | None = None
        self._turn_heard = False  # the server acknowledged the turn awaiting its reply
        self._last_activity = clock()
        self._hold: collections.deque[Samples] = collections.deque(
            maxlen=max(1, int(options.hold_limit * 1000 / options.chunk_ms))
        )
        self._pending: collections.deque[ClientMessage] = collections.deque(maxlen=32)
        self._latency: TurnLatency | None = None
        self._turns = 0
        self._vad = 0.0
        self._dropped_frames = 0
        self._silence: Samples = np.zeros(0, dtype=np.int16)
        self._state = ClientState.READY
        self.notices: asyncio.Queue[Notice] = asyncio.Queue(maxsize=256)

    # ------------------------------------------------------------------------------------------
    # Status

    @property
    def state(self) -> ClientState:
        """The state the LEDs show."""
        return self._state

    @property
    def sending_voice(self) -> bool:
        """True while the last frame sent was the user's real audio (not silence)."""
        return self._sending_voice

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
        self._hold.clear()  # held frames are at the old rate
        conv = self._conv
        if conv is not None and conv.up is not None:
            fmt = conv.link.session.input_format
            assert fmt is not None
            conv.up = StreamResampler(rate, fmt.sample_rate)

    @property
    def vad_score(self) -> float:
        """The server's last voice-activity score (0-1)."""
        return self._vad

    def status(self) -> ClientStatus:
        """A snapshot of state, conversation and figures."""
        conv = self._conv
        return ClientStatus(
            state=self._state,
            conversation_id=conv.link.session.conversation_id if conv else None,
            latency=self._latency,
            last_ending=self._last_ending,
            vad_score=self._vad,
            dropped_frames=self._dropped_frames + (conv.link.dropped_frames if conv else 0),
            turns=self._turns,
        )

    def _derive_state(self) -> ClientState:
        if self._fatal is not None:
            return ClientState.ERROR
        if self._offline:
            return ClientState.OFFLINE
        if self._connecting:
            return ClientState.CONNECTING
        if self._muted:
            return ClientState.MUTED
        if self._sending_voice:
            return ClientState.LISTENING
        if self._sink.is_playing:
            return ClientState.SPEAKING
        if self._conv is not None and self._awaiting_reply_since is not None:
            return ClientState.THINKING
        return ClientState.READY

    def refresh_state(self) -> None:
        """Recompute the state; the playback side calls it when audio starts or stops."""
        state = self._derive_state()
        if state is not self._state:
            logger.debug(
                "state %s -> %s",
                self._state.value,
                state.value,
                extra=journal_fields(state=state.value),
            )
            self._state = state
            self._notify("state", state.value)

    def _notify(self, kind: str, text: str) -> None:
        if self.notices.full():
            self.notices.get_nowait()  # drop the oldest: notices are for display only
        self.notices.put_nowait(Notice(kind, text))

    # ------------------------------------------------------------------------------------------
    # Control: called on the event loop, never block

    def press(self) -> None:
        """The user starts talking: opens a conversation when there is none; a barge-in when
        the agent is speaking (its playback stops at once)."""
        self._held = True
        self._spoke_since_press = False
        self._touch()
        if self._fatal is not None:
            logger.info("retrying after the user pressed again")
            self._fatal = None
        if self._conv is None:
            self._hold.clear()
            self._want_conversation()
        else:
            self._barge_in()
        self.refresh_state()

    def release(self) -> None:
        """The user stops talking: the turn is over, a reply is awaited."""
        if not self._held:
            return
        self._held = False
        self._touch()
        if self._spoke_since_press or self._hold:
            self._awaiting_reply_since = self._clock()
            self._turn_heard = False
        self.refresh_state()

    def set_hands_free(self, on: bool) -> None:
        """Tap mode: microphone audio flows without holding; the server's turn detection ends
        each turn. Turning it on opens a conversation."""
        self._hands_free = on
        self._touch()
        if on and self._conv is None:
            self._hold.clear()
            self._want_conversation()
        self.refresh_state()

    def set_muted(self, muted: bool) -> None:
        """Mute the microphone: silence is sent instead of its audio."""
        self._muted = muted
        self.refresh_state()

    @property
    def muted(self) -> bool:
        """Whether the microphone is muted."""
        return self._muted

    def say(self, text: str) -> None:
        """A typed user message: interrupts the agent; opens a conversation when needed."""
        self._touch()
        self._awaiting_reply_since = self._clock()
        self._turn_heard = True
        self._send_or_hold(UserMessage(text))
        self.refresh_state()

    def send_context(self, text: str, context_id: str | None = None) -> None:
        """A contextual update for the agent; held until a conversation is up."""
        self._send_or_hold(ContextualUpdate(text, context_id), open_conversation=False)

    def send_activity(self) -> None:
        """Tell the agent the user is present."""
        session = self._live_session()
        session.send_user_activity()
        self._flush()

    def send_feedback(self, score: str | None) -> None:
        """Rate the agent's last turn (``like``, ``dislike``, None to clear)."""
        session = self._live_session()
        session.send_feedback(score)
        self._flush()

    def hang_up(self, *, let_finish: bool = False) -> None:
        """End the conversation (and stop trying to open one); with ``let_finish`` the agent's
        words already received play out first (the ``hang_up`` client tool)."""
        self._want.clear()
        self._wake.set()
        self._held = False
        self._hands_free = False
        self._hold.clear()
        self._pending.clear()
        self._awaiting_reply_since = None
        if self._conv is not None:
            self._conv.let_finish = let_finish
            self._conv.hang_up.set()
        else:
            self._connecting = False
        self.refresh_state()

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
        self._backoff = Backoff(options.backoff_initial, options.backoff_max, self._rng)
        self._fatal = None
        if options.always_connected:
            self._want_conversation()
        self._wake.set()
        self.refresh_state()

    def feed(self, frame: Samples) -> None:
        """One microphone frame (int16 mono at ``source_rate``), in real time."""
        conv = self._conv
        talking = self._held or self._hands_free
        if conv is not None and conv.link.session.can_send_audio:
            self._send_frame(conv, frame, talking)
        elif talking and self._want.is_set():
            self._hold.append(frame)  # captured while connecting: sent once metadata arrives
        elif self._sending_voice:
            self._sending_voice = False
            self.refresh_state()

    # ------------------------------------------------------------------------------------------
    # Internals of the control side

    def _touch(self) -> None:
        self._last_activity = self._clock()

    def _want_conversation(self) -> None:
        self._want.set()
        self._wake.set()
        if self._conv is None and not self._offline:
            self._connecting = True  # the LEDs say so from the press on, not from the dial

    def _live_session(self) -> Session:
        conv = self._conv
        if conv is None or conv.link.session.state is not SessionState.ACTIVE:
            raise NotConnected("no conversation is open")
        return conv.link.session

    def _flush(self) -> None:
        if self._conv is not None:
            self._conv.link.flush()

    def _barge_in(self) -> None:
        conv = self._conv
        if conv is not None:
            self._sink.flush()
            conv.link.session.drop_current_agent_turn()
            if conv.down is not None:
                conv.down.reset()

    def _send_or_hold(self, message: ClientMessage, *, open_conversation: bool = True) -> None:
        conv = self._conv
        if conv is not None and conv.link.session.state is SessionState.ACTIVE:
            if isinstance(message, UserMessage):
                self._barge_in()
            conv.link.session.send(message)
            conv.link.flush()
            return
        self._pending.append(message)
        if open_conversation:
            self._want_conversation()

    def _send_frame(self, conv: _Conversation, frame: Samples, talking: bool) -> None:
        session = conv.link.session
        gated = self._options.half_duplex and not self._held and self._sink.is_playing
        voice = talking and not self._muted and not gated
        if voice:
            samples = frame
        else:  # one zero buffer reused: this runs every 20 ms
            if len(self._silence) != len(frame):
                self._silence = np.zeros(len(frame), dtype=np.int16)
            samples = self._silence
        fmt = session.input_format
        assert fmt is not None and conv.up is not None  # set together with metadata
        session.send_audio(encode_audio(conv.up.process(samples), fmt))
        conv.link.flush()
        if voice:
            self._spoke_since_press = True
            self._touch()
        if voice is not self._sending_voice:
            self._sending_voice = voice
            self.refresh_state()

    # ------------------------------------------------------------------------------------------
    # The conversation loop

    async def run(self) -> None:
        """Open conversations when wanted, forever; cancel to stop (the socket is closed)."""
        if self._options.always_connected:
            self._want_conversation()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._watch_playback())
            await self._converse_forever()

    async def _watch_playback(self) -> None:
        """Keep ``speaking`` true to the ear: refresh the state when queued audio has played,
        also after the socket has closed (the agent's last words)."""
        while True:
            await self._playing.wait()
            self._playing.clear()
            await self._sink.wait_drained()
            self._touch()  # idle time counts from the agent's last word heard, not received
            self.refresh_state()

    async def _converse_forever(self) -> None:
        while True:
            await self._want.wait()
            try:
                ending = await self._converse()
            except Exception:
                # A bug, not the network: log it where it can be found, and carry on as after
                # a lost connection rather than leave the appliance deaf.
                logger.exception("conversation failed unexpectedly")
                ending = Ending(EndReason.CONNECTION_LOST, None, "internal error", True)
            self._last_ending = ending
            await self._after(ending)

    async def _after(self, ending: Ending) -> None:
        """Decide what follows a conversation's end: wait, retry, or stop on a fatal error."""
        established = not ending.before_metadata
        if established:
            self._backoff.reset()
        if ending.cut_turn is not None:
            logger.warning("agent turn %d was cut off: %s", ending.cut_turn, ending.describe())
            self._notify("error", f"turn {ending.cut_turn} cut off")
        if ending.reason.retryable and ending.reason.is_error:
            keep = self._options.always_connected or self._held or self._hands_free
            keep = keep or bool(self._pending) or (not established and self._want.is_set())
            if keep:
                await self._back_off(ending)
                return
        elif ending.reason.is_error and not ending.reason.retryable:
            self._fatal = ending
            logger.error("%s; not retrying: %s", ending.describe(), ending.reason.advice)
            self._notify("error", f"{ending.reason.value}: {ending.reason.advice}")
        elif self._options.always_connected and self._want.is_set():
            self._want.set()
            self.refresh_state()
            return
        self._want.clear()
        self._awaiting_reply_since = None
        self.refresh_state()

    async def _back_off(self, ending: Ending) -> None:
        delay = self._backoff.next_delay()
        logger.warning("%s; retrying in %.1f s", ending.describe(), delay)
        self._offline = True
        self.refresh_state()
        self._wake.clear()
        try:
            async with asyncio.timeout(delay):
                await self._wake.wait()  # a hang-up (or reload) cuts the wait short
        except TimeoutError:
            pass
        finally:
            self._offline = False
            self.refresh_state()

    async def _converse(self) -> Ending:
        """One connection, from URL to close. Never raises for network trouble."""
        self._connecting = True
        self.refresh_state()
        settings = LinkSettings(self._options.connect_timeout, self._options.stall_timeout)
        try:
            url = await resolve_url(self._endpoint, request_timeout=self._options.connect_timeout)
            ws = await open_socket(url, settings)
        except ConnectFailed as exc:
            self._connecting = False
            return exc.ending
        async with ws:
            session = Session(self._initiation)
            session.initiate()
            max_backlog = max(10, int(self._options.stall_timeout * 1000 / self._options.chunk_ms))
            conv = _Conversation(Link(ws, session, max_backlog=max_backlog), self._clock())
            conv.link.flush()
            self._conv = conv
            if not self._want.is_set():
                conv.hang_up.set()  # hung up while the connection was being opened
            try:
                async with asyncio.TaskGroup() as tasks:
                    conv.group = tasks
                    supervisor = tasks.create_task(self._supervise(conv))
                    try:
                        ending = await conv.link.run(lambda event: self._handle(conv, event))
                    finally:
                        supervisor.cancel()
                        for task in conv.tools:
                            task.cancel()
            except asyncio.CancelledError:
                # The daemon is stopping: end the conversation properly (1000), not with the
                # error code the socket's context manager would use for an exception.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(CLOSE_TIMEOUT):
                        await ws.close(1000, "User ended conversation")
                raise
            finally:
                self._conv = None
                self._connecting = False
                self._sending_voice = False
                self._dropped_frames += conv.link.dropped_frames
                self.refresh_state()
        return ending

    async def _supervise(self, conv: _Conversation) -> None:
        """Hang up on request, after ``idle_timeout`` without speech, at ``max_duration``, and
        close after the server announced the end once the agent's last words have played."""
        options = self._options
        session = conv.link.session
        while True:
            now = self._clock()
            idle_at = self._last_activity + options.idle_timeout
            end_at = conv.started + options.max_duration
            wait = min(idle_at, end_at) - now
            if session.state is SessionState.ENDING:
                await self._close_after_last_words(conv)
                return
            if conv.hang_up.is_set() or now >= end_at:
                why = "hang-up" if conv.hang_up.is_set() else "maximum length"
                await self._hang_up(conv, why, drain=conv.let_finish)
                return
            self._expire_reply_wait(conv, now)
            busy = self._held or self._sink.is_playing or self._awaiting_reply_since is not None
            if now >= idle_at and not busy:
                await self._hang_up(conv, "idle", drain=True)
                return
            if now >= idle_at:
                self._touch()  # someone is talking or waiting: not idle yet
                continue
            try:
                async with asyncio.timeout(max(0.05, min(wait, 1.0))):
                    await conv.hang_up.wait()
            except TimeoutError:
                pass

    def _expire_reply_wait(self, conv: _Conversation, now: float) -> None:
        """Stop waiting for a reply that is not coming: a press with nothing said (the server
        heard no turn), or a server that stays silent. Counted from the release, or from the
        moment the conversation started if the release came while it was still connecting."""
        since = self._awaiting_reply_since
        if since is None or conv.active_at is None:
            return
        heard = self._turn_heard
        limit = self._options.reply_timeout if heard else self._options.empty_turn_timeout
        if now - max(since, conv.active_at) > limit:
            logger.info("no reply to the user's turn%s", "" if heard else " (no speech heard)")
            self._awaiting_reply_since = None
            self.refresh_state()

    async def _hang_up(self, conv: _Conversation, why: str, *, drain: bool) -> None:
        session = conv.link.session
        logger.info("hanging up (%s)", why)
        if drain:
            await self._sink.wait_drained()
        if why == "hang-up" and not drain:
            self._sink.flush()
            if conv.down is not None:
                conv.down.reset()  # what was silenced leaves no tail behind
        if session.state in (SessionState.INITIATING, SessionState.ACTIVE, SessionState.ENDING):
            session.hang_up()
        await conv.link.close(1000, "User ended conversation")

    async def _close_after_last_words(self, conv: _Conversation) -> None:
        """The server announced the end (end_call, max duration, an error): let the agent's
        last words play, then close if the server has not closed first."""
        try:
            async with asyncio.timeout(self._options.ending_grace):
                await self._sink.wait_drained()
        except TimeoutError:
            pass
        await asyncio.sleep(0.5)  # the server normally closes right after its last frame
        if conv.link.session.state is SessionState.ENDING:
            await self._hang_up(conv, "server ended the conversation", drain=False)

    async def _handle(self, conv: _Conversation, event: SessionEvent) -> None:
        """The one place event handling may fail: one bad event never ends the daemon."""
        try:
            await self._on_event(conv, event)
        except Exception:
            logger.exception("error handling server event %s", type(event).__name__)

    async def _on_event(self, conv: _Conversation, event: SessionEvent) -> None:
        session = conv.link.session
        match event:
            case ConversationInitiationMetadata():
                self._on_started(conv, event)
            case Audio(audio=data, event_id=turn, is_final=is_final):
                fmt = session.output_format
                assert fmt is not None and conv.down is not None
                try:
                    samples = decode_audio(data, fmt)
                except ValueError as exc:
                    logger.warning("skipping agent audio chunk: %s", exc)
                    return
                if turn != conv.down_turn:
                    # A server may never set is_final (it is optional): the previous turn
                    # then ends here, and its last samples come first.
                    self._play_tail(conv)
                    conv.down_turn = turn
                # int16 in, int16 out: the resampler keeps the sample type.
                self._sink.play(cast(Samples, conv.down.process(samples)))
                if is_final:
                    self._play_tail(conv)
                    self._sink.mark_end()
                self._playing.set()
                self._touch()
                if self._awaiting_reply_since is not None:
                    self._record_turn(turn)
                self.refresh_state()
            case Interruption():
                self._sink.flush()
                if conv.down is not None:
                    conv.down.reset()
                self.refresh_state()
            case AgentResponse(text=text, event_id=turn):
                logger.info("agent (turn %d): %s", turn, text)
                self._notify("agent", text)
            case AgentResponseCorrection(corrected_agent_response=text):
                self._notify("correction", text)
            case UserTranscript(text=text):
                logger.info("user: %s", text)
                self._notify("user", text)
                self._touch()
                self._turn_heard = True
                if self._hands_free and self._awaiting_reply_since is None:
                    self._awaiting_reply_since = self._clock()  # end of speech
            case VadScore(vad_score=score):
                self._vad = score
                self._notify("vad", f"{score:.2f}")
                if score >= 0.5:
                    self._touch()
            case ClientToolCall():
                self._start_tool(conv, event)
            case AgentToolResponse(tool_name="end_call"):
                logger.info("the agent ended the call")
                self._notify("ended", "agent ended the call")
            case ErrorEvent() | ClientErrorEvent() | FlatErrorEvent():
                logger.warning("server error event: %s", _describe_error(event))
            case Ping():
                pass
            case UnknownMessage(type=kind):
                logger.debug("unknown server event %r", kind)
            case ConversationEnded(ending=ending):
                self._play_tail(conv)
                self._on_ended(ending)
            case _:
                logger.debug("server event %s", type(event).__name__)

    def _play_tail(self, conv: _Conversation) -> None:
        """Play the agent turn's last samples, still inside the resampler's filter (up to
        5 ms), and start the next turn afresh. A flushed or reset resampler has none."""
        if conv.down is not None and conv.down.samples_in:
            tail = cast(Samples, conv.down.flush())
            if len(tail):
                self._sink.play(tail)

    def _on_started(self, conv: _Conversation, meta: ConversationInitiationMetadata) -> None:
        conv.up = StreamResampler(self._source_rate, meta.user_input_audio_format.sample_rate)
        conv.down = StreamResampler(meta.agent_output_audio_format.sample_rate, self._sink.rate)
        self._connecting = False
        conv.active_at = self._clock()
        logger.info(
            "conversation %s started (user audio %s, agent audio %s)",
            meta.conversation_id,
            meta.user_input_audio_format,
            meta.agent_output_audio_format,
            extra=journal_fields(conversation_id=meta.conversation_id),
        )
        self._notify("started", meta.conversation_id)
        session = conv.link.session
        while self._pending:
            message = self._pending.popleft()
            if isinstance(message, UserMessage):
                self._awaiting_reply_since = self._clock()
                self._turn_heard = True
            session.send(message)
        while self._hold:
            self._send_frame(conv, self._hold.popleft(), True)
        conv.link.flush()
        self._touch()
        self.refresh_state()

    def _on_ended(self, ending: Ending) -> None:
        log = logger.info if not ending.reason.is_error else logger.warning
        log("conversation ended: %s", ending.describe())
        self._notify("ended", ending.describe())
        self._sending_voice = False

    def _record_turn(self, turn: int) -> None:
        since = self._awaiting_reply_since
        assert since is not None
        self._awaiting_reply_since = None
        conv = self._conv
        ping = conv.link.session.last_ping_ms if conv else None
        self._latency = TurnLatency(turn, (self._clock() - since) * 1000.0, ping)
        self._turns += 1
        ping_text = f"{ping} ms" if ping is not None else "n/a"
        # The one summary line per turn; under systemd its fields are searchable:
        # journalctl -u piagent PIAGENT_CONVERSATION_ID=conv_...
        logger.info(
            "turn %d: first agent audio %.0f ms after the user's turn, ping %s",
            turn,
            self._latency.reply_ms,
            ping_text,
            extra=journal_fields(
                conversation_id=conv.link.session.conversation_id if conv else None, turn=turn
            ),
        )
        self._notify("turn", f"reply {self._latency.reply_ms:.0f} ms, ping {ping_text}")

    def _start_tool(self, conv: _Conversation, call: ClientToolCall) -> None:
        if self._tools is None:
            if call.expects_response:
                conv.link.session.send_tool_result(
                    call.tool_call_id,
                    f"no client tools configured (asked for {call.tool_name})",
                    is_error=True,
                )
                conv.link.flush()
            return
        assert conv.group is not None
        task = conv.group.create_task(self._run_tool(conv, call))
        conv.tools.add(task)
        task.add_done_callback(conv.tools.discard)

    async def _run_tool(self, conv: _Conversation, call: ClientToolCall) -> None:
        assert self._tools is not None
        self._touch()
        try:
            result = await self._tools.run(call)
        except Exception:
            logger.exception("client tool %s failed", call.tool_name)
            result = None
            if call.expects_response:
                result = ClientToolResult(call.tool_call_id, "internal error in the tool", True)
        session = conv.link.session
        if result is not None and call.tool_call_id in session.pending_tool_calls:
            try:
                session.send(result)
            except PiagentError as exc:
                logger.warning("tool result for %s not sent: %s", call.tool_name, exc)
                return
            conv.link.flush()
        self._notify("tool", call.tool_name)


def _describe_error(event: ErrorEvent | ClientErrorEvent | FlatErrorEvent) -> str:
    if isinstance(event, ErrorEvent):
        return f"code {event.code} {event.error_type or ''} {event.message or event.reason or ''}"
    if isinstance(event, ClientErrorEvent):
        return f"code {event.code} {event.error_name} {event.message or ''}"
    return event.message
