"""The daemon (``piagent run``): wires config, audio, GPIO, the agent client and the control
socket under one ``asyncio.TaskGroup``, and speaks to systemd.

Owns: building the parts from a ``Config``; the tasks (microphone pump, device supervisors,
speaker, agent client, notice watcher, LEDs, control socket, watchdog, reload) and their one
supervisor each, which logs a crash with its traceback and restarts the task; signals (SIGTERM
and SIGINT stop: ``STOPPING=1``, the conversation closed with 1000, devices and pins released,
exit 0; SIGHUP re-reads the config: ``RELOADING=1`` then ``READY=1``, a live conversation
survives); sd_notify (``READY=1`` once the audio devices are open, never waiting for the
network; ``STATUS=`` the state in words; ``WATCHDOG=1`` only while the event loop turns and the
microphone pump delivers frames); and the ``ControlHandler`` and ``ToolHost`` the control socket
and the client tools act through.

Cancellation: every task here may be cancelled at any await; shutting down is cancelling the
group.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gpiozero.exc import GPIOZeroError

from piagent.audio.devices import DeviceError, Microphone, Speaker
from piagent.audio.earcons import EarconKind
from piagent.audio.filtercache import FilterCache, cache_dir, prepare_filters, rate_pairs
from piagent.audio.playback import Playback, VolumeStore
from piagent.audio.resample import use_coefficient_store
from piagent.audio.wavio import WavMicrophone, WavSpeaker
from piagent.client import (
    AgentClient,
    ClientState,
    Notice,
    endpoint_from_config,
    initiation_from_config,
    options_from_config,
)
from piagent.config import Config, load_config, resolve_api_key
from piagent.control import ControlServer, FeedbackScore
from piagent.errors import ConfigError, PiagentError
from piagent.gpio import PushToTalk, StatusLeds, follow, make_pin_factory, needs_pwm
from piagent.keyboard import KeyboardPushToTalk
from piagent.logs import register_secret
from piagent.systemd import Notifier, watchdog_loop
from piagent.tools import CommandTool, LedRequest, PythonTool, ToolRegistry

logger = logging.getLogger(__name__)

# Seconds a microphone that reports itself healthy may go without a frame reaching the loop
# before the watchdog is withheld (frames come every 20 ms).
MIC_SILENT_LIMIT = 3.0
# Seconds a microphone may be unhealthy before the LEDs and the status line say it is missing.
MIC_MISSING_GRACE = 2.0
NOTICE_BACKLOG = 256


class InputDevice(Protocol):
    """What the daemon needs of a microphone (PyAudio or WAV)."""

    @property
    def rate(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def healthy(self) -> bool: ...
    def frames(self) -> Any: ...


@dataclass
class Audio:
    """The assembled audio side."""

    mic: InputDevice
    playback: Playback
    output_name: Callable[[], str]
    output_rate: int
    output_healthy: Callable[[], bool]
    output_xruns: Callable[[], int]
    tasks: list[tuple[str, Callable[[], Awaitable[None]]]]


def build_audio(config: Config) -> Audio:
    """Open the configured devices (PyAudio) or files (WAV).

    A PyAudio device that is missing at start is not fatal: it is reported and reopened by
    name when it appears; the daemon stays up meanwhile."""
    audio = config.audio
    store = VolumeStore()
    if audio.backend == "wav":
        assert audio.input.file is not None and audio.output.file is not None  # config checks
        wav_mic = WavMicrophone(
            audio.input.file, chunk_ms=audio.input.chunk_ms, gain_db=audio.input.gain_db
        )
        rate = audio.output.rate or 48000
        playback = Playback(
            rate, jitter_ms=audio.output.jitter_ms, volume=audio.output.volume, store=store
        )
        wav_speaker = WavSpeaker(audio.output.file, rate, playback)
        return Audio(
            mic=wav_mic,
            playback=playback,
            output_name=lambda: wav_speaker.name,
            output_rate=rate,
            output_healthy=lambda: wav_speaker.healthy,
            output_xruns=lambda: 0,  # a file never runs dry
            tasks=[("speaker", wav_speaker.run)],
        )
    mic = Microphone(audio.input)
    speaker = Speaker(audio.output)
    for device, what in ((mic, "audio.input.device"), (speaker, "audio.output.device")):
        try:
            device.open()
        except DeviceError as exc:
            logger.warning(
                "%s not available yet (%s); it will be reopened when it appears", what, exc
            )
    try:
        rate = speaker.rate
    except DeviceError:
        # Not opened and no rate configured: pin 48 kHz, which every USB DAC accepts, so the
        # buffer and the device agree whenever it appears.
        speaker = Speaker(dataclasses.replace(audio.output, rate=48000))
        rate = 48000
    playback = Playback(
        rate,
        jitter_ms=audio.output.jitter_ms,
        volume=audio.output.volume,
        period_s=speaker.period_s,
        store=store,
    )
    speaker.source = playback
    return Audio(
        mic=mic,
        playback=playback,
        output_name=lambda: speaker.name,
        output_rate=rate,
        output_healthy=lambda: speaker.healthy,
        output_xruns=lambda: speaker.xruns,
        tasks=[("microphone device", mic.run), ("speaker device", speaker.run)],
    )


def build_tools(config: Config, host: Any) -> ToolRegistry:
    """The client tools the config declares."""
    tools = config.tools
    return ToolRegistry(
        host,
        builtins=tools.builtins,
        commands=[
            CommandTool(t.name, t.command, t.timeout, t.description)
            for t in tools.commands.values()
        ],
        python=[PythonTool(t.name, t.target, t.timeout) for t in tools.python.values()],
    )


class _Stop(Exception):
    """Raised inside the task group to stop the daemon."""


class Daemon:
    """One running piagent: build with a config, then ``await run()``."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        notifier: Notifier | None = None,
        keyboard_fd: int | None = None,
    ) -> None:
        self.config = config
        self._config_path = config_path
        self._notifier = notifier or Notifier()
        self._keyboard_fd = keyboard_fd
        self._booting = True
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._leds_changed = asyncio.Event()
        self._last_frame = time.monotonic()
        self._last_state = ""
        self.notices: asyncio.Queue[Notice] = asyncio.Queue(maxsize=NOTICE_BACKLOG)

        api_key = resolve_api_key(config.agent)
        if api_key is not None:
            register_secret(api_key)
        self.audio = build_audio(config)
        self.playback = self.audio.playback
        self.client = AgentClient(
            endpoint_from_config(config.agent, api_key),
            initiation_from_config(config.agent),
            options_from_config(config),
            source_rate=_rate_or(self.audio.mic, 16000),
            sink=self.playback,
            tools=build_tools(config, self),
        )
        # A microphone unhealthy for longer than MIC_MISSING_GRACE shows as "error" (when the
        # daemon is otherwise ready) with the reason on the status line; a blip (a reopen,
        # PortAudio listing the devices again) does not flash the LEDs.
        self._mic_missing = False
        self._mic_timer: asyncio.TimerHandle | None = None
        if hasattr(self.audio.mic, "when_health_changed"):  # the WAV microphone has none
            self.audio.mic.when_health_changed = self._on_mic_health
        self.controls = _EarconControls(self)
        self.gpio_problem: str | None = None
        self.leds, self.button = self._build_gpio(config)

    def _build_gpio(self, config: Config) -> tuple[StatusLeds, PushToTalk | None]:
        """The LEDs and the button, on the configured pin factory or gpiozero's choice.

        When the config names no factory and gpiozero finds none that works here (a board
        gpiozero does not know, GPIO libraries missing), the daemon runs on without them: the
        button and the LEDs are off, ``piagent ctl press`` still works, and the status says
        why. A restart could not fix that, so it is not worth a crash and a restart loop. A
        factory the config names and that fails is a config error (exit 78), as before."""
        gpio = config.gpio
        pwm = needs_pwm(gpio.leds)
        factory = make_pin_factory(gpio.pin_factory, pwm=pwm)
        try:
            return self._gpio_devices(config, factory)
        except GPIOZeroError as exc:
            if factory is not None:
                raise
            self.gpio_problem = (
                f"no GPIO pin factory works here ({type(exc).__name__}: {exc}): the button and "
                "LEDs are off; on a Raspberry Pi install python3-lgpio (Raspberry Pi OS), or "
                "set gpio.pin_factory (mock off a Pi); piagent ctl press still works"
            )
            logger.error("gpio: %s", self.gpio_problem)
            return self._gpio_devices(config, make_pin_factory("mock", pwm=pwm))

    def _gpio_devices(self, config: Config, factory: Any) -> tuple[StatusLeds, PushToTalk | None]:
        leds = StatusLeds(config.gpio.leds, pin_factory=factory)
        button = None
        if config.gpio.button.pin is not None:
            try:
                button = PushToTalk(config.gpio.button, self.controls, pin_factory=factory)
            except BaseException:
                leds.close()
                raise
        return leds, button

    # -- state -------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """What the LEDs show: ``booting`` until ready, then the client's state, except that a
        ready daemon without its microphone shows ``error`` (a press could not be heard)."""
        if self._booting:
            return "booting"
        state = self.client.state.value
        if self._mic_missing and state == ClientState.READY.value:
            return ClientState.ERROR.value
        return state

    def _on_mic_health(self, healthy: bool) -> None:
        """The microphone's ``when_health_changed``: on the loop's thread."""
        if self._mic_timer is not None:
            self._mic_timer.cancel()
            self._mic_timer = None
        if healthy:
            if self._mic_missing:
                self._mic_missing = False
                logger.info("microphone %s is back", self.audio.mic.name)
                self._show_state()
        elif not self._booting:
            self._mic_timer = asyncio.get_running_loop().call_later(
                MIC_MISSING_GRACE, self._on_mic_missing
            )

    def _on_mic_missing(self) -> None:
        self._mic_timer = None
        if not self.audio.mic.healthy and not self._mic_missing:
            self._mic_missing = True
            self._show_state()

    def _show_state(self) -> None:
        self._leds_changed.set()
        self._notifier.status(self._status_line())

    def status(self) -> dict[str, Any]:
        """The ``piagent ctl status --json`` object (interface.md)."""
        client = self.client.status()
        latency = client.latency
        mic = self.audio.mic
        return {
            "state": self.state,
            "conversation_id": client.conversation_id,
            "latency_ms": {
                "turn": latency.turn,
                "reply_ms": round(latency.reply_ms) if latency.reply_ms is not None else None,
                "ping_ms": latency.ping_ms,
            }
            if latency
            else None,
            "devices": {
                "input": {
                    "name": mic.name,
                    "rate": _rate_or(mic, None),
                    "healthy": mic.healthy,
                    # Frames the loop could not take in time, samples at full scale, and
                    # PortAudio's overflow flags (the device's buffer ran over).
                    "overruns": getattr(mic, "overruns", 0),
                    "clipped": getattr(mic, "clipped", 0),
                    "xruns": getattr(mic, "xruns", 0),
                },
                "output": {
                    "name": self.audio.output_name(),
                    "rate": self.audio.output_rate,
                    "healthy": self.audio.output_healthy(),
                    "underruns": self.playback.underruns,
                    "xruns": self.audio.output_xruns(),
                },
            },
            "leds": self.leds.describe(),
            "gpio": {"ok": self.gpio_problem is None, "problem": self.gpio_problem},
            "muted": self.client.muted,
            "volume": round(self.playback.volume, 3),
            "turns": client.turns,
            "last_ending": client.last_ending.describe() if client.last_ending else None,
            "dropped_frames": client.dropped_frames,
            "underruns": self.playback.underruns,
            "threads": _thread_counts(),
        }

    # -- ControlHandler (the control socket) ---------------------------------------------------

    def press(self) -> None:
        self.controls.press()

    def release(self) -> None:
        self.controls.release()

    def say(self, text: str) -> None:
        self.client.say(text)

    def context(self, text: str) -> None:
        self.client.send_context(text)

    def hangup(self) -> None:
        self.client.hang_up()

    def mute(self) -> None:
        self.client.set_muted(True)

    def unmute(self) -> None:
        self.client.set_muted(False)

    def feedback(self, score: FeedbackScore) -> None:
        self.client.send_feedback(score)

    # -- ToolHost (client tools) ---------------------------------------------------------------

    def get_volume(self) -> float:
        return self.playback.volume

    def set_volume(self, level: float) -> float:
        return self.playback.set_volume(level)

    def request_hang_up(self) -> None:
        self.client.hang_up(let_finish=True)

    def set_led(self, request: LedRequest) -> None:
        """Show a state's pattern until the state next changes; the LEDs are the appliance's
        status display, so colours and switching them off are not offered."""
        if request.state is None:
            raise ValueError("set_led takes a 'state' (one of the LED states)")
        self.leds.show(request.state)

    # -- running -------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop the daemon (what SIGTERM does)."""
        self._stop.set()

    def request_reload(self) -> None:
        """Re-read the config (what SIGHUP does)."""
        self._reload.set()

    async def run(self) -> int:
        """Run until stopped; returns the exit status."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        control = ControlServer(self.config.control.socket, self.config.control.mode, self)
        try:
            async with control:
                await self._run_tasks(control)
        except* _Stop:
            pass
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self._close_hardware()
        logger.info("stopped")
        return 0

    async def _run_tasks(self, control: ControlServer) -> None:
        async with asyncio.TaskGroup() as tasks:

            def start(name: str, factory: Callable[[], Awaitable[None]]) -> None:
                tasks.create_task(self._supervised(name, factory), name=name)

            for name, factory in self.audio.tasks:
                start(name, factory)
            start("filters", self._prepare_filters)
            start("microphone pump", self._pump_microphone)
            start("agent client", self.client.run)
            start("notices", self._watch_notices)
            start("leds", self._follow_leds)
            start("control socket", control.serve)
            start("watchdog", lambda: watchdog_loop(self._notifier, self._healthy))
            start("reload", self._reload_on_request)
            if self.config.gpio.keyboard or self._keyboard_fd is not None:
                start("keyboard", self._run_keyboard)
            self._booting = False
            if not self.audio.mic.healthy:  # missing at start: no flip will say so
                self._on_mic_health(False)
            self._leds_changed.set()
            self._notifier.ready(self._status_line())
            logger.info("ready (agent %s)", self.config.agent.agent_id)
            await self._stop.wait()
            self._notifier.stopping()
            logger.info("stopping")
            raise _Stop

    async def _supervised(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """The one place a task's crash is caught: logged with its traceback, then restarted."""
        while True:
            try:
                await factory()
                return
            except Exception:
                logger.exception("task %r crashed; restarting it in 1 s", name)
                await asyncio.sleep(1.0)

    async def _prepare_filters(self) -> None:
        """Load, or design once and keep, the resampling filters a conversation may need, off
        the event loop, so that no conversation waits on scipy (audio.filtercache)."""
        store = FilterCache(cache_dir())
        use_coefficient_store(store)
        pairs = rate_pairs(_rate_or(self.audio.mic, 16000), self.audio.output_rate)
        started = time.monotonic()
        await asyncio.to_thread(prepare_filters, pairs)
        logger.info(
            "resampling filters ready in %.2f s: %d from %s, %d designed",
            time.monotonic() - started,
            store.loaded,
            store.directory,
            store.missed,
        )

    async def _pump_microphone(self) -> None:
        loop = asyncio.get_running_loop()
        async for frame in self.audio.mic.frames():
            self._last_frame = loop.time()
            rate = self.audio.mic.rate
            if rate != self.client.source_rate:
                self.client.source_rate = rate
            self.client.feed(frame)

    def _healthy(self) -> bool:
        """For the watchdog: the loop turns (this runs at all), and a microphone that says it
        is delivering audio does deliver it to the loop.

        A missing or failed microphone is not a hang: its device task reopens it by name with
        backoff, and a restart would not bring it back any sooner. Withholding the pings then
        would have systemd kill and restart the daemon every WatchdogSec for as long as the
        card is away (a USB microphone plugged in after boot). The daemon keeps pinging while
        it waits for hardware; its status says what it waits for."""
        now = asyncio.get_running_loop().time()
        if not self.audio.mic.healthy:
            self._last_frame = now  # the silence limit counts from the device's return
            return True
        return now - self._last_frame < MIC_SILENT_LIMIT

    async def _follow_leds(self) -> None:
        await follow(
            lambda: self.state, lambda: self.client.vad_score, self.leds, self._leds_changed
        )

    async def _watch_notices(self) -> None:
        while True:
            notice = await self.client.notices.get()
            if notice.kind in ("state", "vad"):
                self._leds_changed.set()
            if notice.kind == "state":
                self._on_state(notice.text)
            elif notice.kind == "ended" and self.button is not None:
                self.button.conversation_ended()
            if notice.kind != "vad":
                if self.notices.full():
                    self.notices.get_nowait()
                self.notices.put_nowait(notice)

    def _on_state(self, state: str) -> None:
        previous, self._last_state = self._last_state, state
        if self.config.audio.earcons and state != previous:
            if state == ClientState.ERROR.value:
                self.earcon("error")
            elif state == ClientState.OFFLINE.value:
                self.earcon("offline")
        self._notifier.status(self._status_line())

    def _status_line(self) -> str:
        status = self.client.status()
        line = self.state
        if status.conversation_id:
            line += f", conversation {status.conversation_id}"
        if self._mic_missing:
            problem = getattr(self.audio.mic, "problem", None) or "not available"
            line += f": no microphone ({problem}); waiting for it"
        elif self.state in ("error", "offline") and status.last_ending is not None:
            line += f": {status.last_ending.reason.value}"
        return line

    def earcon(self, kind: EarconKind) -> None:
        """Play a short confirmation sound over whatever plays, if earcons are on."""
        if self.config.audio.earcons:
            self.playback.play_earcon(kind)

    async def _run_keyboard(self) -> None:
        fd = self._keyboard_fd if self._keyboard_fd is not None else sys.stdin.fileno()
        await KeyboardPushToTalk(self.controls, fd).run()

    async def _reload_on_request(self) -> None:
        while True:
            await self._reload.wait()
            self._reload.clear()
            self._notifier.reloading()
            self._apply_reload()
            self._notifier.ready(self._status_line())

    def _apply_reload(self) -> None:
        """Re-read the config; the agent and session settings apply from the next connection,
        so a live conversation goes on. Audio and GPIO changes need a restart."""
        try:
            config = load_config(self._config_path)
            api_key = resolve_api_key(config.agent)
        except ConfigError as exc:
            for line in str(exc).splitlines():
                logger.error("config not reloaded: %s", line)
            return
        if api_key is not None:
            register_secret(api_key)
        if config.audio != self.config.audio or config.gpio != self.config.gpio:
            logger.warning("audio and gpio changes take effect after a restart")
        if config.logging.level != self.config.logging.level:
            logging.getLogger().setLevel(config.logging.level.upper())
        self.client.reload(
            endpoint_from_config(config.agent, api_key),
            initiation_from_config(config.agent),
            options_from_config(config),
            tools=build_tools(config, self),
        )
        self.config = config
        logger.info("config reloaded")

    def _close_hardware(self) -> None:
        if self.button is not None:
            self.button.close()
        self.leds.close()


class _EarconControls:
    """The button's (and ``ctl press``'s) view of the client: the same calls, with earcons.

    The press earcon comes after ``press()``, whose barge-in flush would otherwise drop it."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    def press(self) -> None:
        self._daemon.client.press()
        self._daemon.earcon("press")

    def release(self) -> None:
        self._daemon.client.release()
        self._daemon.earcon("release")

    def set_hands_free(self, on: bool) -> None:
        self._daemon.client.set_hands_free(on)
        self._daemon.earcon("press" if on else "release")

    def hang_up(self) -> None:
        self._daemon.client.hang_up()

    def set_muted(self, muted: bool) -> None:
        self._daemon.client.set_muted(muted)

    @property
    def muted(self) -> bool:
        return self._daemon.client.muted


def _thread_counts() -> dict[str, int]:
    """Threads Python started (the loop's included) and the process's native threads: a
    native thread Python does not know of is a library's (PortAudio's callback thread, lgpio's
    notifier; a BLAS pool would be one too)."""
    try:
        native = sum(1 for _ in Path("/proc/self/task").iterdir())
    except OSError:  # not Linux
        native = -1
    return {"python": threading.active_count(), "native": native}


def _rate_or(device: Any, default: Any) -> Any:
    try:
        return device.rate
    except DeviceError:
        return default


async def run_daemon(config_path: Path | None, *, verbose: bool = False) -> int:
    """``piagent run``: load the config, run until stopped. ConfigError propagates (exit 78)."""
    config = load_config(config_path)
    daemon = Daemon(config, config_path=config_path)
    try:
        return await daemon.run()
    except PiagentError as exc:
        logger.error("%s", exc)
        return 1


__all__ = ["Audio", "Daemon", "build_audio", "build_tools", "run_daemon"]
