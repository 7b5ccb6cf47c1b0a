"""``piagent setup``: the YAML edit (pure), the device choice (pure, from DeviceInfo lists and
/proc/asound/cards text), and the command against the ALSA fake card in a child process (the
fake card's ALSA_CONFIG_PATH must be set before PortAudio loads)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from piagent.audio.devices import DeviceInfo
from piagent.config import load_config
from piagent.setup import Options, SetupError, candidates, replace_file, run_setup, set_keys
from tests.audio.alsa import write_fake_card

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = (ROOT / "config.yaml.example").read_text(encoding="utf-8")

CARDS = """\
 0 [vc4hdmi        ]: vc4-hdmi - vc4-hdmi
                      vc4-hdmi
 1 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones
                      bcm2835 Headphones
 2 [Device         ]: USB-Audio - USB Audio Device
                      C-Media Electronics Inc. USB Audio Device at usb-3f980000.usb-1.3
"""
DEVICES = [
    DeviceInfo(0, "vc4-hdmi: MAI PCM i2s-hifi-0 (hw:0,0)", 0, 2, 48000),
    DeviceInfo(1, "bcm2835 Headphones: - (hw:1,0)", 0, 8, 44100),
    DeviceInfo(2, "USB Audio Device: - (hw:2,0)", 1, 2, 48000),
    DeviceInfo(3, "default", 64, 64, 44100),
]


# --- Editing the YAML in place -----------------------------------------------------------


def test_set_keys_edits_only_the_named_values_and_keeps_every_comment() -> None:
    values = {
        ("agent", "agent_id"): "agent_0123",
        ("audio", "input", "device"): "plughw:CARD=Device,DEV=0",
        ("audio", "output", "device"): "plughw:CARD=Headphones,DEV=0",
    }
    edited = set_keys(EXAMPLE, values)
    before, after = EXAMPLE.splitlines(), edited.splitlines()
    assert len(before) == len(after)
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(changed) == 3
    assert changed[0][1].startswith("  agent_id: agent_0123 ")
    assert changed[0][1].index("#") == changed[0][0].index("#")  # the comment's column kept
    assert changed[1][1] == "    device: plughw:CARD=Device,DEV=0"
    assert changed[2][1].startswith("    device: plughw:CARD=Headphones,DEV=0 # as input.device")
    data = yaml.safe_load(edited)
    assert data["audio"]["input"]["device"] == "plughw:CARD=Device,DEV=0"
    assert data["agent"]["agent_id"] == "agent_0123"


def test_set_keys_adds_missing_keys_and_sections_and_quotes_when_needed() -> None:
    text = "# mine\nagent:\n  agent_id: x  # keep\naudio:\n  backend: pyaudio\n"
    edited = set_keys(
        text,
        {
            ("agent", "server"): "wss://api.eu.residency.elevenlabs.io",
            ("audio", "input", "device"): "USB #2",
            ("audio", "output", "device"): "hw:1,0",
            ("session", "idle_timeout"): "yes",
        },
    )
    assert edited.startswith("# mine\nagent:\n  agent_id: x  # keep\n")
    data = yaml.safe_load(edited)
    assert data["agent"] == {"agent_id": "x", "server": "wss://api.eu.residency.elevenlabs.io"}
    assert data["audio"]["input"] == {"device": "USB #2"}
    assert data["audio"]["output"] == {"device": "hw:1,0"}
    assert data["session"] == {"idle_timeout": "yes"}  # quoted: YAML would read a boolean


def test_set_keys_refuses_a_flow_mapping() -> None:
    with pytest.raises(SetupError, match="flow mapping"):
        set_keys("agent: {agent_id: x}\naudio:\n  input: {device: a}\n",
                 {("audio", "input", "device"): "b"})  # fmt: skip


def test_replace_file_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("old\n", encoding="utf-8")
    path.chmod(0o640)
    replace_file(path, "new\n")
    assert path.read_text(encoding="utf-8") == "new\n"
    assert path.stat().st_mode & 0o7777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


# --- Choosing devices ----------------------------------------------------------------------


def test_candidates_are_hardware_devices_by_card_id_usb_first() -> None:
    playback = candidates(DEVICES, CARDS, is_input=False)
    assert [c.name for c in playback] == [
        "plughw:CARD=Device,DEV=0",
        "plughw:CARD=vc4hdmi,DEV=0",
        "plughw:CARD=Headphones,DEV=0",
    ]
    assert playback[0].is_usb and "USB Audio Device" in playback[0].label
    assert [c.name for c in candidates(DEVICES, CARDS, is_input=True)] == [
        "plughw:CARD=Device,DEV=0"
    ]


# --- The command (no PortAudio device listed: a machine without cards) ---------------------


def write_example(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    path.chmod(0o640)
    return path


def test_an_invalid_result_is_refused_with_78_and_the_file_unchanged(tmp_path: Path) -> None:
    path = write_example(tmp_path)
    err = io.StringIO()
    options = Options(path, input="hw:0", output="hw:0", yes=True)  # agent_id stays null
    assert run_setup(options, out=io.StringIO(), err=err, cards_text="") == 78
    assert "agent.agent_id: required: set it to your agent's ID" in err.getvalue()
    assert path.read_text(encoding="utf-8") == EXAMPLE
    bad = Options(path, agent_id="my agent", input="hw:0", output="hw:0", yes=True)
    assert run_setup(bad, out=io.StringIO(), err=err, cards_text="") == 78
    assert path.read_text(encoding="utf-8") == EXAMPLE


# --- Against the ALSA fake card, in a child process ----------------------------------------


def setup_child(tmp_path: Path, mic: np.ndarray, *args: str) -> subprocess.CompletedProcess[str]:
    raw = tmp_path / "mic.raw"
    raw.write_bytes(mic.astype("<i2").tobytes())
    card = write_fake_card(tmp_path, mic_file=raw)
    env = {**os.environ, **card.env()}
    env.pop("PIAGENT_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "piagent", "setup", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_setup_writes_the_devices_and_reports_the_level(tmp_path: Path) -> None:
    path = write_example(tmp_path)
    t = np.arange(48000 * 3) / 44100
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    result = setup_child(
        tmp_path, tone, "--config", str(path), "--agent-id", "agent_abc", "--input", "fakemic",
        "--output", "fakespk", "--yes",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "recording 2 s from fakemic" in result.stdout
    assert "peak -12.2 dBFS, RMS -15.3 dBFS" in result.stdout, result.stdout
    config = load_config(path)
    assert (config.audio.input.device, config.audio.output.device) == ("fakemic", "fakespk")
    assert config.agent.agent_id == "agent_abc"
    assert path.stat().st_mode & 0o7777 == 0o640
    assert "# piagent configuration." in path.read_text(encoding="utf-8")


def test_a_silent_microphone_is_named(tmp_path: Path) -> None:
    path = write_example(tmp_path)
    result = setup_child(
        tmp_path, np.zeros(48000 * 3, np.int16), "--config", str(path), "--agent-id", "a1",
        "--input", "fakemic", "--output", "fakespk", "--yes",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "digital silence" in result.stdout
    assert "capture switch muted? run alsamixer" in result.stdout


def test_with_yes_and_no_hardware_device_setup_says_so(tmp_path: Path) -> None:
    path = write_example(tmp_path)
    result = setup_child(tmp_path, np.zeros(10, np.int16), "--config", str(path), "--yes")
    assert result.returncode == 69
    assert "no sound card with a microphone found" in result.stderr
    assert path.read_text(encoding="utf-8") == EXAMPLE
