"""The client fault suite against the whole process: one ``piagent run`` (always connected,
backoff 0.05-0.5 s) lives through every transient way a server fails, several times each, and
through the fatal ones, recovering after each; its threads and file descriptors do not grow.

The simulator's behaviour is switched between kinds by assigning its ``scenario`` (read at each
new connection); the kinds that need another server, agent or key go through the config and
SIGHUP, as a user would. Faults are counted in the daemon's own words: one ``...; retrying in
N s`` log line per transient failure, one ``...; not retrying: ...`` per fatal one.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from piagent.sim.agent import AgentDefinition
from piagent.sim.scenario import Scenario
from piagent.sim.server import SimServer
from tests.e2e.harness import Daemon, base_config, free_port, mic_wav

pytestmark = pytest.mark.timeout(180)

KEY = "sk_e2e_fault_suite_key_77aa88bb"
WRONG_KEY = "sk_e2e_fault_suite_bad_key_0000"
RETRYING = re.compile(r"WARNING piagent\.client: (.*); retrying in [0-9.]+ s$")
DELAY = re.compile(r"WARNING piagent\.client: .*; retrying in ([0-9.]+) s$")
NOT_RETRYING = re.compile(r"ERROR piagent\.client: (.*); not retrying: ")

# A healthy agent greets, then the server ends the conversation normally: always_connected
# opens the next one at once, so a scenario switch takes effect within a second.
CYCLING = Scenario.from_yaml(
    "agent: {first_message: Hi.}\nsteps:\n  - sleep: 0.3\n  - close: {code: 1000, reason: cycle}"
)
STEADY = Scenario.from_yaml("agent: {first_message: Hi.}")


@dataclass
class Kind:
    """One way of failing, and what the daemon's log line for it must say."""

    name: str
    says: str  # in the daemon's description of the ending
    count: int  # faults to see
    scenario: Scenario | None = None
    config: dict[str, Any] = field(default_factory=dict)  # agent keys changed (then SIGHUP)
    seen: int = 0
    connections: int = 0  # sockets the simulator accepted meanwhile
    took: float = 0.0


def scenario(agent: str, steps: str = "") -> Scenario:
    return Scenario.from_yaml(f"agent: {agent}\n" + (f"steps:\n{steps}" if steps else ""))


def transient_kinds(dead_port: int) -> list[Kind]:
    dead = {"server": f"ws://127.0.0.1:{dead_port}", "api_base": f"http://127.0.0.1:{dead_port}"}
    return [
        Kind(
            "close 1011 at the first audio",
            "internal server error, code 1011",
            6,
            scenario("{first_message: Hi., fault_close: {at: first_audio, code: 1011}}"),
        ),
        Kind(
            "close 1002 after the metadata",
            "code 1002, 'Request timed out'",
            6,
            scenario(
                "{first_message: Hi., fault_close: "
                "{at: metadata, code: 1002, reason: Request timed out}}"
            ),
        ),
        Kind(
            "close 3000 before the metadata",
            "code 3000",
            6,
            scenario("{fault_close: {at: initiation, code: 3000, reason: Request error}}"),
        ),
        Kind("HTTP 503 on the upgrade", "503", 6, scenario("{refuse_upgrade: 503}")),
        Kind("stall", "stalled", 3, scenario('{first_message: ""}', "  - stall: 10\n")),
        Kind("nothing listening", "could not connect", 6, config=dead),
    ]


def fatal_kinds() -> list[Kind]:
    return [
        Kind(
            "override rejected",
            "override not allowed",
            1,
            scenario("{first_message: Hi., allowed_overrides: [agent.first_message]}"),
        ),
        Kind(
            "quota exceeded",
            "quota exceeded",
            1,
            scenario(
                "{fault_close: {at: metadata, code: 1002, "
                "reason: This request exceeds your quota limit.}}"
            ),
        ),
        Kind("unknown agent", "agent not found", 1, config={"agent_id": "nosuch"}),
        Kind("bad API key", "authentication rejected", 1, config={"api_key_file": "WRONG"}),
    ]


class Suite:
    """The daemon, the simulator and the bookkeeping of one run."""

    def __init__(self, daemon: Daemon, sim: SimServer, config: dict[str, Any], wrong: Path):
        self.daemon = daemon
        self.sim = sim
        self.config = config
        self.wrong_key_file = wrong

    def lines(self, pattern: re.Pattern[str], after: int) -> list[str]:
        found = []
        for line in self.daemon.log().splitlines()[after:]:
            match = pattern.search(line)
            if match:
                found.append(match.group(1))
        return found

    def log_length(self) -> int:
        return len(self.daemon.log().splitlines())

    def reload(self, agent_changes: dict[str, Any]) -> None:
        """Write the config with ``agent_changes`` over the base one, SIGHUP, wait for it."""
        config = {**self.config, "agent": {**self.config["agent"], **agent_changes}}
        if agent_changes.get("api_key_file") == "WRONG":
            config["agent"]["api_key_file"] = str(self.wrong_key_file)
        self.daemon.write_config(config)
        mark = len(self.daemon.notify.messages)
        self.daemon.send_signal(signal.SIGHUP)
        reloading, _ = self.daemon.wait_notify("RELOADING=1", after=mark)
        self.daemon.wait_notify("READY=1", after=reloading)

    def wait_healthy(self, what: str) -> None:
        """A conversation that got as far as the greeting, started after this call."""
        first = len(self.sim.conversations)

        def greeted() -> bool:
            return any("Hi." in rec.agent_turns.values() for rec in self.sim.conversations[first:])

        self.daemon.wait_for(f"a healthy conversation {what}", greeted, within=20)

    def steady_conversation(self) -> dict[str, Any]:
        """Switch to a conversation that stays open and wait until one is up and settled."""
        self.sim.scenario = STEADY
        self.wait_healthy("for measuring")
        rec = self.sim.conversations[-1]
        status = self.daemon.wait_status(
            "the steady conversation",
            lambda s: s["conversation_id"] == rec.conversation_id and s["state"] == "ready",
        )
        time.sleep(0.5)
        return status

    def measure(self) -> tuple[int, list[str]]:
        return self.daemon.threads(), self.daemon.fds()

    def transient(self, kind: Kind) -> None:
        start = time.monotonic()
        log_mark, recs = self.log_length(), len(self.sim.conversations)
        if kind.scenario is not None:
            self.sim.scenario = kind.scenario
        else:
            self.reload(kind.config)

        def enough() -> bool:
            kind.seen = sum(kind.says in line for line in self.lines(RETRYING, log_mark))
            return kind.seen >= kind.count

        self.daemon.wait_for(f"{kind.count} faults of kind {kind.name!r}", enough, within=40)
        kind.connections = len(self.sim.conversations) - recs
        state = self.daemon.status()["state"]
        self.daemon.check(state != "error", f"{kind.name}: a transient fault became fatal")
        if kind.scenario is not None:
            self.sim.scenario = CYCLING
        else:
            self.reload({})
        self.wait_healthy(f"after {kind.name}")
        others = self.lines(NOT_RETRYING, log_mark)
        self.daemon.check(others == [], f"{kind.name}: fatal endings {others}")
        kind.took = time.monotonic() - start

    def fatal(self, kind: Kind) -> None:
        start = time.monotonic()
        log_mark, before = self.log_length(), len(self.sim.conversations)
        if kind.scenario is not None:
            self.sim.scenario = kind.scenario
        else:
            self.reload(kind.config)
        status = self.daemon.wait_status(
            f"the error state after {kind.name}", lambda s: s["state"] == "error", within=20
        )
        ending = status["last_ending"]
        self.daemon.check(kind.says in ending, f"{kind.name}: last_ending {ending!r}")
        said = self.lines(NOT_RETRYING, log_mark)
        self.daemon.check(len(said) == 1 and kind.says in said[0], f"{kind.name}: logged {said}")
        kind.seen = 1
        # Stopped: no connection attempt for several times the longest backoff.
        recs, attempts = len(self.sim.conversations), self.log_length()
        kind.connections = recs - before
        time.sleep(1.5)
        later = self.daemon.log().splitlines()[attempts:]
        self.daemon.check(
            len(self.sim.conversations) == recs and not any("connecting to" in x for x in later),
            f"{kind.name}: still connecting after a fatal fault: {later}",
        )
        self.daemon.check(self.daemon.status()["state"] == "error", "left the error state")
        # Fixed (the simulator, or the config), then SIGHUP: a new conversation.
        if kind.scenario is not None:
            self.sim.scenario = CYCLING
        self.reload({})
        self.wait_healthy(f"after {kind.name}")
        kind.took = time.monotonic() - start


@pytest.fixture
def sim() -> Iterator[SimServer]:
    agents = [AgentDefinition(agent_id="private", private=True, api_keys=(KEY,))]
    with SimServer(agents, scenario=CYCLING).run_in_thread() as server:
        yield server


def test_fault_suite_against_the_daemon_process(sim: SimServer, tmp_path: Path) -> None:
    key_file, wrong = tmp_path / "api_key", tmp_path / "wrong_key"
    for path, key in ((key_file, KEY), (wrong, WRONG_KEY)):
        path.write_text(key + "\n")
        path.chmod(0o600)
    mic_wav(tmp_path / "mic.wav", 16000, 1.0, [])
    config = base_config(
        tmp_path,
        sim,
        "private",
        session={
            "always_connected": True,
            "backoff_initial": 0.05,
            "backoff_max": 0.5,
            "stall_timeout": 2,
            "connect_timeout": 5,
            "idle_timeout": 600,
        },
    )
    # A signed URL before every connection (the REST path in its worker thread); an override
    # to be refused when the agent stops allowing it.
    config["agent"].update({"api_key_file": str(key_file), "language": "en"})
    daemon = Daemon(tmp_path, config)
    try:
        daemon.wait_ready()
        suite = Suite(daemon, sim, config, wrong)
        suite.steady_conversation()
        threads_before, fds_before = suite.measure()
        # Leave the steady conversation as a user would: hang up, press and release again.
        sim.scenario = CYCLING
        daemon.ctl("hangup")
        daemon.wait_status("no conversation", lambda s: s["conversation_id"] is None)
        daemon.ctl("press")
        daemon.ctl("release")
        suite.wait_healthy("after the hang-up")
        transient = transient_kinds(free_port())
        fatal = fatal_kinds()
        for kind in transient:
            suite.transient(kind)
        for kind in fatal:
            suite.fatal(kind)
        suite.steady_conversation()
        threads_after, fds_after = suite.measure()

        total = sum(k.seen for k in transient + fatal)
        print(f"\n{total} faults of {len(transient) + len(fatal)} kinds in one daemon process")
        for kind in transient + fatal:
            print(
                f"  {kind.name:32} {kind.seen:2} faults, {kind.connections:2} sockets, "
                f"{kind.took:5.1f} s"
            )
        print(
            f"  threads {threads_before} -> {threads_after}, fds {len(fds_before)} -> "
            f"{len(fds_after)}"
        )
        delays = [float(d) for d in suite.lines(DELAY, 0)]
        print(f"  retry delays {min(delays):.2f}..{max(delays):.2f} s (backoff 0.05-0.5 s)")
        daemon.check(max(delays) <= 0.5, f"a retry delay beyond backoff_max: {max(delays)}")
        assert sum(k.seen for k in transient) >= 30
        assert len(transient) >= 6
        for kind in transient:
            if kind.scenario is not None and "503" not in kind.says:
                # every fault was followed by a new conversation at the simulator
                daemon.check(kind.connections >= kind.seen, f"{kind.name}: {kind.connections}")
        daemon.check(
            threads_after <= threads_before, f"threads {threads_before} -> {threads_after}"
        )
        grown = sorted(set(fds_after) - set(fds_before))
        daemon.check(
            len(fds_after) <= len(fds_before),
            f"fds {len(fds_before)} -> {len(fds_after)}; new: {grown}",
        )
        assert daemon.stop() == 0
    finally:
        daemon.close()
