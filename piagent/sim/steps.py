"""Carrying out a scenario's steps on one conversation (the step format lives in ``scenario``).

Owns ``run_steps``: each step in order, waiting for user turns (a missing one fails the
scenario: close 1011 "scenario timeout"), agent turns, client tool calls (the agent apologises
for a tool that does not answer in time), raw JSON and text frames, oversized audio, sleeps,
stalls, and the endings (close, ``end_call``, max duration). ``StepHost`` is what it needs of
the conversation it runs on; ``Conversation`` is the one host.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from piagent.protocol.messages import Audio, AudioFormat, UnknownMessage, encode
from piagent.sim.agent import AgentDefinition
from piagent.sim.endings import EndConversation, Ending, end_call, max_duration_exceeded
from piagent.sim.overrides import SessionSettings
from piagent.sim.record import ConversationRecord
from piagent.sim.scenario import (
    AgentSay,
    CloseStep,
    EndCall,
    ExpectUserTurn,
    MaxDuration,
    SendJson,
    SendOversize,
    SendText,
    Sleep,
    Stall,
    Step,
    ToolCallStep,
)
from piagent.sim.tool_calls import ToolCalls

__all__ = ["StepHost", "oversize_audio", "run_steps"]

logger = logging.getLogger(__name__)


class StepHost(Protocol):
    """The conversation a scenario runs on."""

    agent: AgentDefinition
    record: ConversationRecord
    settings: SessionSettings
    tools: ToolCalls

    def next_id(self) -> int:
        """A fresh event id."""
        ...

    async def take_user_turn(self) -> None:
        """Wait for the user's next turn; the agent's next words answer it."""
        ...

    async def say(self, text: str) -> None:
        """An agent turn, played out."""
        ...

    async def send_text(self, text: str) -> None:
        """One text frame, as it is."""
        ...

    async def stall(self, seconds: float) -> None:
        """Neither read nor write for ``seconds``."""
        ...


async def run_steps(host: StepHost, steps: Sequence[Step]) -> None:
    """Run ``steps`` in order; an ending step raises ``EndConversation``."""
    for index, step in enumerate(steps):
        logger.debug("scenario step %d: %s", index, step)
        match step:
            case ExpectUserTurn(timeout=timeout):
                try:
                    async with asyncio.timeout(timeout):
                        await host.take_user_turn()
                except TimeoutError:
                    host.record.failure = f"steps[{index}]: no user turn within {timeout} s"
                    logger.error("scenario failed: %s", host.record.failure)
                    raise EndConversation(Ending(1011, "scenario timeout")) from None
            case AgentSay(text=text):
                await host.say(text)
            case ToolCallStep():
                await _call_tool(host, step)
            case SendJson(data=data):
                await host.send_text(encode(UnknownMessage(str(data.get("type")), data)))
            case SendText(text=text):
                await host.send_text(text)
            case SendOversize(size=size):
                audio = oversize_audio(size, host.agent.output_format, host.next_id())
                await host.send_text(encode(audio))
            case Sleep(seconds=seconds):
                await asyncio.sleep(seconds)
            case Stall(seconds=seconds):
                await host.stall(seconds)
            case CloseStep(code=code, reason=reason):
                raise EndConversation(Ending(code, reason))
            case EndCall():
                raise EndConversation(end_call(host.next_id()))
            case MaxDuration():
                message = host.settings.max_conversation_duration_message
                raise EndConversation(max_duration_exceeded(message))


async def _call_tool(host: StepHost, step: ToolCallStep) -> None:
    answered = await host.tools.call(
        step.name,
        step.parameters,
        host.next_id(),
        expects_response=step.expects_response,
        timeout=step.timeout or host.agent.response_timeout_secs,
    )
    if not answered:
        await host.say(f"Sorry, the {step.name} tool did not respond in time.")


def oversize_audio(size: int, fmt: AudioFormat, event_id: int) -> Audio:
    """An ``audio`` event of silence whose frame is at least ``size`` bytes (base64 grows 3
    bytes into 4)."""
    samples = -(-size * 3 // 4) // fmt.bytes_per_sample + 1
    return Audio(bytes([fmt.silence_byte]) * (samples * fmt.bytes_per_sample), event_id)
