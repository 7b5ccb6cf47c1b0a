"""Hands-free by voice, on a fake clock: the wake word, the stop word and the user's voice
over the agent's (heard after echo cancellation), as the appliance's policy decides them."""

from __future__ import annotations

from piagent.appliance import State
from piagent.appliance.commands import Connect, FlushPlayback, PlayEarcon, Uplink
from piagent.appliance.events import (
    AgentAudio,
    ButtonDown,
    HandsFree,
    PlaybackDrained,
    Typed,
    VoiceOver,
    WordHeard,
)
from tests.appliance.rig import Rig

S = State


def speaking(**options: object) -> Rig:
    """A hands-free conversation with the agent speaking."""
    rig = Rig(**options).boot()
    rig.feed(WordHeard, "wake")
    rig.start()
    rig.feed(AgentAudio, 3)
    rig.clear()
    return rig


def test_the_wake_word_opens_a_hands_free_conversation_as_a_tap_does() -> None:
    rig = Rig().boot()
    out = rig.feed(WordHeard, "wake")
    assert PlayEarcon("press") in out and Connect() in out
    assert rig.appliance.hands_free and rig.state is S.CONNECTING
    rig.start()
    assert rig.state is S.LISTENING and rig.appliance.uplink is Uplink.VOICE


def test_the_wake_word_while_the_agent_speaks_interrupts_it_and_keeps_the_conversation() -> None:
    rig = speaking()
    assert rig.state is S.SPEAKING
    out = rig.feed(WordHeard, "wake")
    assert out[0] == FlushPlayback(barge_in=True)
    assert PlayEarcon("press") not in out and not rig.commands(Connect)
    assert rig.state is S.LISTENING and rig.appliance.hands_free


def test_the_stop_word_interrupts_the_agent_and_does_nothing_when_it_is_silent() -> None:
    rig = speaking()
    out = rig.feed(WordHeard, "stop")
    assert FlushPlayback(barge_in=True) in out and rig.state is S.LISTENING
    assert rig.feed(WordHeard, "stop") == []
    rig = Rig().boot()
    assert rig.feed(WordHeard, "stop") == [] and rig.state is S.READY


def test_a_wake_word_in_a_conversation_while_nothing_plays_changes_nothing() -> None:
    rig = speaking()
    rig.feed(PlaybackDrained)
    assert rig.state is S.LISTENING
    assert rig.feed(WordHeard, "wake") == []


def test_the_users_voice_over_the_agent_barges_in_hands_free() -> None:
    rig = speaking(half_duplex=False)
    assert rig.appliance.uplink is Uplink.VOICE  # full duplex: the server hears the user too
    out = rig.feed(VoiceOver)
    assert out == [FlushPlayback(barge_in=True)] and rig.state is S.LISTENING
    assert rig.feed(VoiceOver) == []  # nothing plays any more


def test_voice_over_the_agent_interrupts_only_a_user_the_server_can_hear() -> None:
    """Without hands-free and without a held button the server hears silence: cutting the
    agent locally would leave the two sides disagreeing, so nothing happens."""
    rig = Rig().boot()
    rig.feed(Typed, "hi")
    rig.start()
    rig.feed(AgentAudio, 2)
    assert rig.feed(VoiceOver) == [] and rig.state is S.SPEAKING
    rig.feed(ButtonDown)  # a press barges in by itself; voice over a held turn is then moot
    rig.feed(AgentAudio, 4)
    assert rig.feed(VoiceOver) == [FlushPlayback(barge_in=True)]


def test_hands_free_off_after_the_wake_word_is_the_tap_that_ends_it() -> None:
    rig = speaking()
    out = rig.feed(HandsFree, False)
    assert PlayEarcon("release") in out and not rig.appliance.hands_free
