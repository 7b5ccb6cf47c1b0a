"""The appliance's pure decisions: what follows a conversation's end, and which trigger moves
the display from one activity state to another.

Owns ``Link`` (where the connection stands), ``uplink_mode`` and ``activity`` (what the
microphone's frames become, and what the display shows, in a conversation), ``Next`` and
``judge`` (a normal end, a fatal one, a drop worth a new conversation for a
user who waits, or an ``offline`` check that opens none), ``is_unreachable`` (a stall or a
failed connection, as opposed to a drop of a working conversation) and ``ACTIVITY_TRIGGERS``.

Pure: imports nothing that does I/O.
"""

from __future__ import annotations

import enum

from piagent.appliance.table import State, Trigger
from piagent.protocol.session import Ending, EndReason

QUEUE_TIMEOUT_CLOSE = 3008  # the close code of a queue wait that timed out


class Link(enum.Enum):
    """Where the one conversation's connection stands."""

    DOWN = "down"  # none
    OPENING = "opening"  # asked for; metadata not yet here
    QUEUED = "queued"  # the service holds it in its queue and discards our audio
    UP = "up"  # audio flows both ways


def uplink_mode(link: Link, *, voice: bool) -> Uplink:
    """What microphone frames become: held until audio can be heard, then the voice (when the
    user talks, unmuted and not gated by the agent's speech) or silence."""
    if link is not Link.UP:
        return Uplink.HOLD
    return Uplink.VOICE if voice else Uplink.SILENCE


def activity(uplink: Uplink, *, playing: bool, awaiting: bool) -> State:
    """The display while nothing else (muted, offline, error ...) takes precedence."""
    if uplink is Uplink.VOICE:
        return State.LISTENING
    if playing:
        return State.SPEAKING
    return State.THINKING if awaiting else State.READY


class Uplink(enum.Enum):
    """What becomes of each microphone frame."""

    HOLD = "hold"  # nothing is sent (no conversation, or queued): the turn's frames are kept
    VOICE = "voice"  # the microphone's audio is sent
    SILENCE = "silence"  # digital silence is sent in its place (protocol.md §8)


class Next(enum.Enum):
    """What follows the end of a conversation."""

    OVER = "over"  # nothing: the next press opens a new conversation
    AGAIN = "again"  # a new conversation at once (always_connected, after a normal end)
    FATAL = "fatal"  # nothing until a press or a reload: retrying cannot help
    RECONNECT = "reconnect"  # someone is waiting: a new conversation, with backoff
    PROBE = "probe"  # offline: check, with backoff, that the service answers


def is_queue_timeout(ending: Ending, *, timed_out: bool) -> bool:
    """The service gave up on our place in its queue (``timed_out``, close 3008)."""
    return (
        timed_out
        or ending.reason is EndReason.QUEUE_TIMED_OUT
        or ending.code == QUEUE_TIMEOUT_CLOSE
    )


def is_unreachable(ending: Ending, *, queue: bool) -> bool:
    """A stall or a failed connection: the service cannot be reached for now."""
    return not queue and (ending.reason is EndReason.STALLED or ending.before_metadata)


def judge(
    ending: Ending, *, hung_up: bool, in_use: bool, queue: bool, always_connected: bool
) -> Next:
    """What follows ``ending``; ``in_use``: a turn awaits its answer, the user talks, the
    button is in hands-free mode, or a conversation is to be kept open."""
    reason = ending.reason
    if hung_up:
        return Next.OVER
    if not reason.is_error and not queue:
        return Next.AGAIN if always_connected else Next.OVER
    if not reason.retryable and not queue:
        return Next.FATAL
    if in_use:
        return Next.RECONNECT
    return Next.PROBE if is_unreachable(ending, queue=queue) else Next.OVER


# The states whose display follows what happens inside a conversation; the others are moved
# only by the life of the connection.
ACTIVITY = frozenset({State.READY, State.LISTENING, State.THINKING, State.SPEAKING})
# The trigger that moves an activity state to another one.
ACTIVITY_TRIGGERS: dict[tuple[State, State], Trigger] = {
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
