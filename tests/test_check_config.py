"""``piagent check-config [PATH]``, run as users run it: ``python -m piagent`` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EX_CONFIG = 78


def check_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "PIAGENT_CONFIG"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "piagent", "check-config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )


def test_a_valid_file_prints_ok_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("agent: {agent_id: agent_123}\naudio: {input: {rate: 48000}}\n", "utf-8")
    result = check_config(str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: OK\n"
    assert result.stderr == ""


def test_the_example_config_only_lacks_the_agent_id(tmp_path: Path) -> None:
    example = ROOT / "config.yaml.example"
    result = check_config(str(example))
    assert result.returncode == EX_CONFIG
    assert result.stderr == (
        f"{example}: agent.agent_id: required: set it to your agent's ID (ElevenLabs "
        "dashboard); got null\n"
    )
    # With the ID filled in (as `piagent setup --agent-id` does), the file is valid.
    text = example.read_text(encoding="utf-8")
    path = tmp_path / "config.yaml"
    path.write_text(text.replace("agent_id: null", "agent_id: agent_123", 1), "utf-8")
    result = check_config(str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(": OK\n")


def test_an_invalid_file_prints_one_line_per_problem_and_exits_78(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "agent: {server: 'http://example.com'}\n"
        "audio:\n  inptu: {}\n  input: {rate: fast}\n"
        "session: {idle_timeout: true}\n",
        "utf-8",
    )
    result = check_config(str(path))
    assert result.returncode == EX_CONFIG
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    keys = ["agent.agent_id", "agent.server", "audio.input.rate", "session.idle_timeout"]
    keys.append("audio.inptu")
    assert len(lines) == len(keys), result.stderr
    for line, key in zip(lines, keys, strict=True):
        assert line.startswith(f"{path}: {key}: "), line
    assert f"{path}: audio.input.rate: expected an integer sample rate in Hz" in result.stderr
    assert f"{path}: audio.inptu: unknown key (did you mean 'input'?)" in result.stderr


def test_the_newer_overrides_are_checked_by_key_path(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "agent:\n  agent_id: x\n  reasoning_effort: extreme\n  procedure_ids: p1\n"
        "  tts: {speed: 9, stability: -1, similarity_boost: 2}\n",
        "utf-8",
    )
    result = check_config(str(path))
    assert result.returncode == EX_CONFIG
    keys = [line.split(": ")[1] for line in result.stderr.splitlines()]
    assert sorted(keys) == [
        "agent.procedure_ids",
        "agent.reasoning_effort",
        "agent.tts.similarity_boost",
        "agent.tts.speed",
        "agent.tts.stability",
    ]
    path.write_text(
        "agent:\n  agent_id: x\n  reasoning_effort: low\n  procedure_ids: []\n"
        "  tts: {speed: 1.1, stability: 0.4, similarity_boost: 0.75}\n",
        "utf-8",
    )
    result = check_config(str(path))
    assert result.returncode == 0, result.stderr


def test_a_syntax_error_is_one_line_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("agent:\n  agent_id: x\n  server: [\n", "utf-8")
    result = check_config(str(path))
    assert result.returncode == EX_CONFIG
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{path}: YAML syntax error at line 4")


def test_a_missing_file_exits_78(tmp_path: Path) -> None:
    result = check_config(str(tmp_path / "absent.yaml"))
    assert result.returncode == EX_CONFIG
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{tmp_path / 'absent.yaml'}: cannot read the config file")


def test_a_missing_api_key_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"agent: {{agent_id: x, api_key_file: {tmp_path / 'key'}}}\n", "utf-8")
    result = check_config(str(path))
    assert result.returncode == EX_CONFIG
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{path}: agent.api_key_file: cannot read the API key file")


def test_without_a_path_the_environment_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "from_env.yaml"
    path.write_text("agent: {agent_id: x}\n", "utf-8")
    result = check_config(env={"PIAGENT_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: OK\n"
