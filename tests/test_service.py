"""The daemon as a process: ``piagent run`` with the WAV backend and mock pins against the
simulator, observed through a real ``NOTIFY_SOCKET``, signals and ``piagent ctl``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from piagent.sim.agent import AgentDefinition
from piagent.sim.server import SimServer

pytestmark = pytest.mark.timeout(90)

KEY = "sk_service_test_key_9f8e7d6c5b4a"


def write_wav(path: Path, seconds: float, rate: int = 16000) -> None:
    samples = np.zeros(int(seconds * rate), dtype=np.int16)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())


class Daemon:
    """A ``piagent run`` child process and the datagrams it sends to systemd."""

    def __init__(self, tmp: Path, config: dict[str, Any], env: dict[str, str] | None = None):
        self.tmp = tmp
        self.config_path = tmp / "config.yaml"
        self.write_config(config)
        self.socket_path = tmp / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.socket_path))
        self.notify.settimeout(0.2)
        self.messages: list[str] = []
        # Datagrams are read as they come, as systemd does: a full socket would block the
        # daemon's sd_notify, and with it the event loop.
        self._reader = threading.Thread(target=self._read_notify_forever, daemon=True)
        self._closed = False
        self.stderr_path = tmp / "stderr.log"
        child_env = {
            **os.environ,
            "NOTIFY_SOCKET": str(self.socket_path),
            "WATCHDOG_USEC": "1000000",
            "STATE_DIRECTORY": str(tmp / "state"),
            **(env or {}),
        }
        child_env.pop("JOURNAL_STREAM", None)
        self.stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "piagent", "run", "--config", str(self.config_path)],
            env=child_env,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )
        self._reader.start()

    def write_config(self, config: dict[str, Any]) -> None:
        self.config_path.write_text(yaml.safe_dump(config))

    def _read_notify_forever(self) -> None:
        while not self._closed:
            try:
                data = self.notify.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append(data.decode())

    def read_notify(self) -> None:
        """Let datagrams already sent arrive (the reader thread collects them)."""
        time.sleep(0.05)

    def wait_notify(self, fragment: str, within: float = 15.0, after: int = 0) -> int:
        """Index of the first message from ``after`` on containing ``fragment``."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for i, message in enumerate(self.messages[after:], start=after):
                if fragment in message:
                    return i
            assert self.proc.poll() is None, f"daemon exited: {self.log()}"
            self.read_notify()
        raise AssertionError(f"no {fragment!r} in {self.messages}\n{self.log()}")

    def ctl(self, *words: str) -> subprocess.CompletedProcess[str]:
        sock = str(self.tmp / "control.sock")
        return subprocess.run(
            [sys.executable, "-m", "piagent", "ctl", "--socket", sock, *words],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        result = self.ctl("status", "--json")
        assert result.returncode == 0, result.stderr
        status: dict[str, Any] = json.loads(result.stdout)
        return status

    def wait_status(self, key: str, predicate: Any, within: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            status = self.status()
            if predicate(status.get(key)):
                return status
            time.sleep(0.1)
        raise AssertionError(f"status never satisfied {key}: {status}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=10)
        self.read_notify()
        return code

    def log(self) -> str:
        self.stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._closed = True
        self._reader.join()
        self.notify.close()
        self.stderr.close()


def base_config(tmp: Path, sim: SimServer, agent_id: str = "demo") -> dict[str, Any]:
    write_wav(tmp / "mic.wav", 0.5)
    return {
        "agent": {"agent_id": agent_id, "server": sim.ws_base, "api_base": sim.http_base},
        "audio": {
            "backend": "wav",
            "input": {"file": str(tmp / "mic.wav")},
            "output": {"file": str(tmp / "speaker.wav"), "rate": 16000},
            "earcons": False,
        },
        "gpio": {"pin_factory": "mock"},
        "control": {"socket": str(tmp / "control.sock")},
        "session": {"idle_timeout": 60},
    }


@pytest.fixture
def sim() -> Iterator[SimServer]:
    agents = [
        AgentDefinition(agent_id="demo", first_message="Hello."),
        AgentDefinition(agent_id="private", private=True, api_keys=(KEY,), first_message="Hi."),
    ]
    with SimServer(agents).run_in_thread() as server:
        yield server


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Daemon] = []

    def start(config: dict[str, Any], env: dict[str, str] | None = None) -> Daemon:
        daemon = Daemon(tmp_path, config, env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.close()


def test_ready_status_watchdog_and_a_clean_stop(
    sim: SimServer, tmp_path: Path, daemon_factory: Any
) -> None:
    daemon = daemon_factory(base_config(tmp_path, sim))
    ready = daemon.wait_notify("READY=1")
    assert "STATUS=ready" in daemon.messages[ready]
    first = daemon.wait_notify("WATCHDOG=1", after=ready)
    daemon.wait_notify("WATCHDOG=1", after=first + 1)  # and again: it keeps pinging
    status = daemon.status()
    assert status["state"] == "ready"
    assert status["conversation_id"] is None
    assert status["devices"]["input"] == {
        "name": str(tmp_path / "mic.wav"),
        "rate": 16000,
        "healthy": True,
        "overruns": 0,
        "clipped": 0,
        "xruns": 0,
    }
    assert status["devices"]["output"]["healthy"] is True
    assert isinstance(status["leds"], dict)
    assert daemon.stop() == 0
    assert any("STOPPING=1" in m for m in daemon.messages)
    assert not (tmp_path / "control.sock").exists()


def test_no_thread_the_daemon_did_not_start_even_with_no_blas_variables(
    sim: SimServer, tmp_path: Path, daemon_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """numpy's BLAS would start a pool of native workers at import (one fewer than the cores)
    that spin after every small product. The entry point pins it to one thread, so the process
    has exactly the threads Python started, through a conversation with resampled audio."""
    from piagent.cli import BLAS_THREAD_VARIABLES

    for name in BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    config = base_config(tmp_path, sim)
    write_wav(tmp_path / "mic.wav", 3.0, rate=44100)  # 44.1 kHz -> 16 kHz: matrix products
    config["audio"]["output"]["rate"] = 48000  # and 16 kHz agent audio -> 48 kHz
    daemon = daemon_factory(config)
    daemon.wait_notify("READY=1")
    assert daemon.ctl("press").returncode == 0
    time.sleep(1.5)
    assert daemon.ctl("release").returncode == 0
    status = daemon.wait_status("conversation_id", lambda conversation: conversation is not None)
    assert status["devices"]["input"]["rate"] == 44100
    threads = daemon.status()["threads"]
    tasks = sum(1 for _ in Path(f"/proc/{daemon.proc.pid}/task").iterdir())
    assert threads["native"] == threads["python"], threads
    assert tasks == threads["python"], (tasks, threads)
    assert daemon.stop() == 0


def test_no_microphone_at_start_keeps_the_watchdog_fed(
    sim: SimServer, tmp_path: Path, daemon_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the card absent at start (a USB microphone plugged in later), the daemon is only
    waiting for hardware: it must go on pinging, or systemd would restart it every WatchdogSec
    for as long as the card is away. Real PortAudio over an ALSA configuration without it."""
    from tests.audio.alsa import write_fake_card

    for name, value in write_fake_card(tmp_path).env().items():
        monkeypatch.setenv(name, value)
    config = base_config(tmp_path, sim)
    config["audio"] = {
        "backend": "pyaudio",
        "input": {"device": "hw:CARD=NoSuchMic,DEV=0"},
        "output": {"device": "hw:CARD=NoSuchSpeaker,DEV=0"},
        "earcons": False,
    }
    daemon = daemon_factory(config)
    ready = daemon.wait_notify("READY=1")
    time.sleep(5.0)  # the old limit withheld pings 3 s after the last frame
    pings = [i for i, m in enumerate(daemon.messages) if i > ready and "WATCHDOG=1" in m]
    assert len(pings) >= 8, daemon.messages  # every 0.5 s (WATCHDOG_USEC is 1 s)
    assert pings[-1] >= len(daemon.messages) - 3, daemon.messages[-5:]
    assert "withholding" not in daemon.log()
    status = daemon.status()
    assert status["devices"]["input"]["healthy"] is False
    # The LEDs and the status line say what is missing (ready but deaf would be a lie).
    assert status["state"] == "error"
    lines = [m for m in daemon.messages if "STATUS=" in m]
    assert any("no microphone (not found" in m for m in lines), lines
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0


def test_no_working_pin_factory_leaves_the_daemon_running_without_gpio(
    sim: SimServer, tmp_path: Path, daemon_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The installed config names no pin factory. Where gpiozero finds none that works (this
    machine, like a board it does not know), the daemon used to die at start with a traceback,
    and systemd restarted it in a loop. It runs on without the button and LEDs, and says so."""
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    config = base_config(tmp_path, sim)
    config["gpio"] = {"button": {"pin": 17}}
    daemon = daemon_factory(config)
    daemon.wait_notify("READY=1")
    status = daemon.status()
    assert status["gpio"]["ok"] is False
    assert "no GPIO pin factory works here" in status["gpio"]["problem"]
    assert "gpio: no GPIO pin factory works here" in daemon.log()
    assert daemon.ctl("press").returncode == 0  # the control socket still talks
    assert daemon.stop() == 0


def test_press_talk_and_sigterm_mid_conversation_closes_with_1000(
    sim: SimServer, tmp_path: Path, daemon_factory: Any
) -> None:
    daemon = daemon_factory(base_config(tmp_path, sim))
    daemon.wait_notify("READY=1")
    assert daemon.ctl("press").returncode == 0
    status = daemon.wait_status("conversation_id", lambda v: v is not None)
    daemon.wait_notify("STATUS=")  # the state is reported as it changes
    assert daemon.ctl("release").returncode == 0
    assert daemon.ctl("say", "hello", "there").returncode == 0
    daemon.wait_status("latency_ms", lambda v: v is not None and v["reply_ms"] is not None)
    rec = sim.conversations[0]
    assert rec.conversation_id == status["conversation_id"]
    assert [m.text for m in rec.received if type(m).__name__ == "UserMessage"] == ["hello there"]
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 5
    sim.run_coroutine(rec.wait_closed(5), 10)
    assert rec.close_code == 1000
    with wave.open(str(tmp_path / "speaker.wav")) as wav:  # complete and valid on exit
        assert wav.getnframes() > 0


def test_sighup_reloads_and_a_live_conversation_survives(
    sim: SimServer, tmp_path: Path, daemon_factory: Any
) -> None:
    config = base_config(tmp_path, sim)
    daemon = daemon_factory(config)
    ready = daemon.wait_notify("READY=1")
    assert daemon.ctl("say", "first").returncode == 0
    daemon.wait_status("conversation_id", lambda v: v is not None)
    config["agent"]["first_message"] = "Changed greeting."
    daemon.write_config(config)
    daemon.proc.send_signal(signal.SIGHUP)
    reloading = daemon.wait_notify("RELOADING=1", after=ready + 1)
    daemon.wait_notify("READY=1", after=reloading)
    assert "config reloaded" in daemon.log()
    assert daemon.ctl("say", "second").returncode == 0
    rec = sim.conversations[0]
    deadline = time.monotonic() + 10
    while len([m for m in rec.received if type(m).__name__ == "UserMessage"]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rec.close_code is None and len(sim.conversations) == 1
    # a broken config is refused and the running one kept
    daemon.config_path.write_text("agent: {agent_id: x, colour: blue}\n")
    daemon.proc.send_signal(signal.SIGHUP)
    again = daemon.wait_notify("RELOADING=1", after=reloading + 1)
    daemon.wait_notify("READY=1", after=again)
    assert "agent.colour" in daemon.log()
    assert daemon.status()["state"] != "error"
    assert daemon.stop() == 0


def test_api_key_never_in_a_log_line_or_status(
    sim: SimServer, tmp_path: Path, daemon_factory: Any
) -> None:
    config = base_config(tmp_path, sim, agent_id="private")
    config["logging"] = {"level": "debug"}
    daemon = daemon_factory(config, env={"ELEVENLABS_API_KEY": KEY})
    daemon.wait_notify("READY=1")
    assert daemon.ctl("say", "hi").returncode == 0
    status = daemon.wait_status("conversation_id", lambda v: v is not None)
    assert daemon.stop() == 0
    log = daemon.log()
    assert "conversation started" in log or "started (user audio" in log
    for text in (log, json.dumps(status), "\n".join(daemon.messages)):
        assert KEY not in text
        assert "conversation_signature" not in text


def test_a_bad_config_exits_78_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("agent: {agent_id: x}\naudio: {backend: wav}\n")
    result = subprocess.run(
        [sys.executable, "-m", "piagent", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 78
    assert "audio.input.file" in result.stderr


def test_ctl_without_a_daemon_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "piagent", "ctl", "--socket", str(tmp_path / "none"), "status"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 69
    assert str(tmp_path / "none") in result.stderr


def test_demo_runs_headless_and_shows_a_full_exchange(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "piagent",
            "demo",
            "--wav",
            "--workdir",
            str(tmp_path),
            "--duration",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "agent:    Hello!" in out
    assert "you:" in out and "agent:    You said" in out
    assert "agent:    You wrote: Thanks" in out
    assert out.count("latency:") == 2
    with wave.open(str(tmp_path / "speaker.wav")) as wav:
        assert wav.getnframes() / wav.getframerate() > 10


def wait_log(daemon: Daemon, fragment: str, within: float = 30.0) -> str:
    """The first log line containing ``fragment``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for line in daemon.log().splitlines():
            if fragment in line:
                return line
        assert daemon.proc.poll() is None, f"daemon exited: {daemon.log()}"
        time.sleep(0.1)
    raise AssertionError(f"no {fragment!r} in the log:\n{daemon.log()}")


def test_filters_are_designed_once_and_later_starts_never_import_scipy(
    sim: SimServer, tmp_path: Path
) -> None:
    """A 44.1 kHz microphone and a 48 kHz speaker: the first start designs their filters into
    the cache; the second reads them back, talks through them, and never maps scipy."""
    env = {"PIAGENT_CACHE_DIR": str(tmp_path / "cache")}
    lines = []
    scipy_mapped = []
    for run in ("first", "second"):
        workdir = tmp_path / run
        workdir.mkdir()
        config = base_config(workdir, sim)
        write_wav(workdir / "mic.wav", 0.5, rate=44100)
        config["audio"]["output"]["rate"] = 48000
        daemon = Daemon(workdir, config, env)
        try:
            daemon.wait_notify("READY=1")
            lines.append(wait_log(daemon, "resampling filters ready"))
            assert daemon.ctl("say", "hello").returncode == 0
            daemon.wait_status("latency_ms", lambda v: v is not None and v["reply_ms"] is not None)
            # (numpy's own OpenBLAS is called libscipy_openblas: the package's directory is
            # the sign that scipy was imported.)
            maps = Path(f"/proc/{daemon.proc.pid}/maps").read_text()
            scipy_mapped.append("site-packages/scipy/" in maps)
            assert daemon.stop() == 0
        finally:
            daemon.close()
        with wave.open(str(workdir / "speaker.wav")) as wav:
            assert wav.getframerate() == 48000
            assert np.abs(np.frombuffer(wav.readframes(wav.getnframes()), "<i2")).max() > 1000
    # 44100 to each agent rate but itself, each agent rate but 48000 to 48000: 9 pairs.
    assert f"0 from {tmp_path / 'cache'}, 9 designed" in lines[0]
    assert f"9 from {tmp_path / 'cache'}, 0 designed" in lines[1]
    assert scipy_mapped == [True, False]
