"""The blocking probes behind doctor's checks (and ``piagent setup``'s microphone test).

Owns opening a device once, recording a few seconds and judging the level, claiming the
button, asking ``timedatectl``, a TLS handshake, the Wi-Fi power-save state (``iw``) and the
groups this process really has. Each function blocks (PortAudio, gpiozero, files, programs)
and is meant to run in a thread of its own (``checks.in_thread``); none keeps state.

PyAudio and gpiozero are imported inside the functions that need them, so a machine lacking
one still gets the rest of the report. No I/O at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import itertools
import math
import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from piagent.audio.codecs import Samples
from piagent.audio.levels import peak_dbfs, rms_dbfs
from piagent.config import AudioInputConfig, AudioOutputConfig, GpioConfig
from piagent.doctor.report import Check, fail, ok, skip, warn

RECORD_SECONDS: Final = 1.0  # captured from a sound card
WAV_RECORD_MAX_SECONDS: Final = 30.0  # of a WAV microphone's file, analysed whole up to this
CLIPPED_MAX: Final = 0.001  # fraction of full-scale samples above which the recording fails
HANDSHAKE_TIMEOUT: Final = 5.0  # seconds per TLS handshake
TIMEDATECTL_TIMEOUT: Final = 2.0
IW_TIMEOUT: Final = 2.0
WAV_OUTPUT_RATE: Final = 48000  # what the service uses when audio.output.rate is not set
SYS_CLASS_NET: Final = Path("/sys/class/net")
# The groups the service's devices belong to: /dev/snd/* (audio) and /dev/gpiochip*,
# /dev/gpiomem* (gpio), as Raspberry Pi OS's udev rules set them.
DEVICE_GROUPS: Final = ("audio", "gpio")

_FULL_SCALE: Final = 32767  # |sample| >= this counts as clipped (as the microphone counts)


@dataclass(frozen=True, slots=True)
class Take:
    """A test recording: where from, and its samples (int16, after the software gain)."""

    source: str
    rate: int
    samples: Samples


# ----------------------------------------------------------------------------------------------
# Devices and recordings (each runs in a thread of its own)


def device_failure(name: str, backend: str, device: str | int, exc: Exception) -> Check:
    if isinstance(exc, ImportError):
        return fail(name, f"PyAudio cannot be loaded ({exc})", "pyaudio")
    key = "audio.output" if name == "output device" else "audio.input"
    if backend == "wav":
        return fail(name, str(exc), "wav", key=key)
    return fail(name, str(exc) or type(exc).__name__, "device", key=key, device=device)


def open_microphone(config: AudioInputConfig) -> str:
    from piagent.audio.devices import Microphone

    async def probe() -> str:  # Microphone.open must run on an event loop's thread
        mic = Microphone(config)
        mic.open()
        try:
            return f"{mic.name!r} opens at {mic.rate} Hz (mono, 16-bit)"
        finally:
            mic.close()

    return asyncio.run(probe())


def open_speaker(config: AudioOutputConfig) -> str:
    from piagent.audio.devices import Speaker

    speaker = Speaker(config)
    speaker.open()
    try:
        return f"{speaker.name!r} opens at {speaker.rate} Hz (mono, 16-bit)"
    finally:
        speaker.close()


def probe_wav_input(config: AudioInputConfig) -> str:
    from piagent.audio.wavio import read_wav

    if config.file is None:
        raise ValueError("audio.input.file is not set")
    samples, rate = read_wav(config.file)
    seconds = len(samples) / rate
    return f"WAV file {config.file}: {rate} Hz, 16-bit mono, {seconds:.1f} s"


def probe_wav_output(config: AudioOutputConfig) -> str:
    if config.file is None:
        raise ValueError("audio.output.file is not set")
    path = config.file
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a file")
    # The speaker creates missing parent directories: the nearest existing one must be writable.
    directory = path.absolute().parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise OSError(f"cannot write into {directory} ({exc.strerror or exc})") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"{path} exists and is not writable")
    rate = config.rate or WAV_OUTPUT_RATE
    parent = path.absolute().parent
    where = f"{directory} is writable"
    if parent != directory:
        where = f"{parent} will be created; {where}"
    return f"WAV file {path}: {rate} Hz, 16-bit mono; {where}"


def record_device(config: AudioInputConfig, seconds: float = RECORD_SECONDS) -> Take:
    """``seconds`` of the sound card's capture, as the daemon would get it."""
    from piagent.audio.devices import Microphone

    async def capture() -> Take:
        mic = Microphone(config)
        mic.open()
        try:
            count = math.ceil(seconds * 1000 / config.chunk_ms)
            async with asyncio.timeout(seconds + 2):
                frames = [await mic.read() for _ in range(count)]
        finally:
            mic.close()
        return Take(f"{mic.name!r} at {mic.rate} Hz", mic.rate, np.concatenate(frames))

    return asyncio.run(capture())


def record_wav(config: AudioInputConfig) -> Take:
    from piagent.audio.wavio import WavMicrophone

    assert config.file is not None  # the input device check failed otherwise
    # A clock always past every deadline: the file needs no real-time pacing here.
    ticks = itertools.count()
    mic = WavMicrophone(
        config.file,
        chunk_ms=config.chunk_ms,
        gain_db=config.gain_db,
        clock=lambda: 3600.0 * next(ticks),
    )
    seconds = min(mic.duration_s, WAV_RECORD_MAX_SECONDS)
    count = max(1, math.ceil(seconds * 1000 / config.chunk_ms))

    async def capture() -> list[Samples]:
        frames: list[Samples] = []
        async with contextlib.aclosing(mic.frames()) as stream:
            async for frame in stream:
                frames.append(frame)
                if len(frames) == count:
                    break
        return frames

    return Take(f"WAV file {config.file}", mic.rate, np.concatenate(asyncio.run(capture())))


def judge(take: Take, backend: str, config: AudioInputConfig) -> Check:
    samples = take.samples
    said = f"{samples.size / take.rate:.1f} s from {take.source}"
    if not np.any(samples):
        hint = "silent wav" if backend == "wav" else "silent mic"
        return fail(
            "recording", f"{said}: digital silence (every sample is 0)", hint, path=config.file
        )
    clipped = int(np.count_nonzero(np.abs(samples.astype(np.int32)) >= _FULL_SCALE))
    detail = (
        f"{said}: peak {peak_dbfs(samples):.1f} dBFS, RMS {rms_dbfs(samples):.1f} dBFS, "
        f"{clipped} clipped samples ({100 * clipped / samples.size:.2f} %)"
    )
    if clipped > CLIPPED_MAX * samples.size:
        detail += ": too loud, the audio is distorted"
        return fail("recording", detail, "clipping", gain=config.gain_db)
    return ok("recording", detail)


# ----------------------------------------------------------------------------------------------
# GPIO, clock, TLS (each blocking part runs in a thread of its own)


def claim_button(config: GpioConfig) -> Check:
    from gpiozero import Button

    from piagent.gpio import make_pin_factory

    pin = config.button.pin
    assert pin is not None
    pull = "pull-up" if config.button.pull_up else "pull-down"
    # gpiozero warns (PinFactoryFallback) as it falls back from one library to the next:
    # those words go into the report rather than to stderr.
    with warnings.catch_warnings(record=True) as fallbacks:
        warnings.simplefilter("always")
        try:
            factory = make_pin_factory(config.pin_factory)
            try:
                button = Button(pin, pull_up=config.button.pull_up, pin_factory=factory)
                try:
                    used = type(button.pin_factory).__name__
                    pressed = bool(button.is_pressed)
                finally:
                    button.close()
            finally:
                if factory is not None:
                    factory.close()
        except Exception as exc:
            tried = "; ".join(str(w.message) for w in fallbacks)
            detail = f"cannot claim the button on BCM {pin}: {type(exc).__name__}: {exc}"
            return fail("gpio", detail + (f" ({tried})" if tried else ""), "gpio", pin=pin)
    state = "reads released"
    if pressed:
        state = "reads pressed: if nobody is pressing it, check gpio.button.pull_up and the wiring"
    return ok("gpio", f"button on BCM {pin} ({pull}) claimed and released with {used}; {state}")


def ask_timedatectl() -> tuple[str | None, str]:
    """``("yes" | "no", "")``, or ``(None, why timedatectl could not tell)``."""
    program = shutil.which("timedatectl")
    if program is None:
        return None, "no timedatectl here"
    try:
        done = subprocess.run(
            [program, "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=TIMEDATECTL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"timedatectl gave no answer within {TIMEDATECTL_TIMEOUT:g} s"
    except OSError as exc:
        return None, f"timedatectl failed: {exc.strerror or exc}"
    answer = done.stdout.strip()
    if done.returncode == 0 and answer in ("yes", "no"):
        return answer, ""
    said = (done.stderr.strip().splitlines() or [answer or f"exit status {done.returncode}"])[0]
    return None, f"timedatectl: {said}"


async def handshake(address: str, host: str, port: int) -> str:
    """A verified TLS handshake with ``host`` at ``address``: its protocol and certificate."""
    context = ssl.create_default_context()
    async with asyncio.timeout(HANDSHAKE_TIMEOUT):
        _, writer = await asyncio.open_connection(address, port, ssl=context, server_hostname=host)
    try:
        tls = writer.get_extra_info("ssl_object")
        version = tls.version() if tls is not None else "TLS"
        certificate = tls.getpeercert() if tls is not None else None
        expires = certificate.get("notAfter") if certificate else None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
    return f"{version}, certificate verified" + (f", valid until {expires}" if expires else "")


# ----------------------------------------------------------------------------------------------
# Wi-Fi power saving and the process's groups


def wireless_interfaces(sys_class_net: Path | None = None) -> list[str]:
    """Network interfaces with a ``wireless`` directory in sysfs (wlan0, ...), sorted."""
    sys_class_net = SYS_CLASS_NET if sys_class_net is None else sys_class_net
    try:
        entries = list(sys_class_net.iterdir())
    except OSError:
        return []
    return sorted(e.name for e in entries if (e / "wireless").is_dir())


def ask_power_save(iface: str) -> tuple[bool | None, str]:
    """``(True | False, "")`` from ``iw dev IFACE get power_save``, or ``(None, why not)``."""
    program = shutil.which("iw")
    if program is None:
        return None, "no iw here (sudo apt install iw)"
    try:
        done = subprocess.run(
            [program, "dev", iface, "get", "power_save"],
            capture_output=True,
            text=True,
            timeout=IW_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"iw gave no answer within {IW_TIMEOUT:g} s"
    except OSError as exc:
        return None, f"iw failed: {exc.strerror or exc}"
    # iw prints "Power save: on" or "Power save: off".
    answer = done.stdout.strip().rpartition(":")[2].strip().lower()
    if done.returncode == 0 and answer in ("on", "off"):
        return answer == "on", ""
    said = done.stderr.strip().splitlines() or [done.stdout.strip() or f"exit {done.returncode}"]
    return None, f"iw: {said[0]}"


def inspect_wifi(sys_class_net: Path | None = None) -> Check:
    """Power saving on a Wi-Fi interface delays packets by a beacon interval or more: a
    latency risk, reported as a warning, never a failure."""
    interfaces = wireless_interfaces(sys_class_net)
    if not interfaces:
        return skip("wifi", "no wireless interface")
    lines: list[str] = []
    saving: list[str] = []
    for iface in interfaces:
        on, why = ask_power_save(iface)
        if on is None:
            lines.append(f"{iface}: cannot tell whether power saving is on ({why})")
        elif on:
            saving.append(iface)
            lines.append(
                f"Wi-Fi power saving is on for {iface}: adds 100-300 ms of latency on a Pi"
            )
        else:
            lines.append(f"{iface}: power saving is off")
    if saving:
        return warn("wifi", "\n".join(lines), "power save", iface=saving[0])
    if all("cannot tell" in line for line in lines):
        return skip("wifi", "\n".join(lines))
    return ok("wifi", "\n".join(lines))


def inspect_groups(wanted: tuple[str, ...] = DEVICE_GROUPS) -> Check:
    """The user and the groups this process really has (not those /etc/group lists, which a
    session started before ``usermod -aG`` does not have yet); warns when one of ``wanted``
    exists on this system but the process is not in it."""
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    names: list[str] = []
    for gid in dict.fromkeys([os.getgid(), *os.getgroups()]):
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            names.append(str(gid))
    detail = f"running as {user} (uid {uid}), groups: {' '.join(names) or 'none'}"
    missing = [g for g in wanted if g not in names and _group_exists(g)]
    if uid == 0:
        return ok("user", f"{detail} (root: every device is open to it)")
    if missing:
        detail += f"; not in {' '.join(missing)}"
        s = "s" if len(missing) > 1 else ""
        # A warning: a desktop session reaches the devices through logind's ACLs instead.
        return warn(
            "user",
            detail,
            "group",
            s=s,
            groups=" and ".join(missing),
            groups_csv=",".join(missing),
            user=user,
        )
    return ok("user", detail)


def _group_exists(name: str) -> bool:
    """A group missing from the system (no gpio group off a Pi) is not one to join."""
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True
