"""The agent's voice on one connection: prepares turns, sends them paced, handles barge-in.

Owns ``Speaker``: it turns text (synthesized speech) or the user's own audio (the parrot's
replay, resampled to the output rate) into an ``AgentTurn``, sends the turn as
``agent_chat_response_part`` start/deltas/stop, ``audio`` chunks paced at ``audio_pace`` times
real time, and ``agent_response`` (after the first chunk by default), and holds the turn as
"speaking" until the client has played it. ``interrupt`` ends the turn when the user barges in
(protocol.md §5): ``interruption`` with the turn's id, ``agent_response_correction`` with the
part spoken so far, then a few stale chunks of the old turn the client must drop.

Synthesis and resampling are CPU work of up to tens of milliseconds; they run in a worker
thread (awaited, so still owned by the caller) to keep the event loop and its pacing smooth.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from piagent.protocol.messages import (
    AgentChatResponsePart,
    AgentResponse,
    AgentResponseCorrection,
    Audio,
    Interruption,
    ServerEvent,
)
from piagent.sim.agent import AgentDefinition
from piagent.sim.overrides import SessionSettings
from piagent.sim.record import ConversationRecord
from piagent.sim.turns import AgentTurn, build_turn, resample, text_deltas
from piagent.sim.vad import SpeechEnded
from piagent.sim.voice import even_alignment, synthesize

__all__ = ["Emit", "Speaker"]

logger = logging.getLogger(__name__)

Emit = Callable[[ServerEvent], Awaitable[None]]


class Speaker:
    """Plays one agent turn at a time for a conversation; ``emit`` sends an event."""

    def __init__(self, agent: AgentDefinition, emit: Emit, record: ConversationRecord) -> None:
        self.agent = agent
        self._emit = emit
        self._record = record
        self._loop = asyncio.get_running_loop()
        self._speaking: AgentTurn | None = None
        self._barge_in = asyncio.Event()

    async def prepare(self, text: str, event_id: int, settings: SessionSettings) -> AgentTurn:
        """A turn saying ``text`` in the conversation's voice (text only in chat mode)."""
        fmt, chunk_ms = self.agent.output_format, self.agent.audio_chunk_ms
        if settings.text_only:
            return build_turn(event_id, text, None, fmt, chunk_ms, (), ())
        speech = await asyncio.to_thread(
            synthesize, text, fmt.sample_rate, settings.voice_id, settings.speed
        )
        return build_turn(
            event_id,
            text,
            speech.samples,
            fmt,
            chunk_ms,
            speech.char_starts_ms,
            speech.char_durations_ms,
        )

    async def prepare_replay(
        self, speech: SpeechEnded, text: str, event_id: int, settings: SessionSettings
    ) -> AgentTurn:
        """The parrot's turn: the user's own audio at the output rate, captioned ``text``."""
        fmt, chunk_ms = self.agent.output_format, self.agent.audio_chunk_ms
        if settings.text_only:
            return build_turn(event_id, text, None, fmt, chunk_ms, (), ())
        samples = await asyncio.to_thread(resample, speech.samples, speech.rate, fmt.sample_rate)
        starts, durations = even_alignment(text, round(speech.duration_s * 1000))
        return build_turn(event_id, text, samples, fmt, chunk_ms, starts, durations)

    async def play(self, turn: AgentTurn, stop_after_chunks: int | None = None) -> None:
        """Send ``turn`` and return once the client has played it or the user interrupted.

        ``stop_after_chunks`` stops sending early (fault injection: a close mid-turn)."""
        event_id = turn.event_id
        self._record.agent_turns[event_id] = turn.text
        await self._emit(AgentChatResponsePart("", "start", event_id))
        for delta in text_deltas(turn.text):
            await self._emit(AgentChatResponsePart(delta, "delta", event_id))
        await self._emit(AgentChatResponsePart("", "stop", event_id))
        order = self.agent.agent_response_order
        if not turn.has_audio or order == "before_audio":
            await self._emit(AgentResponse(turn.text, event_id))
        if not turn.has_audio:
            return
        self._speaking, self._barge_in = turn, asyncio.Event()
        try:
            turn.started_at = self._loop.time()
            last = len(turn.chunks) - 1
            for index, (data, alignment) in enumerate(
                zip(turn.chunks, turn.alignments, strict=True)
            ):
                if await self._wait_for_barge_in(turn, turn.due_at(index, self.agent.audio_pace)):
                    return
                final = index == last and self.agent.mark_final_audio
                await self._emit(Audio(data, event_id, alignment, is_final=final))
                turn.sent = index + 1
                if turn.interrupted_at is None and index == 0 and order == "after_first_audio":
                    await self._emit(AgentResponse(turn.text, event_id))
                if stop_after_chunks is not None and turn.sent >= stop_after_chunks:
                    return
            if turn.interrupted_at is None and order == "after_audio":
                await self._emit(AgentResponse(turn.text, event_id))
            end = turn.playback_end
            assert end is not None
            await self._wait_for_barge_in(turn, end)
        finally:
            if self._speaking is turn:
                self._speaking = None

    async def _wait_for_barge_in(self, turn: AgentTurn, deadline: float) -> bool:
        """Wait until ``deadline`` (loop time); True if the turn was interrupted first."""
        if turn.interrupted_at is not None:
            return True
        try:
            async with asyncio.timeout_at(deadline):
                await self._barge_in.wait()
        except TimeoutError:
            return turn.interrupted_at is not None
        return True

    async def interrupt(self, now: float) -> None:
        """The user started speaking (or typed) at ``now``: stop the turn being played, if
        the client is still playing it and the agent's client_events enable interruptions."""
        turn = self._speaking
        if turn is None or not turn.is_playing(now) or not self.agent.sends("interruption"):
            return
        # Mark it first, with no await in between: play() sends nothing more for this turn.
        turn.interrupted_at = now
        self._speaking = None
        self._barge_in.set()
        self._record.interruptions.append(turn.event_id)
        spoken = turn.spoken_text(now)
        logger.info("turn %d interrupted after %r", turn.event_id, spoken)
        await self._emit(Interruption(event_id=turn.event_id))
        await self._emit(AgentResponseCorrection(turn.text, spoken, turn.event_id))
        for data, alignment in turn.stale_chunks(self.agent.stale_chunks):
            await self._emit(Audio(data, turn.event_id, alignment))
