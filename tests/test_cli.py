"""The command line as a user runs it: ``python -m piagent`` in a child process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from piagent.sim.agent import AgentDefinition
from piagent.sim.server import SimServer

pytestmark = pytest.mark.timeout(60)

KEY = "sk_cli_voices_key_0123456789abcdef"


def piagent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "piagent", *args],
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
        env=env,
    )


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(
        [AgentDefinition(agent_id="p", private=True, api_keys=(KEY,))]
    ).run_in_thread() as server:
        yield server


def config_file(tmp_path: Path, sim: SimServer, key: str | None) -> Path:
    agent: dict[str, object] = {"agent_id": "p", "server": sim.ws_base, "api_base": sim.http_base}
    if key is not None:
        (tmp_path / "key").write_text(key + "\n")
        (tmp_path / "key").chmod(0o600)
        agent["api_key_file"] = str(tmp_path / "key")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"agent": agent}))
    return path


def test_voices_lists_the_accounts_voices(sim: SimServer, tmp_path: Path) -> None:
    path = config_file(tmp_path, sim, KEY)
    result = piagent("voices", "--config", str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines and all(len(line.split()) >= 2 for line in lines)
    as_json = piagent("voices", "--config", str(path), "--json")
    voices = json.loads(as_json.stdout)
    assert {v["voice_id"] for v in voices} == {line.split()[0] for line in lines}
    assert all(v["name"] for v in voices)
    assert KEY not in result.stdout + result.stderr + as_json.stdout + as_json.stderr


def test_voices_with_a_rejected_key_fails_without_printing_it(
    sim: SimServer, tmp_path: Path
) -> None:
    result = piagent("voices", "--config", str(config_file(tmp_path, sim, "sk_wrong_key_xyz")))
    assert result.returncode == 1
    assert "401" in result.stderr
    assert "sk_wrong_key_xyz" not in result.stdout + result.stderr


def test_voices_without_a_server_says_it_is_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"agent": {"agent_id": "p", "api_base": "http://127.0.0.1:9"}}))
    result = piagent("voices", "--config", str(path))
    assert result.returncode == 69
    assert "/v1/voices" in result.stderr


def test_help_lists_every_public_command() -> None:
    result = piagent("--help")
    assert result.returncode == 0
    for command in ("run", "check-config", "sim", "demo", "ctl", "devices", "voices", "doctor"):
        assert command in result.stdout
    assert piagent().returncode == 64


def test_setup_and_doctor_show_their_options() -> None:
    setup = piagent("setup", "--help")
    assert setup.returncode == 0
    for option in ("--config", "--agent-id", "--server", "--input", "--output", "--yes"):
        assert option in setup.stdout
    doctor = piagent("doctor", "--help")
    assert doctor.returncode == 0 and "--here" in doctor.stdout and "--json" in doctor.stdout


def test_setup_refuses_a_missing_config_with_78(tmp_path: Path) -> None:
    result = piagent("setup", "--config", str(tmp_path / "absent.yaml"), "--yes")
    assert result.returncode == 78
    assert "cannot read" in result.stderr
