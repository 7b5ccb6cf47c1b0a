"""Echo cancellation through PortAudio, in real time: the daemon's ``pyaudio`` backend on the
fake ALSA card, whose microphone hears its speaker through a room.

The card's FIFOs are paced by the wall clock (``harness.AlsaCard``), and the microphone hears
what the speaker's FIFO gave out 40 ms earlier, 6 dB down, with two reflections: a real-time
echo path through PortAudio's ALSA host, its callbacks, the playback tap and the device
buffers, on this machine's CPU (the emulated Raspberry Pi's is too slow for it:
tests/rig/test_hands_free.py). The conversation is opened with the button held (``ctl
press``), as in the rig, so the user's voice over the agent acts without a wake word.

- The agent's own voice through the room never interrupts it; the canceller converges.
- The user's voice over the agent silences the speaker at once, and the simulator hears the
  interruption.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.signal import resample_poly

from piagent.audio.aec import engine_problem
from piagent.sim.agent import AgentDefinition
from piagent.sim.record import ConversationRecord
from piagent.sim.server import SimServer
from tests.e2e.harness import (
    AlsaCard,
    Daemon,
    record,
    sleep_until,
    speech_like,
    windows,
)
from tests.e2e.test_talk import start_alsa_daemon

ROOM = ((40.0, -6.0), (43.0, -15.0), (51.0, -20.0))  # (delay ms, gain dB): direct, reflections
TURN_A = "aoeui" * 30  # about 14 s of the simulated voice, without a pause (it converges
# in about 6; a busy host's unreported card underrun can make it measure the delay again)
TURN_B = "aoeui" * 40  # about 19 s: converged, then interrupted
# The card's speaker buffer, about 85 ms at 48 kHz: a stall of the daemon's callback thread
# longer than this (on a loaded 2-core host) is an underrun that nobody reports (no clock
# behind the fake card), which moves the echo by its length; the delay estimator measures it
# again, and the canceller converges again.
SPEAKER_PIPE = 8192
BARGE_IN_LIMIT_S = 0.15  # from the user's first sound to the speaker's silence, plus the card's

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(engine_problem("speex") is not None, reason=str(engine_problem("speex"))),
]


@pytest.fixture
def sim() -> Iterator[SimServer]:
    agents = [
        AgentDefinition(agent_id="talker", first_message=TURN_A),
        AgentDefinition(agent_id="longtalker", first_message=TURN_B),
    ]
    with SimServer(agents).run_in_thread() as server:
        yield server


@pytest.fixture
def card(tmp_path: Path) -> Iterator[AlsaCard]:
    alsa = AlsaCard(tmp_path, room=ROOM, speaker_pipe_bytes=SPEAKER_PIPE)
    alsa.start()
    yield alsa
    alsa.close()


def open_conversation(
    tmp: Path, sim: SimServer, agent_id: str, card: AlsaCard, daemons: list[Daemon]
) -> tuple[Daemon, ConversationRecord]:
    """The daemon on the card with echo cancellation, the button pressed and held: the
    conversation opens and the agent's first message plays while the turn is held."""
    daemon = start_alsa_daemon(tmp, sim, agent_id, card, daemons, audio={"aec": {"enabled": True}})
    assert "aec" in daemon.status()["hearing"]
    daemon.ctl("press")
    return daemon, record(sim, 0, daemon, within=10)


def hearing(daemon: Daemon) -> tuple[dict[str, Any], str]:
    """``hearing.aec`` and a line with the devices' xruns beside it."""
    status = daemon.status()
    devices = status["devices"]
    info: dict[str, Any] = status["hearing"]["aec"]
    xruns = f"xruns: mic {devices['input'].get('xruns')}, speaker {devices['output'].get('xruns')}"
    return info, f"{info}; {xruns}"


def test_the_agents_own_voice_never_interrupts_it_and_the_canceller_converges(
    sim: SimServer, tmp_path: Path, card: AlsaCard, daemons: list[Daemon]
) -> None:
    daemon, rec = open_conversation(tmp_path, sim, "talker", card, daemons)
    speaker = card.speaker
    daemon.wait_for(
        "the agent's whole turn",
        lambda: windows(speaker, speaker.t0, time.monotonic()).sound_seconds() >= 13.5,
        within=30,
    )
    time.sleep(1.0)
    played = windows(speaker, speaker.t0, time.monotonic()).sound_seconds()
    info, line = hearing(daemon)
    print(f"\nplayed {played:.2f} s; {line}; card: {speaker.underrun_s(0):.3f} s underrun")
    assert played >= 13.5, f"the agent's 14 s turn was cut: {played:.2f} s played"
    assert info["voice_overs"] == 0, line
    assert rec.interruptions == [], rec.interruptions
    assert info["converged"], line
    assert 40.0 <= info["latency_ms"] <= 250.0, line  # the room's 40 ms plus the card's buffers


def test_the_users_voice_over_the_agent_silences_the_speaker(
    sim: SimServer, tmp_path: Path, card: AlsaCard, daemons: list[Daemon]
) -> None:
    daemon, rec = open_conversation(tmp_path, sim, "longtalker", card, daemons)
    daemon.wait_status("the canceller converged", lambda s: s["hearing"]["aec"]["converged"])
    time.sleep(4.0)  # as in the WAV tests, the user talks after some 8 s of the agent
    _, line = hearing(daemon)
    # The WAV tests' user at 16 kHz, brought to the card's rate (made at 48 kHz, most of the
    # hiss would lie above what the canceller's 16 kHz keeps).
    user16 = speech_like(2.0, 16000, seed=4).astype(np.float64)
    user = np.clip(resample_poly(user16, card.rate, 16000), -32768, 32767).astype(np.int16)
    first = int(np.flatnonzero(np.abs(user) > 300)[0]) / card.rate
    utterance = card.mic.say(user)
    spoken = daemon.wait_for("the user's speech", lambda: card.mic.spoken(utterance), within=5)
    onset = spoken[0] - 0.02 + first  # the period's span ends at its write; ``first`` into it
    sleep_until(onset + 2.5)
    speaker = card.speaker
    before = windows(speaker, onset - 1.0, onset)
    daemon.check(before.sound_seconds() >= 0.8, f"the agent was not speaking: {before.describe()}")
    after = windows(speaker, onset, onset + 2.0)
    silent_at = after.silent_from(0.5)
    daemon.check(silent_at is not None, f"the agent went on: {after.describe()}")
    assert silent_at is not None
    limit = BARGE_IN_LIMIT_S + speaker.buffer_s
    print(
        f"\nconverged: {line}\nsilent {1000 * (silent_at - onset):.0f} ms after the user's "
        f"first sound (limit {1000 * limit:.0f} ms: 150 plus the card's pipe, "
        f"{1000 * speaker.buffer_s:.0f} ms)"
    )
    daemon.check(silent_at - onset <= limit, f"silent {silent_at - onset:.3f} s after the onset")
    info, line = hearing(daemon)
    assert info["voice_overs"] >= 1, line
    daemon.wait_for("the simulator's interruption", lambda: rec.interruptions, within=5)
