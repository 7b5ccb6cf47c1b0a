"""The appliance's inputs: typed events, each carrying the moment it happened.

Owns the vocabulary the I/O side speaks to ``Appliance.handle``: the button and its gestures,
``piagent ctl`` commands, the wake and stop words, the user's voice over the agent's,
microphone health, a conversation being queued, starting and closing
(with its classified ``Ending``), the server messages the policy cares about, the speaker
running dry, a probe's answer and timers firing. ``at`` is seconds on the monotonic
clock of whoever feeds the events (the event loop's in the daemon, a fake one in tests).

Pure: imports nothing that does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from piagent.appliance.options import Options
from piagent.protocol.session import Ending


class Timer(enum.Enum):
    """The appliance's timers; at most one of each is armed at a time."""

    IDLE = "idle"  # idle_timeout without speech either way: hang up
    MAX_DURATION = "max_duration"  # the conversation's longest allowed length
    REPLY = "reply"  # how long a turn waits for its answer
    RETRY = "retry"  # the backoff before reconnecting for a user who is waiting
    PROBE = "probe"  # the backoff before checking again whether the service answers
    MIC_GRACE = "mic_grace"  # how long the microphone may be missing before it shows
    LAST_WORDS = "last_words"  # after the server announced the end: its last words play out
    CLOSE = "close"  # after the last words: close if the server has not


@dataclass(frozen=True, slots=True)
class Booted:
    """The devices are open: the appliance is ready for a press."""

    at: float


@dataclass(frozen=True, slots=True)
class ButtonDown:
    """The push-to-talk button (or ``ctl press``, or the keyboard) went down."""

    at: float


@dataclass(frozen=True, slots=True)
class ButtonUp:
    """The push-to-talk button went up; ``captured``: the microphone gave frames meanwhile."""

    at: float
    captured: bool = True


@dataclass(frozen=True, slots=True)
class HandsFree:
    """A gesture (tap mode) turned hands-free talking on or off."""

    at: float
    on: bool


@dataclass(frozen=True, slots=True)
class WordHeard:
    """The wake-word listener heard ``word``: ``"wake"`` (as a tap of the button: opens a
    hands-free conversation, or interrupts the agent in one) or ``"stop"`` (interrupts the
    agent)."""

    at: float
    word: str


@dataclass(frozen=True, slots=True)
class VoiceOver:
    """Echo cancellation on: the user's own voice, heard after cancellation, while the agent
    speaks (a voice barge-in)."""

    at: float


@dataclass(frozen=True, slots=True)
class Typed:
    """``ctl say``: a typed user message."""

    at: float
    text: str


@dataclass(frozen=True, slots=True)
class Context:
    """``ctl context``: a contextual update, held until a conversation is up."""

    at: float
    text: str
    context_id: str | None = None


@dataclass(frozen=True, slots=True)
class HangUpRequested:
    """``ctl hangup``, a long press, or the ``hang_up`` tool (``let_finish``)."""

    at: float
    let_finish: bool = False


@dataclass(frozen=True, slots=True)
class MuteRequested:
    """``ctl mute`` / ``ctl unmute``, or the button's mute gesture."""

    at: float
    muted: bool


@dataclass(frozen=True, slots=True)
class MicHealth:
    """The microphone became healthy or unhealthy."""

    at: float
    healthy: bool


@dataclass(frozen=True, slots=True)
class Reloaded:
    """The config was read again: a fatal error is cleared; the new ``options`` apply."""

    at: float
    options: Options


@dataclass(frozen=True, slots=True)
class ConversationStarted:
    """``conversation_initiation_metadata`` arrived: audio may flow."""

    at: float
    conversation_id: str


@dataclass(frozen=True, slots=True)
class QueueWaiting:
    """``queue_status`` waiting: the service holds the conversation and drops its audio."""

    at: float


@dataclass(frozen=True, slots=True)
class QueueAdmitted:
    """``queue_status`` admitted: audio is heard from now on."""

    at: float


@dataclass(frozen=True, slots=True)
class QueueTimedOut:
    """``queue_status`` timed_out: the wait is over; the service closes (3008)."""

    at: float


@dataclass(frozen=True, slots=True)
class UserHeard:
    """``user_transcript``: the server heard a user turn."""

    at: float


@dataclass(frozen=True, slots=True)
class VoiceActivity:
    """A ``vad_score`` at or above one half: someone is talking."""

    at: float


@dataclass(frozen=True, slots=True)
class AgentAudio:
    """A chunk of the agent's audio was queued for the speaker."""

    at: float
    turn: int


@dataclass(frozen=True, slots=True)
class Interrupted:
    """``interruption``: the agent's turn was cut; the runner already silenced it."""

    at: float


@dataclass(frozen=True, slots=True)
class ServerEnding:
    """The server announced the end (end_call, an error event, its maximum length)."""

    at: float


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The socket closed, or could not be opened; ``ending`` says how and whether to retry."""

    at: float
    ending: Ending


@dataclass(frozen=True, slots=True)
class ProbeAnswered:
    """A reachability check (no conversation opened) came back: ``ok`` when it answered."""

    at: float
    ok: bool


@dataclass(frozen=True, slots=True)
class PlaybackDrained:
    """Everything queued for the speaker has been heard."""

    at: float


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer the appliance scheduled is due."""

    at: float
    timer: Timer


Event: TypeAlias = (
    Booted
    | ButtonDown
    | ButtonUp
    | HandsFree
    | WordHeard
    | VoiceOver
    | Typed
    | Context
    | HangUpRequested
    | MuteRequested
    | MicHealth
    | Reloaded
    | ConversationStarted
    | QueueWaiting
    | QueueAdmitted
    | QueueTimedOut
    | UserHeard
    | VoiceActivity
    | AgentAudio
    | Interrupted
    | ServerEnding
    | ConnectionClosed
    | ProbeAnswered
    | PlaybackDrained
    | TimerFired
)
