"""The daemon's parts, built from a ``Config``: the audio devices (PyAudio or WAV files) and the
client tools.

Owns ``Audio`` (the assembled audio side: the microphone, the speaker's ``Playback`` and the
device tasks to run), ``build_audio``, ``build_tools`` and ``rate_or``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from piagent.audio.playback import Playback, VolumeStore
from piagent.audio.wavio import WavEchoPath, WavMicrophone, WavSpeaker
from piagent.config import Config, EchoPathConfig
from piagent.errors import PiagentError
from piagent.tools import CommandTool, PythonTool, ToolRegistry

logger = logging.getLogger(__name__)

SPEAKER_PERIOD_MS = 20  # the WAV speaker's period, as a sound card's


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
    input_xruns: Callable[[], int]
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
        wav_mic.echo = echo = _echo_path(audio.input.echo, wav_mic.rate)
        rate = audio.output.rate or 48000
        playback = Playback(
            rate, jitter_ms=audio.output.jitter_ms, volume=audio.output.volume, store=store
        )
        # One clock for both files when their periods agree, as one sound card's serves
        # capture and playback: one wake-up a period instead of two.
        clocked = wav_mic if audio.input.chunk_ms == SPEAKER_PERIOD_MS else None
        wav_speaker = WavSpeaker(
            audio.output.file,
            rate,
            playback,
            period_ms=SPEAKER_PERIOD_MS,
            echo=echo,
            microphone=clocked,
        )
        playback.when_audible = wav_speaker.wake  # a resting speaker plays at once
        return Audio(
            mic=wav_mic,
            playback=playback,
            output_name=lambda: wav_speaker.name,
            output_rate=rate,
            output_healthy=lambda: wav_speaker.healthy,
            output_xruns=lambda: 0,  # a file never runs dry
            input_xruns=lambda: 0,  # nor overflows
            tasks=[("speaker", wav_speaker.run)],
        )
    # PortAudio (and the ALSA library under it) is loaded only for the backend that uses it.
    from piagent.audio.devices import DeviceError, Microphone, Speaker

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
        # Frames the loop fell behind on and dropped are lost samples too, as in an overrun.
        input_xruns=lambda: mic.xruns + mic.overruns,
        tasks=[("microphone device", mic.run), ("speaker device", speaker.run)],
    )


def _echo_path(echo: EchoPathConfig | None, rate: int) -> WavEchoPath | None:
    """``audio.input.echo``: the simulated room between the WAV speaker and microphone, at the
    microphone file's ``rate``."""
    if echo is None:
        return None
    return WavEchoPath(
        rate,
        delay_ms=echo.delay_ms,
        gain_db=echo.gain_db,
        impulse_response=echo.impulse_response,
        drive=echo.drive,
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


def rate_or(device: Any, default: Any) -> Any:
    try:
        return device.rate
    except PiagentError:  # a PyAudio device's DeviceError: its rate is not known yet
        return default


__all__ = ["Audio", "InputDevice", "build_audio", "build_tools", "rate_or"]
