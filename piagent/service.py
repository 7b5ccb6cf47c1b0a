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
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gpiozero.exc import GPIOZeroError

from piagent.appliance import State
from piagent.appliance.commands import PlayEarcon, StateEntered
from piagent.assembly import Audio, build_audio, build_tools, rate_or
from piagent.audio.codecs import Samples
from piagent.audio.earcons import EarconKind
from piagent.audio.filtercache import FilterCache, cache_dir, prepare_filters, rate_pairs
from piagent.audio.resample import use_coefficient_store
from piagent.audio.wavio import WavMicrophone
from piagent.client import (
    AgentClient,
    Announcement,
    endpoint_from_config,
    initiation_from_config,
    options_from_config,
)
from piagent.config import Config, load_config, resolve_api_key
from piagent.control import ControlServer, FeedbackScore
from piagent.conversation import VadLevel
from piagent.errors import ConfigError, PiagentError
from piagent.gpio import (
    PushToTalk,
    StatusLeds,
    button_options,
    follow,
    make_pin_factory,
    needs_pwm,
)
from piagent.hearing import build_hearing
from piagent.keyboard import KeyboardPushToTalk
from piagent.logs import register_secret
from piagent.status import describe
from piagent.systemd import Notifier, watchdog_loop
from piagent.tools import LedRequest

logger = logging.getLogger(__name__)

# Seconds a microphone that reports itself healthy may go without a frame reaching the loop
# before the watchdog is withheld (frames come every 20 ms).
MIC_SILENT_LIMIT = 3.0


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
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._leds_changed = asyncio.Event()
        self._last_frame = time.monotonic()
        self._detail = ""  # why the state is offline or error

        api_key = resolve_api_key(config.agent)
        if api_key is not None:
            register_secret(api_key)
        self.audio = build_audio(config)
        self.playback = self.audio.playback
        # The wake word and echo cancellation, when configured. The speaker's latency is a
        # first guess (PortAudio's default buffer); the echo path's delay is measured.
        self.hearing = build_hearing(
            config,
            rate_or(self.audio.mic, 16000),
            self.audio.output_rate,
            latency_s=(0.0, 0.0 if config.audio.backend == "wav" else 0.04),
            xruns=(self.audio.input_xruns, self.audio.output_xruns),
        )
        if self.hearing is not None:
            self.playback.tap = self.hearing.played
        full_duplex = self.hearing is not None and self.hearing.cancels_echo
        self.client = AgentClient(
            endpoint_from_config(config.agent, api_key),
            initiation_from_config(config.agent),
            options_from_config(config, full_duplex=full_duplex),
            source_rate=(
                self.hearing.uplink_rate
                if self.hearing is not None
                else rate_or(self.audio.mic, 16000)
            ),
            sink=self.playback,
            tools=build_tools(config, self),
            booted=False,
            button=button_options(config.gpio.button),  # the button's gestures run in the client
        )
        self.client.subscribe(self._on_announcement)
        # Nothing listens at idle (no wake word, no echo canceller): a microphone that can rest
        # (the WAV backend's) does, and wakes with the frame a press is made in.
        if self.hearing is None and isinstance(self.audio.mic, WavMicrophone):
            self.client.when_audio_needed = self._set_mic_wanted
        # A microphone unhealthy for longer than the appliance's grace shows as "error" (when
        # the daemon is otherwise ready) with the reason on the status line; a blip (a reopen,
        # PortAudio listing the devices again) does not flash the LEDs.
        if hasattr(self.audio.mic, "when_health_changed"):  # the WAV microphone has none
            self.audio.mic.when_health_changed = self.client.set_mic_health
        self.controls = self.client  # the button and ctl press drive the client directly
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
                button = PushToTalk(
                    config.gpio.button, self.client.handle_button, pin_factory=factory
                )
            except BaseException:
                leds.close()
                raise
        return leds, button

    # -- state -------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """What the LEDs show: the appliance's state (``booting`` until the devices are open;
        ``error`` also while the microphone is missing and nothing else happens)."""
        return self.client.state.value

    def _on_announcement(self, announcement: Announcement) -> None:
        """The daemon's subscribers: LEDs, sd_notify STATUS, earcons."""
        match announcement:
            case StateEntered(detail=detail):
                self._detail = detail
                self._leds_changed.set()
                self._notifier.status(self._status_line())
            case PlayEarcon(kind=kind):
                self.earcon(kind)
            case VadLevel() if self.leds.shows_vad:
                self._leds_changed.set()
            case _:
                pass

    def status(self) -> dict[str, Any]:
        """The ``piagent ctl status --json`` object (interface.md)."""
        status = describe(self.client, self.audio, self.leds, self.gpio_problem)
        if self.hearing is not None:
            status["hearing"] = self.hearing.describe()
        return status

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
            start("leds", self._follow_leds)
            start("control socket", control.serve)
            start("watchdog", lambda: watchdog_loop(self._notifier, self._healthy))
            start("reload", self._reload_on_request)
            if self.config.gpio.keyboard or self._keyboard_fd is not None:
                start("keyboard", self._run_keyboard)
            if not self.audio.mic.healthy:  # missing at start: no flip will say so
                self.client.set_mic_health(False)
            self.client.boot()
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
        pairs = rate_pairs(rate_or(self.audio.mic, 16000), self.audio.output_rate)
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
        mic = self.audio.mic
        if isinstance(mic, WavMicrophone) and mic.clocked:
            # The WAV speaker's clock hands each frame over as it is captured, in the same
            # wake-up as its own period: no timer and no task switch of the microphone's.
            mic.when_frame = self._on_frame
            try:
                await asyncio.Event().wait()  # until cancelled
            finally:
                mic.when_frame = None
            return
        async for frame in mic.frames():
            self._on_frame(frame)

    def _on_frame(self, frame: Samples) -> None:
        """One microphone frame: the hearing chain when there is one, then the client."""
        self._last_frame = time.monotonic()  # the loop's clock
        rate = self.audio.mic.rate
        hearing = self.hearing
        if hearing is not None:
            heard = hearing.hear(frame, rate)
            for detection in heard.words:
                self.client.heard_word(detection.word)
            if heard.voice_over:
                self.client.voice_over()
            frame, rate = heard.frame, heard.rate
            if len(frame) == 0:
                return
        if rate != self.client.source_rate:
            self.client.source_rate = rate
        self.client.feed(frame)

    def _set_mic_wanted(self, wanted: bool) -> None:
        mic = self.audio.mic
        assert isinstance(mic, WavMicrophone)
        mic.wanted = wanted
        self._last_frame = time.monotonic()  # the silence limit counts afresh (the loop clock)

    def _healthy(self) -> bool:
        """For the watchdog: the loop turns (this runs at all), and a microphone that says it
        is delivering audio does deliver it to the loop.

        A missing or failed microphone is not a hang: its device task reopens it by name with
        backoff, and a restart would not bring it back any sooner. Withholding the pings then
        would have systemd kill and restart the daemon every WatchdogSec for as long as the
        card is away (a USB microphone plugged in after boot). The daemon keeps pinging while
        it waits for hardware; its status says what it waits for."""
        now = asyncio.get_running_loop().time()
        if not self.audio.mic.healthy or not getattr(self.audio.mic, "wanted", True):
            self._last_frame = now  # the silence limit counts from the device's return
            return True
        return now - self._last_frame < MIC_SILENT_LIMIT

    async def _follow_leds(self) -> None:
        await follow(
            lambda: self.state, lambda: self.client.vad_score, self.leds, self._leds_changed
        )

    def _status_line(self) -> str:
        status = self.client.status()
        line = self.state
        if status.conversation_id:
            line += f", conversation {status.conversation_id}"
        if self._detail == "no microphone" and self.state == State.ERROR.value:
            problem = getattr(self.audio.mic, "problem", None) or "not available"
            line += f": no microphone ({problem}); waiting for it"
        elif self.state in ("error", "offline") and self._detail:
            line += f": {self._detail}"
        return line

    def earcon(self, kind: EarconKind) -> None:
        """Play a short confirmation sound over whatever plays, if earcons are on."""
        if self.config.audio.earcons:
            self.playback.play_earcon(kind)

    async def _run_keyboard(self) -> None:
        fd = self._keyboard_fd if self._keyboard_fd is not None else sys.stdin.fileno()
        await KeyboardPushToTalk(self.client.handle_button, fd).run()

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
        if (config.audio, config.gpio, config.wake) != (
            self.config.audio,
            self.config.gpio,
            self.config.wake,
        ):
            logger.warning("audio, gpio and wake changes take effect after a restart")
        if config.logging.level != self.config.logging.level:
            logging.getLogger().setLevel(config.logging.level.upper())
        self.client.reload(
            endpoint_from_config(config.agent, api_key),
            initiation_from_config(config.agent),
            options_from_config(
                config, full_duplex=self.hearing is not None and self.hearing.cancels_echo
            ),
            tools=build_tools(config, self),
        )
        self.config = config
        logger.info("config reloaded")

    def _close_hardware(self) -> None:
        if self.button is not None:
            self.button.close()
        self.leds.close()
        if self.hearing is not None:
            self.hearing.close()


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
