"""The daemon as a user meets it: press, speak, release and hear the answer; barge in with the
button, or with a typed message, while the agent speaks. Each runs ``piagent run`` against the
simulator, through the WAV backend and (press/answer and barge-in) the ALSA fake card, whose
PortAudio path is the one a Raspberry Pi uses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.signal import resample_poly

from piagent.sim.agent import AgentDefinition
from piagent.sim.server import SimServer
from piagent.sim.voice import synthesize
from tests.e2e.harness import (
    AlsaCard,
    CtlCall,
    Daemon,
    Samples,
    Timeline,
    WavTimeline,
    base_config,
    best_match,
    index_at,
    mic_wav,
    record,
    sent_types,
    sleep_until,
    sound_seconds,
    speech_like,
    start_wav,
    windows,
)

pytestmark = pytest.mark.timeout(90)

RATE = 16000  # the simulator's audio format, and the WAV backend's rate
SPEECH_S = 1.5
# Vowels only: the simulated voice speaks it without a pause, so any silence is a flush.
LONG_TURN = "aoeui" * 20  # 9.5 s
VOICE = AgentDefinition().voice_id
CUT_SLACK_S = 0.15  # the speaker must be silent this soon after the press (period + scheduling)
# The simulator ends a user turn after this much silence, whatever the button: long enough
# for the release (sent 0.1 s after the speech, plus ``piagent ctl``'s start-up on a busy
# machine) to come first, so the answer is heard after the release.
TURN_END_MS = 1200
# With the WAV microphone the speech is at a fixed moment: press this much earlier, for
# ``piagent ctl``'s start-up on a busy machine (the button is simply held a little longer).
PRESS_AHEAD_S = 1.0


@pytest.fixture
def sim() -> Iterator[SimServer]:
    agents = [
        AgentDefinition(agent_id="parrot", first_message="", turn_end_silence_ms=TURN_END_MS),
        AgentDefinition(
            agent_id="talker", first_message=LONG_TURN, turn_end_silence_ms=TURN_END_MS
        ),
    ]
    with SimServer(agents).run_in_thread() as server:
        yield server


@pytest.fixture
def alsa(tmp_path: Path) -> Iterator[AlsaCard]:
    card = AlsaCard(tmp_path)
    card.start()
    yield card
    card.close()


def pcm(data: bytes | bytearray) -> Samples:
    return np.frombuffer(bytes(data), dtype="<i2").astype(np.int16)


def start_wav_daemon(
    tmp: Path, sim: SimServer, agent_id: str, daemons: list[Daemon], **sections: object
) -> tuple[Daemon, WavTimeline]:
    return start_wav(tmp, base_config(tmp, sim, agent_id, **sections), daemons, RATE)


def start_alsa_daemon(
    tmp: Path,
    sim: SimServer,
    agent_id: str,
    card: AlsaCard,
    daemons: list[Daemon],
    audio: dict[str, Any] | None = None,
    **sections: object,
) -> Daemon:
    """The daemon on ``card`` (``audio``: more keys for its ``audio`` section), both devices
    healthy."""
    config = base_config(tmp, sim, agent_id, **sections)
    config["audio"] = card.audio_config() | (audio or {})
    daemon = Daemon(tmp, config, env=card.env())
    daemons.append(daemon)
    daemon.wait_ready()
    daemon.wait_status(
        "both devices healthy",
        lambda s: s["devices"]["input"]["healthy"] and s["devices"]["output"]["healthy"],
    )
    return daemon


def handled_by(daemon: Daemon, call: CtlCall, notify_from: int) -> float:
    """A moment by which the daemon had handled ``call``: the daemon reports the state change
    a press or a typed message causes at once on the notify socket, and ctl returns after
    the daemon's answer; the earlier of the two."""
    status = daemon.notify.find("STATUS=", notify_from)
    return call.done if status is None else min(call.done, status[1])


def speak(daemon: Daemon, card: AlsaCard, speech: Samples) -> tuple[float, float]:
    """Say ``speech`` into the fake card's microphone; returns when it started and ended,
    0.1 s after its end."""
    utterance = card.mic.say(speech)

    def spoken() -> tuple[float, float] | None:
        moments = card.mic.spoken(utterance)
        return moments if moments is not None and moments[1] < time.monotonic() - 0.1 else None

    start, end = daemon.wait_for("the speech to be spoken", spoken)
    daemon.check(card.mic.speech_dropped == 0, f"{card.mic.speech_dropped} periods not captured")
    return start, end


# ----------------------------------------------------------------------------------------------
# 1. Press, speak, release, hear the answer


def check_answer(
    daemon: Daemon,
    sim: SimServer,
    timeline: Timeline,
    speech: Samples,
    press: CtlCall,
    release: CtlCall,
    speech_end: float,
) -> None:
    """The parrot heard the speech while the button was held and its answer (the speech
    itself) is heard after the release."""
    status = daemon.wait_status(
        "a reply latency",
        lambda s: bool(s["latency_ms"]) and s["latency_ms"]["reply_ms"] is not None,
    )
    rec = record(sim, 0, daemon)
    daemon.check(rec.conversation_id == status["conversation_id"], "another conversation")

    def answer_heard() -> bool:
        heard = windows(timeline, speech_end, time.monotonic())
        return heard.sound_seconds() >= SPEECH_S - 0.2 and heard.ended(0.3)

    daemon.wait_for("the answer to be heard", answer_heard, within=15)
    # The simulator got exactly the held speech: 1.5 s of sound, one user turn.
    user = pcm(rec.user_audio)
    heard_by_sim = sound_seconds(user, RATE)
    daemon.check(
        abs(heard_by_sim - SPEECH_S) <= 0.1, f"the simulator heard {heard_by_sim} s of sound"
    )
    daemon.check(rec.user_transcripts == ["(1.5 s of speech)"], f"{rec.user_transcripts}")
    # Nothing played until the answer, after the release: the user's own words.
    after = windows(timeline, press.launched - 1.0, time.monotonic())
    first = after.first_sound()
    assert first is not None
    daemon.check(
        first > release.launched and first > speech_end + TURN_END_MS / 1000 - 0.1,
        f"sound before the answer: {after.describe()}",
    )
    daemon.check(
        abs(after.sound_seconds() - SPEECH_S) <= 0.2, f"answer of {after.sound_seconds()} s"
    )
    played = timeline.samples()[index_at(timeline, first) - 200 :]
    _, similarity = best_match(played, speech[len(speech) // 4 : len(speech) // 2])
    daemon.check(similarity > 0.9, f"the answer is not the user's speech ({similarity:.2f})")
    reply_ms = status["latency_ms"]["reply_ms"]
    daemon.check(0 < reply_ms < 3000, f"reply_ms {reply_ms}")
    print(
        f"\nreply_ms {reply_ms}, answer heard {first - release.done:.3f} s after the release, "
        f"similarity {similarity:.3f}"
    )


def test_press_speak_release_hear_the_answer_wav(
    sim: SimServer, tmp_path: Path, daemons: list[Daemon]
) -> None:
    speech_at = 3.0
    speech = speech_like(SPEECH_S, RATE)
    mic_wav(tmp_path / "mic.wav", RATE, 15.0, [(speech_at, speech)])
    daemon, timeline = start_wav_daemon(tmp_path, sim, "parrot", daemons)
    try:
        sleep_until(timeline.start + speech_at - PRESS_AHEAD_S)
        mark = len(daemon.notify.messages)
        press = daemon.ctl("press")
        pressed = handled_by(daemon, press, mark)
        daemon.check(pressed < timeline.start + speech_at, "the press came after the speech")
        sleep_until(timeline.start + speech_at + SPEECH_S + 0.1)
        release = daemon.ctl("release")
        speech_end = timeline.start + speech_at + SPEECH_S
        check_answer(daemon, sim, timeline, speech, press, release, speech_end)
    finally:
        timeline.close()


def test_press_speak_release_hear_the_answer_alsa(
    sim: SimServer, tmp_path: Path, alsa: AlsaCard, daemons: list[Daemon]
) -> None:
    daemon = start_alsa_daemon(tmp_path, sim, "parrot", alsa, daemons)
    speech16 = speech_like(SPEECH_S, RATE)
    speech = resample_poly(speech16, 3, 1).astype(np.int16)  # band-limited like the reply
    press = daemon.ctl("press")
    _, speech_end = speak(daemon, alsa, speech)
    release = daemon.ctl("release")
    check_answer(daemon, sim, alsa.speaker, speech, press, release, speech_end)
    print(f"speaker underruns since the press: {alsa.speaker.underrun_s(press.launched):.3f} s")
    daemon.check(daemon.status()["devices"]["input"]["rate"] == 48000, "not captured at 48 kHz")
    assert daemon.stop() == 0  # PortAudio's streams close while the card's clock runs


# ----------------------------------------------------------------------------------------------
# 2. and 3. Interrupting the agent


@dataclass(frozen=True, slots=True)
class Cut:
    """How fast the speaker went silent after a press (or a typed message)."""

    silent_at: float
    lower: float  # the command was sent no earlier than this
    upper: float  # and had been handled by this moment

    @property
    def delay_ms(self) -> tuple[float, float]:
        """The silence delay, at least and at most."""
        return (self.silent_at - self.upper) * 1000, (self.silent_at - self.lower) * 1000


def measure_cut(daemon: Daemon, timeline: Timeline, call: CtlCall, notify_from: int) -> Cut:
    """The agent was heard up to the command, then silence within ``CUT_SLACK_S`` (plus the
    device's own buffer)."""
    upper = handled_by(daemon, call, notify_from)
    span = windows(timeline, call.launched - 1.0, upper + 1.0)
    before = windows(timeline, call.launched - 0.6, call.launched)
    daemon.check(
        before.sound_seconds() >= 0.5, f"the agent was not speaking before: {span.describe()}"
    )
    silent_at = span.silent_from(0.3)
    daemon.check(silent_at is not None, f"never silent: {span.describe()}")
    assert silent_at is not None
    cut = Cut(silent_at, call.launched, upper)
    daemon.check(
        call.launched - 0.03 <= silent_at <= upper + CUT_SLACK_S + timeline.buffer_s,
        f"silent at {silent_at - call.launched:.3f} s after the command was sent "
        f"(handled by {upper - call.launched:.3f} s): {span.describe()}",
    )
    return cut


def check_barge_in(
    daemon: Daemon,
    sim: SimServer,
    timeline: Timeline,
    speech: Samples,
    press: CtlCall,
    release: CtlCall,
    speech_end: float,
    notify_from: int,
) -> Cut:
    cut = measure_cut(daemon, timeline, press, notify_from)
    rec = record(sim, 0, daemon)
    turn = next(iter(rec.agent_turns))
    daemon.wait_for("the interruption", lambda: rec.interruptions == [turn], within=10)
    # The simulator sent stale chunks of the interrupted turn after the interruption ...
    frames = sent_types(rec)
    at = next(i for i, (kind, _) in enumerate(frames) if kind == "interruption")
    stale = [
        f for kind, f in frames[at:] if kind == "audio" and f["audio_event"]["event_id"] == turn
    ]
    daemon.check(len(stale) >= 1, "the simulator sent no stale chunks")
    heard_by_sim = sound_seconds(pcm(rec.user_audio), RATE)
    daemon.check(
        abs(heard_by_sim - SPEECH_S) <= 0.1, f"the simulator heard {heard_by_sim} s of sound"
    )
    # ... and the answer (the parrot replays the user's speech) comes after the release.
    daemon.wait_for(
        "the answer after the barge-in",
        lambda: windows(timeline, speech_end, time.monotonic()).sound_seconds() >= SPEECH_S - 0.2,
        within=15,
    )
    after_cut = cut.upper + CUT_SLACK_S + timeline.buffer_s
    answer = windows(timeline, after_cut, time.monotonic()).first_sound()
    assert answer is not None
    daemon.check(
        answer > release.launched and answer > speech_end + TURN_END_MS / 1000 - 0.1,
        f"sound at {answer - speech_end:.3f} s after the speech ended, before the answer",
    )
    # Between the cut and the answer nothing was heard: no stale chunk, no rest of the turn.
    gap = windows(timeline, after_cut, answer)
    daemon.check(
        gap.first_sound() is None and gap.sound_seconds() == 0,
        f"sound between the barge-in and the answer: {gap.describe()}",
    )
    daemon.check(answer - cut.silent_at > 1.0, "the silence was too short to prove anything")
    played = timeline.samples()[index_at(timeline, answer) - 200 :]
    _, similarity = best_match(played, speech[len(speech) // 4 : len(speech) // 2])
    daemon.check(similarity > 0.9, f"the answer is not the user's speech ({similarity:.2f})")
    low, high = cut.delay_ms
    print(
        f"\nsilent {low:.0f}..{high:.0f} ms after the press; {len(stale)} stale chunks dropped; "
        f"{answer - cut.silent_at:.2f} s of silence until the answer"
    )
    return cut


def test_barge_in_by_button_wav(sim: SimServer, tmp_path: Path, daemons: list[Daemon]) -> None:
    speech_at = 6.0
    speech = speech_like(SPEECH_S, RATE, seed=2)
    mic_wav(tmp_path / "mic.wav", RATE, 20.0, [(speech_at, speech)])
    daemon, timeline = start_wav_daemon(
        tmp_path, sim, "talker", daemons, session={"idle_timeout": 60, "always_connected": True}
    )
    try:
        daemon.wait_status("the agent speaking", lambda s: s["state"] == "speaking", within=5)
        daemon.check(time.monotonic() < timeline.start + speech_at - 2.0, "started too late")
        sleep_until(timeline.start + speech_at - PRESS_AHEAD_S)
        mark = len(daemon.notify.messages)
        press = daemon.ctl("press")
        pressed = handled_by(daemon, press, mark)
        daemon.check(pressed < timeline.start + speech_at, "the press came after the speech")
        sleep_until(timeline.start + speech_at + SPEECH_S + 0.1)
        release = daemon.ctl("release")
        speech_end = timeline.start + speech_at + SPEECH_S
        check_barge_in(daemon, sim, timeline, speech, press, release, speech_end, mark)
    finally:
        timeline.close()


def test_barge_in_by_button_alsa(
    sim: SimServer, tmp_path: Path, alsa: AlsaCard, daemons: list[Daemon]
) -> None:
    daemon = start_alsa_daemon(
        tmp_path,
        sim,
        "talker",
        alsa,
        daemons,
        session={"idle_timeout": 60, "always_connected": True},
    )
    ready = time.monotonic()
    daemon.wait_status("the agent speaking", lambda s: s["state"] == "speaking", within=5)
    time.sleep(1.5)
    speech = resample_poly(speech_like(SPEECH_S, RATE, seed=3), 3, 1).astype(np.int16)
    mark = len(daemon.notify.messages)
    press = daemon.ctl("press")
    time.sleep(0.3)
    _, speech_end = speak(daemon, alsa, speech)
    release = daemon.ctl("release")
    check_barge_in(daemon, sim, alsa.speaker, speech, press, release, speech_end, mark)
    print(f"speaker underruns since ready: {alsa.speaker.underrun_s(ready):.3f} s")
    assert daemon.stop() == 0


def test_typed_message_interrupts_and_is_answered(
    sim: SimServer, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """``ctl say`` while the agent speaks: its turn stops at once, the simulator gets the
    ``user_message``, and the answer to it is the next thing heard. The WAV speaker plays
    the agent's samples bit-exact (16 kHz both ways, volume 1), so the timeline shows exactly
    where the old turn was cut and where the answer begins."""
    mic_wav(tmp_path / "mic.wav", RATE, 1.0, [])
    daemon, timeline = start_wav_daemon(
        tmp_path, sim, "talker", daemons, session={"idle_timeout": 60, "always_connected": True}
    )
    try:
        daemon.wait_status("the agent speaking", lambda s: s["state"] == "speaking", within=5)
        time.sleep(1.5)
        mark = len(daemon.notify.messages)
        say = daemon.ctl("say", "what", "time", "is", "it")
        handled = handled_by(daemon, say, mark)
        rec = record(sim, 0, daemon)
        reply = "You wrote: what time is it"
        answer = synthesize(reply, RATE, VOICE).samples
        daemon.wait_for(
            "the answer to play out",
            lambda: (
                reply in rec.agent_turns.values()
                and (heard := windows(timeline, handled, time.monotonic())).ended(0.3)
                and heard.sound_seconds() >= 0.8 * sound_seconds(answer, RATE)
            ),
            within=15,
        )
        texts = [
            getattr(m, "text", None) for m in rec.received if type(m).__name__ == "UserMessage"
        ]
        daemon.check(texts == ["what time is it"], f"user messages at the simulator: {texts}")
        daemon.check(len(rec.interruptions) == 1, f"interruptions: {rec.interruptions}")

        played = timeline.samples()
        old = synthesize(LONG_TURN, RATE, VOICE).samples
        begin, similarity = best_match(played[: index_at(timeline, say.launched)], old[:RATE])
        daemon.check(similarity > 0.999, f"the agent's turn is not in the timeline ({similarity})")
        span = min(len(old), len(played) - begin)
        differ = np.flatnonzero(played[begin : begin + span] != old[:span])
        daemon.check(len(differ) > 0, "the agent's turn was never cut")
        cut = begin + int(differ[0])  # the first sample that is not the old turn's
        cut_at = timeline.time_at(cut)
        offset, similarity = best_match(played[cut:], answer)
        start = cut + offset
        daemon.check(similarity > 0.999, f"the answer was not played as sent ({similarity:.4f})")
        between = played[cut:start]
        daemon.check(
            not np.any(between),
            f"{np.count_nonzero(between)} non-silent samples between the cut and the answer",
        )
        daemon.check(
            say.launched - 0.03 <= cut_at <= handled + CUT_SLACK_S,
            f"the turn was cut {cut_at - say.launched:.3f} s after ctl say was started "
            f"(handled by {handled - say.launched:.3f} s)",
        )
        low, high = (cut_at - handled) * 1000, (cut_at - say.launched) * 1000
        print(
            f"\nthe turn cut {low:.0f}..{high:.0f}"
            f" ms after ctl say ({(cut - begin) / RATE:.2f} s of it heard); the answer began "
            f"{len(between) / RATE * 1000:.0f} ms later, bit-exact"
        )
    finally:
        timeline.close()
