"""The first run on the rig: the installed config, ``piagent setup``, ``doctor`` as the service
sees things (credential, groups, sound card and GPIO inside the unit's sandbox)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator

import pytest

from piagent.sim.agent import AgentDefinition
from piagent.sim.server import SimServer
from tests.rig.conftest import Rig, daemon_config

pytestmark = [pytest.mark.rig, pytest.mark.timeout(900)]

KEY = "sk_rig_doctor_test_0a9b8c7d6e"
# Raspberry Pi OS's udev rules give the gpio group the GPIO chips; plain Debian has none.
GPIO_RULE = 'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"\n'


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    agents = [AgentDefinition(agent_id="private", private=True, api_keys=(KEY,))]
    with SimServer(agents).run_in_thread() as server:
        yield server


def test_the_installed_config_targets_the_service_and_waits_for_an_agent_id(rig: Rig) -> None:
    example = rig.out("cat /opt/piagent/src/config.yaml.example")
    import yaml

    agent = yaml.safe_load(example)["agent"]
    assert agent["server"] == "wss://api.elevenlabs.io"
    assert agent["agent_id"] is None  # the user's to set: setup or the installer's --agent-id
    result = rig.run("piagent check-config /opt/piagent/src/config.yaml.example", check=False)
    assert result.returncode == 78
    assert "agent.agent_id" in result.stdout + result.stderr


def test_setup_lists_the_cards_checks_the_level_and_writes_the_choice(rig: Rig) -> None:
    rig.run("cp /opt/piagent/src/config.yaml.example /tmp/setup.yaml")
    result = rig.run(
        "piagent setup --yes --config /tmp/setup.yaml --agent-id agent_rig_test 2>&1 </dev/null",
        timeout=300,
    )
    print(result.stdout)
    assert "Loopback" in result.stdout
    assert "dBFS" in result.stdout or "silence" in result.stdout
    written = rig.out("cat /tmp/setup.yaml")
    assert "agent_id: agent_rig_test" in written
    assert "device: plughw:CARD=Loopback,DEV=" in written
    assert "# REQUIRED" in written or "#" in written  # the comments are kept
    assert rig.run("piagent check-config /tmp/setup.yaml", check=False).returncode == 0


def test_doctor_as_root_checks_as_the_service(rig: Rig, sim: SimServer) -> None:
    rig.run(f"cd /root/piagent && ELEVENLABS_API_KEY={KEY} scripts/install.sh --no-setup")
    config = daemon_config(sim.port)
    config["agent"]["agent_id"] = "private"  # type: ignore[index]
    rig.write_config(config)
    rig.run("systemctl restart piagent", timeout=300)
    result = rig.run("piagent doctor --json", check=False, timeout=600)
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    print(json.dumps({n: (c["status"], c.get("detail")) for n, c in checks.items()}, indent=1))
    assert "credential" in checks["api key"]["detail"]
    assert KEY not in result.stdout + result.stderr
    assert "piagent" in checks["user"]["detail"]
    assert "audio" in checks["user"]["detail"]
    assert checks["input device"]["status"] == "ok"
    assert checks["output device"]["status"] == "ok"
    assert checks["agent"]["status"] == "ok", checks["agent"]
    # The running daemon kept its control socket (the doctor's transient unit shares
    # /run/piagent with it).
    assert rig.run("test -S /run/piagent/control.sock", check=False).returncode == 0
    rig.run("rm -f /etc/piagent/api_key")


def test_the_sandbox_admits_the_gpio_chip(rig: Rig) -> None:
    """DeviceAllow=char-gpiochip with the gpio group, as the unit runs the daemon: open the
    rig's GPIO chip (qemu's PL061) and read its name with GPIO_GET_CHIPINFO_IOCTL."""
    rig.write("/etc/udev/rules.d/60-rig-gpio.rules", GPIO_RULE)
    rig.run("udevadm control --reload && udevadm trigger --subsystem-match=gpio --settle")
    assert rig.out("stat -c %G /dev/gpiochip0") == "gpio"
    script = (
        "import fcntl, os, struct; fd = os.open('/dev/gpiochip0', os.O_RDWR); "
        "buf = bytearray(68); fcntl.ioctl(fd, 0x8044B401, buf); "
        "print('chip', buf[:32].rstrip(bytes(1)).decode(), struct.unpack_from('I', buf, 64)[0])"
    )
    argv = rig.out(
        "/opt/piagent/venv/bin/python -c "
        + shlex.quote(
            "import shlex; from piagent.doctor.unit import parse_unit, systemd_run_argv; "
            "u = parse_unit(open('/etc/systemd/system/piagent.service').read()); "
            "print(shlex.join(systemd_run_argv(u, ['-c', "
            + repr(script)
            + "], program=['/opt/piagent/venv/bin/python'])))"
        )
    )
    result = rig.run(argv, check=False)
    print(result.stdout, result.stderr)
    assert result.returncode == 0
    assert "chip gpiochip0" in result.stdout
