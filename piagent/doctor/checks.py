"""The doctor's checks: their one list (:data:`CHECKS`), their order, limits and what each
leaves for the next.

``config``, ``user``, ``api key``, ``input device``, ``output device``, ``recording``,
``gpio``, ``clock``, ``wifi``, ``dns``, ``tls`` and ``agent``: each is declared once in
:data:`CHECKS` (name, time limit, what a timeout means, what it checks), from which the run
order, the report and the README's table follow.

No check can crash the command: one that raises is reported as failed, and each runs under
``asyncio.timeout``. Blocking work (``probes``: PortAudio, gpiozero, DNS, files, programs)
runs in a daemon thread of its own that is abandoned, not joined, when its time is up: a hung
driver or resolver cannot hold the command, as the default executor would (``asyncio.run``
joins it at exit). Checks run one after another; a later one uses what an earlier one found
(the key, the resolved addresses) and is skipped when its cause already failed.

Secrets: the API key is never printed. Every line of the report passes through
``logs.redact`` and has the key itself replaced; a signed URL is only shown through
``rest.redact_url``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import functools
import ipaddress
import logging
import os
import socket
import ssl
import stat
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import urlsplit

from piagent.config import (
    API_KEY_CREDENTIAL,
    API_KEY_ENV,
    Config,
    Secret,
    check_config,
    config_path,
    load_config,
    resolve_api_key,
)
from piagent.doctor import probes
from piagent.doctor.report import HINTS, Check, fail, ok, skip
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

__all__ = ["CHECKS", "CHECK_NAMES", "LIMITS", "CheckSpec", "markdown_table", "run_checks"]

logger = logging.getLogger(__name__)

HOST_TIMEOUT: Final = 3.0  # seconds per DNS lookup
STEP_TIMEOUT: Final = 4.0  # seconds for each step of the agent check (REST, upgrade, metadata)
EARLIEST_YEAR: Final = 2024  # a clock before this has never been set

_TLS_SCHEMES: Final = ("https", "wss")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One check, declared once: its name, the seconds it may take in all (an overrun fails
    it: "no answer within"), what such a timeout means, and what it checks (the README's
    table)."""

    name: str
    limit: float
    on_timeout: str
    checks: str


CHECKS: Final = (
    CheckSpec(
        "config",
        5.0,
        "the config file's file system does not answer",
        "the file is valid: a failure names the key",
    ),
    CheckSpec(
        "user",
        3.0,
        "the user database does not answer",
        "the user and groups the checks run as; warns when not in audio or gpio",
    ),
    CheckSpec(
        "api key",
        5.0,
        "the API key file's file system does not answer",
        "where the key comes from (a file, $ELEVENLABS_API_KEY or the systemd "
        "credential); a key file readable by others",
    ),
    CheckSpec(
        "input device",
        6.0,
        "the sound card does not answer: unplug and replug it, or reboot",
        "the microphone opens: `piagent devices` lists names and rates",
    ),
    CheckSpec(
        "output device",
        6.0,
        "the sound card does not answer: unplug and replug it, or reboot",
        "the speaker opens",
    ),
    CheckSpec(
        "recording",
        6.0,
        "the microphone delivers no audio: check alsamixer and the cable",
        "a second of capture: digital silence (a muted capture switch: `alsamixer`) or "
        "clipping (lower `audio.input.gain_db`) fail",
    ),
    CheckSpec(
        "gpio",
        5.0,
        "the GPIO library does not answer: is another program holding the pins?",
        "the button's pin can be claimed (the `gpio` group; `gpio.pin_factory: mock` off a Pi)",
    ),
    CheckSpec(
        "clock",
        4.0,
        "timedatectl does not answer: is systemd-timedated working?",
        "the time is synchronized (TLS and signed URLs need it)",
    ),
    CheckSpec(
        "wifi",
        4.0,
        "iw does not answer",
        "Wi-Fi power saving is off (on, it adds 100-300 ms of latency: a warning)",
    ),
    CheckSpec(
        "dns",
        8.0,
        "the DNS server does not answer: check the network and /etc/resolv.conf",
        "the API's host names resolve",
    ),
    CheckSpec(
        "tls",
        12.0,
        "the server does not answer: check the network and any firewall or proxy",
        "a verified TLS handshake with the API",
    ),
    CheckSpec(
        "agent",
        15.0,
        "the server does not answer: check the network, agent.server and agent.api_base",
        "a short real conversation: a rejected key, an unknown agent, a forbidden override",
    ),
)
CHECK_NAMES: Final = tuple(spec.name for spec in CHECKS)
# Seconds each check may take in all; a dict, so that a test can shorten one.
LIMITS: Final = {spec.name: spec.limit for spec in CHECKS}
_TIMEOUT_HINTS: Final = {spec.name: spec.on_timeout for spec in CHECKS}


def markdown_table() -> str:
    """The README's table of checks, derived from CHECKS (tests/test_doctor.py keeps the
    README in step)."""
    rows = [f"| {spec.name} | {spec.checks} |" for spec in CHECKS]
    return "\n".join(["| check | what it checks |", "|---|---|", *rows]) + "\n"


async def run_checks(path: Path | None = None) -> list[Check]:
    """Every check of CHECKS, in order, each within its LIMITS."""
    doctor = _Doctor(path)
    return [await doctor.run(name) for name in CHECK_NAMES]


# ----------------------------------------------------------------------------------------------
# Helpers


async def in_thread(work: Callable[[], T], what: str) -> T:
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
            "user": self.check_user,
            "api key": self.check_api_key,
            "input device": self.check_input_device,
            "output device": self.check_output_device,
            "recording": self.check_recording,
            "gpio": self.check_gpio,
            "clock": self.check_clock,
            "wifi": self.check_wifi,
            "dns": self.check_dns,
            "tls": self.check_tls,
            "agent": self.check_agent,
        }
        limit = LIMITS[name]
        try:
            if name != "config" and self.config is None:
                check = skip(name, "not checked: the config did not load")
            else:
                async with asyncio.timeout(limit):
                    check = await steps[name]()
        except TimeoutError:
            check = Check(name, False, f"no answer within {limit:g} s", _TIMEOUT_HINTS[name])
        except Exception as exc:
            logger.debug("doctor check %r raised", name, exc_info=True)
            check = fail(name, f"the check itself failed: {type(exc).__name__}: {exc}", "bug")
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
        return await in_thread(self._load_config, "config")

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
            return fail("config", f"{path}: invalid\n{lines}", hint, path=path)
        agent, audio = self._config().agent, self._config().audio
        return ok("config", f"{path}: valid (agent {agent.agent_id}, backend {audio.backend})")

    # -- 2. user ----------------------------------------------------------------------------

    async def check_user(self) -> Check:
        config = self._config()
        # Only the groups this config needs: no audio group for WAV files, no gpio group for a
        # mock pin factory or no button.
        wanted: tuple[str, ...] = ("audio",) if config.audio.backend == "pyaudio" else ()
        if config.gpio.button.pin is not None and config.gpio.pin_factory != "mock":
            wanted += ("gpio",)
        return await in_thread(lambda: probes.inspect_groups(wanted), "user")

    # -- 2. api key -------------------------------------------------------------------------

    async def check_api_key(self) -> Check:
        return await in_thread(self._inspect_api_key, "api-key")

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
            return ok("api key", "none: the agent is reached as a public agent (no signed URL)")
        try:
            with _logger_disabled("piagent.config"):  # it warns of a loose mode; we report it
                self.key = resolve_api_key(agent, env)
        except ConfigError as exc:
            self.key_usable = False
            where = "the file" if key_file is not None else f"${API_KEY_ENV}"
            detail = f"from {self.key_source}: {exc.message}"
            return fail("api key", detail, "key unusable", where=where)
        if self.key is None:
            # The unit's SetCredential= fallback: a blank credential when /etc/piagent/api_key
            # is absent, which resolve_api_key reads as "no key".
            return ok(
                "api key",
                f"none: {self.key_source} is empty (no /etc/piagent/api_key); the agent is "
                "reached as a public agent (no signed URL)",
            )
        detail = f"from {self.key_source} (the key itself is never shown)"
        if key_file is None:
            return ok("api key", detail)
        if in_env:
            detail += f"; ${API_KEY_ENV} is set too, but the file wins"
        mode = stat.S_IMODE(key_file.stat().st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            detail += f"; the file is open to group or others (mode {mode:04o})"
            return fail("api key", detail, "key mode", path=key_file)
        return ok("api key", f"{detail}; mode {mode:04o}")

    # -- 3. devices -------------------------------------------------------------------------

    async def check_input_device(self) -> Check:
        audio = self._config().audio
        probe = probes.probe_wav_input if audio.backend == "wav" else probes.open_microphone
        self.input_ok = False  # until it opens: a timeout leaves it so
        try:
            found = await in_thread(lambda: probe(audio.input), "input")
        except Exception as exc:
            return probes.device_failure("input device", audio.backend, audio.input.device, exc)
        self.input_ok = True
        return ok("input device", found)

    async def check_output_device(self) -> Check:
        audio = self._config().audio
        probe = probes.probe_wav_output if audio.backend == "wav" else probes.open_speaker
        try:
            found = await in_thread(lambda: probe(audio.output), "output")
        except Exception as exc:
            return probes.device_failure("output device", audio.backend, audio.output.device, exc)
        return ok("output device", found)

    # -- 4. recording -----------------------------------------------------------------------

    async def check_recording(self) -> Check:
        audio = self._config().audio
        if not self.input_ok:
            return skip("recording", "not tried: the input did not open (see input device)")
        record = probes.record_wav if audio.backend == "wav" else probes.record_device
        try:
            take = await in_thread(lambda: record(audio.input), "recording")
        except Exception as exc:
            return probes.device_failure("recording", audio.backend, audio.input.device, exc)
        return probes.judge(take, audio.backend, audio.input)

    # -- 5. gpio ----------------------------------------------------------------------------

    async def check_gpio(self) -> Check:
        gpio = self._config().gpio
        if gpio.button.pin is None:
            return skip("gpio", "no button configured (gpio.button.pin: null)")
        return await in_thread(lambda: probes.claim_button(gpio), "gpio")

    # -- 6. clock ---------------------------------------------------------------------------

    async def check_clock(self) -> Check:
        now = dt.datetime.now(dt.UTC)
        shown = now.strftime("%Y-%m-%d %H:%M UTC")
        answer, why = await in_thread(probes.ask_timedatectl, "timedatectl")
        if answer == "yes":
            return ok("clock", f"synchronized (timedatectl: NTPSynchronized=yes); {shown}")
        if answer == "no":
            detail = f"not synchronized (timedatectl: NTPSynchronized=no); the clock reads {shown}"
            return fail("clock", detail, "unsynchronized")
        if now.year < EARLIEST_YEAR:
            return fail("clock", f"the clock reads {shown}: never set ({why})", "unset clock")
        return skip("clock", f"synchronization unknown ({why}); the date, {shown}, is plausible")

    # -- 6b. wifi ---------------------------------------------------------------------------

    async def check_wifi(self) -> Check:
        return await in_thread(probes.inspect_wifi, "wifi")

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
                    infos = await in_thread(lookup, "dns")
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
            return fail("dns", "\n".join(lines), "dns")
        return ok("dns", "\n".join(lines))

    # -- 8. tls -----------------------------------------------------------------------------

    async def check_tls(self) -> Check:
        agent = self._config().agent
        urls = [u for u in (agent.server, agent.api_base) if urlsplit(u).scheme in _TLS_SCHEMES]
        if not urls:
            return skip("tls", f"{agent.server} and {agent.api_base} use no TLS (a simulator)")
        lines: list[str] = []
        failures: list[str] = []  # hint keys
        for host, port in dict.fromkeys(map(_host_port, urls)):
            if host not in self.addresses:
                lines.append(f"{host}:{port}: not tried (not resolved, see dns)")
                continue
            try:
                found = await probes.handshake(self.addresses[host][0], host, port)
            except ssl.SSLCertVerificationError as exc:
                failures.append("certificate")
                found = f"the certificate is not trusted ({exc.verify_message or exc.reason})"
            except ssl.SSLError as exc:
                failures.append("tls")
                found = f"TLS handshake failed ({exc.reason or exc})"
            except TimeoutError:
                failures.append("tls")
                found = f"no handshake within {probes.HANDSHAKE_TIMEOUT:g} s"
            except OSError as exc:
                failures.append("tls")
                found = f"cannot connect ({exc.strerror or exc})"
            lines.append(f"{host}:{port}: {found}")
        if failures:
            return fail("tls", "\n".join(lines), min(failures))  # "certificate" first
        tried = any(host in self.addresses for host, _ in map(_host_port, urls))
        return Check("tls", True if tried else None, "\n".join(lines))

    # -- 9. agent ---------------------------------------------------------------------------

    async def check_agent(self) -> Check:
        agent = self._config().agent
        if not self.key_usable:
            return skip("agent", "not tried: the API key is not usable (see api key)")
        needed = [agent.server, agent.api_base] if self.key is not None else [agent.server]
        for host in (urlsplit(url).hostname or "" for url in needed):
            if host in self.unresolved:
                return skip("agent", f"not tried: {host} does not resolve (see dns)")
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
                return fail("agent", detail, "key rejected", source=self.key_source)
            if exc.status == 404:
                return fail("agent", f"unknown agent {agent.agent_id!r}: {exc}", "agent id")
            if exc.status is None:
                detail = f"cannot get a signed URL from {agent.api_base}: {exc}"
                return fail("agent", detail, "api base")
            return fail("agent", f"signed URL refused: {exc}", "service")
        return await self._converse(url, "through a signed URL")

    async def _converse(self, url: str, how: str) -> Check:
        """Open the socket, send a bare initiation, wait for the metadata, close with 1000."""
        from websockets.exceptions import ConnectionClosed

        from piagent.transport import ConnectFailed, LinkSettings, open_plain_socket

        shown = redact_url(url)
        loop = asyncio.get_running_loop()
        started = loop.time()
        settings = LinkSettings(connect_timeout=STEP_TIMEOUT, stall_timeout=4 * STEP_TIMEOUT)
        try:
            socket_ = await open_plain_socket(url, settings)
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
            return fail("agent", f"{detail} within {STEP_TIMEOUT:g} s", "not a server")
        except RemoteProtocolError as exc:
            detail = f"{shown}: the server sent a malformed message ({exc})"
            return fail("agent", detail, "not a server")
        finally:
            await socket_.close(1000, "piagent doctor")
        elapsed = loop.time() - started
        return ok(
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
                return fail(
                    "agent", f"the agent is private and needs an API key: {said}", "key needed"
                )
            case EndReason.AUTH_REJECTED:
                detail = f"the API key was rejected: {said}"
                return fail("agent", detail, "key rejected", source=self.key_source)
            case EndReason.AGENT_NOT_FOUND:
                detail = f"unknown agent {self._config().agent.agent_id!r}: {said}"
                return fail("agent", detail, "agent id")
            case EndReason.CONNECT_FAILED:
                return fail("agent", f"cannot connect to {shown}: {ending.detail}", "unreachable")
        advice = ending.reason.advice or HINTS["service"]
        return Check("agent", False, said, advice)
