"""Sound cards that come and go, under the real systemd and the unit's device sandbox.

- No card when the service starts (snd-aloop not loaded): the service is active, systemd sees
  the watchdog fed (no restart loop), status says the microphone is missing; loading the
  module (the card's plug-in) is followed by the daemon opening both devices, with no restart.
- The card removed mid-conversation and added back (the loopback's platform device unbound and
  bound again: ALSA sees a disconnect, as when a USB card is pulled) is survived: same process,
  both devices healthy again.

These run last in the module order of the rig tests: each leaves the card as the others expect.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from piagent.sim.agent import AgentDefinition
from piagent.sim.server import SimServer
from tests.rig.conftest import Rig, daemon_config

pytestmark = [pytest.mark.rig, pytest.mark.timeout(900)]

ALOOP = "/sys/bus/platform/drivers/snd_aloop"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer([AgentDefinition(agent_id="demo", first_message="")]).run_in_thread() as s:
        yield s


def devices_healthy(rig: Rig) -> tuple[bool, bool]:
    devices = rig.status()["devices"]
    return devices["input"]["healthy"], devices["output"]["healthy"]


def wait_devices(rig: Rig, want: tuple[bool, bool], within: float) -> float:
    started = time.monotonic()
    while devices_healthy(rig) != want:
        assert time.monotonic() - started < within, f"devices never {want}: {rig.status()}"
        time.sleep(1)
    return time.monotonic() - started


def restore_card(rig: Rig) -> None:
    """The loopback loaded and held by rigmic/rigspeaker before the daemon opens it."""
    rig.run("systemctl stop piagent; modprobe snd-aloop; systemctl restart rigspeaker rigmic")
    unhide(rig)
    time.sleep(3)
    rig.run("systemctl start piagent", timeout=300)


HIDE_RULE = "/run/udev/rules.d/00-rig-hide-loopback.rules"


def plug_in_held(rig: Rig) -> None:
    """Load snd-aloop as a card the daemon cannot open until rigmic and rigspeaker hold it at
    their format, then let it: a fixed-format USB card appearing, without a race between the
    daemon's retries and the two programs (whichever side opens first fixes the format)."""
    rig.run("mkdir -p /run/udev/rules.d")
    rig.write(
        HIDE_RULE, 'SUBSYSTEM=="sound", KERNEL=="controlC*|pcmC*", GROUP:="root", MODE:="0600"\n'
    )
    rig.run(
        "udevadm control --reload && modprobe snd-aloop && udevadm settle && "
        "systemctl start rigspeaker rigmic && sleep 3"
    )
    unhide(rig)


def unhide(rig: Rig) -> None:
    """The card's nodes as udev's own rules leave them (a change event does not reapply a
    node's mode, so they are set here)."""
    rig.run(
        f"rm -f {HIDE_RULE} && udevadm control --reload && "
        "chgrp audio /dev/snd/controlC* /dev/snd/pcmC* && chmod 0660 /dev/snd/controlC* "
        "/dev/snd/pcmC*"
    )


def test_no_card_at_start_then_plugged_in_without_a_restart(rig: Rig, sim: SimServer) -> None:
    rig.write_config(daemon_config(sim.port))
    rig.run("systemctl stop piagent rigmic rigspeaker")
    try:
        rig.run("modprobe -r snd-aloop")
        assert "Loopback" not in rig.out("cat /proc/asound/cards")
        rig.run("systemctl reset-failed piagent; systemctl start piagent", timeout=300)
        assert rig.out("systemctl is-active piagent") == "active"
        pid = rig.service("MainPID")
        restarts = rig.service("NRestarts")
        first = int(rig.service("WatchdogTimestampMonotonic"))
        # The unit's WatchdogSec is 30 s: pings every 15 s. Wait past a whole WatchdogSec.
        time.sleep(35)
        assert int(rig.service("WatchdogTimestampMonotonic")) > first
        assert rig.service("MainPID") == pid, "restarted while waiting for the card"
        status = rig.status()
        print("without a card:", status["state"], status["devices"])
        print("status line:", rig.service("StatusText"))
        assert status["devices"]["input"]["healthy"] is False
        assert status["state"] == "error"  # the LEDs: ready but deaf would be a lie
        assert "no microphone" in rig.service("StatusText")
        journal = rig.out("journalctl -u piagent --no-pager -o cat -n 50")
        assert "audio.input.device not available yet" in journal, journal[-2000:]

        plug_in_held(rig)
        took = wait_devices(rig, (True, True), 90)
        print(f"card loaded: both devices open {took:.1f} s later")
        assert rig.status()["state"] == "ready"
        assert "no microphone" not in rig.service("StatusText")
        assert rig.service("MainPID") == pid
        assert rig.service("NRestarts") == restarts
    finally:
        restore_card(rig)


def test_card_removed_and_added_back_mid_conversation(rig: Rig, sim: SimServer) -> None:
    rig.write_config(daemon_config(sim.port))
    rig.run("systemctl restart piagent", timeout=300)
    wait_devices(rig, (True, True), 120)
    pid = rig.service("MainPID")
    before = len(sim.conversations)
    rig.run("piagent ctl press", timeout=60)
    deadline = time.monotonic() + 60
    while len(sim.conversations) == before:
        assert time.monotonic() < deadline, "no conversation"
        time.sleep(0.5)
    try:
        rig.run(f"echo snd_aloop.0 > {ALOOP}/unbind")
        assert "Loopback" not in rig.out("cat /proc/asound/cards")
        wait_devices(rig, (False, False), 60)
        journal = rig.out("journalctl -u piagent --no-pager -o cat -n 40")
        print(journal[-1500:])
        rig.run(f"echo snd_aloop.0 > {ALOOP}/bind")
        took = wait_devices(rig, (True, True), 90)
        print(f"card back: both devices open again {took:.1f} s later")
        assert rig.service("MainPID") == pid
        assert rig.out("systemctl is-active piagent") == "active"
        rig.run("piagent ctl release", timeout=60)
    finally:
        restore_card(rig)
