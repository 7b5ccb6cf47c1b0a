"""What the agent client announces, and the journal's lines about it.

Owns ``Announcement`` (everything ``AgentClient`` hands its subscribers: the appliance's
``StateEntered``, ``ConversationBegan``, ``ConversationEnded`` and ``PlayEarcon``, a
``TurnLatency`` per answered turn, transcript ``Line``s and the ``VadLevel``), ``Subscriber``,
and ``log_announcement``, the subscriber that writes the journal's one line per turn and one
per ending, in the words the README promises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from piagent.appliance.commands import (
    ConversationBegan,
    ConversationEnded,
    PlayEarcon,
    StateEntered,
)
from piagent.appliance.rules import Next
from piagent.conversation import Line, VadLevel
from piagent.logs import journal_fields

logger = logging.getLogger("piagent.client")  # the name the journal's readers search for


@dataclass(frozen=True, slots=True)
class TurnLatency:
    """Figures of one agent turn."""

    turn: int  # the agent turn's event_id
    reply_ms: float | None  # release (or end of speech, or a typed message) to first audio
    ping_ms: int | None  # the server's last round-trip estimate
    conversation_id: str | None = None


Announcement: TypeAlias = (
    StateEntered
    | TurnLatency
    | ConversationBegan
    | ConversationEnded
    | PlayEarcon
    | Line
    | VadLevel
)
Subscriber: TypeAlias = Callable[[Announcement], None]


def log_announcement(announcement: Announcement) -> None:
    """The journal's subscriber."""
    _log_turn(announcement)
    _log_ending(announcement)


def _log_turn(announcement: Announcement) -> None:
    """The one summary line per turn; under systemd its fields are searchable:
    journalctl -u piagent PIAGENT_CONVERSATION_ID=conv_..."""
    if not isinstance(announcement, TurnLatency):
        return
    ping = announcement.ping_ms
    ping_text = f"{ping} ms" if ping is not None else "n/a"
    logger.info(
        "turn %d: first agent audio %.0f ms after the user's turn, ping %s",
        announcement.turn,
        announcement.reply_ms or 0.0,
        ping_text,
        extra=journal_fields(conversation_id=announcement.conversation_id, turn=announcement.turn),
    )


def _log_ending(announcement: Announcement) -> None:
    """One line per ending, in words the README promises: ``...; retrying in N s`` for a
    transient failure, ``...; not retrying: <what to do>`` for a fatal one."""
    if not isinstance(announcement, ConversationEnded):
        return
    ending, delay = announcement.ending, announcement.delay or 0.0
    described = ending.describe()
    if ending.cut_turn is not None:
        logger.warning("agent turn %d was cut off: %s", ending.cut_turn, described)
    match announcement.next:
        case Next.FATAL:
            logger.error("%s; not retrying: %s", described, ending.reason.advice)
        case Next.RECONNECT:
            logger.warning("%s; retrying in %.1f s", described, delay)
        case Next.PROBE:
            logger.warning("%s; offline: checking for the service in %.1f s", described, delay)
        case _:
            log = logger.warning if ending.reason.is_error else logger.info
            log("conversation ended: %s", described)
