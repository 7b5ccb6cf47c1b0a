"""A test driver for the appliance on a fake clock: feeds events at chosen moments, records every
command, and fires the timers the appliance armed when the clock passes them."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, TypeVar

from piagent.appliance import Appliance, Options, State
from piagent.appliance.commands import CancelTimer, Command, StartTimer, StateEntered
from piagent.appliance.events import (
    Booted,
    ConnectionClosed,
    ConversationStarted,
    Event,
    Timer,
    TimerFired,
)
from piagent.protocol.session import Ending, EndReason

C = TypeVar("C")


class Rig:
    """One appliance, a fake clock (seconds) and what it was told to do."""

    def __init__(self, **options: Any) -> None:
        self.appliance = Appliance(Options(**options), random.Random(7))
        self.now = 0.0
        self.log: list[Command] = []
        self.timers: dict[Timer, float] = {}

    def feed(self, event_type: Any, *args: Any, **kwargs: Any) -> list[Command]:
        """Feed ``event_type(now, *args)``; returns its commands."""
        return self.event(event_type(self.now, *args, **kwargs))

    def event(self, event: Event) -> list[Command]:
        out = self.appliance.handle(event)
        self.log.extend(out)
        for command in out:
            if isinstance(command, StartTimer):
                self.timers[command.timer] = command.at
            elif isinstance(command, CancelTimer):
                self.timers.pop(command.timer, None)
        return out

    def advance(self, seconds: float) -> list[Command]:
        """Move the clock on, firing due timers in order at their moments."""
        end = self.now + seconds
        out: list[Command] = []
        while self.timers:
            timer, due = min(self.timers.items(), key=lambda item: item[1])
            if due > end:
                break
            del self.timers[timer]
            self.now = max(self.now, due)
            out += self.event(TimerFired(self.now, timer))
        self.now = end
        return out

    @property
    def state(self) -> State:
        return self.appliance.state

    def states(self) -> list[State]:
        return [c.state for c in self.log if isinstance(c, StateEntered)]

    def commands(self, kind: type[C]) -> list[C]:
        return [c for c in self.log if isinstance(c, kind)]

    def clear(self) -> None:
        self.log.clear()

    def boot(self) -> Rig:
        self.feed(Booted)
        return self

    def start(self, conversation_id: str = "conv_1") -> list[Command]:
        return self.feed(ConversationStarted, conversation_id)

    def close(self, reason: EndReason, code: int | None = None, **kw: Any) -> list[Command]:
        return self.feed(ConnectionClosed, Ending(reason, code, "", **kw))


def ending(reason: EndReason, code: int | None = None, **kw: Any) -> Ending:
    return replace(Ending(reason, code, ""), **kw)
