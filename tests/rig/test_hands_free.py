"""Echo cancellation on real drivers, in real time: the daemon under systemd in the rig with
``audio.aec.enabled``, its speaker heard by its microphone through the snd-aloop card.

``rigroom`` (tests/rig/guest) stands in for rigmic and rigspeaker here: it records what the
daemon plays and writes it straight back into the daemon's microphone, 6 dB down with two
reflections, block for block on the card's clock, and mixes in the user's voice when a test
queues some. The conversation is opened with the button held (``ctl press``): while a turn is
held, the user's voice over the agent acts (the wake word would do the same; see
tests/e2e/test_hands_free.py).

- The agent's own voice, over its long first message, never interrupts it: no voice-over, no
  interruption at the simulator, the whole turn is heard; the canceller converges (its ERLE is
  printed).
- The user's voice over the agent, once the canceller has converged, silences the speaker: the
  delay from the user's first sound to the speaker's silence is printed and bounded generously
  for emulation.

Both need the daemon to keep real time with its hearing chain on: the module first measures
the chain's CPU per 10 ms frame in the guest (``scripts/bench_aec.py --cpu-only``) and skips,
with the figure, above ``CHAIN_BUDGET`` of a core (under TCG here it took 47-93 %).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from piagent.audio.codecs import decode_audio
from piagent.protocol.messages import Audio, AudioFormat
from piagent.sim.agent import AgentDefinition
from piagent.sim.record import ConversationRecord
from piagent.sim.server import SimServer
from tests.audio.test_chain import speech_like
from tests.rig.conftest import CARD_CHANNELS, CARD_RATE, Rig, daemon_config
from tests.rig.test_conversation import press, start

# Opt-in until the canceller converges under emulation. CI rehearsal, 2026-12-07, at 2579ab1
# (a quiet host, the chain at 55 % of an emulated core): the canceller ran and found a delay
# (231 ms), but ERLE stayed under 1 dB for the whole 14 s turn, and the echo reached the
# simulator, which interrupted the agent after 4.6 s; the second test never converged. On this
# project's x86 machine the same chain converges in about 4 s (tests/e2e/test_hands_free.py).
# Two runs on 2026-12-07 (the chain at 51-59 % of an emulated core): the speaker underran 25
# times in the turn's first 5 s and up to 98 in 16 s, so the timelines the canceller rests on
# kept slipping and the delay was never found; the guest's bench gives speex the same ERLE as
# this machine's (32.9 dB). After the daemon learnt to place a timeline on the clock at each
# reported xrun (bfa8d90), a run at 53 % (the host busy): 91 underruns in 14 s, 218 slips, the
# daemon's control socket unanswered for 10 s, never converged; a shorter filter
# (audio.aec.tail_ms 64 against the default 128) did not change that. The real-time path
# through PortAudio is shown on the host's CPU instead (tests/e2e/test_hands_free_alsa.py).
# PIAGENT_RIG_HANDS_FREE=1 runs them.
OPT_IN = os.environ.get("PIAGENT_RIG_HANDS_FREE") == "1"
pytestmark = [
    pytest.mark.rig,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not OPT_IN,
        reason="opt-in (PIAGENT_RIG_HANDS_FREE=1): the canceller does not yet converge under "
        "TCG emulation (see the comment above)",
    ),
]

ROOM_DIR = "/var/lib/rigroom"
SPOOL = "/run/rigroom"
ROOM_BUFFER_MS = 100  # rigroom's aplay buffer: the user's voice reaches the mic this much later
# The simulator's voice: about 95 ms a letter, without a pause.
TURN_A = "aoeui" * 30  # about 14 s
TURN_B = "aoeui" * 50  # about 24 s: converged, then interrupted
SOUND = 300  # a sample this loud is sound
BARGE_IN_LIMIT_MS = 400  # emulation: the daemon's reaction, its buffers, the card's and the ear's
# The hearing chain's share of an emulated core (scripts/bench_aec.py --cpu-only) above which
# the daemon cannot keep real time beside its audio streams and rigroom: then these tests are
# skipped, with the figure. Measured 2026-12-07 under TCG: at 84-93 % (a loaded host) playback
# and capture ran late; at 47 % (a quiet host) the whole turn played out in real time, and
# still the canceller never ran (hearing.aec erle_db and latency_ms 0.0 throughout): a daemon
# problem these tests show, not the rig's.
# $PIAGENT_RIG_AEC_BUDGET overrides it (1 or more: run regardless).
CHAIN_BUDGET = float(os.environ.get("PIAGENT_RIG_AEC_BUDGET", "0.75"))


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    agents = [
        AgentDefinition(agent_id="talker", first_message=TURN_A),
        AgentDefinition(agent_id="longtalker", first_message=TURN_B),
    ]
    with SimServer(agents).run_in_thread() as server:
        yield server


@pytest.fixture(scope="module")
def room(rig: Rig) -> Iterator[None]:
    """rigroom on the card in place of rigmic and rigspeaker; afterwards, those again, and the
    config as it was. Skips when the hearing chain cannot run in real time here."""
    bench = rig.out(
        "systemctl stop piagent; cd /root/piagent && "
        "/opt/piagent/venv/bin/python scripts/bench_aec.py --cpu-only --seconds 5"
    )
    print(bench)
    found = re.search(r"whole hearing chain.*?(\d+) +[\d.]+ % of a core", bench)
    assert found, bench
    chain_us = float(found.group(1))
    if chain_us / 10_000 > CHAIN_BUDGET:
        pytest.skip(
            f"the hearing chain takes {chain_us / 100:.0f} % of an emulated core per 10 ms "
            f"frame (budget {CHAIN_BUDGET:.0%}): no real time here"
        )
    saved = rig.out("cat /etc/piagent/config.yaml", check=False)
    rig.write(
        "/etc/systemd/system/rigroom.service",
        "[Unit]\nDescription=rig: the speaker heard by the microphone\n"
        "Before=piagent.service\n[Service]\n"
        "ExecStart=/opt/piagent/venv/bin/python /opt/rig/rigroom.py "
        f"--buffer-ms {ROOM_BUFFER_MS}\nRestart=always\nRestartSec=0.5\n",
    )
    rig.run(
        "systemctl stop piagent rigmic rigspeaker; systemctl daemon-reload; "
        f"rm -rf {ROOM_DIR} {SPOOL}; systemctl restart rigroom && sleep 3 && "
        "systemctl is-active rigroom"
    )
    try:
        yield
    finally:
        print("rigroom:", rig.out("journalctl -u rigroom --no-pager -o cat -n 20", check=False))
        journal = "journalctl -u piagent --no-pager -o short-monotonic -n 400"
        print(
            "piagent:",
            rig.out(f"{journal} | grep -iE 'echo|latency|hearing|voice|tap'", check=False),
        )
        rig.run(
            "systemctl stop piagent rigroom; systemctl restart rigspeaker rigmic && sleep 2",
            check=False,
        )
        if saved:
            rig.write("/etc/piagent/config.yaml", saved + "\n", mode="0640")
            rig.run("chown root:piagent /etc/piagent/config.yaml", check=False)


def open_conversation(rig: Rig, sim: SimServer, agent_id: str) -> tuple[int, ConversationRecord]:
    """The daemon started with echo cancellation and the button pressed and held: the
    conversation opens and the agent's first message plays while the turn is held. Where the
    ear's recording was before, and the simulator's record."""
    config = daemon_config(sim.port)
    config["agent"]["agent_id"] = agent_id
    config["audio"]["aec"] = {"enabled": True}
    start(rig, config)
    assert "aec" in rig.status().get("hearing", {})
    ear_from = ear_size(rig)
    before = len(sim.conversations)
    press(rig)
    deadline = time.monotonic() + 60
    while len(sim.conversations) == before:
        assert time.monotonic() < deadline, "no conversation"
        time.sleep(0.2)
    return ear_from, sim.conversations[-1]


def ear_size(rig: Rig) -> int:
    return int(rig.out(f"stat -c %s {ROOM_DIR}/speaker.raw"))


def heard(rig: Rig, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """The left channel of what the ear recorded from byte ``offset`` on, and for each frame
    the CLOCK_MONOTONIC ns by which it had been read."""
    data = rig.read_bytes(f"{ROOM_DIR}/speaker.raw", offset)
    frames = np.frombuffer(data[: len(data) // 4 * 4], dtype="<i2").reshape(-1, CARD_CHANNELS)
    index = np.array(
        [
            [int(x) for x in line.split()]
            for line in rig.out(f"cat {ROOM_DIR}/speaker.idx").splitlines()
        ]
    )
    ends = offset + (np.arange(len(frames)) + 1) * 4
    at = np.minimum(np.searchsorted(index[:, 0], ends), len(index) - 1)
    return frames[:, 0].astype(np.int32), index[at, 1]


def sound_seconds(left: np.ndarray) -> float:
    """How much of ``left`` is sound, in 20 ms blocks."""
    block = CARD_RATE // 50
    n = len(left) // block
    loud = np.abs(left[: n * block]).reshape(n, block).max(axis=1) > SOUND
    return float(loud.sum()) * 0.02


def agent_seconds(record: ConversationRecord) -> float:
    """How long the agent's first turn is, as the simulator sent it (pcm_16000)."""
    chunks = [e for e in record.sent_events() if isinstance(e, Audio)]
    return sum(len(decode_audio(c.audio, AudioFormat.PCM_16000)) for c in chunks) / 16000


def aec(rig: Rig) -> dict[str, Any]:
    info: dict[str, Any] = rig.status()["hearing"]["aec"]
    return info


def test_the_agents_own_voice_never_interrupts_it_and_the_canceller_converges(
    rig: Rig, sim: SimServer, room: None
) -> None:
    ear_from, record = open_conversation(rig, sim, "talker")
    started = time.monotonic()
    seen: list[str] = []
    converged_after: float | None = None
    while time.monotonic() - started < 30:
        status = rig.status()
        info, devices = status["hearing"]["aec"], status["devices"]
        elapsed = time.monotonic() - started
        # Device xruns break the sample count both timelines rest on: printed beside the ERLE.
        seen.append(
            f"{elapsed:.0f}s: erle {info['erle_db']} dB, converged {info['converged']}, delay "
            f"{info['latency_ms']} ms; xruns: microphone {devices['input'].get('xruns')}, "
            f"speaker {devices['output'].get('xruns')}"
        )
        if info["converged"] and converged_after is None:
            converged_after = elapsed
        if record.agent_turns and elapsed > 20:
            left, _ = heard(rig, ear_from)
            tail = left[-CARD_RATE:]
            if np.abs(tail).max() <= SOUND:  # the turn has played out
                break
        time.sleep(1.5)
    press(rig, "release")
    info = aec(rig)
    left, _ = heard(rig, ear_from)
    played, expected = sound_seconds(left), agent_seconds(record)
    print(
        f"\nthe agent's turn: {expected:.2f} s sent, {played:.2f} s heard; converged after "
        f"about {converged_after} s of it; hearing.aec at the end {info}\n" + "\n".join(seen)
    )
    assert info["voice_overs"] == 0, info
    assert record.interruptions == [], record.interruptions
    assert played >= expected - 0.5, f"the turn was cut: {played:.2f} of {expected:.2f} s heard"
    assert info["converged"], info
    assert info["erle_db"] >= 12, info


def test_the_users_voice_over_the_agent_silences_the_speaker(
    rig: Rig, sim: SimServer, room: None
) -> None:
    ear_from, record = open_conversation(rig, sim, "longtalker")
    started = time.monotonic()
    while not aec(rig)["converged"]:
        assert time.monotonic() - started < 18, f"not converged: {aec(rig)}"
        time.sleep(1.0)
    time.sleep(1.0)
    converged = aec(rig)
    user = speech_like(2.0, CARD_RATE, seed=5)
    user = (user.astype(np.float64) * 0.5).astype(np.int16)  # about as loud as the echo
    first = int(np.flatnonzero(np.abs(user) > SOUND)[0])
    stereo = np.repeat(user.astype("<i2")[:, None], CARD_CHANNELS, axis=1)
    rig.run(
        f"cat > {SPOOL}/user.tmp && mv {SPOOL}/user.tmp {SPOOL}/user.raw",
        input=stereo.tobytes(),
    )
    time.sleep(4.0)
    info = aec(rig)
    press(rig, "release")
    line = rig.out(f"grep '^user.raw ' {SPOOL}/played.log | tail -1")
    assert line, "rigroom never mixed the user's voice in"
    mixed_at = int(line.split()[1])
    left, _ = heard(rig, ear_from)
    onset = (mixed_at - ear_from) // 4 + first  # the ear's frame the user's onset came with
    window = left[onset : onset + 3 * CARD_RATE]
    assert np.abs(left[max(0, onset - CARD_RATE // 2) : onset]).max() > 1000, (
        "the agent was not speaking when the user started"
    )
    loud = np.flatnonzero(np.abs(window[: 2 * CARD_RATE]) > SOUND)
    silent_from = int(loud[-1]) + 1 if len(loud) else 0
    delay_ms = silent_from / CARD_RATE * 1000
    print(
        f"\nconverged: {converged}; after the user: {info}; the speaker silent {delay_ms:.0f} ms "
        f"after the user's first sound was mixed in (of which about {ROOM_BUFFER_MS} ms is "
        f"rigroom's own buffer, before the sound reaches the microphone: "
        f"{delay_ms - ROOM_BUFFER_MS:.0f} ms from the daemon's microphone)"
    )
    assert info["voice_overs"] >= 1, info
    assert delay_ms <= BARGE_IN_LIMIT_MS, f"{delay_ms:.0f} ms"
    deadline = time.monotonic() + 10
    while not record.interruptions and time.monotonic() < deadline:
        time.sleep(0.5)
    print(f"the simulator's interruptions: {record.interruptions}")
