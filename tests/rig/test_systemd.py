"""piagent.service under a real systemd (PID 1 of the rig): readiness through sd_notify, the
Status line, the watchdog seen by systemd and a hung daemon restarted, the journal's fields,
the API key through LoadCredential, a reload that keeps the conversation, the sandbox's score,
and the sandbox admitting the sound card (and a card that appears after the start)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from piagent.sim.agent import AgentDefinition
from piagent.sim.server import SimServer
from tests.rig.conftest import Rig, daemon_config

pytestmark = [pytest.mark.rig, pytest.mark.timeout(900)]

KEY = "sk_rig_credential_test_5e4d3c2b1a"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    agents = [
        AgentDefinition(agent_id="demo", first_message="Hello from the host."),
        AgentDefinition(agent_id="private", private=True, api_keys=(KEY,), first_message="Hi."),
    ]
    with SimServer(agents).run_in_thread() as server:
        yield server


def start(rig: Rig, config: dict[str, object]) -> None:
    rig.write_config(config)
    rig.run("systemctl reset-failed piagent; systemctl restart piagent", timeout=300)
    wait_ready(rig)


def wait_ready(rig: Rig, within: float = 120) -> dict[str, object]:
    rig.wait_for(
        "systemctl is-active piagent", lambda out: out.strip() == "active", within, "active"
    )
    deadline = time.monotonic() + within
    while True:
        status = rig.status()
        if status["state"] == "ready":
            return status
        assert time.monotonic() < deadline, status
        time.sleep(1)


def test_start_reaches_active_through_ready_and_shows_its_status(rig: Rig, sim: SimServer) -> None:
    rig.write_config(daemon_config(sim.port))
    started = time.monotonic()
    # Type=notify: systemctl start returns once the daemon sent READY=1.
    rig.run("systemctl restart piagent", timeout=300)
    print(f"systemctl restart returned after {time.monotonic() - started:.1f} s")
    assert rig.out("systemctl is-active piagent") == "active"
    assert rig.service("Type") == "notify"
    assert rig.service("StatusText").startswith("ready")
    status = rig.out("systemctl status piagent --no-pager", check=False)
    assert re.search(r"Status: \"ready", status), status


def test_the_watchdog_is_fed_and_a_hung_daemon_is_restarted(rig: Rig, sim: SimServer) -> None:
    start(rig, daemon_config(sim.port))
    # A shorter watchdog than the unit's 30 s, so the test does not wait that long.
    rig.run("mkdir -p /etc/systemd/system/piagent.service.d")
    rig.write(
        "/etc/systemd/system/piagent.service.d/rig-watchdog.conf",
        "[Service]\nWatchdogSec=12\n",
    )
    try:
        rig.run("systemctl daemon-reload && systemctl restart piagent", timeout=300)
        wait_ready(rig)
        first = int(rig.service("WatchdogTimestampMonotonic"))
        time.sleep(14)
        second = int(rig.service("WatchdogTimestampMonotonic"))
        assert second > first, "systemd saw no WATCHDOG=1 in 14 s"
        pid = rig.service("MainPID")
        restarts = int(rig.service("NRestarts"))
        rig.run(f"kill -STOP {pid}")
        rig.wait_for(
            "systemctl show piagent -p MainPID --value",
            lambda out: out.strip() not in ("", "0", pid),
            120,
            "a new main process after the watchdog fired",
        )
        assert int(rig.service("NRestarts")) == restarts + 1
        journal = rig.out("journalctl -u piagent --no-pager -o cat -n 200")
        assert "Watchdog timeout" in journal, journal[-2000:]
        wait_ready(rig)
    finally:
        rig.run("rm -f /etc/systemd/system/piagent.service.d/rig-watchdog.conf")
        rig.run("systemctl daemon-reload")


def test_the_journal_carries_the_piagent_fields(rig: Rig, sim: SimServer) -> None:
    start(rig, daemon_config(sim.port))
    since = rig.out("date +%s")
    rig.run("piagent ctl press && sleep 3 && piagent ctl release", timeout=120)
    time.sleep(3)
    lines = rig.out(f"journalctl -u piagent -o json --since=@{since} --no-pager").splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    fields = {key for entry in entries for key in entry if key.startswith("PIAGENT_")}
    print(sorted(fields))
    # State changes carry PIAGENT_STATE at DEBUG (--verbose); at the unit's INFO level the
    # conversation's lines carry its id.
    assert "PIAGENT_CONVERSATION_ID" in fields
    conversations = {e.get("PIAGENT_CONVERSATION_ID") for e in entries} - {None}
    assert all(c.startswith("conv_") for c in conversations), conversations
    assert all(entry.get("SYSLOG_IDENTIFIER") for entry in entries)


def test_load_credential_delivers_the_key(rig: Rig, sim: SimServer) -> None:
    # The installer stores the key for LoadCredential=; the daemon gets it from systemd.
    rig.run(
        f"cd /root/piagent && ELEVENLABS_API_KEY={KEY} scripts/install.sh --no-setup",
        timeout=600,
    )
    assert rig.out("stat -c '%a %U' /etc/piagent/api_key") == "600 root"
    config = daemon_config(sim.port)
    config["agent"]["agent_id"] = "private"  # type: ignore[index]
    start(rig, config)
    before = len(sim.conversations)
    rig.run("piagent ctl press && sleep 2 && piagent ctl release", timeout=120)
    deadline = time.monotonic() + 60
    while len(sim.conversations) == before:
        assert time.monotonic() < deadline, "no conversation with the private agent"
        time.sleep(0.5)
    record = sim.conversations[-1]
    assert record.agent_id == "private"
    assert record.failure is None
    journal = rig.out("journalctl -u piagent --no-pager -o cat -n 300")
    assert KEY not in journal
    assert "conversation_signature" not in journal
    rig.run("rm -f /etc/piagent/api_key")


def test_reload_keeps_a_live_conversation(rig: Rig, sim: SimServer) -> None:
    start(rig, daemon_config(sim.port))
    rig.run("piagent ctl press", timeout=60)
    rig.wait_for(
        "piagent ctl status --json",
        lambda out: '"conversation_id": "conv_' in out,
        60,
        "a conversation",
    )
    conversation = rig.status()["conversation_id"]
    rig.run("systemctl reload piagent", timeout=120)
    wait_for_state = rig.wait_for(
        "systemctl show piagent -p StatusText --value",
        lambda out: "reload" not in out.lower() and out.strip() != "",
        60,
        "the reload to finish",
    )
    print("after reload:", wait_for_state.strip())
    assert rig.status()["conversation_id"] == conversation
    rig.run("piagent ctl release", timeout=60)
    assert rig.out("systemctl is-active piagent") == "active"


def test_the_sandbox_scores_2_or_less(rig: Rig) -> None:
    report = rig.out("systemd-analyze security piagent.service --no-pager", check=False)
    match = re.search(r"Overall exposure level for piagent.service: ([0-9.]+)", report)
    assert match, report[-2000:]
    print(match.group(0))
    assert float(match.group(1)) <= 2.0


def test_ctypes_callbacks_work_under_memory_deny_write_execute(rig: Rig) -> None:
    """MemoryDenyWriteExecute=yes forbids writable-and-executable memory. libffi builds a
    callback's trampoline somewhere executable; the daemon's libraries import ctypes, which
    makes one at import. Run that in the unit's own sandbox, as its user."""
    script = (
        "import ctypes, numpy, pyaudio, gpiozero, systemd.journal; "
        "f = ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 7); print('callback', f())"
    )
    result = rig.run(
        "systemd-run --wait --pipe --quiet -p User=piagent -p MemoryDenyWriteExecute=yes "
        "-p ProtectSystem=strict -p PrivateTmp=yes -p ProtectHome=yes "
        "-p SystemCallFilter=@system-service "
        f'/opt/piagent/venv/bin/python -c "{script}"',
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "callback 7" in result.stdout
