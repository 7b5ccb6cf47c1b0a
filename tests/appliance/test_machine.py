"""The appliance's policy on a fake clock: what the device does about every event.

Each test drives an ``Appliance`` through ``Rig`` (events at chosen moments, timers fired as the
clock passes them) and checks the commands and states that came out; nothing sleeps."""

from __future__ import annotations

import logging

import pytest

from piagent.appliance import Appliance, Options, State, Trigger
from piagent.appliance.commands import (
    CancelTimer,
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
    StartTurn,
    StateEntered,
    StopTurn,
    TurnAnswered,
    Uplink,
)
from piagent.appliance.events import (
    AgentAudio,
    ButtonDown,
    ButtonUp,
    Context,
    HandsFree,
    HangUpRequested,
    Interrupted,
    MicHealth,
    MuteRequested,
    PlaybackDrained,
    ProbeAnswered,
    QueueAdmitted,
    QueueTimedOut,
    QueueWaiting,
    Reloaded,
    ServerEnding,
    Timer,
    TimerFired,
    Typed,
    UserHeard,
    VoiceActivity,
)
from piagent.appliance.rules import Next, judge
from piagent.protocol.messages import ContextualUpdate, UserMessage
from piagent.protocol.session import Ending, EndReason
from tests.appliance.rig import Rig

S = State


def talked(rig: Rig, seconds: float = 1.0) -> None:
    """Press, hold for ``seconds``, release."""
    rig.feed(ButtonDown)
    rig.advance(seconds)
    rig.feed(ButtonUp)


def conversation(**options: object) -> Rig:
    """A booted appliance with a conversation open and nothing happening."""
    rig = Rig(**options).boot()
    rig.feed(Typed, "hi")
    rig.start()
    rig.feed(AgentAudio, 1)
    rig.feed(PlaybackDrained)
    rig.clear()
    return rig


# ----------------------------------------------------------------------------------------------
# Boot, press, release


def test_boots_to_ready_and_a_press_opens_a_conversation_holding_the_turn() -> None:
    rig = Rig().boot()
    assert rig.state is S.READY
    out = rig.feed(ButtonDown)
    assert out[:3] == [StartTurn(), PlayEarcon("press"), Connect()]
    assert rig.state is S.CONNECTING and rig.appliance.uplink is Uplink.HOLD
    rig.advance(0.8)
    out = rig.start()
    assert ConversationBegan("conv_1", 0.8) in out
    assert out.index(ReplayTurn()) < out.index(SetUplink(Uplink.VOICE))
    assert rig.state is S.LISTENING
    rig.advance(1.0)
    out = rig.feed(ButtonUp)
    assert StopTurn() in out and PlayEarcon("release") in out
    assert rig.state is S.THINKING and rig.appliance.uplink is Uplink.SILENCE
    rig.advance(0.5)
    out = rig.feed(AgentAudio, 3)
    assert TurnAnswered(3, pytest.approx(500.0), 2.3) in out  # type: ignore[arg-type]
    assert ForgetTurn() not in out and rig.state is S.SPEAKING  # kept until the answer is heard
    out = rig.feed(PlaybackDrained)
    assert ForgetTurn() in out and rig.state is S.READY
    assert rig.states() == [S.READY, S.CONNECTING, S.LISTENING, S.THINKING, S.SPEAKING, S.READY]


def test_always_connected_opens_at_boot_and_again_after_a_normal_end() -> None:
    rig = Rig(always_connected=True)
    assert Connect() in rig.boot().log
    rig.start()
    assert rig.state is S.READY
    out = rig.close(EndReason.AGENT_ENDED_CALL)
    assert [c.next for c in out if isinstance(c, ConversationEnded)] == [Next.AGAIN]
    assert Connect() in out and rig.state is S.CONNECTING


def test_always_connected_reopens_after_a_normal_end_that_cut_a_wait() -> None:
    rig = Rig(always_connected=True).boot()
    rig.start()
    talked(rig)
    assert rig.state is S.THINKING
    rig.close(EndReason.NO_INPUT_TIMEOUT, 1000)
    assert rig.state is S.CONNECTING and len(rig.commands(Connect)) == 2


def test_an_end_while_talking_hands_free_forgets_hands_free() -> None:
    rig = conversation()
    rig.feed(HandsFree, True)
    rig.close(EndReason.AGENT_ENDED_CALL)
    assert rig.state is S.READY and not rig.commands(Connect)


def test_a_release_without_a_press_and_a_muted_press_await_nothing() -> None:
    rig = conversation()
    assert rig.feed(ButtonUp) == []
    rig.feed(MuteRequested, True)
    assert rig.state is S.MUTED
    out = rig.feed(ButtonDown)
    assert rig.state is S.MUTED and rig.appliance.uplink is Uplink.SILENCE
    out = rig.feed(ButtonUp)
    assert ForgetTurn() in out and rig.state is S.MUTED
    rig.feed(MuteRequested, False)
    rig.feed(ButtonDown)
    out = rig.feed(ButtonUp, captured=False)  # released before the microphone gave a frame
    assert ForgetTurn() in out and rig.state is S.READY
    rig.feed(MuteRequested, False)
    assert rig.state is S.READY and rig.appliance.muted is False


def test_a_press_while_the_agent_speaks_barges_in_before_the_earcon() -> None:
    rig = conversation()
    rig.feed(AgentAudio, 5)
    assert rig.state is S.SPEAKING
    out = rig.feed(ButtonDown)
    assert out.index(FlushPlayback(barge_in=True)) < out.index(PlayEarcon("press"))
    assert rig.state is S.LISTENING


def test_a_press_after_the_close_silences_the_last_words_without_a_barge_in() -> None:
    rig = conversation()
    rig.feed(AgentAudio, 5)
    rig.close(EndReason.AGENT_ENDED_CALL)
    assert rig.state is S.SPEAKING  # the last words play on
    out = rig.feed(ButtonDown)
    assert FlushPlayback(barge_in=False) in out and rig.state is S.CONNECTING


def test_half_duplex_sends_silence_while_the_agent_speaks_in_hands_free() -> None:
    rig = conversation()
    rig.feed(HandsFree, True)
    assert rig.state is S.LISTENING and rig.appliance.uplink is Uplink.VOICE
    rig.feed(AgentAudio, 7)
    assert rig.state is S.SPEAKING and rig.appliance.uplink is Uplink.SILENCE
    rig.feed(PlaybackDrained)
    assert rig.state is S.LISTENING
    out = rig.feed(HandsFree, False)
    assert PlayEarcon("release") in out and rig.state is S.READY


def test_full_duplex_keeps_the_voice_flowing_while_the_agent_speaks() -> None:
    rig = conversation(half_duplex=False)
    rig.feed(HandsFree, True)
    rig.feed(AgentAudio, 7)
    assert rig.state is S.LISTENING and rig.appliance.uplink is Uplink.VOICE


def test_hands_free_opens_a_conversation_and_the_end_of_speech_starts_the_wait() -> None:
    rig = Rig().boot()
    out = rig.feed(HandsFree, True)
    assert PlayEarcon("press") in out and Connect() in out
    rig.start()
    assert rig.state is S.LISTENING
    rig.advance(2.0)
    rig.feed(UserHeard)
    rig.advance(0.4)
    out = rig.feed(AgentAudio, 2)
    assert rig.commands(TurnAnswered)[0].reply_ms == pytest.approx(400.0)
    rig.feed(UserHeard)  # no wait now, and hands-free: a new wait starts
    assert rig.timers[Timer.REPLY] == pytest.approx(rig.now + 30.0)


# ----------------------------------------------------------------------------------------------
# Typed messages and contextual updates


def test_a_typed_message_is_held_until_the_conversation_starts_then_sent() -> None:
    rig = Rig().boot()
    out = rig.feed(Typed, "hello")
    assert Connect() in out and rig.state is S.CONNECTING
    rig.feed(Context, "kitchen")
    out = rig.start()
    sends = [c.message for c in out if isinstance(c, Send)]
    assert sends == [ContextualUpdate("kitchen"), UserMessage("hello")]
    assert rig.state is S.THINKING


def test_a_typed_message_on_a_live_conversation_interrupts_the_agent() -> None:
    rig = conversation()
    rig.feed(AgentAudio, 4)
    out = rig.feed(Typed, "stop")
    assert out[0] == FlushPlayback(barge_in=True)
    assert Send(UserMessage("stop")) in out and rig.state is S.THINKING
    assert rig.feed(Context, "later") == [Send(ContextualUpdate("later"))]


def test_a_typed_message_replaces_an_unanswered_spoken_turn() -> None:
    rig = conversation()
    talked(rig)
    out = rig.feed(Typed, "never mind")
    assert ForgetTurn() in out


def test_held_contextual_updates_are_bounded() -> None:
    rig = Rig().boot()
    for n in range(40):
        rig.feed(Context, f"c{n}")
    rig.feed(Typed, "go")
    out = rig.start()
    sends = [c.message for c in out if isinstance(c, Send)]
    assert len(sends) == 33 and sends[0] == ContextualUpdate("c8")


# ----------------------------------------------------------------------------------------------
# Timers: reply, idle, maximum length, the server's last words


def test_a_turn_nobody_heard_stops_waiting_after_the_empty_turn_timeout() -> None:
    rig = conversation()
    talked(rig)
    assert rig.state is S.THINKING
    rig.advance(4.9)
    assert rig.state is S.THINKING
    rig.advance(0.2)
    assert rig.state is S.READY
    assert ForgetTurn() in rig.log


def test_a_heard_turn_waits_for_the_reply_timeout(caplog: pytest.LogCaptureFixture) -> None:
    rig = conversation()
    talked(rig)
    rig.feed(UserHeard)
    rig.feed(UserHeard)  # heard once is enough
    rig.advance(29.0)
    assert rig.state is S.THINKING
    with caplog.at_level(logging.INFO):
        rig.advance(2.0)
    assert rig.state is S.READY and "no reply to the user's turn\n" in caplog.text + "\n"


def test_idle_hangs_up_after_idle_timeout_without_speech_and_busy_defers_it() -> None:
    rig = conversation(idle_timeout=10.0)
    rig.advance(5.0)
    rig.feed(VoiceActivity)
    rig.advance(9.0)
    assert not rig.commands(HangUp)
    rig.feed(ButtonDown)  # held past the deadline: not idle
    rig.advance(20.0)
    assert not rig.commands(HangUp)
    rig.feed(ButtonUp)
    rig.feed(AgentAudio, 9)
    rig.feed(PlaybackDrained)
    rig.advance(9.9)
    assert not rig.commands(HangUp)
    rig.advance(10.0)
    assert rig.commands(HangUp) == [HangUp(drain=True)]
    rig.close(EndReason.CLIENT_HANGUP)
    assert rig.state is S.READY and rig.timers == {}


def test_a_queued_conversation_is_not_idle() -> None:
    rig = conversation(idle_timeout=10.0)
    rig.feed(QueueWaiting)
    rig.advance(25.0)
    assert not rig.commands(HangUp)


def test_maximum_length_hangs_up_without_draining() -> None:
    rig = conversation(max_duration=60.0, idle_timeout=1000.0)
    rig.advance(61.0)
    assert rig.commands(HangUp) == [HangUp(drain=False)]


def test_the_servers_last_words_play_out_before_we_close() -> None:
    rig = conversation()
    rig.feed(AgentAudio, 2)
    rig.feed(ServerEnding)
    rig.advance(3.0)
    rig.feed(PlaybackDrained)
    rig.advance(0.4)
    assert not rig.commands(HangUp)
    rig.advance(0.2)
    assert rig.commands(HangUp) == [HangUp(drain=False)]


def test_last_words_that_never_end_are_cut_after_the_grace() -> None:
    rig = conversation(ending_grace=10.0)
    rig.feed(AgentAudio, 2)
    rig.feed(ServerEnding)
    rig.advance(10.4)
    assert not rig.commands(HangUp)
    rig.advance(0.2)
    assert rig.commands(HangUp) == [HangUp(drain=False)]


def test_a_server_end_with_nothing_playing_closes_after_the_close_grace() -> None:
    rig = conversation()
    rig.feed(ServerEnding)
    rig.advance(0.6)
    assert rig.commands(HangUp) == [HangUp(drain=False)]


def test_a_stale_or_early_timer_is_ignored() -> None:
    rig = conversation()
    assert rig.feed(TimerFired, Timer.RETRY) == []
    assert rig.event(TimerFired(0.0, Timer.IDLE)) == []  # armed for later


def test_interruption_silences_the_speaker() -> None:
    rig = conversation()
    rig.feed(AgentAudio, 3)
    assert rig.feed(Interrupted)[0] == FlushPlayback()
    assert rig.state is S.READY


# ----------------------------------------------------------------------------------------------
# Hanging up


def test_hang_up_flushes_and_the_close_that_follows_is_a_normal_end() -> None:
    rig = conversation()
    rig.feed(AgentAudio, 2)
    out = rig.feed(HangUpRequested)
    assert out[:2] == [HangUp(drain=False), FlushPlayback()]
    rig.close(EndReason.CONNECTION_LOST)  # however it closes: we asked for it
    assert rig.state is S.READY and not rig.commands(Connect)


def test_hang_up_with_let_finish_drains_and_keeps_the_words() -> None:
    rig = conversation()
    rig.feed(AgentAudio, 2)
    out = rig.feed(HangUpRequested, let_finish=True)
    assert out == [HangUp(drain=True)]
    rig.close(EndReason.CLIENT_HANGUP)
    assert rig.state is S.SPEAKING


def test_hang_up_while_connecting_gives_up_and_a_late_start_sends_nothing() -> None:
    rig = Rig().boot()
    talked(rig)
    out = rig.feed(HangUpRequested)
    assert HangUp() in out and rig.state is S.READY
    out = rig.start()
    assert not [c for c in out if isinstance(c, (Send, ReplayTurn, StateEntered))]


def test_hang_up_with_nothing_open_does_nothing() -> None:
    rig = Rig().boot()
    assert rig.feed(HangUpRequested) == []


# ----------------------------------------------------------------------------------------------
# Drops, stalls, offline


def test_a_drop_while_waiting_reconnects_and_resends_the_unanswered_turn() -> None:
    rig = conversation()
    talked(rig)
    rig.clear()
    out = rig.close(EndReason.SERVER_ERROR, 1011)
    assert PlayEarcon("offline") in out and Connect() in out
    assert rig.states() == [S.CONNECTING]
    assert not rig.commands(ForgetTurn)
    out = rig.start("conv_2")
    assert ReplayTurn() in out and rig.state is S.THINKING
    rig.advance(0.3)
    rig.feed(AgentAudio, 1)
    assert rig.commands(TurnAnswered)[0].reply_ms == pytest.approx(300.0)


def test_a_drop_of_a_typed_turn_resends_the_text() -> None:
    rig = conversation()
    rig.feed(Typed, "what time is it")
    rig.close(EndReason.CONNECTION_LOST)
    out = rig.start("conv_2")
    assert Send(UserMessage("what time is it")) in out


def test_a_drop_while_idle_just_ends_the_conversation() -> None:
    rig = conversation()
    out = rig.close(EndReason.SERVER_ERROR, 1011)
    assert not rig.commands(Connect) and rig.state is S.READY
    assert [c.next for c in out if isinstance(c, ConversationEnded)] == [Next.OVER]


def test_a_drop_while_the_agent_answers_asks_the_question_again() -> None:
    rig = conversation()
    talked(rig)
    rig.feed(UserHeard)
    rig.feed(AgentAudio, 2)
    rig.close(EndReason.CONNECTION_LOST, cut_turn=2)
    assert rig.commands(Connect) and rig.state is S.CONNECTING
    out = rig.start("conv_2")
    assert ReplayTurn() in out and rig.state is S.SPEAKING  # the cut answer still plays out
    rig.feed(PlaybackDrained)
    assert rig.state is S.THINKING


def test_a_drop_while_the_greeting_plays_is_not_in_use() -> None:
    rig = conversation()
    rig.feed(AgentAudio, 2)  # nobody asked anything
    rig.close(EndReason.CONNECTION_LOST, cut_turn=2)
    assert not rig.commands(Connect) and rig.state is S.SPEAKING


def test_a_drop_after_a_turn_the_server_never_heard_got_audio_is_not_in_use() -> None:
    rig = conversation()
    talked(rig)  # a press without a word: the greeting that follows counts as its answer
    rig.feed(AgentAudio, 2)
    out = rig.close(EndReason.CONNECTION_LOST, cut_turn=2)
    assert ForgetTurn() in out and not rig.commands(Connect)


def test_an_interrupted_answer_is_done_with() -> None:
    rig = conversation()
    talked(rig)
    rig.feed(AgentAudio, 2)
    assert ForgetTurn() in rig.feed(Interrupted)
    rig.close(EndReason.CONNECTION_LOST)
    assert not rig.commands(Connect)


def test_a_server_that_keeps_dropping_is_retried_with_backoff() -> None:
    rig = conversation(backoff_initial=1.0, backoff_max=4.0)
    talked(rig)
    rig.close(EndReason.SERVER_ERROR, 1011)
    assert len(rig.commands(Connect)) == 1  # at once
    rig.start("conv_2")
    rig.close(EndReason.SERVER_ERROR, 1011)
    assert len(rig.commands(Connect)) == 1 and Timer.RETRY in rig.timers
    rig.advance(2.0)
    assert len(rig.commands(Connect)) == 2


def test_a_stall_while_idle_is_offline_until_a_probe_answers_without_a_conversation() -> None:
    rig = conversation(backoff_initial=1.0, backoff_max=8.0)
    out = rig.close(EndReason.STALLED)
    entered = [c for c in out if isinstance(c, StateEntered)]
    assert entered[-1].state is S.OFFLINE and entered[-1].detail == "connection stalled"
    rig.advance(1.0)
    assert rig.commands(Probe) == [Probe()]
    rig.feed(ProbeAnswered, False)
    rig.advance(2.0)
    assert len(rig.commands(Probe)) == 2 and rig.state is S.OFFLINE
    rig.feed(ProbeAnswered, True)
    assert rig.state is S.READY
    assert not rig.commands(Connect)  # never a conversation nobody asked for


def test_a_failed_connection_for_a_waiting_user_retries_with_backoff() -> None:
    rig = Rig(backoff_initial=1.0, backoff_max=8.0).boot()
    talked(rig)
    rig.close(EndReason.CONNECT_FAILED, before_metadata=True)
    assert rig.state is S.OFFLINE and Timer.RETRY in rig.timers
    rig.advance(1.0)
    assert len(rig.commands(Connect)) == 2 and rig.state is S.CONNECTING
    out = rig.start()
    assert ReplayTurn() in out


def test_a_press_while_offline_tries_at_once() -> None:
    rig = conversation()
    rig.close(EndReason.STALLED)
    out = rig.feed(ButtonDown)
    assert CancelTimer(Timer.PROBE) in out and Connect() in out
    assert rig.feed(ProbeAnswered, True) == []  # the probe's answer comes too late to matter


def test_hang_up_while_offline_for_a_user_stops_retrying_and_only_probes() -> None:
    rig = Rig().boot()
    talked(rig)
    rig.close(EndReason.CONNECT_FAILED, before_metadata=True)
    out = rig.feed(HangUpRequested)
    assert CancelTimer(Timer.RETRY) in out and Timer.PROBE in rig.timers
    assert rig.state is S.OFFLINE
    assert rig.feed(HangUpRequested) == []  # already probing


def test_a_cut_turn_is_announced_with_the_ending() -> None:
    rig = conversation()
    out = rig.close(EndReason.SERVER_ERROR, 1011, cut_turn=4)
    assert [c.ending.cut_turn for c in out if isinstance(c, ConversationEnded)] == [4]


# ----------------------------------------------------------------------------------------------
# Fatal endings and reloads


def test_a_fatal_ending_is_error_until_the_next_press() -> None:
    rig = Rig().boot()
    rig.feed(Context, "dropped")
    talked(rig)
    out = rig.close(EndReason.OVERRIDE_REJECTED, 1008, before_metadata=True)
    assert PlayEarcon("error") in out and rig.state is S.ERROR
    entered = [c for c in out if isinstance(c, StateEntered)]
    assert entered[-1].detail == "override not allowed by the agent"
    assert not rig.commands(Probe)
    rig.feed(ButtonDown)
    assert rig.state is S.CONNECTING
    out = rig.start()
    assert not [c for c in out if isinstance(c, Send)]


def test_a_reload_clears_a_fatal_error_and_may_keep_a_conversation_open() -> None:
    rig = Rig().boot()
    rig.feed(Typed, "x")
    rig.close(EndReason.AUTH_REJECTED, before_metadata=True)
    rig.feed(Reloaded, Options())
    assert rig.state is S.READY
    rig.feed(Reloaded, Options(always_connected=True))
    assert rig.state is S.CONNECTING


def test_a_reload_while_offline_tries_the_new_settings_at_once() -> None:
    rig = conversation()
    rig.close(EndReason.STALLED)
    assert rig.feed(Reloaded, Options())[-1] == Probe()
    rig.feed(ButtonDown)
    rig.close(EndReason.STALLED)  # a user waits: retrying
    out = rig.feed(Reloaded, Options())
    assert Connect() in out and rig.state is S.CONNECTING


@pytest.mark.parametrize(
    ("reason", "code", "hung_up", "in_use", "queue", "always", "expected"),
    [
        (EndReason.CONNECTION_LOST, None, True, True, False, True, Next.OVER),
        (EndReason.CLIENT_HANGUP, 1000, False, True, False, False, Next.OVER),
        (EndReason.NO_INPUT_TIMEOUT, 1000, False, False, False, True, Next.AGAIN),
        (EndReason.AUTH_REJECTED, None, False, True, False, False, Next.FATAL),
        (EndReason.SERVER_CLOSED, 3008, False, True, True, False, Next.RECONNECT),
        (EndReason.SERVER_ERROR, 1011, False, True, False, False, Next.RECONNECT),
        (EndReason.SERVER_ERROR, 1011, False, False, False, False, Next.OVER),
        (EndReason.STALLED, None, False, False, False, False, Next.PROBE),
        (EndReason.SERVER_CLOSED, 3008, False, False, True, False, Next.OVER),
    ],
)
def test_what_follows_an_ending(
    reason: EndReason,
    code: int | None,
    hung_up: bool,
    in_use: bool,
    queue: bool,
    always: bool,
    expected: Next,
) -> None:
    ending = Ending(reason, code, "")
    got = judge(ending, hung_up=hung_up, in_use=in_use, queue=queue, always_connected=always)
    assert got is expected


# ----------------------------------------------------------------------------------------------
# Queueing


def test_queue_waiting_holds_the_turn_and_admitted_sends_it() -> None:
    rig = Rig().boot()
    rig.feed(ButtonDown)
    rig.start()
    assert rig.appliance.uplink is Uplink.VOICE
    out = rig.feed(QueueWaiting)
    assert SetUplink(Uplink.HOLD) in out and rig.state is S.WAITING
    assert rig.feed(QueueWaiting) == []
    rig.advance(1.0)
    rig.feed(ButtonUp)
    assert rig.state is S.WAITING and Timer.REPLY not in rig.timers
    rig.advance(5.0)
    out = rig.feed(QueueAdmitted)
    assert ReplayTurn() in out and rig.state is S.THINKING
    assert rig.timers[Timer.REPLY] == pytest.approx(6.0 + 5.0)
    assert rig.feed(QueueAdmitted) == []


def test_queue_status_before_metadata_waits_for_both() -> None:
    rig = Rig().boot()
    talked(rig)
    rig.feed(QueueWaiting)
    assert rig.state is S.WAITING
    rig.feed(QueueAdmitted)
    assert rig.state is S.WAITING
    out = rig.start()
    assert ReplayTurn() in out and rig.state is S.THINKING


def test_queue_status_with_no_connection_is_ignored() -> None:
    rig = Rig().boot()
    assert rig.feed(QueueWaiting) == []


def test_a_queue_timeout_is_reported_and_retried_with_backoff() -> None:
    rig = Rig(backoff_initial=1.0).boot()
    talked(rig)
    rig.start()
    rig.feed(QueueWaiting)
    rig.feed(QueueTimedOut)
    out = rig.close(EndReason.SERVER_CLOSED, 3008)
    ended = [c for c in out if isinstance(c, ConversationEnded)]
    assert ended[0].next is Next.RECONNECT and rig.state is S.CONNECTING
    entered = [c for c in out if isinstance(c, StateEntered)]
    assert entered[-1].trigger is Trigger.DROPPED
    assert len(rig.commands(Connect)) == 1
    rig.advance(1.0)
    assert len(rig.commands(Connect)) == 2


def test_a_3008_close_while_connecting_or_idle() -> None:
    rig = Rig().boot()
    talked(rig)
    rig.close(EndReason.SERVER_CLOSED, 3008, before_metadata=True)
    assert rig.state is S.CONNECTING and Timer.RETRY in rig.timers
    rig.feed(HangUpRequested)
    assert rig.state is S.READY and Timer.RETRY not in rig.timers
    rig = conversation()
    rig.close(EndReason.SERVER_CLOSED, 3008)
    assert rig.state is S.READY and not rig.commands(Connect)


# ----------------------------------------------------------------------------------------------
# The microphone


def test_a_missing_microphone_shows_as_error_after_its_grace_while_idle() -> None:
    rig = Rig(mic_grace=2.0).boot()
    rig.feed(MicHealth, False)
    rig.feed(MicHealth, True)  # a blip
    rig.advance(3.0)
    assert rig.state is S.READY
    rig.feed(MicHealth, False)
    rig.advance(2.0)
    assert rig.state is S.ERROR
    assert [c for c in rig.log if isinstance(c, StateEntered)][-1].detail == "no microphone"
    rig.feed(MicHealth, False)
    assert Timer.MIC_GRACE not in rig.timers
    rig.feed(MicHealth, True)
    assert rig.state is S.READY


def test_a_microphone_missing_at_boot_shows_once_booted() -> None:
    rig = Rig(mic_grace=2.0)
    rig.feed(MicHealth, False)
    rig.advance(2.0)
    assert rig.state is S.BOOTING
    rig.boot()
    assert rig.states() == [S.READY, S.ERROR]
    rig.feed(ButtonDown)
    assert rig.state is S.CONNECTING


def test_mute_while_ready_without_a_conversation() -> None:
    rig = Rig().boot()
    rig.feed(MuteRequested, True)
    assert rig.state is S.MUTED
    rig.feed(Typed, "x")
    assert rig.state is S.CONNECTING
    rig.start()
    assert rig.state is S.MUTED


def test_the_appliance_reports_the_buttons_hold_and_hands_free() -> None:
    appliance = Appliance(Options())
    appliance.handle(ButtonDown(0.0))
    assert appliance.held and not appliance.hands_free
    appliance.handle(HandsFree(0.1, True))
    assert appliance.hands_free
    appliance.handle(HangUpRequested(0.2))
    assert not appliance.held and not appliance.hands_free


def test_metadata_while_queued_waits_for_admission() -> None:
    rig = Rig().boot()
    talked(rig)
    rig.feed(QueueWaiting)
    out = rig.start()
    assert ReplayTurn() not in out and rig.state is S.WAITING
    out = rig.feed(QueueAdmitted)
    assert ReplayTurn() in out and rig.state is S.THINKING


def test_a_drop_while_queued_with_nothing_to_answer_ends_the_conversation() -> None:
    rig = conversation()
    rig.feed(QueueWaiting)
    rig.close(EndReason.SERVER_ERROR, 1011)
    assert rig.state is S.READY and not rig.commands(Connect)


def test_a_transcript_with_no_turn_awaiting_only_counts_as_activity() -> None:
    rig = conversation()
    assert rig.feed(UserHeard) == []


def test_backoff_grows_to_its_cap_and_refuses_nonsense() -> None:
    import random

    from piagent.appliance import Backoff

    backoff = Backoff(1.0, 4.0, random.Random(1))
    bounds = []
    for _ in range(4):
        bounds.append(backoff.bound())
        assert 0.0 <= backoff.next_delay() <= bounds[-1]
    assert bounds == [1.0, 2.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.bound() == 1.0
    with pytest.raises(ValueError, match="0 < initial <= cap"):
        Backoff(2.0, 1.0)
