"""The appliance's outputs: typed commands for the I/O side, and typed announcements.

Commands tell the runners what to do: open a conversation or check that the service answers,
send a message, move the uplink between holding, sending the voice and sending silence, replay
or forget the held turn, silence the speaker, play an earcon, arm or cancel a timer, hang up.
Announcements (``StateEntered``, ``TurnAnswered``, ``ConversationBegan``,
``ConversationEnded``) are what the LEDs, sd_notify, earcons, the journal and ``ctl status``
subscribe to; the runner hands every one of them to every subscriber, none is dropped.

Pure: imports nothing that does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from piagent.appliance.events import Timer
from piagent.appliance.rules import Next, Uplink
from piagent.appliance.table import State, Trigger
from piagent.protocol.messages import ContextualUpdate, UserMessage
from piagent.protocol.session import Ending

EarconName = Literal["press", "release", "connected", "offline", "error"]


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a new conversation (a fresh signed URL, socket and session)."""


@dataclass(frozen=True, slots=True)
class Probe:
    """Check whether the service answers, without opening a conversation (they are billed)."""


@dataclass(frozen=True, slots=True)
class HangUp:
    """Close the conversation (1000), or give up opening one; ``drain`` lets queued agent
    audio play out first."""

    drain: bool = False


@dataclass(frozen=True, slots=True)
class Send:
    """Send a message on the live conversation."""

    message: UserMessage | ContextualUpdate


@dataclass(frozen=True, slots=True)
class SetUplink:
    """From the next frame on, treat microphone frames as ``mode`` says."""

    mode: Uplink


@dataclass(frozen=True, slots=True)
class StartTurn:
    """A new user turn: forget any held turn, and keep every frame from now on."""


@dataclass(frozen=True, slots=True)
class StopTurn:
    """The user's turn is over: keep what was held, add no more frames to it."""


@dataclass(frozen=True, slots=True)
class ReplayTurn:
    """Send the held turn now, ahead of the next frame (after a reconnect or admission)."""


@dataclass(frozen=True, slots=True)
class ForgetTurn:
    """The held turn was answered (or abandoned): drop it."""


@dataclass(frozen=True, slots=True)
class FlushPlayback:
    """Silence the speaker at once; ``barge_in`` also drops the rest of the agent's turn."""

    barge_in: bool = False


@dataclass(frozen=True, slots=True)
class PlayEarcon:
    """Play a short confirmation sound."""

    kind: EarconName


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Arm ``timer`` to fire at ``at`` (replacing an armed one)."""

    timer: Timer
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Disarm ``timer`` (nothing happens if it is not armed)."""

    timer: Timer


@dataclass(frozen=True, slots=True)
class StateEntered:
    """The appliance's state changed."""

    state: State
    previous: State
    trigger: Trigger
    at: float
    detail: str = ""  # why, for offline and error (the ending's reason)


@dataclass(frozen=True, slots=True)
class ConversationBegan:
    """A conversation started (metadata arrived)."""

    conversation_id: str
    at: float


@dataclass(frozen=True, slots=True)
class TurnAnswered:
    """The first agent audio of the answer to a user turn."""

    turn: int
    reply_ms: float
    at: float


@dataclass(frozen=True, slots=True)
class ConversationEnded:
    """A conversation ended (or could not be opened), and what the appliance does next."""

    ending: Ending
    at: float
    next: Next
    delay: float | None = None  # seconds until the reconnection or the check


Command: TypeAlias = (
    Connect
    | Probe
    | HangUp
    | Send
    | SetUplink
    | StartTurn
    | StopTurn
    | ReplayTurn
    | ForgetTurn
    | FlushPlayback
    | PlayEarcon
    | StartTimer
    | CancelTimer
    | StateEntered
    | ConversationBegan
    | TurnAnswered
    | ConversationEnded
)
