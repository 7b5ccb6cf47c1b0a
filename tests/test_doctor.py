"""``piagent doctor`` (piagent.doctor.run_doctor) against real components.

The agent side is an in-process ``SimServer`` in a thread; audio is the wav backend (WAV files
written here) or, for the PortAudio path, the ALSA fake card of testing.md in a child process
(``ALSA_CONFIG_PATH`` must be set before PortAudio loads, and no PortAudio thread runs inside
pytest); GPIO is gpiozero's MockFactory. ``timedatectl`` is a script of the test's own put
first on PATH, so the clock check does not depend on the machine; TLS is checked against a
local TLS listener whose certificate ``openssl`` makes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from piagent import doctor as doctor_module
from piagent.doctor import CHECK_NAMES, run_doctor
from piagent.doctor import probes as doctor_probes
from piagent.doctor import unit as doctor_unit
from piagent.sim.agent import AgentDefinition
from piagent.sim.server import SimServer
from tests.audio.alsa import write_fake_card

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk_" + "3f9a0c1d" * 6  # the right key of the private agent
WRONG_KEY = "not-the-key-Zq9x7Lm3Pw"  # deliberately not shaped like an sk_ key
PUBLIC, PRIVATE = "agent_public", "agent_private"
Json = dict[str, Any]


# ----------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    agents = [
        AgentDefinition(agent_id=PUBLIC),
        AgentDefinition(agent_id=PRIVATE, private=True, api_keys=(KEY,)),
    ]
    with SimServer(agents).run_in_thread() as server:
        yield server


def fake_timedatectl(directory: Path, answer: str, status: int = 0) -> Path:
    """A ``timedatectl`` that prints ``answer`` and exits with ``status``."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "timedatectl"
    script.write_text(f"#!/bin/sh\necho '{answer}'\nexit {status}\n", encoding="utf-8")
    script.chmod(0o755)
    return directory


@pytest.fixture(autouse=True)
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No key or config from the environment; a clock that timedatectl calls synchronized."""
    for name in ("ELEVENLABS_API_KEY", "CREDENTIALS_DIRECTORY", "PIAGENT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    bin_dir = fake_timedatectl(tmp_path / "bin", "yes")
    # No wireless interface, whatever this machine has (the wifi tests make their own).
    (tmp_path / "sys-class-net").mkdir()
    monkeypatch.setattr(doctor_probes, "SYS_CLASS_NET", tmp_path / "sys-class-net")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def write_wav(path: Path, samples: np.ndarray[Any, Any], rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return path


def tone(seconds: float = 1.0, rate: int = 16000, amplitude: float = 8000) -> np.ndarray[Any, Any]:
    t = np.arange(round(seconds * rate)) / rate
    return np.round(amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def write_config(
    tmp_path: Path,
    sim: SimServer | None = None,
    *,
    agent: Json | None = None,
    audio: Json | None = None,
    gpio: Json | None = None,
) -> Path:
    """A wav-backend config for ``sim`` with a 440 Hz tone as the microphone."""
    mic = write_wav(tmp_path / "mic.wav", tone())
    base = {
        "agent": {
            "agent_id": PUBLIC,
            **({"server": sim.ws_base, "api_base": sim.http_base} if sim else {}),
            **(agent or {}),
        },
        "audio": audio
        or {
            "backend": "wav",
            "input": {"file": str(mic)},
            "output": {"file": str(tmp_path / "out" / "speaker.wav")},
        },
        "gpio": {"pin_factory": "mock", **(gpio or {})},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(base), encoding="utf-8")
    return path


def doctor(path: Path | None) -> tuple[int, str]:
    out = io.StringIO()
    code = run_doctor(path, as_json=False, out=out)
    return code, out.getvalue()


def doctor_json(path: Path | None) -> tuple[int, Json, dict[str, Json]]:
    out = io.StringIO()
    code = run_doctor(path, as_json=True, out=out)
    report = json.loads(out.getvalue())
    return code, report, {check["name"]: check for check in report["checks"]}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# ----------------------------------------------------------------------------------------------
# A healthy setup


def test_everything_passes_against_the_simulator(tmp_path: Path, sim: SimServer) -> None:
    code, text = doctor(write_config(tmp_path, sim))
    assert code == 0, text
    lines = text.splitlines()
    rows = [
        m.groups() for line in lines if (m := re.match(r"(ok|FAIL|skip) +(\S+(?: \S+)?)", line))
    ]
    assert [name for _, name in rows] == list(CHECK_NAMES)
    assert "FAIL" not in text
    assert lines[-1] == "10 ok, 2 skipped, 0 failed: all good"  # tls: ws:// has none; no wifi
    assert any(line.startswith("skip  tls") for line in lines)
    assert any(line.startswith("ok    recording") and "peak -12.2 dBFS" in line for line in lines)
    assert "answered as a public agent" in text
    assert "counts toward the agent's usage" in text


def test_json_report_has_every_check_in_order(tmp_path: Path, sim: SimServer) -> None:
    before = len(sim.conversations)
    code, report, checks = doctor_json(write_config(tmp_path, sim))
    assert code == 0
    assert report["ok"] is True
    assert [check["name"] for check in report["checks"]] == list(CHECK_NAMES)
    for check in report["checks"]:
        assert set(check) == {"name", "status", "detail", "hint"}
        assert check["status"] in ("ok", "skip"), check
    assert checks["config"]["detail"].startswith(f"{tmp_path / 'config.yaml'}: valid")
    assert checks["api key"]["detail"].startswith("none: ")
    assert checks["input device"]["detail"].endswith("16000 Hz, 16-bit mono, 1.0 s")
    assert "will be created" in checks["output device"]["detail"]  # out/ does not exist yet
    assert "0 clipped samples" in checks["recording"]["detail"]
    assert "BCM 17 (pull-up) claimed and released with MockFactory" in checks["gpio"]["detail"]
    assert checks["clock"]["status"] == "ok"
    assert checks["dns"]["detail"] == "127.0.0.1: an address, nothing to resolve"
    assert "user audio pcm_16000, agent audio pcm_16000" in checks["agent"]["detail"]
    # The check held a real conversation, closed normally by the client.
    (record,) = sim.conversations[before:]
    assert record.agent_id == PUBLIC


def test_the_config_path_comes_from_the_environment(
    tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIAGENT_CONFIG", str(write_config(tmp_path, sim)))
    code, _, checks = doctor_json(None)
    assert code == 0
    assert checks["config"]["detail"].startswith(str(tmp_path / "config.yaml"))


# ----------------------------------------------------------------------------------------------
# The API key and the agent


def test_a_private_agent_with_the_right_key_connects_through_a_signed_url(
    tmp_path: Path, sim: SimServer
) -> None:
    key_file = tmp_path / "api_key"
    key_file.write_text(KEY + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    path = write_config(tmp_path, sim, agent={"agent_id": PRIVATE, "api_key_file": str(key_file)})
    before = len(sim.conversations)
    out = io.StringIO()
    code = run_doctor(path, as_json=True, out=out)
    checks = {check["name"]: check for check in json.loads(out.getvalue())["checks"]}
    assert code == 0, out.getvalue()
    assert checks["api key"]["detail"] == (
        f"from the file {key_file} (agent.api_key_file) (the key itself is never shown); mode 0600"
    )
    assert "answered through a signed URL" in checks["agent"]["detail"]
    assert "conversation_signature" not in out.getvalue()
    assert KEY not in out.getvalue()
    (record,) = sim.conversations[before:]
    assert record.query["conversation_signature"] == "***"  # a signed URL was used


def test_a_wrong_key_fails_and_is_never_printed(
    tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELEVENLABS_API_KEY", WRONG_KEY)
    path = write_config(tmp_path, sim, agent={"agent_id": PRIVATE})
    code, text = doctor(path)
    assert code == 1
    assert WRONG_KEY not in text
    (line,) = [line for line in text.splitlines() if line.startswith("FAIL")]
    assert line.startswith("FAIL  agent          the API key was rejected: ")
    assert "HTTP 401" in line
    assert "from the environment ($ELEVENLABS_API_KEY)" in text
    _, report, checks = doctor_json(path)
    assert WRONG_KEY not in json.dumps(report)
    assert checks["agent"]["hint"].startswith("check the key in the environment")


def test_a_private_agent_without_a_key_says_it_needs_one(tmp_path: Path, sim: SimServer) -> None:
    code, _, checks = doctor_json(write_config(tmp_path, sim, agent={"agent_id": PRIVATE}))
    assert code == 1
    agent = checks["agent"]
    assert agent["status"] == "fail"
    assert agent["detail"].startswith("the agent is private and needs an API key: ")
    assert "agent.api_key_file" in agent["hint"]


@pytest.mark.parametrize("with_key", [False, True], ids=["public URL", "signed URL"])
def test_an_unknown_agent_says_check_the_agent_id(
    tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch, with_key: bool
) -> None:
    if with_key:
        monkeypatch.setenv("ELEVENLABS_API_KEY", KEY)
    code, _, checks = doctor_json(write_config(tmp_path, sim, agent={"agent_id": "agent_nope"}))
    assert code == 1
    agent = checks["agent"]
    assert agent["detail"].startswith("unknown agent 'agent_nope'")
    assert "check agent.agent_id" in agent["hint"]


def test_a_key_file_open_to_others_fails_with_the_chmod_hint(
    tmp_path: Path, sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "api_key"
    key_file.write_text(KEY, encoding="utf-8")
    key_file.chmod(0o644)
    path = write_config(tmp_path, sim, agent={"agent_id": PRIVATE, "api_key_file": str(key_file)})
    code, text = doctor(path)
    assert code == 1
    assert KEY not in text
    assert "the file is open to group or others (mode 0644)" in text
    assert f"-> chmod 600 {key_file}" in text
    assert "ok    agent" in text  # the key still works
    # Reported once, in the report: config's own warning about the mode is held back.
    assert not [r for r in caplog.records if r.name == "piagent.config"]


def test_an_unreadable_key_file_makes_the_config_invalid_but_the_rest_is_checked(
    tmp_path: Path, sim: SimServer
) -> None:
    missing = tmp_path / "no_such_key"
    path = write_config(tmp_path, sim, agent={"api_key_file": str(missing)})
    code, _, checks = doctor_json(path)
    assert code == 78  # as piagent check-config says
    assert checks["config"]["status"] == "fail"
    assert "agent.api_key_file: cannot read the API key file" in checks["config"]["detail"]
    assert checks["api key"]["status"] == "fail"
    assert checks["input device"]["status"] == "ok"
    assert checks["agent"]["status"] == "skip"
    assert checks["agent"]["detail"] == "not tried: the API key is not usable (see api key)"


# ----------------------------------------------------------------------------------------------
# Config, network


def test_an_invalid_config_exits_78_and_skips_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("agent: {server: 'http://example.com'}\naudio: {input: {rate: fast}}\n")
    code, text = doctor(path)
    assert code == 78
    lines = text.splitlines()
    assert lines[0] == f"FAIL  config         {path}: invalid"
    assert any("agent.agent_id: " in line for line in lines)
    assert any("audio.input.rate: expected an integer sample rate" in line for line in lines)
    assert f"-> fix what is named above, then check again with: piagent check-config {path}" in text
    assert lines[-1] == "0 ok, 11 skipped, 1 failed: see the hints above"
    code, report, checks = doctor_json(path)
    assert code == 78 and report["ok"] is False
    assert [c["name"] for c in report["checks"]] == list(CHECK_NAMES)
    assert all(checks[name]["status"] == "skip" for name in CHECK_NAMES[1:])


def test_a_missing_config_file_says_where_one_should_be(tmp_path: Path) -> None:
    code, _, checks = doctor_json(tmp_path / "nowhere.yaml")
    assert code == 78
    assert "cannot read the config file" in checks["config"]["detail"]
    assert "--config PATH" in checks["config"]["hint"]


def test_an_unreachable_server_fails_the_agent_check_clearly(tmp_path: Path) -> None:
    port = closed_port()
    agent = {"server": f"ws://127.0.0.1:{port}", "api_base": f"http://127.0.0.1:{port}"}
    code, _, checks = doctor_json(write_config(tmp_path, agent=agent))
    assert code == 1
    assert checks["dns"]["status"] == "ok"
    assert checks["tls"]["status"] == "skip"
    detail = checks["agent"]["detail"]
    assert detail.startswith(f"cannot connect to ws://127.0.0.1:{port}/v1/convai/conversation")
    assert detail.endswith(": Connection refused")
    assert "check agent.server" in checks["agent"]["hint"]


def test_a_host_that_does_not_resolve_fails_dns_and_skips_the_rest(tmp_path: Path) -> None:
    agent = {
        "server": "wss://piagent-doctor-test.invalid",
        "api_base": "https://piagent-doctor-test.invalid",
    }
    code, _, checks = doctor_json(write_config(tmp_path, agent=agent))
    assert code == 1
    assert checks["dns"]["status"] == "fail"
    assert checks["dns"]["detail"].startswith("piagent-doctor-test.invalid: cannot resolve")
    assert "/etc/resolv.conf" in checks["dns"]["hint"]
    assert checks["tls"]["status"] == "skip"
    assert checks["agent"]["status"] == "skip"
    assert "does not resolve (see dns)" in checks["agent"]["detail"]


# ----------------------------------------------------------------------------------------------
# Recording (wav backend), GPIO, clock


def test_a_silent_wav_fails_the_recording_with_a_hint(tmp_path: Path, sim: SimServer) -> None:
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000, dtype=np.int16))
    audio = {
        "backend": "wav",
        "input": {"file": str(silent)},
        "output": {"file": str(tmp_path / "speaker.wav")},
    }
    code, text = doctor(write_config(tmp_path, sim, audio=audio))
    assert code == 1
    assert f"FAIL  recording      1.0 s from WAV file {silent}: digital silence" in text
    assert f"-> {silent} holds only silence: use a recording with sound in it" in text


def test_a_clipping_wav_fails_with_the_gain_hint(tmp_path: Path, sim: SimServer) -> None:
    loud = write_wav(tmp_path / "loud.wav", tone(amplitude=20000))
    audio = {
        "backend": "wav",
        "input": {"file": str(loud), "gain_db": 12},
        "output": {"file": str(tmp_path / "speaker.wav")},
    }
    code, _, checks = doctor_json(write_config(tmp_path, sim, audio=audio))
    assert code == 1
    recording = checks["recording"]
    assert recording["status"] == "fail"
    assert "peak 0.0 dBFS" in recording["detail"]
    assert "too loud" in recording["detail"]
    assert recording["hint"].startswith("clipping: lower audio.input.gain_db (now 12 dB)")


def test_a_file_that_is_not_a_wav_fails_the_input_and_skips_the_recording(
    tmp_path: Path, sim: SimServer
) -> None:
    bogus = tmp_path / "mic.txt"
    bogus.write_text("not audio", encoding="utf-8")
    audio = {
        "backend": "wav",
        "input": {"file": str(bogus)},
        "output": {"file": str(tmp_path / "speaker.wav")},
    }
    code, _, checks = doctor_json(write_config(tmp_path, sim, audio=audio))
    assert code == 1
    assert checks["input device"]["detail"].startswith(f"{bogus}: not a 16-bit PCM WAV file")
    assert checks["input device"]["hint"] == "set audio.input.file to a usable 16-bit mono WAV path"
    assert checks["recording"]["status"] == "skip"


def test_gpio_is_skipped_without_a_button(tmp_path: Path, sim: SimServer) -> None:
    path = write_config(tmp_path, sim, gpio={"button": {"pin": None}})
    code, _, checks = doctor_json(path)
    assert code == 0
    assert checks["gpio"] == {
        "name": "gpio",
        "status": "skip",
        "detail": "no button configured (gpio.button.pin: null)",
        "hint": "",
    }


def test_gpio_fails_when_the_pin_library_is_missing(tmp_path: Path, sim: SimServer) -> None:
    path = write_config(tmp_path, sim, gpio={"pin_factory": "lgpio", "button": {"pin": 22}})
    code, _, checks = doctor_json(path)
    assert code == 1
    gpio = checks["gpio"]
    assert gpio["detail"].startswith("cannot claim the button on BCM 22: ConfigError: ")
    assert "gpio group" in gpio["hint"] and "gpio.pin_factory: mock" in gpio["hint"]


def test_an_unsynchronized_clock_fails(
    tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = fake_timedatectl(tmp_path / "bin-no", "no")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    code, _, checks = doctor_json(write_config(tmp_path, sim))
    assert code == 1
    assert checks["clock"]["detail"].startswith("not synchronized (timedatectl: ")
    assert "sudo timedatectl set-ntp true" in checks["clock"]["hint"]


def test_the_clock_check_is_skipped_when_timedatectl_cannot_tell(
    tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = fake_timedatectl(tmp_path / "bin-broken", "System has not been booted", 1)
    monkeypatch.setenv("PATH", str(bin_dir))
    code, _, checks = doctor_json(write_config(tmp_path, sim))
    assert code == 0
    clock = checks["clock"]
    assert clock["status"] == "skip"
    assert clock["detail"].startswith("synchronization unknown (timedatectl: System has not")
    assert clock["detail"].endswith("is plausible")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    _, _, checks = doctor_json(write_config(tmp_path, sim))
    assert checks["clock"]["detail"].startswith("synchronization unknown (no timedatectl here)")


# ----------------------------------------------------------------------------------------------
# TLS against a local listener


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "2"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
            *("-addext", "basicConstraints=critical,CA:TRUE"),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@contextlib.contextmanager
def tls_listener(cert: Path, key: Path) -> Iterator[int]:
    """Accepts TCP connections on 127.0.0.1, completes the TLS handshake, then hangs up."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                with contextlib.suppress(OSError):  # ssl.SSLError: the client refused us
                    context.wrap_socket(connection, server_side=True).close()

    thread = threading.Thread(target=serve, name="tls-listener", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def tls_config(tmp_path: Path, port: int) -> Path:
    base = f"127.0.0.1:{port}"
    return write_config(tmp_path, agent={"server": f"wss://{base}", "api_base": f"https://{base}"})


def test_tls_fails_on_an_untrusted_certificate(
    tmp_path: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with tls_listener(*certificate) as port:
        code, _, checks = doctor_json(tls_config(tmp_path, port))
    assert code == 1
    tls = checks["tls"]
    assert tls["detail"].startswith(f"127.0.0.1:{port}: the certificate is not trusted (")
    assert "check the clock" in tls["hint"] and "ca-certificates" in tls["hint"]
    assert checks["agent"]["status"] == "fail"


def test_tls_reports_the_protocol_of_a_verified_handshake(
    tmp_path: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust our own CA
    with tls_listener(*certificate) as port:
        _, _, checks = doctor_json(tls_config(tmp_path, port))
    tls = checks["tls"]
    assert tls["status"] == "ok", tls
    assert tls["detail"].startswith(f"127.0.0.1:{port}: TLSv1.")
    assert "certificate verified, valid until " in tls["detail"]
    # The listener is no agents server: the agent check fails, and says so.
    assert checks["agent"]["status"] == "fail"


# ----------------------------------------------------------------------------------------------
# The PortAudio path over the ALSA fake card, in a child process

CHILD = """
import sys, warnings
warnings.simplefilter("error")
from pathlib import Path
from piagent.doctor import run_doctor
sys.exit(run_doctor(Path(sys.argv[1]), as_json=True, out=sys.stdout))
"""


def run_child(tmp_path: Path, env: dict[str, str], config: Path) -> tuple[int, dict[str, Json]]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(config)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stderr == "", proc.stderr
    checks = {check["name"]: check for check in json.loads(proc.stdout)["checks"]}
    return proc.returncode, checks


def test_devices_and_recording_over_the_alsa_fake_card(tmp_path: Path, sim: SimServer) -> None:
    raw = tmp_path / "mic.raw"
    raw.write_bytes(tone(seconds=5).astype("<i2").tobytes())
    card = write_fake_card(tmp_path, mic_file=raw)
    audio = {"input": {"device": "fakemic", "rate": 16000}, "output": {"device": "fakespk"}}
    code, checks = run_child(tmp_path, card.env(), write_config(tmp_path, sim, audio=audio))
    assert code == 0, checks
    assert checks["config"]["detail"].endswith("backend pyaudio)")
    assert checks["input device"]["detail"] == "'fakemic' opens at 16000 Hz (mono, 16-bit)"
    assert checks["output device"]["detail"] == "'fakespk' opens at 44100 Hz (mono, 16-bit)"
    recording = checks["recording"]
    assert recording["status"] == "ok"
    assert recording["detail"].startswith("1.0 s from 'fakemic' at 16000 Hz: peak -12.2 dBFS")
    assert "0 clipped samples" in recording["detail"]


def test_a_muted_microphone_and_a_missing_speaker_over_the_alsa_fake_card(
    tmp_path: Path, sim: SimServer
) -> None:
    card = write_fake_card(tmp_path)  # the microphone reads /dev/zero: digital silence
    audio = {"input": {"device": "fakemic"}, "output": {"device": "nosuchspeaker"}}
    code, checks = run_child(tmp_path, card.env(), write_config(tmp_path, sim, audio=audio))
    assert code == 1
    output = checks["output device"]
    assert output["status"] == "fail"
    assert output["detail"].startswith("output device 'nosuchspeaker' not found")
    assert "'fakespk'" in output["detail"]  # what exists
    assert "set audio.output.device (now 'nosuchspeaker')" in output["hint"]
    recording = checks["recording"]
    assert recording["status"] == "fail"
    assert "'fakemic' at 44100 Hz: digital silence (every sample is 0)" in recording["detail"]
    assert "alsamixer" in recording["hint"] and "capture" in recording["hint"]


def test_a_check_that_hangs_is_abandoned_at_its_limit(
    tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A FIFO nobody writes into: opening it to read blocks, as a hung device would.
    fifo = tmp_path / "hung.wav"
    os.mkfifo(fifo)
    audio = {
        "backend": "wav",
        "input": {"file": str(fifo)},
        "output": {"file": str(tmp_path / "speaker.wav")},
    }
    path = write_config(tmp_path, sim, audio=audio)
    monkeypatch.setitem(doctor_module.LIMITS, "input device", 0.3)
    try:
        code, _, checks = doctor_json(path)
    finally:
        # Let the abandoned thread go: a writer that leaves at once gives its read an EOF.
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert code == 1
    assert checks["input device"]["detail"] == "no answer within 0.3 s"
    assert "sound card does not answer" in checks["input device"]["hint"]
    assert checks["recording"]["status"] == "skip"
    assert checks["agent"]["status"] == "ok"  # the checks after it still ran


# ----------------------------------------------------------------------------------------------
# Wi-Fi power saving: a fake sysfs and a fake iw


def fake_iw(directory: Path, answers: dict[str, str]) -> Path:
    """An ``iw`` answering ``iw dev IFACE get power_save`` with ``Power save: on|off``."""
    directory.mkdir(parents=True, exist_ok=True)
    cases = "".join(
        f'  {iface}) echo "Power save: {state}" ;;\n' for iface, state in answers.items()
    )
    script = directory / "iw"
    script.write_text(
        f'#!/bin/sh\ncase "$2" in\n{cases}  *) echo "command failed: No such device (-19)" >&2; '
        "exit 237 ;;\nesac\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return directory


def fake_sysfs(root: Path, wireless: list[str], wired: list[str] = ["eth0"]) -> Path:  # noqa: B006
    for name in wireless:
        (root / name / "wireless").mkdir(parents=True)
    for name in wired:
        (root / name).mkdir(parents=True)
    return root


def test_wifi_power_saving_on_is_a_warning_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sysfs = fake_sysfs(tmp_path / "net", ["wlan0"])
    bin_dir = fake_iw(tmp_path / "iwbin", {"wlan0": "on"})
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    check = doctor_probes.inspect_wifi(sysfs)
    assert check.status == "warn" and check.ok is True
    assert check.detail == (
        "Wi-Fi power saving is on for wlan0: adds 100-300 ms of latency on a Pi"
    )
    assert check.hint == (
        "turn it off: sudo iw dev wlan0 set power_save off (persist with NetworkManager: "
        "nmcli connection modify <name> 802-11-wireless.powersave 2)"
    )
    text = doctor_module.format_report([check])
    assert "WARN  wifi  Wi-Fi power saving is on for wlan0" in text
    assert text.endswith("0 ok, 1 warned, 0 skipped, 0 failed: see the warnings above\n")
    assert doctor_module.exit_status([check]) == 0
    assert json.loads(doctor_module.format_json([check]))["ok"] is True


def test_wifi_power_saving_off_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sysfs = fake_sysfs(tmp_path / "net", ["wlan0", "wlan1"])
    bin_dir = fake_iw(tmp_path / "iwbin", {"wlan0": "off"})
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    check = doctor_probes.inspect_wifi(sysfs)
    assert check.status == "ok"
    assert check.detail.splitlines() == [
        "wlan0: power saving is off",
        "wlan1: cannot tell whether power saving is on (iw: command failed: No such device (-19))",
    ]


def test_wifi_without_iw_cannot_tell_and_without_wireless_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    check = doctor_probes.inspect_wifi(fake_sysfs(tmp_path / "net", ["wlan0"]))
    assert check.status == "skip"
    assert check.detail == (
        "wlan0: cannot tell whether power saving is on (no iw here (sudo apt install iw))"
    )
    check = doctor_probes.inspect_wifi(fake_sysfs(tmp_path / "net2", []))
    assert (check.status, check.detail) == ("skip", "no wireless interface")


def test_the_doctor_runs_the_wifi_check_with_the_others(
    tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(doctor_probes, "SYS_CLASS_NET", fake_sysfs(tmp_path / "net", ["wlan0"]))
    bin_dir = fake_iw(tmp_path / "iwbin", {"wlan0": "on"})
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    code, _, checks = doctor_json(write_config(tmp_path, sim))
    assert code == 0
    assert checks["wifi"]["status"] == "warn"
    assert "sudo iw dev wlan0 set power_save off" in checks["wifi"]["hint"]


# ----------------------------------------------------------------------------------------------
# The process's user and groups; the key from a systemd credential


def test_the_user_check_names_the_groups_the_process_has() -> None:
    check = doctor_probes.inspect_groups(())
    assert check.ok is True
    assert check.detail.startswith(f"running as {__import__('pwd').getpwuid(os.getuid())[0]} ")
    assert "groups: " in check.detail


def test_the_key_from_the_systemd_credential_is_named_not_shown(
    tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "elevenlabs_api_key").write_text(KEY + "\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    path = write_config(tmp_path, sim, agent={"agent_id": PRIVATE})
    code, text = doctor(path)
    assert code == 0, text
    assert "api key        from the systemd credential elevenlabs_api_key" in text
    assert KEY not in text
    _, _, checks = doctor_json(path)
    assert checks["agent"]["status"] == "ok"


def test_a_blank_systemd_credential_means_a_public_agent(
    tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "elevenlabs_api_key").write_text("\n", encoding="utf-8")  # SetCredential=
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    code, _, checks = doctor_json(write_config(tmp_path, sim))
    assert code == 0
    assert checks["api key"]["detail"].startswith(
        "none: the systemd credential elevenlabs_api_key is empty"
    )


# ----------------------------------------------------------------------------------------------
# Running as the service: the installed unit -> the systemd-run command (pure functions)

UNIT_TEXT = """\
# /etc/systemd/system/piagent.service
[Unit]
Description=piagent
After=network-online.target

[Service]
Type=notify
ExecStart=/opt/piagent/venv/bin/piagent run --config /etc/piagent/config.yaml
ExecReload=/bin/kill -HUP $MAINPID
WatchdogSec=30
NotifyAccess=main
Restart=on-failure
RestartPreventExitStatus=78
TimeoutStopSec=10
User=piagent
Group=piagent
SupplementaryGroups=audio gpio
LoadCredential=elevenlabs_api_key:/etc/piagent/api_key
SetCredential=elevenlabs_api_key:\\n
RuntimeDirectory=piagent
WorkingDirectory=/run/piagent
Environment=PYTHONUNBUFFERED=1 OPENBLAS_NUM_THREADS=1
; a comment
SystemCallFilter=@system-service
SystemCallFilter=~@privileged \\
    @resources
StandardOutput=journal
DeviceAllow=char-alsa rw

[Install]
WantedBy=multi-user.target

# /etc/systemd/system/piagent.service.d/override.conf
[Service]
Environment=
Environment=ELEVENLABS_REGION=eu
"""


def test_the_unit_becomes_the_exact_systemd_run_command() -> None:
    argv = doctor_unit.reexec_argv(
        UNIT_TEXT, config=None, as_json=True, systemd_run="/usr/bin/systemd-run"
    )
    assert argv == [
        "/usr/bin/systemd-run",
        "--pipe",
        "--wait",
        "--collect",
        "--quiet",
        "--service-type=exec",
        "-p",
        "Description=piagent doctor, as piagent.service",
        "-p",
        "User=piagent",
        "-p",
        "Group=piagent",
        "-p",
        "SupplementaryGroups=audio gpio",
        "-p",
        "LoadCredential=elevenlabs_api_key:/etc/piagent/api_key",
        "-p",
        "SetCredential=elevenlabs_api_key:\\n",
        "-p",
        "RuntimeDirectory=piagent",
        "-p",
        "WorkingDirectory=/run/piagent",
        "-p",
        "SystemCallFilter=@system-service",
        "-p",
        "SystemCallFilter=~@privileged @resources",
        "-p",
        "DeviceAllow=char-alsa rw",
        "-p",
        "Environment=ELEVENLABS_REGION=eu",  # the drop-in reset the unit's Environment=
        "-p",
        "RuntimeDirectoryPreserve=yes",  # /run/piagent holds the running daemon's socket
        "--",
        "/opt/piagent/venv/bin/piagent",
        "doctor",
        "--here",
        "--config",
        "/etc/piagent/config.yaml",
        "--json",
    ]


def test_a_given_config_wins_and_a_unit_without_piagent_runs_this_interpreter() -> None:
    unit = "[Service]\nExecStart=/usr/bin/python3 -m piagent run\nUser=piagent\n"
    argv = doctor_unit.reexec_argv(unit, config="/srv/c.yaml", as_json=False, systemd_run="sr")
    tail = argv[argv.index("--") :]
    assert tail == ["--", sys.executable, "-m", "piagent", "doctor", "--here", "--config",
                    "/srv/c.yaml"]  # fmt: skip
    assert "RuntimeDirectoryPreserve=yes" not in argv


@pytest.mark.parametrize(
    ("here", "euid", "booted", "has_run", "unit", "reason"),
    [
        (False, 0, True, True, UNIT_TEXT, None),
        (True, 0, True, True, UNIT_TEXT, "--here"),
        (False, 1000, True, True, UNIT_TEXT, "not root"),
        (False, 0, False, True, UNIT_TEXT, "systemd is not running"),
        (False, 0, True, False, UNIT_TEXT, "no systemd-run here"),
        (False, 0, True, True, None, "piagent.service is not installed"),
    ],
)
def test_when_the_doctor_re_runs_itself_as_the_service(
    here: bool, euid: int, booted: bool, has_run: bool, unit: str | None, reason: str | None
) -> None:
    found = doctor_unit.reexec_reason(doctor_unit.Situation(here, euid, booted, has_run, unit))
    if reason is None:
        assert found is None
    else:
        assert found is not None and found.startswith(reason)


def test_without_systemd_doctor_runs_here(tmp_path: Path, sim: SimServer) -> None:
    # PID 1 is not systemd in this test environment: the checks run in this process.
    assert not doctor_unit.current_situation(here=False).systemd_booted
    out, err = io.StringIO(), io.StringIO()
    code = run_doctor(write_config(tmp_path, sim), as_json=False, out=out, here=False, err=err)
    assert code == 0
    assert out.getvalue().endswith("all good\n")


def test_the_readme_table_is_derived_from_the_one_list_of_checks() -> None:
    from piagent.doctor.checks import markdown_table

    assert markdown_table() in (ROOT / "README.md").read_text(encoding="utf-8")
