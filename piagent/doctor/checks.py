"""``piagent doctor``: checks an installation end to end and says what to fix.

Owns the checks, their order and time limits, and the report: ``config``, ``api key``,
``input device``, ``output device``, ``recording``, ``gpio``, ``clock``, ``dns``, ``tls`` and
``agent``, each a :class:`Check` (ok, failed with a hint saying what to do, or skipped), printed
as a readable list or as one JSON object (``--json``); :func:`run_doctor` returns the exit
status (0: nothing failed; 1: a check failed; 78: the config is invalid).

No check can crash the command: one that raises is reported as failed, and each runs under
``asyncio.timeout``. Blocking work (PortAudio, gpiozero, DNS, files, ``timedatectl``) runs in
a daemon thread of its own that is abandoned, not joined, when its time is up: a hung driver
or resolver cannot hold the command, as the default executor would (``asyncio.run`` joins it
at exit). Checks run one after another; a later one uses what an earlier one found (the key,
the resolved addresses) and is skipped when its cause already failed.

Secrets: the API key is never printed. Every line of the report passes through
``logs.redact`` and has the key itself replaced; a signed URL is only shown through
``rest.redact_url``.

PyAudio (``audio.devices``) and gpiozero (``gpio``) are imported inside the checks that need
them, so a machine lacking one still gets the rest of the report. No I/O at import.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import functools
import ipaddress
import itertools
import json
import logging
import math
import os
import shutil
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TextIO, TypeVar
from urllib.parse import urlsplit

import numpy as np

from piagent.audio.codecs import Samples
from piagent.audio.levels import peak_dbfs, rms_dbfs
from piagent.config import (
    API_KEY_CREDENTIAL,
    API_KEY_ENV,
    DEFAULT_CONFIG_PATH,
    AudioInputConfig,
    AudioOutputConfig,
    Config,
    GpioConfig,
    Secret,
    check_config,
    config_path,
    load_config,
    resolve_api_key,
)
from piagent.errors import ConfigError, ConfigProblems, RemoteProtocolError
from piagent.logs import REDACTED, redact
from piagent.protocol.messages import (
    ClientErrorEvent,
    ConversationInitiationClientData,
    ConversationInitiationMetadata,
    ErrorEvent,
    FlatErrorEvent,
    encode,
    parse_server,
)
from piagent.protocol.session import Ending, EndReason, ServerErrorEvent, classify_ending
from piagent.rest import RestError, get_signed_url, redact_url
from piagent.transport import public_url

__all__ = ["CHECK_NAMES", "Check", "format_json", "format_report", "run_checks", "run_doctor"]

logger = logging.getLogger(__name__)

EX_OK: Final = 0
EX_FAIL: Final = 1
EX_CONFIG: Final = 78

CHECK_NAMES: Final = (
    "config",
    "api key",
    "input device",
    "output device",
    "recording",
    "gpio",
    "clock",
    "dns",
    "tls",
    "agent",
)
# Seconds each check may take in all; a check that overruns fails ("no answer within").
LIMITS: Final = {
    "config": 5.0,
    "api key": 5.0,
    "input device": 6.0,
    "output device": 6.0,
    "recording": 6.0,
    "gpio": 5.0,
    "clock": 4.0,
    "dns": 8.0,
    "tls": 12.0,
    "agent": 15.0,
}
RECORD_SECONDS: Final = 1.0  # captured from a sound card
WAV_RECORD_MAX_SECONDS: Final = 30.0  # of a WAV microphone's file, analysed whole up to this
CLIPPED_MAX: Final = 0.001  # fraction of full-scale samples above which the recording fails
HOST_TIMEOUT: Final = 3.0  # seconds per DNS lookup
HANDSHAKE_TIMEOUT: Final = 5.0  # seconds per TLS handshake
STEP_TIMEOUT: Final = 4.0  # seconds for each step of the agent check (REST, upgrade, metadata)
TIMEDATECTL_TIMEOUT: Final = 2.0
WAV_OUTPUT_RATE: Final = 48000  # what the service uses when audio.output.rate is not set
EARLIEST_YEAR: Final = 2024  # a clock before this has never been set

_FULL_SCALE: Final = 32767  # |sample| >= this counts as clipped (as the microphone counts)
_TLS_SCHEMES: Final = ("https", "wss")

T = TypeVar("T")
Status = Literal["ok", "fail", "skip"]


@dataclass(frozen=True, slots=True)
class Check:
    """One check's result: ``ok`` True, False, or None (skipped: not applicable or not tried).

    ``detail`` says what was found (it may span lines); ``hint`` what to do about a failure."""

    name: str
    ok: bool | None
    detail: str
    hint: str = ""

    @property
    def status(self) -> Status:
        """``ok``, ``fail`` or ``skip``, as the JSON report spells it."""
        if self.ok is None:
            return "skip"
        return "ok" if self.ok else "fail"


# ----------------------------------------------------------------------------------------------
# Entry points


def run_doctor(config_path: Path | None, *, as_json: bool, out: TextIO) -> int:
    """``piagent doctor [--config PATH] [--json]``: run every check, print the report to
    ``out`` and return the exit status: 0 when no check failed, 1 when one did, 78 when the
    config itself is invalid."""
    checks = asyncio.run(run_checks(config_path))
    out.write(format_json(checks) if as_json else format_report(checks))
    out.flush()
    return exit_status(checks)


async def run_checks(path: Path | None = None) -> list[Check]:
    """Every check of CHECK_NAMES, in order, each within its LIMITS."""
    doctor = _Doctor(path)
    return [await doctor.run(name) for name in CHECK_NAMES]


def exit_status(checks: Sequence[Check]) -> int:
    """78 when the config check failed, 1 when another did, 0 otherwise."""
    if any(c.name == "config" and c.ok is False for c in checks):
        return EX_CONFIG
    return EX_FAIL if any(c.ok is False for c in checks) else EX_OK


_LABELS: Final[dict[Status, str]] = {"ok": "ok", "fail": "FAIL", "skip": "skip"}
_NAME_WIDTH: Final = max(map(len, CHECK_NAMES))


def format_report(checks: Sequence[Check]) -> str:
    """The readable list: status, name, detail, and for a failure the hint after ``->``."""
    indent = " " * (4 + 2 + _NAME_WIDTH + 2)
    lines = []
    for check in checks:
        first, *rest = check.detail.splitlines() or [""]
        lines.append(f"{_LABELS[check.status]:<4}  {check.name:<{_NAME_WIDTH}}  {first}".rstrip())
        lines.extend(indent + line for line in rest)
        if check.ok is False and check.hint:
            lines.append(f"{indent}-> {check.hint}")
    failed = sum(c.ok is False for c in checks)
    skipped = sum(c.ok is None for c in checks)
    passed = len(checks) - failed - skipped
    lines.append("")
    summary = f"{passed} ok, {skipped} skipped, {failed} failed"
    lines.append(f"{summary}: see the hints above" if failed else f"{summary}: all good")
    return "\n".join(lines) + "\n"


def format_json(checks: Sequence[Check]) -> str:
    """One JSON object: ``{"ok": bool, "checks": [{name, status, detail, hint}, ...]}``."""
    document = {
        "ok": not any(c.ok is False for c in checks),
        "checks": [
            {"name": c.name, "status": c.status, "detail": c.detail, "hint": c.hint} for c in checks
        ],
    }
    return json.dumps(document, indent=2) + "\n"


# ----------------------------------------------------------------------------------------------
# Helpers


async def _in_thread(work: Callable[[], T], what: str) -> T:
    """``work()`` in a daemon thread of its own; cancelling the await abandons the thread."""
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        # RUNNING from here on, so cancelling the await leaves this future to be settled.
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(work())
        except Exception as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=f"piagent-doctor-{what}", daemon=True).start()
    return await asyncio.wrap_future(future)


@contextlib.contextmanager
def _logger_disabled(name: str) -> Iterator[None]:
    """Mute one logger for the duration (the doctor reports what it would warn about)."""
    target = logging.getLogger(name)
    previous, target.disabled = target.disabled, True
    try:
        yield
    finally:
        target.disabled = previous


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    default = 443 if parts.scheme in _TLS_SCHEMES else 80
    return parts.hostname or "", parts.port or default


@dataclass(frozen=True, slots=True)
class _Take:
    """A test recording: where from, and its samples (int16, after the software gain)."""

    source: str
    rate: int
    samples: Samples


# ----------------------------------------------------------------------------------------------
# The checks


_HINTS: Final = {
    "config": "fix what is named above, then check again with: piagent check-config {path}",
    "no config": "pass --config PATH or set $PIAGENT_CONFIG (install.sh writes "
    f"{DEFAULT_CONFIG_PATH})",
    "key unusable": "put the API key alone into {where}, readable by the user piagent runs as",
    "key mode": "chmod 600 {path} (and chown it to the user piagent runs as)",
    "key rejected": "check the key in {source}: create one in the ElevenLabs dashboard "
    "(Developers, API keys) with access to Agents, and store it alone",
    "key needed": f"store the agent's API key in agent.api_key_file (or ${API_KEY_ENV})",
    "agent id": "check agent.agent_id against the agent's ID in the ElevenLabs dashboard",
    "unreachable": "is the server running and reachable? check agent.server, the network and "
    "any firewall",
    "not a server": "is agent.server an ElevenLabs agents server (or piagent sim)?",
    "api base": "check the network and agent.api_base",
    "service": "the service may be having trouble: try again in a few minutes",
    "device": "set {key}.device (now {device!r}) to a name `piagent devices` lists (a USB card "
    "is often plughw:CARD=Device,DEV=0); check the cable, and that no other program "
    "(PulseAudio, PipeWire, another piagent) holds the device",
    "pyaudio": "reinstall piagent (install.sh installs portaudio19-dev and PyAudio), or use "
    "audio.backend: wav",
    "wav": "set {key}.file to a usable 16-bit mono WAV path",
    "silent mic": "the microphone is muted or unplugged: run alsamixer (F6 picks the card, F4 "
    "shows capture), switch capture on and raise its level; try it with: arecord -f S16_LE -d 3 "
    "/tmp/test.wav",
    "silent wav": "{path} holds only silence: use a recording with sound in it",
    "clipping": "lower audio.input.gain_db (now {gain:g} dB) or the capture level in alsamixer",
    "gpio": "add the user piagent runs as to the gpio group (sudo usermod -aG gpio piagent, then "
    "restart it); make sure no other program uses BCM {pin}; off a Raspberry Pi, set "
    "gpio.pin_factory: mock",
    "unsynchronized": "TLS and signed URLs need the right time: check the network, then "
    "`timedatectl timesync-status`; turn syncing on with: sudo timedatectl set-ntp true",
    "unset clock": "a Pi has no battery clock: connect it to the network so that NTP sets the "
    'time, or set it by hand: sudo date -s "YYYY-MM-DD HH:MM"',
    "dns": "check the network connection and the DNS server (/etc/resolv.conf), and the host "
    "names in agent.server and agent.api_base",
    "certificate": "check the clock (see clock) and the CA certificates (sudo apt install "
    "ca-certificates), and whether a proxy or captive portal intercepts HTTPS",
    "tls": "check that the network lets outgoing TLS connections through (firewall, proxy)",
    "bug": "this is a bug in piagent doctor: please report it with this output",
}
_TIMEOUT_HINTS: Final = {
    "config": "the config file's file system does not answer",
    "api key": "the API key file's file system does not answer",
    "input device": "the sound card does not answer: unplug and replug it, or reboot",
    "output device": "the sound card does not answer: unplug and replug it, or reboot",
    "recording": "the microphone delivers no audio: check alsamixer and the cable",
    "gpio": "the GPIO library does not answer: is another program holding the pins?",
    "clock": "timedatectl does not answer: is systemd-timedated working?",
    "dns": "the DNS server does not answer: check the network and /etc/resolv.conf",
    "tls": "the server does not answer: check the network and any firewall or proxy",
    "agent": "the server does not answer: check the network, agent.server and agent.api_base",
}


def _ok(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def _skip(name: str, detail: str) -> Check:
    return Check(name, None, detail)


def _fail(name: str, detail: str, hint: str, **fill: object) -> Check:
    return Check(name, False, detail, _HINTS[hint].format(**fill))


@dataclass(slots=True)
class _Doctor:
    """The checks, and what each leaves for the next (the config, the key, the addresses)."""

    given_path: Path | None
    path: Path = field(init=False)
    config: Config | None = None
    key: Secret | None = None
    key_source: str = ""
    key_usable: bool = True
    input_ok: bool = True
    addresses: dict[str, list[str]] = field(default_factory=dict)  # host -> resolved addresses
    unresolved: dict[str, str] = field(default_factory=dict)  # host -> why not

    def __post_init__(self) -> None:
        self.path = config_path(self.given_path)

    async def run(self, name: str) -> Check:
        """Check ``name`` within its limit; never raises (but for cancellation)."""
        steps: dict[str, Callable[[], Awaitable[Check]]] = {
            "config": self.check_config,
            "api key": self.check_api_key,
            "input device": self.check_input_device,
            "output device": self.check_output_device,
            "recording": self.check_recording,
            "gpio": self.check_gpio,
            "clock": self.check_clock,
            "dns": self.check_dns,
            "tls": self.check_tls,
            "agent": self.check_agent,
        }
        limit = LIMITS[name]
        try:
            if name != "config" and self.config is None:
                check = _skip(name, "not checked: the config did not load")
            else:
                async with asyncio.timeout(limit):
                    check = await steps[name]()
        except TimeoutError:
            check = Check(name, False, f"no answer within {limit:g} s", _TIMEOUT_HINTS[name])
        except Exception as exc:
            logger.debug("doctor check %r raised", name, exc_info=True)
            check = _fail(name, f"the check itself failed: {type(exc).__name__}: {exc}", "bug")
        return self._scrub(dataclasses.replace(check, name=name))

    def _scrub(self, check: Check) -> Check:
        def clean(text: str) -> str:
            if self.key is not None:
                text = text.replace(self.key.reveal(), REDACTED)
            return redact(text)

        return dataclasses.replace(check, detail=clean(check.detail), hint=clean(check.hint))

    def _config(self) -> Config:
        assert self.config is not None  # run() skips every check but the first without one
        return self.config

    # -- 1. config --------------------------------------------------------------------------

    async def check_config(self) -> Check:
        return await _in_thread(self._load_config, "config")

    def _load_config(self) -> Check:
        path = self.path
        try:
            with _logger_disabled("piagent.config"):  # the api key check reports a loose mode
                self.config = check_config(path)
        except ConfigError as exc:
            problems = exc.problems if isinstance(exc, ConfigProblems) else (exc,)
            # A problem with the API key file only: the other checks can still run.
            with contextlib.suppress(ConfigError):
                self.config = load_config(path)
            lines = "\n".join(str(problem) for problem in problems)
            hint = "config" if path.exists() else "no config"
            return _fail("config", f"{path}: invalid\n{lines}", hint, path=path)
        agent, audio = self._config().agent, self._config().audio
        return _ok("config", f"{path}: valid (agent {agent.agent_id}, backend {audio.backend})")

    # -- 2. api key -------------------------------------------------------------------------

    async def check_api_key(self) -> Check:
        return await _in_thread(self._inspect_api_key, "api-key")

    def _inspect_api_key(self) -> Check:
        # Where resolve_api_key will find the key, in its own order.
        agent, env = self._config().agent, os.environ
        credentials = env.get("CREDENTIALS_DIRECTORY")
        in_env = bool(env.get(API_KEY_ENV, "").strip())
        if (key_file := agent.api_key_file) is not None:
            self.key_source = f"the file {key_file} (agent.api_key_file)"
        elif in_env:
            self.key_source = f"the environment (${API_KEY_ENV})"
        elif credentials and Path(credentials, API_KEY_CREDENTIAL).exists():
            self.key_source = f"the systemd credential {API_KEY_CREDENTIAL}"
        else:
            return _ok("api key", "none: the agent is reached as a public agent (no signed URL)")
        try:
            with _logger_disabled("piagent.config"):  # it warns of a loose mode; we report it
                self.key = resolve_api_key(agent, env)
        except ConfigError as exc:
            self.key_usable = False
            where = "the file" if key_file is not None else f"${API_KEY_ENV}"
            detail = f"from {self.key_source}: {exc.message}"
            return _fail("api key", detail, "key unusable", where=where)
        detail = f"from {self.key_source} (the key itself is never shown)"
        if key_file is None:
            return _ok("api key", detail)
        if in_env:
            detail += f"; ${API_KEY_ENV} is set too, but the file wins"
        mode = stat.S_IMODE(key_file.stat().st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            detail += f"; the file is open to group or others (mode {mode:04o})"
            return _fail("api key", detail, "key mode", path=key_file)
        return _ok("api key", f"{detail}; mode {mode:04o}")

    # -- 3. devices -------------------------------------------------------------------------

    async def check_input_device(self) -> Check:
        audio = self._config().audio
        probe = _probe_wav_input if audio.backend == "wav" else _open_microphone
        self.input_ok = False  # until it opens: a timeout leaves it so
        try:
            found = await _in_thread(lambda: probe(audio.input), "input")
        except Exception as exc:
            return _device_failure("input device", audio.backend, audio.input.device, exc)
        self.input_ok = True
        return _ok("input device", found)

    async def check_output_device(self) -> Check:
        audio = self._config().audio
        probe = _probe_wav_output if audio.backend == "wav" else _open_speaker
        try:
            found = await _in_thread(lambda: probe(audio.output), "output")
        except Exception as exc:
            return _device_failure("output device", audio.backend, audio.output.device, exc)
        return _ok("output device", found)

    # -- 4. recording -----------------------------------------------------------------------

    async def check_recording(self) -> Check:
        audio = self._config().audio
        if not self.input_ok:
            return _skip("recording", "not tried: the input did not open (see input device)")
        record = _record_wav if audio.backend == "wav" else _record_device
        try:
            take = await _in_thread(lambda: record(audio.input), "recording")
        except Exception as exc:
            return _device_failure("recording", audio.backend, audio.input.device, exc)
        return _judge(take, audio.backend, audio.input)

    # -- 5. gpio ----------------------------------------------------------------------------

    async def check_gpio(self) -> Check:
        gpio = self._config().gpio
        if gpio.button.pin is None:
            return _skip("gpio", "no button configured (gpio.button.pin: null)")
        return await _in_thread(lambda: _claim_button(gpio), "gpio")

    # -- 6. clock ---------------------------------------------------------------------------

    async def check_clock(self) -> Check:
        now = dt.datetime.now(dt.UTC)
        shown = now.strftime("%Y-%m-%d %H:%M UTC")
        answer, why = await _in_thread(_ask_timedatectl, "timedatectl")
        if answer == "yes":
            return _ok("clock", f"synchronized (timedatectl: NTPSynchronized=yes); {shown}")
        if answer == "no":
            detail = f"not synchronized (timedatectl: NTPSynchronized=no); the clock reads {shown}"
            return _fail("clock", detail, "unsynchronized")
        if now.year < EARLIEST_YEAR:
            return _fail("clock", f"the clock reads {shown}: never set ({why})", "unset clock")
        return _skip("clock", f"synchronization unknown ({why}); the date, {shown}, is plausible")

    # -- 7. dns -----------------------------------------------------------------------------

    async def check_dns(self) -> Check:
        agent, lines = self._config().agent, []
        for host, port in dict.fromkeys(map(_host_port, (agent.server, agent.api_base))):
            if _is_address(host):
                self.addresses[host] = [host]
                lines.append(f"{host}: an address, nothing to resolve")
                continue
            # Not loop.getaddrinfo: asyncio.run joins its executor's threads at exit, so a
            # resolver that hangs would hold the command past every limit.
            lookup = functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
            try:
                async with asyncio.timeout(HOST_TIMEOUT):
                    infos = await _in_thread(lookup, "dns")
            except TimeoutError:
                self.unresolved[host] = f"no answer within {HOST_TIMEOUT:g} s"
            except OSError as exc:  # socket.gaierror
                self.unresolved[host] = exc.strerror or str(exc)
            else:
                found = list(dict.fromkeys(str(info[4][0]) for info in infos))
                self.addresses[host] = found
                more = f" and {len(found) - 3} more" if len(found) > 3 else ""
                lines.append(f"{host}: {', '.join(found[:3])}{more}")
                continue
            lines.append(f"{host}: cannot resolve ({self.unresolved[host]})")
        if self.unresolved:
            return _fail("dns", "\n".join(lines), "dns")
        return _ok("dns", "\n".join(lines))

    # -- 8. tls -----------------------------------------------------------------------------

    async def check_tls(self) -> Check:
        agent = self._config().agent
        urls = [u for u in (agent.server, agent.api_base) if urlsplit(u).scheme in _TLS_SCHEMES]
        if not urls:
            return _skip("tls", f"{agent.server} and {agent.api_base} use no TLS (a simulator)")
        lines: list[str] = []
        failures: list[str] = []  # hint keys
        for host, port in dict.fromkeys(map(_host_port, urls)):
            if host not in self.addresses:
                lines.append(f"{host}:{port}: not tried (not resolved, see dns)")
                continue
            try:
                found = await _handshake(self.addresses[host][0], host, port)
            except ssl.SSLCertVerificationError as exc:
                failures.append("certificate")
                found = f"the certificate is not trusted ({exc.verify_message or exc.reason})"
            except ssl.SSLError as exc:
                failures.append("tls")
                found = f"TLS handshake failed ({exc.reason or exc})"
            except TimeoutError:
                failures.append("tls")
                found = f"no handshake within {HANDSHAKE_TIMEOUT:g} s"
            except OSError as exc:
                failures.append("tls")
                found = f"cannot connect ({exc.strerror or exc})"
            lines.append(f"{host}:{port}: {found}")
        if failures:
            return _fail("tls", "\n".join(lines), min(failures))  # "certificate" first
        tried = any(host in self.addresses for host, _ in map(_host_port, urls))
        return Check("tls", True if tried else None, "\n".join(lines))

    # -- 9. agent ---------------------------------------------------------------------------

    async def check_agent(self) -> Check:
        agent = self._config().agent
        if not self.key_usable:
            return _skip("agent", "not tried: the API key is not usable (see api key)")
        needed = [agent.server, agent.api_base] if self.key is not None else [agent.server]
        for host in (urlsplit(url).hostname or "" for url in needed):
            if host in self.unresolved:
                return _skip("agent", f"not tried: {host} does not resolve (see dns)")
        if self.key is None:
            return await self._converse(
                public_url(agent.server, agent.agent_id), "as a public agent"
            )
        try:
            url = await get_signed_url(
                agent.api_base, agent.agent_id, self.key.reveal(), request_timeout=STEP_TIMEOUT
            )
        except RestError as exc:
            if exc.status in (401, 403):
                detail = f"the API key was rejected: {exc}"
                return _fail("agent", detail, "key rejected", source=self.key_source)
            if exc.status == 404:
                return _fail("agent", f"unknown agent {agent.agent_id!r}: {exc}", "agent id")
            if exc.status is None:
                detail = f"cannot get a signed URL from {agent.api_base}: {exc}"
                return _fail("agent", detail, "api base")
            return _fail("agent", f"signed URL refused: {exc}", "service")
        return await self._converse(url, "through a signed URL")

    async def _converse(self, url: str, how: str) -> Check:
        """Open the socket, send a bare initiation, wait for the metadata, close with 1000."""
        from websockets.exceptions import ConnectionClosed

        from piagent.transport import ConnectFailed, LinkSettings, open_socket

        shown = redact_url(url)
        loop = asyncio.get_running_loop()
        started = loop.time()
        settings = LinkSettings(connect_timeout=STEP_TIMEOUT, stall_timeout=4 * STEP_TIMEOUT)
        try:
            socket_ = await open_socket(url, settings)
        except ConnectFailed as exc:
            ending = exc.ending
            # asyncio words a refused connection "Connect call failed (address)"; the errno it
            # keeps says what happened ("Connection refused", "No route to host").
            cause = exc.__context__
            if isinstance(cause, OSError) and cause.errno and not isinstance(cause, ssl.SSLError):
                ending = dataclasses.replace(ending, detail=os.strerror(cause.errno))
            return self._ending_failure(ending, shown)
        error: ServerErrorEvent | None = None
        metadata: ConversationInitiationMetadata | None = None
        try:
            await socket_.send(encode(ConversationInitiationClientData()))
            async with asyncio.timeout(STEP_TIMEOUT):
                while metadata is None:
                    match parse_server(await socket_.recv()):
                        case ConversationInitiationMetadata() as metadata:
                            pass
                        case ErrorEvent() | ClientErrorEvent() | FlatErrorEvent() as error:
                            pass  # the close that follows says more with it
                        case _:
                            pass  # pings or audio before the metadata: not needed here
        except ConnectionClosed as exc:
            code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")
            ending = classify_ending(code, reason, error=error, before_metadata=True)
            return self._ending_failure(ending, shown)
        except TimeoutError:
            detail = f"{shown}: connected, but no conversation_initiation_metadata came"
            return _fail("agent", f"{detail} within {STEP_TIMEOUT:g} s", "not a server")
        except RemoteProtocolError as exc:
            detail = f"{shown}: the server sent a malformed message ({exc})"
            return _fail("agent", detail, "not a server")
        finally:
            await socket_.close(1000, "piagent doctor")
        elapsed = loop.time() - started
        return _ok(
            "agent",
            f"{self._config().agent.agent_id} answered {how} at {shown}: conversation "
            f"{metadata.conversation_id}, user audio {metadata.user_input_audio_format.value}, "
            f"agent audio {metadata.agent_output_audio_format.value}. This check opened a real "
            f"conversation for {elapsed:.1f} s, which counts toward the agent's usage",
        )

    def _ending_failure(self, ending: Ending, shown: str) -> Check:
        said = f"{shown}: {ending.describe()}"
        match ending.reason:
            case EndReason.AUTH_REJECTED if self.key is None:
                return _fail(
                    "agent", f"the agent is private and needs an API key: {said}", "key needed"
                )
            case EndReason.AUTH_REJECTED:
                detail = f"the API key was rejected: {said}"
                return _fail("agent", detail, "key rejected", source=self.key_source)
            case EndReason.AGENT_NOT_FOUND:
                detail = f"unknown agent {self._config().agent.agent_id!r}: {said}"
                return _fail("agent", detail, "agent id")
            case EndReason.CONNECT_FAILED:
                return _fail("agent", f"cannot connect to {shown}: {ending.detail}", "unreachable")
        advice = ending.reason.advice or _HINTS["service"]
        return Check("agent", False, said, advice)


# ----------------------------------------------------------------------------------------------
# Devices and recordings (each runs in a thread of its own)


def _device_failure(name: str, backend: str, device: str | int, exc: Exception) -> Check:
    if isinstance(exc, ImportError):
        return _fail(name, f"PyAudio cannot be loaded ({exc})", "pyaudio")
    key = "audio.output" if name == "output device" else "audio.input"
    if backend == "wav":
        return _fail(name, str(exc), "wav", key=key)
    return _fail(name, str(exc) or type(exc).__name__, "device", key=key, device=device)


def _open_microphone(config: AudioInputConfig) -> str:
    from piagent.audio.devices import Microphone

    async def probe() -> str:  # Microphone.open must run on an event loop's thread
        mic = Microphone(config)
        mic.open()
        try:
            return f"{mic.name!r} opens at {mic.rate} Hz (mono, 16-bit)"
        finally:
            mic.close()

    return asyncio.run(probe())


def _open_speaker(config: AudioOutputConfig) -> str:
    from piagent.audio.devices import Speaker

    speaker = Speaker(config)
    speaker.open()
    try:
        return f"{speaker.name!r} opens at {speaker.rate} Hz (mono, 16-bit)"
    finally:
        speaker.close()


def _probe_wav_input(config: AudioInputConfig) -> str:
    from piagent.audio.wavio import read_wav

    if config.file is None:
        raise ValueError("audio.input.file is not set")
    samples, rate = read_wav(config.file)
    seconds = len(samples) / rate
    return f"WAV file {config.file}: {rate} Hz, 16-bit mono, {seconds:.1f} s"


def _probe_wav_output(config: AudioOutputConfig) -> str:
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


def _record_device(config: AudioInputConfig) -> _Take:
    from piagent.audio.devices import Microphone

    async def capture() -> _Take:
        mic = Microphone(config)
        mic.open()
        try:
            count = math.ceil(RECORD_SECONDS * 1000 / config.chunk_ms)
            async with asyncio.timeout(RECORD_SECONDS + 2):
                frames = [await mic.read() for _ in range(count)]
        finally:
            mic.close()
        return _Take(f"{mic.name!r} at {mic.rate} Hz", mic.rate, np.concatenate(frames))

    return asyncio.run(capture())


def _record_wav(config: AudioInputConfig) -> _Take:
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

    return _Take(f"WAV file {config.file}", mic.rate, np.concatenate(asyncio.run(capture())))


def _judge(take: _Take, backend: str, config: AudioInputConfig) -> Check:
    samples = take.samples
    said = f"{samples.size / take.rate:.1f} s from {take.source}"
    if not np.any(samples):
        hint = "silent wav" if backend == "wav" else "silent mic"
        return _fail(
            "recording", f"{said}: digital silence (every sample is 0)", hint, path=config.file
        )
    clipped = int(np.count_nonzero(np.abs(samples.astype(np.int32)) >= _FULL_SCALE))
    detail = (
        f"{said}: peak {peak_dbfs(samples):.1f} dBFS, RMS {rms_dbfs(samples):.1f} dBFS, "
        f"{clipped} clipped samples ({100 * clipped / samples.size:.2f} %)"
    )
    if clipped > CLIPPED_MAX * samples.size:
        detail += ": too loud, the audio is distorted"
        return _fail("recording", detail, "clipping", gain=config.gain_db)
    return _ok("recording", detail)


# ----------------------------------------------------------------------------------------------
# GPIO, clock, TLS (each blocking part runs in a thread of its own)


def _claim_button(config: GpioConfig) -> Check:
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
            return _fail("gpio", detail + (f" ({tried})" if tried else ""), "gpio", pin=pin)
    state = "reads released"
    if pressed:
        state = "reads pressed: if nobody is pressing it, check gpio.button.pull_up and the wiring"
    return _ok("gpio", f"button on BCM {pin} ({pull}) claimed and released with {used}; {state}")


def _ask_timedatectl() -> tuple[str | None, str]:
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


async def _handshake(address: str, host: str, port: int) -> str:
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
