"""Tests of piagent.audio.alsanames: which names need piagent's ALSA alias, the hw: lookup,
and the overlay configuration file (that alsa-lib reads it is tested through PortAudio in
tests/audio/test_alsadevices.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from piagent.audio.alsanames import (
    ALIASES,
    AlsaOverlay,
    alsa_hw_name,
    alsa_pcm_to_wrap,
    describe_cards,
    overlay_text,
)
from tests.audio.alsa import write_fake_card

CARDS = """\
 0 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones
                      bcm2835 Headphones
 1 [Device         ]: USB-Audio - USB Audio Device
                      C-Media Electronics Inc. USB Audio Device at usb-3f980000.usb-1.2
"""


@pytest.mark.parametrize(
    ("wanted", "pcm"),
    [
        ("plughw:CARD=Device,DEV=0", "plughw:CARD=Device,DEV=0"),
        ("plughw:1,0", "plughw:1,0"),
        ("  sysdefault:CARD=Device ", "sysdefault:CARD=Device"),
        ("dmix:CARD=Device,DEV=0", "dmix:CARD=Device,DEV=0"),
        ("plug:'hw:1,0'", "plug:'hw:1,0'"),
        ("hw:1,0,1", "hw:1,0,1"),  # a subdevice: PortAudio has no entry for it
        ("hw:1,0", None),  # raw hw: PortAudio's own (hw:1,0) entry
        ("hw:CARD=Device,DEV=0", None),
        ("hw:Device", None),
        ("default", None),
        ("sysdefault", None),  # listed by PortAudio
        ("USB Audio Device: - (hw:1,0)", None),  # PortAudio's name
        ("USB", None),
        (3, None),
    ],
)
def test_alsa_pcm_to_wrap(wanted: str | int, pcm: str | None) -> None:
    assert alsa_pcm_to_wrap(wanted) == pcm


def test_alsa_hw_name() -> None:
    assert alsa_hw_name("hw:CARD=Device,DEV=0", CARDS) == "hw:1,0"
    assert alsa_hw_name("hw:Device", CARDS) == "hw:1,0"
    assert alsa_hw_name("hw:1", CARDS) == "hw:1,0"
    assert alsa_hw_name("HW:0,1", CARDS) == "hw:0,1"
    assert alsa_hw_name("hw:CARD=Gone", CARDS) is None
    assert alsa_hw_name("hw:Device", "") is None  # no cards (yet)
    assert alsa_hw_name("plughw:CARD=Device,DEV=0", CARDS) is None  # wrapped instead
    assert alsa_hw_name("default", CARDS) is None
    assert describe_cards(CARDS) == "0 [Headphones], 1 [Device]"
    assert describe_cards("") == "none"


def test_overlay_text_quotes_the_names() -> None:
    text = overlay_text({False: 'plug:"odd\\name"', True: "plughw:CARD=Device,DEV=0"})
    assert text.splitlines()[1:] == [
        'pcm.piagent_output { type asym; playback.pcm "plug:\\"odd\\\\name\\"" }',
        'pcm.piagent_input { type asym; capture.pcm "plughw:CARD=Device,DEV=0" }',
    ]
    assert ALIASES == {True: "piagent_input", False: "piagent_output"}


def test_overlay_install_appends_to_the_configuration_path(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir()
    environ = {"ALSA_CONFIG_PATH": "/test/card.conf", "RUNTIME_DIRECTORY": str(runtime)}
    overlay = AlsaOverlay()
    assert overlay.install(environ) is None  # nothing to define: the environment is left alone
    assert environ["ALSA_CONFIG_PATH"] == "/test/card.conf"
    assert overlay.define("plughw:1,0", is_input=True) == "piagent_input"
    path = overlay.install(environ)
    assert path is not None and path.parent == runtime
    assert environ["ALSA_CONFIG_PATH"] == f"/test/card.conf:{path}"
    overlay.define("plug:fakespk", is_input=False)
    assert overlay.install(environ) == path  # the same file, rewritten; the path not doubled
    assert environ["ALSA_CONFIG_PATH"] == f"/test/card.conf:{path}"
    assert "piagent_output" in path.read_text() and "piagent_input" in path.read_text()


def test_overlay_defaults_to_the_system_configuration(tmp_path: Path) -> None:
    environ: dict[str, str] = {}
    overlay = AlsaOverlay()
    overlay.define("sysdefault:CARD=Device", is_input=False)
    path = overlay.install(environ)
    assert path is not None
    system, ours = environ["ALSA_CONFIG_PATH"].split(":")
    assert system.endswith("/alsa.conf") and Path(system).exists()
    assert ours == str(path)


@pytest.mark.skipif(shutil.which("arecord") is None, reason="needs alsa-utils' arecord")
def test_alsa_reads_the_overlay_after_the_fake_card(tmp_path: Path) -> None:
    """alsa-lib takes a colon-separated ALSA_CONFIG_PATH: the alias opens like the PCM."""
    card = write_fake_card(tmp_path)
    environ = card.env()
    overlay = AlsaOverlay()
    overlay.define("plug:stereomic", is_input=True)
    overlay.install(environ)
    arecord = ["arecord", "-q", "-f", "S16_LE", "-r", "16000", "-s", "16", "-t", "raw"]
    mono = subprocess.run(
        [*arecord, "-D", "piagent_input", "-c", "1", "/dev/null"],
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    assert mono.returncode == 0, mono.stderr  # the plug layer the name asked for is there
    refused = subprocess.run(
        [*arecord, "-D", "stereomic", "-c", "1", "/dev/null"],
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0  # ... which the raw stereo-only PCM does not have
