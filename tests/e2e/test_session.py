"""The life of conversations in the daemon process: client tools, the idle hang-up and the next
press, the server dropping mid-turn, the agent ending the call (against ``piagent sim`` run as
a process), a fatal key error shown on the LEDs and fixed by SIGHUP, and SIGTERM while the
agent speaks. WAV backend, mock pins, ``piagent ctl``."""

from __future__ import annotations

import json
import signal
import stat
import time
import wave
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from piagent.sim.agent import AgentDefinition, FaultClose
from piagent.sim.scenario import Scenario
from piagent.sim.server import SimServer
from piagent.sim.voice import synthesize
from tests.e2e.harness import (
    Daemon,
    Server,
    SimProcess,
    WavTimeline,
    base_config,
    mic_wav,
    record,
    sound_seconds,
    wait_closed,
    windows,
)

pytestmark = pytest.mark.timeout(90)

RATE = 16000
KEY = "sk_e2e_right_key_5f4e3d2c1b0a"
WRONG_KEY = "sk_e2e_wrong_key_0a1b2c3d4e5f"
GREETING = "aoeui" * 4  # 1.9 s without a pause
VOICE = AgentDefinition().voice_id


def start(
    tmp: Path,
    sim: Server,
    agent_id: str,
    daemons: list[Daemon],
    config: dict[str, object] | None = None,
    **sections: object,
) -> Daemon:
    """A daemon whose microphone is silent (these flows type, or press without speaking)."""
    mic_wav(tmp / "mic.wav", RATE, 1.0, [])
    daemon = Daemon(tmp, config or base_config(tmp, sim, agent_id, **sections))
    daemons.append(daemon)
    daemon.wait_ready()
    return daemon


# ----------------------------------------------------------------------------------------------
# 4. Client tools


def test_client_tool_calls_of_a_command_and_builtins(tmp_path: Path, daemons: list[Daemon]) -> None:
    tool = tmp_path / "echo_tool.sh"
    tool.write_text(
        "#!/bin/sh\n"
        "read -r line\n"
        'printf \'{"tool": "%s", "got": %s}\\n\' "$PIAGENT_TOOL_NAME" "$line"\n'
    )
    tool.chmod(0o755)
    scenario = Scenario.from_yaml(
        """
agent: {first_message: ""}
steps:
  - expect: user_turn
    timeout: 20
  - tool_call: {name: echo_json, parameters: {room: kitchen, level: 3}, timeout: 10}
  - tool_call: {name: current_time, parameters: {timezone: UTC}, timeout: 10}
  - tool_call: {name: set_volume, parameters: {level: 40}, timeout: 10}
  - agent_say: "All done."
"""
    )
    with SimServer([AgentDefinition(agent_id="tools")], scenario=scenario).run_in_thread() as sim:
        daemon = start(
            tmp_path,
            sim,
            "tools",
            daemons,
            tools={
                "builtins": ["current_time", "set_volume"],
                "commands": {"echo_json": {"command": [str(tool)], "timeout": 5}},
            },
        )
        daemon.ctl("say", "use", "your", "tools")
        rec = record(sim, 0, daemon)
        daemon.wait_for(
            "the agent's last words", lambda: "All done." in rec.agent_turns.values(), within=30
        )
        now = datetime.now(UTC)
        results = {r.tool_call_id: r for r in rec.tool_results}
        calls = [
            (frame["client_tool_call"]["tool_name"], frame["client_tool_call"]["tool_call_id"])
            for frame in map(json.loads, rec.sent)
            if frame.get("type") == "client_tool_call"
        ]
        daemon.check(
            [name for name, _ in calls] == ["echo_json", "current_time", "set_volume"],
            f"tool calls sent: {calls}",
        )
        daemon.check(rec.tool_timeouts == [], f"unanswered: {rec.tool_timeouts}")
        echo, clock, volume = (results[call_id] for _, call_id in calls)
        daemon.check(not any(r.is_error for r in (echo, clock, volume)), f"{results}")
        # The command got the parameters as JSON on stdin; its stdout is the result.
        daemon.check(
            json.loads(echo.result)
            == {"tool": "echo_json", "got": {"room": "kitchen", "level": 3}},
            f"echo_json answered {echo.result!r}",
        )
        told = json.loads(clock.result)
        when = datetime.fromisoformat(told["iso"])
        daemon.check(
            when.utcoffset() is not None and abs((now - when).total_seconds()) < 30,
            f"current_time answered {clock.result!r} at {now.isoformat()}",
        )
        daemon.check(told["weekday"] == when.strftime("%A"), f"weekday in {clock.result!r}")
        daemon.check(json.loads(volume.result) == {"level": 40}, f"set_volume: {volume.result!r}")
        daemon.check(daemon.status()["volume"] == 0.4, "the volume did not change")
        assert daemon.stop() == 0


# ----------------------------------------------------------------------------------------------
# 5. Idle hang-up, then a fresh conversation on the next press


def greet_then_wait_for_the_hang_up(
    tmp: Path, sim: SimServer, daemons: list[Daemon], idle_timeout: float, greeting_s: float
) -> tuple[Daemon, float]:
    """Press and release (the greeting clears the wait for a reply), let the greeting play,
    and wait for the idle hang-up; returns how long after the greeting's last sound it came."""
    daemon = start(tmp, sim, "greeter", daemons, session={"idle_timeout": idle_timeout})
    timeline = WavTimeline(tmp / "speaker.wav", RATE)
    try:
        timeline.wait_started()
        pressed = time.monotonic()
        daemon.ctl("press")
        daemon.ctl("release")
        first = record(sim, 0, daemon)
        code = wait_closed(sim, first, daemon, within=idle_timeout + greeting_s + 10)
        hung_up = time.monotonic()
        daemon.check(code == 1000, f"closed with {code} {first.close_reason!r}")
        daemon.check(first.close_reason == "User ended conversation", "not closed by piagent")
        daemon.check("hanging up (idle)" in daemon.log(), "not an idle hang-up")
        heard = windows(timeline, pressed, hung_up)
        last = heard.last_sound()
        daemon.check(
            last is not None and abs(heard.sound_seconds() - greeting_s) <= 0.15,
            f"the greeting was not heard whole: {heard.describe()}",
        )
        assert last is not None
        return daemon, hung_up - last
    finally:
        timeline.close()


def test_idle_hang_up_then_a_new_conversation_on_the_next_press(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    agents = [AgentDefinition(agent_id="greeter", first_message=GREETING)]
    with SimServer(agents).run_in_thread() as sim:
        daemon, idle_for = greet_then_wait_for_the_hang_up(tmp_path, sim, daemons, 2, 1.9)
        # Idle time counts from the agent's last word heard (idle_timeout 2 s).
        daemon.check(1.8 <= idle_for <= 3.5, f"hung up {idle_for:.2f} s after the agent's words")
        first = sim.conversations[0]
        after = daemon.wait_status("no conversation", lambda s: s["conversation_id"] is None)
        daemon.check(after["state"] == "ready", f"state {after['state']}")
        daemon.check(after["last_ending"].startswith("client hung up"), f"{after['last_ending']}")
        time.sleep(0.5)
        daemon.check(len(sim.conversations) == 1, "reconnected without a press")

        daemon.ctl("press")
        second = record(sim, 1, daemon)
        status = daemon.wait_status(
            "a new conversation", lambda s: s["conversation_id"] is not None
        )
        daemon.ctl("release")
        daemon.check(
            status["conversation_id"] == second.conversation_id != first.conversation_id,
            f"conversation ids: first {first.conversation_id}, second {second.conversation_id}, "
            f"status {status['conversation_id']}",
        )
        daemon.check(not second.closed, "the new conversation closed")
        print(f"\nidle hang-up {idle_for:.2f} s after the agent's last word (idle_timeout 2 s)")
        assert daemon.stop() == 0


def test_idle_time_counts_from_the_agents_last_word_heard(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """The agent's audio arrives ten times faster than real time (the real service streams
    ahead too): the 2.4 s greeting is all received after 0.24 s. ``idle_timeout: 3`` means
    three seconds without speech either way, so no hang-up until 3 s after the last word."""
    greeting = "aoeui" * 5  # 2.4 s
    agents = [AgentDefinition(agent_id="greeter", first_message=greeting, audio_pace=10.0)]
    with SimServer(agents).run_in_thread() as sim:
        _, idle_for = greet_then_wait_for_the_hang_up(tmp_path, sim, daemons, 3, 2.4)
        print(f"\nhung up {idle_for:.2f} s after the agent's last word (idle_timeout 3 s)")
        assert idle_for >= 2.8


def test_a_press_without_speech_is_hung_up_when_idle(tmp_path: Path, daemons: list[Daemon]) -> None:
    """A press and release with nothing said (the button brushed): the server hears silence
    and never answers. ``session.idle_timeout`` (no speech either way) should still end the
    conversation, and the LEDs should not show ``thinking`` for good."""
    with SimServer([AgentDefinition(agent_id="quiet", first_message="")]).run_in_thread() as sim:
        daemon = start(tmp_path, sim, "quiet", daemons, session={"idle_timeout": 2})
        daemon.ctl("press")
        rec = record(sim, 0, daemon)
        daemon.wait_status("a conversation", lambda s: s["conversation_id"] is not None)
        daemon.ctl("release")
        try:
            code = wait_closed(sim, rec, daemon, within=6)
        finally:
            print(f"\nstate 6 s after a silent press: {daemon.status()['state']}")
        assert code == 1000


# ----------------------------------------------------------------------------------------------
# 6. The server drops mid-turn


class FirstConversationDrops(SimServer):
    """The first conversation's agent closes 1011 right after the first audio chunk of its
    greeting; every later conversation is healthy."""

    def agent(self, agent_id: str) -> AgentDefinition | None:
        agent = super().agent(agent_id)
        if agent is not None and not self.conversations:  # asked before the record exists
            # The metadata waits, so that the test has released the button by the drop (a
            # held button would have the daemon reconnect at once, by design).
            fault = FaultClose("first_audio", 1011, "boom")
            return replace(agent, fault_close=fault, metadata_delay=1.5)
        return agent


def test_server_drop_mid_turn_is_reported_and_the_next_press_works(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    agents = [AgentDefinition(agent_id="flaky", first_message=GREETING)]
    with FirstConversationDrops(agents).run_in_thread() as sim:
        daemon = start(tmp_path, sim, "flaky", daemons)
        timeline = WavTimeline(tmp_path / "speaker.wav", RATE)
        try:
            timeline.wait_started()
            daemon.ctl("press")
            released = daemon.ctl("release").done
            first = record(sim, 0, daemon)
            code = wait_closed(sim, first, daemon)
            daemon.check(time.monotonic() - released > 0.3, "the drop came before the release")
            daemon.check(code == 1011, f"first conversation closed with {code}")
            status = daemon.wait_status("the ending reported", lambda s: s["last_ending"])
            ending = status["last_ending"]
            daemon.check(
                "code 1011" in ending and "boom" in ending and "internal server error" in ending,
                f"last_ending {ending!r}",
            )
            time.sleep(1.0)
            status = daemon.status()
            daemon.check(status["state"] == "ready", f"state {status['state']} after the drop")
            daemon.check(status["conversation_id"] is None, "a conversation is still shown")
            daemon.check(len(sim.conversations) == 1, "reconnected without being asked")
            daemon.check("was cut off" in daemon.log(), "the cut turn was not logged")
            heard = windows(timeline, timeline.start, time.monotonic())
            daemon.check(
                heard.sound_seconds() <= 0.2, f"more than one chunk played: {heard.describe()}"
            )

            pressed = time.monotonic()
            daemon.ctl("press")
            daemon.ctl("release")
            second = record(sim, 1, daemon)
            status = daemon.wait_status(
                "the new conversation", lambda s: s["conversation_id"] is not None
            )
            daemon.check(status["conversation_id"] == second.conversation_id, "not the new one")
            daemon.wait_for(
                "the greeting to play out",
                lambda: windows(timeline, pressed, time.monotonic()).ended(0.3),
            )
            greeting = windows(timeline, pressed, time.monotonic())
            daemon.check(
                abs(greeting.sound_seconds() - 1.9) <= 0.15,
                f"the greeting was not heard whole: {greeting.describe()}",
            )
            daemon.check(not second.closed, "the new conversation closed")
            assert daemon.stop() == 0
        finally:
            timeline.close()


# ----------------------------------------------------------------------------------------------
# The agent ends the call, against ``piagent sim`` run as its own process


def test_the_agent_ends_the_call_against_piagent_sim_as_a_process(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    agents = 'agents:\n  - agent_id: closer\n    first_message: ""\n'
    farewell = "Goodbye for now."
    scenario = (
        "steps:\n  - expect: user_turn\n    timeout: 20\n"
        f'  - agent_say: "{farewell}"\n  - end_call: true\n'
    )
    with SimProcess(tmp_path, agents, scenario) as sim:
        sim.wait_listening()
        daemon = start(tmp_path, sim, "closer", daemons)
        timeline = WavTimeline(tmp_path / "speaker.wav", RATE)
        try:
            timeline.wait_started()
            said = daemon.ctl("say", "that", "is", "all")
            status = daemon.wait_status("the call ended", lambda s: s["last_ending"] is not None)
            daemon.check(
                status["last_ending"].startswith("agent ended the call"), f"{status['last_ending']}"
            )
            daemon.check("the agent ended the call" in daemon.log(), "no log line")
            expected = sound_seconds(synthesize(farewell, RATE, VOICE).samples, RATE)
            daemon.wait_for(
                "the farewell to play out",
                lambda: windows(timeline, said.launched, time.monotonic()).ended(0.3),
            )
            heard = windows(timeline, said.launched, time.monotonic())
            daemon.check(
                abs(heard.sound_seconds() - expected) <= 0.1,
                f"the last words were not heard whole ({expected:.2f} s): {heard.describe()}",
            )
            time.sleep(0.5)
            status = daemon.status()
            daemon.check(
                status["conversation_id"] is None and status["state"] == "ready",
                f"after the agent hung up: {status['state']}, {status['conversation_id']}",
            )
            assert daemon.stop() == 0
            assert sim.stop() == 0
        finally:
            timeline.close()


# ----------------------------------------------------------------------------------------------
# 7. A fatal key error on the LEDs, fixed in the config and recovered by SIGHUP

ERROR_LEDS = {"red": 1.0, "green": 0.0, "blue": 0.5}
READY_LEDS = {"red": 0.0, "green": 0.0, "blue": 0.1}


def leds_are(leds: dict[str, float], expected: dict[str, float]) -> bool:
    return leds.keys() == expected.keys() and all(
        abs(leds[k] - v) < 0.01 for k, v in expected.items()
    )


def test_fatal_key_error_on_the_leds_then_fixed_by_sighup(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    key_file = tmp_path / "api_key"
    key_file.write_text(WRONG_KEY + "\n")
    key_file.chmod(0o600)
    agents = [AgentDefinition(agent_id="private", private=True, api_keys=(KEY,), first_message="")]
    with SimServer(agents).run_in_thread() as sim:
        config = base_config(tmp_path, sim, "private")
        config["agent"]["api_key_file"] = str(key_file)
        config["gpio"]["leds"] = {
            "kind": "rgb",
            "pins": {"red": 5, "green": 6, "blue": 13},
            "patterns": {
                "error": {"mode": "solid", "color": [1.0, 0.0, 0.5]},
                "ready": {"mode": "solid", "brightness": 0.1, "color": [0.0, 0.0, 1.0]},
            },
        }
        daemon = start(tmp_path, sim, "private", daemons, config=config)
        daemon.wait_status("the ready LEDs", lambda s: leds_are(s["leds"], READY_LEDS))

        mark = len(daemon.notify.messages)
        daemon.ctl("press")
        status = daemon.wait_status("the error state", lambda s: s["state"] == "error")
        daemon.ctl("release")
        daemon.check(leds_are(status["leds"], ERROR_LEDS), f"LEDs in error: {status['leds']}")
        daemon.check("authentication rejected" in status["last_ending"], f"{status['last_ending']}")
        daemon.wait_notify("STATUS=error: authentication rejected", after=mark)
        time.sleep(1.0)
        status = daemon.status()
        daemon.check(status["state"] == "error", "the error state did not last")
        daemon.check(leds_are(status["leds"], ERROR_LEDS), f"LEDs: {status['leds']}")
        daemon.check(sim.conversations == [], "a socket was opened with a rejected key")

        key_file.write_text(KEY + "\n")  # the fix: the right key, still mode 0600
        daemon.check(stat.S_IMODE(key_file.stat().st_mode) == 0o600, "mode changed")
        mark = len(daemon.notify.messages)
        daemon.send_signal(signal.SIGHUP)
        reloading, _ = daemon.wait_notify("RELOADING=1", after=mark)
        daemon.wait_notify("READY=1", after=reloading)
        status = daemon.wait_status("the error cleared", lambda s: s["state"] != "error")
        daemon.check(not leds_are(status["leds"], ERROR_LEDS), f"LEDs: {status['leds']}")

        daemon.ctl("press")
        rec = record(sim, 0, daemon)
        status = daemon.wait_status("a conversation", lambda s: s["conversation_id"] is not None)
        daemon.ctl("release")
        daemon.check(status["conversation_id"] == rec.conversation_id, "not the sim's")
        daemon.check(status["state"] != "error", f"state {status['state']}")
        daemon.check(not leds_are(status["leds"], ERROR_LEDS), f"LEDs: {status['leds']}")
        daemon.check(rec.query.get("conversation_signature") == "***", "not a signed URL")
        log = daemon.log()
        for secret in (KEY, WRONG_KEY):
            daemon.check(secret not in log, "an API key is in the log")
        daemon.check("readable by group" not in log, "a mode warning for a 0600 file")
        assert daemon.stop() == 0


# ----------------------------------------------------------------------------------------------
# 8. SIGTERM mid-sentence


def test_sigterm_mid_sentence(tmp_path: Path, daemons: list[Daemon]) -> None:
    agents = [AgentDefinition(agent_id="talker", first_message="aoeui" * 20)]
    with SimServer(agents).run_in_thread() as sim:
        daemon = start(
            tmp_path, sim, "talker", daemons, session={"idle_timeout": 60, "always_connected": True}
        )
        timeline = WavTimeline(tmp_path / "speaker.wav", RATE)
        try:
            timeline.wait_started()
            daemon.wait_status("the agent speaking", lambda s: s["state"] == "speaking")
            time.sleep(1.0)
            rec = record(sim, 0, daemon)
            mark = len(daemon.notify.messages)
            stopped = time.monotonic()
            code = daemon.stop(signal.SIGTERM)
            took = time.monotonic() - stopped
            daemon.check(code == 0, f"exit status {code}")
            daemon.check(took < 5, f"took {took:.2f} s to exit")
            daemon.check(daemon.notify.find("STOPPING=1", mark) is not None, "no STOPPING=1")
            closed = wait_closed(sim, rec, daemon)
            daemon.check(closed == 1000, f"the conversation closed with {closed}")
            daemon.check(rec.close_reason == "User ended conversation", f"{rec.close_reason!r}")
            with wave.open(str(tmp_path / "speaker.wav")) as wav:
                frames, rate = wav.getnframes(), wav.getframerate()
                channels, width = wav.getnchannels(), wav.getsampwidth()
            size = (tmp_path / "speaker.wav").stat().st_size
            daemon.check((rate, channels, width) == (RATE, 1, 2), f"{rate} {channels} {width}")
            daemon.check(size == 44 + 2 * frames, f"{size} bytes for {frames} frames")
            ran = stopped - timeline.start
            daemon.check(
                ran - 0.1 <= frames / RATE <= ran + took + 0.1,
                f"{frames / RATE:.2f} s of timeline for {ran:.2f} s of running",
            )
            last = windows(timeline, stopped - 0.5, stopped)
            daemon.check(last.sound_seconds() >= 0.4, f"not mid-sentence: {last.describe()}")
            print(f"\nSIGTERM mid-sentence: exit 0 in {took:.2f} s, close {closed}")
        finally:
            timeline.close()
