"""The appliance's states and the one table of their transitions.

Owns ``State`` (what the LEDs, ``STATUS=`` and ``piagent ctl status`` show; interface.md lists
the values), ``Trigger`` (why the state moves) and ``TRANSITIONS``, the only place a state
change is defined. ``transition`` looks a move up and raises ``IllegalTransition`` for one the
table does not list, leaving the caller's state unchanged. ``state_diagram`` renders the table
as the README's Mermaid diagram (``python -m piagent.appliance`` prints it).

Pure: imports nothing that does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from piagent.errors import PiagentError


class IllegalTransition(PiagentError):
    """The policy asked for a move the transition table does not allow."""


class State(enum.Enum):
    """What the appliance is doing, as the LEDs show it."""

    BOOTING = "booting"  # devices opening; not yet ready for a press
    READY = "ready"  # nothing happening; a conversation may or may not be open
    CONNECTING = "connecting"  # a conversation is being opened (or reopened after a drop)
    WAITING = "waiting"  # the service holds the conversation in its queue (queue_status)
    LISTENING = "listening"  # the user's audio is being sent
    THINKING = "thinking"  # the user's turn is over; no answer yet
    SPEAKING = "speaking"  # the agent's audio is playing
    MUTED = "muted"  # the microphone is muted: silence is sent instead
    OFFLINE = "offline"  # the service cannot be reached; retrying or checking for it
    ERROR = "error"  # a fatal failure, or no microphone: waits for a press, reload or device


class Trigger(enum.Enum):
    """What moves the appliance from one state to another."""

    BOOTED = "booted"  # the devices are open
    DIAL = "dial"  # a conversation is wanted and none is open: open one
    QUEUED = "queued"  # queue_status waiting
    OPEN_IDLE = "open_idle"  # the conversation is up (or admitted), nothing to send
    OPEN_TALKING = "open_talking"  # ... and the user is talking
    OPEN_AWAITING = "open_awaiting"  # ... and a turn awaits its answer
    OPEN_MUTED = "open_muted"  # ... and the microphone is muted
    TALK = "talk"  # the user's audio starts flowing
    TURN_OVER = "turn_over"  # the user let go after saying something
    NOTHING_SAID = "nothing_said"  # the user let go without a sound captured
    AWAIT = "await"  # a typed message went out: its answer is awaited
    REPLY = "reply"  # the agent's audio started playing
    QUIET = "quiet"  # the agent's audio has played out, or was silenced
    NO_REPLY = "no_reply"  # the wait for an answer gave up
    MUTE = "mute"
    UNMUTE = "unmute"
    DROPPED = "dropped"  # a transient drop while in use: reconnect at once
    UNREACHABLE = "unreachable"  # a stall or a failed connection
    REACHABLE = "reachable"  # the service answers again
    FATAL = "fatal"  # a failure no retry can fix
    ENDED = "ended"  # the conversation ended normally, or was hung up
    MIC_LOST = "mic_lost"  # the microphone has been missing for its grace period
    CLEARED = "cleared"  # the error's cause is gone: the microphone is back, or a reload


def _build() -> dict[tuple[State, Trigger], State]:
    S, T = State, Trigger  # short names keep the table readable
    talking = (S.READY, S.THINKING, S.SPEAKING)
    in_conversation = (S.READY, S.LISTENING, S.THINKING, S.SPEAKING, S.MUTED, S.WAITING)
    opening = (S.CONNECTING, S.WAITING)
    table: dict[tuple[State, Trigger], State] = {(S.BOOTING, T.BOOTED): S.READY}
    for source in (S.READY, S.SPEAKING, S.MUTED, S.OFFLINE, S.ERROR):
        table[source, T.DIAL] = S.CONNECTING
    for source in (S.CONNECTING, *in_conversation):
        if source is not S.WAITING:
            table[source, T.QUEUED] = S.WAITING
        if source is not S.CONNECTING:
            table[source, T.DROPPED] = S.CONNECTING
        table[source, T.UNREACHABLE] = S.OFFLINE
        table[source, T.FATAL] = S.ERROR
    table[S.OFFLINE, T.FATAL] = S.ERROR
    for source in opening:
        table[source, T.OPEN_IDLE] = S.READY
        table[source, T.OPEN_TALKING] = S.LISTENING
        table[source, T.OPEN_AWAITING] = S.THINKING
        table[source, T.OPEN_MUTED] = S.MUTED
    for source in talking:
        table[source, T.TALK] = S.LISTENING
    table[S.LISTENING, T.TURN_OVER] = S.THINKING
    table[S.LISTENING, T.NOTHING_SAID] = S.READY
    for source in (S.READY, S.SPEAKING):
        table[source, T.AWAIT] = S.THINKING
    for source in (S.READY, S.LISTENING, S.THINKING):
        table[source, T.REPLY] = S.SPEAKING
    table[S.SPEAKING, T.QUIET] = S.READY
    table[S.THINKING, T.NO_REPLY] = S.READY
    for source in (S.READY, S.LISTENING, S.THINKING, S.SPEAKING):
        table[source, T.MUTE] = S.MUTED
    table[S.MUTED, T.UNMUTE] = S.READY
    table[S.OFFLINE, T.REACHABLE] = S.READY
    for source in (S.CONNECTING, S.WAITING, S.LISTENING, S.THINKING, S.SPEAKING):
        table[source, T.ENDED] = S.READY
    table[S.READY, T.MIC_LOST] = S.ERROR
    table[S.ERROR, T.CLEARED] = S.READY
    return table


TRANSITIONS: Mapping[tuple[State, Trigger], State] = _build()


def transition(state: State, trigger: Trigger) -> State:
    """The state ``trigger`` leads to from ``state``; ``IllegalTransition`` if none."""
    try:
        return TRANSITIONS[state, trigger]
    except KeyError:
        raise IllegalTransition(f"no transition from {state.value} on {trigger.value}") from None


def can(state: State, trigger: Trigger) -> bool:
    """Whether the table has a move from ``state`` on ``trigger``."""
    return (state, trigger) in TRANSITIONS


def state_diagram() -> str:
    """The transition table as a Mermaid state diagram (README.md shows it)."""
    lines = ["stateDiagram-v2", "    [*] --> booting"]
    edges: dict[tuple[State, State], list[str]] = {}
    for (source, trigger), target in TRANSITIONS.items():
        edges.setdefault((source, target), []).append(trigger.value)
    for (source, target), triggers in edges.items():
        lines.append(f"    {source.value} --> {target.value}: {', '.join(triggers)}")
    return "\n".join(lines)
