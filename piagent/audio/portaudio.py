"""PortAudio access shared by the devices and ``piagent devices``: one caller at a time, with
PortAudio's start-up noise kept off stderr; the count of live PortAudio instances and whether
the sound cards changed since PortAudio last enumerated them; enumeration; which formats a
device accepts; the choice of channel count and rate; finding a device by the name the config
gives; the table.

Owns ``PORTAUDIO_LOCK`` (PortAudio's initialisation count and stream list are process-wide),
``PORTAUDIO_INSTANCES`` (:class:`Instances`), :func:`card_signature`, :class:`DeviceError`,
:class:`DeviceInfo`, :func:`resolve_device`, :func:`negotiate_rate`,
:func:`negotiate_format`, :func:`list_devices` and :func:`format_devices`. The streams
themselves live in ``audio.devices`` and ``audio.supervisor``.

Imports nothing from piagent but ``errors`` and the ``audio`` modules ``alsalib``,
``alsanames`` and ``channels``; no I/O at import.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyaudio

from piagent.audio import alsalib
from piagent.audio.alsanames import (
    ALIASES,
    alsa_hw_name,
    alsa_pcm_to_wrap,
    describe_cards,
    is_alsa_hw_name,
    read_cards,
)
from piagent.audio.channels import channel_candidates, describe_channels
from piagent.errors import PiagentError

__all__ = [
    "FALLBACK_RATES",
    "PORTAUDIO_INSTANCES",
    "PROBED_RATES",
    "DeviceError",
    "DeviceInfo",
    "Instances",
    "card_signature",
    "format_devices",
    "list_devices",
    "negotiate_format",
    "negotiate_rate",
    "portaudio_access",
    "probe_channels",
    "resolve_device",
]

# Tried in this order when neither the config nor the device's default rate settles it.
FALLBACK_RATES: Final = (48000, 44100, 32000, 22050, 16000, 8000)
# The rates ``piagent devices`` reports for each direction.
PROBED_RATES: Final = (8000, 11025, 16000, 22050, 32000, 44100, 48000)

FORMAT: Final = pyaudio.paInt16  # int16 everywhere; conversions happen in piagent
SAMPLE_BYTES: Final = 2

# Serialises PortAudio's process-wide state (its initialisation count and list of open
# streams) between the event loop and the threads that close streams.
PORTAUDIO_LOCK = threading.Lock()

_DEV_SND: Final = Path("/dev/snd")

_HW_SUFFIX = re.compile(r"\((?P<hw>hw:\d+,\d+)\)$")


class DeviceError(PiagentError):
    """An audio device cannot be found, does not accept the format, or failed to open.

    The message says what exists or what the device accepts, so the config can be fixed.
    """


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One PortAudio device. Rates are only filled in by :func:`list_devices`."""

    index: int  # PortAudio device index (changes when devices come and go)
    name: str  # PortAudio's name, e.g. "USB Audio Device: - (hw:1,0)" or an ALSA PCM name
    input_channels: int  # the maximum, as PortAudio reports it
    output_channels: int
    default_rate: int  # Hz
    input_rates: tuple[int, ...] = ()  # those of PROBED_RATES accepted as int16 capture...
    output_rates: tuple[int, ...] = ()  # ... and playback,
    input_rate_channels: int = 1  # ... with this many channels (the fewest that work)
    output_rate_channels: int = 1

    def channels(self, *, is_input: bool) -> int:
        """Maximum channel count in one direction."""
        return self.input_channels if is_input else self.output_channels

    @property
    def alsa_name(self) -> str:
        """The ALSA PCM PortAudio opens for it: ``hw:N,M`` for a card's device, else the name."""
        match = _HW_SUFFIX.search(self.name)
        return match["hw"] if match else self.name


# ----------------------------------------------------------------------------------------------
# PortAudio access: one caller at a time, with its start-up noise sent to /dev/null


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Point fd 2 at /dev/null for the duration (PortAudio/ALSA/JACK print there directly)."""
    with contextlib.suppress(AttributeError, ValueError, OSError):  # None or closed: fine
        sys.stderr.flush()  # our own buffered text belongs to the real stderr
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all: nothing to silence
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def portaudio_access(timeout: float = -1) -> Iterator[None]:
    """Hold ``PORTAUDIO_LOCK`` (DeviceError after ``timeout`` s) with fd 2 silenced."""
    if not PORTAUDIO_LOCK.acquire(timeout=timeout):
        raise DeviceError("PortAudio is busy closing another stream")
    try:
        with _stderr_silenced():
            yield
    finally:
        PORTAUDIO_LOCK.release()


# ----------------------------------------------------------------------------------------------
# PortAudio instances, and whether what they enumerated is still the machine's sound cards


def card_signature() -> str:
    """What changes when a sound card comes or goes: the text of /proc/asound/cards and the
    names of the PCM device nodes in /dev/snd (one small read and one directory listing)."""
    try:
        nodes = sorted(path.name for path in _DEV_SND.iterdir() if path.name.startswith("pcmC"))
    except OSError:  # no ALSA in this system or container
        nodes = []
    return f"{read_cards() or ''}\n{' '.join(nodes)}"


class Instances:
    """The live ``PyAudio`` instances of this process, and the sound cards the first of them
    saw.

    PortAudio enumerates devices in ``Pa_Initialize`` and counts initialisations: a new
    ``PyAudio()`` while another is alive lists the devices of the old enumeration, so a card
    plugged in since is invisible until every instance has terminated. Every ``PyAudio`` of
    piagent is made and ended here (with ``PORTAUDIO_LOCK`` held), so that ``live`` is that
    count and :meth:`cards_changed` says whether a new enumeration would see something else.
    ``signature`` is :func:`card_signature`; a test may replace it (the ALSA fake card changes
    no file under /proc or /dev).
    """

    def __init__(self, signature: Callable[[], object] = card_signature) -> None:
        self.signature = signature
        self._live = 0
        self._enumerated: object = None  # signature() just before the last real enumeration

    @property
    def live(self) -> int:
        """PortAudio instances alive now (PortAudio's initialisation count)."""
        return self._live

    def create(self) -> Any:
        """A new ``pyaudio.PyAudio()``; the caller holds ``PORTAUDIO_LOCK``."""
        fresh = self._live == 0
        # Read before PortAudio enumerates: a card that appears during it makes the next
        # check report a change (one spare rescan) rather than hide it.
        seen = self.signature() if fresh else None
        pa = pyaudio.PyAudio()
        self._live += 1
        if fresh:
            self._enumerated = seen
        return pa

    def terminate(self, pa: Any) -> None:
        """``pa.terminate()``; the caller holds ``PORTAUDIO_LOCK``."""
        try:
            pa.terminate()
        finally:
            self._live -= 1

    def cards_changed(self) -> bool:
        """Whether the sound cards differ from those PortAudio enumerated while an instance is
        alive (False when none is: the next ``create`` enumerates anew anyway)."""
        return self._live > 0 and self.signature() != self._enumerated


PORTAUDIO_INSTANCES = Instances()


def enumerate_devices(pa: Any) -> list[DeviceInfo]:
    """PortAudio's devices, as it enumerated them when it initialised."""
    devices = []
    for index in range(pa.get_device_count()):
        info: Mapping[str, Any] = pa.get_device_info_by_index(index)
        devices.append(
            DeviceInfo(
                index=index,
                name=str(info["name"]),
                input_channels=int(info["maxInputChannels"]),
                output_channels=int(info["maxOutputChannels"]),
                default_rate=round(float(info["defaultSampleRate"])),
            )
        )
    return devices


def supports(pa: Any, index: int, rate: int, channels: int, *, is_input: bool) -> bool:
    """Whether the device accepts int16 at ``rate`` with ``channels`` (PyAudio raises
    ValueError if not)."""
    direction = "input" if is_input else "output"
    args = {
        f"{direction}_device": index,
        f"{direction}_channels": channels,
        f"{direction}_format": FORMAT,
    }
    try:
        return bool(pa.is_format_supported(rate, **args))
    except ValueError:
        return False


def probe_channels(device: DeviceInfo, *, is_input: bool) -> tuple[int, ...]:
    """The channel counts to try on ``device``, best first (see ``channel_candidates``);
    alsa-lib is asked for the device's minimum, which PortAudio does not report."""
    maximum = device.channels(is_input=is_input)
    if maximum < 1:
        return ()
    found = alsalib.channel_range(device.alsa_name, is_input=is_input)
    return channel_candidates(maximum, found[0] if found else None)


def list_devices(rates: Sequence[int] = PROBED_RATES) -> list[DeviceInfo]:
    """Every PortAudio device, with the ``rates`` each direction accepts as int16 with the
    fewest channels that work (mono when it can).

    Probing opens each device, so a device in use by another program reports no rates.
    """
    with portaudio_access():
        pa = PORTAUDIO_INSTANCES.create()
        try:
            devices = []
            for device in enumerate_devices(pa):
                found: dict[bool, tuple[int, tuple[int, ...]]] = {}
                for is_input in (True, False):
                    found[is_input] = (1, ())
                    for channels in probe_channels(device, is_input=is_input) if rates else ():
                        accepted = tuple(
                            r
                            for r in rates
                            if supports(pa, device.index, r, channels, is_input=is_input)
                        )
                        if accepted:
                            found[is_input] = (channels, accepted)
                            break
                devices.append(
                    DeviceInfo(
                        index=device.index,
                        name=device.name,
                        input_channels=device.input_channels,
                        output_channels=device.output_channels,
                        default_rate=device.default_rate,
                        input_rates=found[True][1],
                        output_rates=found[False][1],
                        input_rate_channels=found[True][0],
                        output_rate_channels=found[False][0],
                    )
                )
            return devices
        finally:
            PORTAUDIO_INSTANCES.terminate(pa)


def _khz(rates: Sequence[int], channels: int) -> str:
    text = " ".join(f"{rate / 1000:g}" for rate in rates) or "-"
    return f"{text} ({channels} ch)" if rates and channels != 1 else text


def format_devices(devices: Sequence[DeviceInfo]) -> str:
    """A table for ``piagent devices``: one row per device, rates in kHz (with the channel
    count they were found with, when mono is refused)."""
    header = ("index", "name", "in", "out", "default Hz", "input kHz", "output kHz")
    rows = [header] + [
        (
            str(d.index),
            d.name,
            str(d.input_channels),
            str(d.output_channels),
            str(d.default_rate),
            _khz(d.input_rates, d.input_rate_channels),
            _khz(d.output_rates, d.output_rate_channels),
        )
        for d in devices
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {0, 2, 3, 4}  # numbers
    lines = [
        "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Finding a device and its format


def resolve_device(
    devices: Sequence[DeviceInfo], wanted: str | int, *, is_input: bool, cards: str | None = None
) -> DeviceInfo:
    """The device ``wanted`` names, among those with channels in the wanted direction.

    In order: an exact name (``default``, ``fakemic``); an ALSA PCM string PortAudio cannot
    list (``plughw:CARD=Device,DEV=0``, ``sysdefault:CARD=Device``), found as piagent's alias
    of it (``alsanames.ALIASES``, which the caller defined); a raw ``hw:`` name translated by
    :func:`alsa_hw_name` (``hw:CARD=Device,DEV=0`` finds ``... (hw:1,0)``); a unique name
    containing ``wanted`` (case-insensitive: ``USB``); an index (an int, or a string of
    digits). Raises DeviceError saying what exists otherwise.
    """
    direction = "input" if is_input else "output"
    usable = [d for d in devices if d.channels(is_input=is_input) > 0]
    if isinstance(wanted, str):
        exact = [d for d in usable if d.name == wanted]
        if exact:
            return exact[0]
        pcm = alsa_pcm_to_wrap(wanted)
        if pcm is not None:
            alias = [d for d in usable if d.name == ALIASES[is_input]]
            if alias:
                return alias[0]
            tool = "arecord" if is_input else "aplay"
            raise DeviceError(
                f"{direction} device {pcm!r}: ALSA cannot open it for "
                f"{'capture' if is_input else 'playback'} (sound cards: "
                f"{describe_cards(cards)}); check that its card is connected and the name is "
                f"right (`{tool} -L` lists ALSA's names)"
            )
        if is_alsa_hw_name(wanted):
            hw = alsa_hw_name(wanted, cards)
            hits = [d for d in usable if hw is not None and d.name.endswith(f"({hw})")]
            if hits:
                return hits[0]
            what = f"{hw} is not listed" if hw else "its sound card does not exist"
            raise DeviceError(
                f"{direction} device {wanted!r}: {what} (sound cards: {describe_cards(cards)}); "
                "check that it is connected (run `piagent devices`)"
            )
        needle = wanted.casefold()
        partial = [d for d in usable if needle in d.name.casefold()]
        if len(partial) == 1:
            return partial[0]
        if len(partial) > 1:
            names = ", ".join(repr(d.name) for d in partial)
            raise DeviceError(f"{direction} device {wanted!r} is ambiguous: it matches {names}")
        if wanted.strip().isdigit():
            wanted = int(wanted)
    if isinstance(wanted, int):
        for d in usable:
            if d.index == wanted:
                return d
    known = "; ".join(f"{d.index}: {d.name!r}" for d in usable) or "none"
    where = "exists but has no channels" if any(d.name == wanted for d in devices) else "not found"
    raise DeviceError(
        f"{direction} device {wanted!r} {where}; {direction} devices: {known} "
        "(run `piagent devices`)"
    )


def negotiate_rate(
    configured: int | None,
    default_rate: int,
    accepts: Callable[[int], bool],
    *,
    device: str = "device",
    channels: int = 1,
) -> int:
    """The sample rate to open at: ``configured`` if given (DeviceError if the device refuses
    it), else the device's ``default_rate`` if it accepts it, else the first of FALLBACK_RATES
    it accepts. ``accepts(rate)`` says whether the device takes int16 with ``channels`` at
    ``rate``.
    """
    what = f"{describe_channels(channels)}, 16-bit"
    if configured is not None:
        if accepts(configured):
            return configured
        accepted = [r for r in PROBED_RATES if r != configured and accepts(r)]
        raise DeviceError(
            f"{device} does not accept {configured} Hz ({what}); it accepts: "
            f"{', '.join(map(str, accepted)) or 'none of the usual rates'}"
        )
    for rate in (default_rate, *FALLBACK_RATES):
        if rate > 0 and accepts(rate):
            return rate
    raise DeviceError(f"{device} accepts none of {', '.join(map(str, FALLBACK_RATES))} Hz ({what})")


def _with_channels(accepts: Callable[[int, int], bool], channels: int) -> Callable[[int], bool]:
    return lambda rate: accepts(rate, channels)


def negotiate_format(
    configured: int | None,
    default_rate: int,
    candidates: Sequence[int],
    accepts: Callable[[int, int], bool],
    *,
    device: str = "device",
) -> tuple[int, int]:
    """(channels, rate) to open at: the first of ``candidates`` (channel counts, best first)
    with which the device accepts ``configured``, or else any rate :func:`negotiate_rate`
    would choose. ``accepts(rate, channels)`` probes the device. DeviceError when no channel
    count works: its message comes from the first channel count that takes any usual rate.
    """
    if not candidates:
        raise DeviceError(f"{device} has no channels in this direction")
    rates = (configured,) if configured is not None else (default_rate, *FALLBACK_RATES)
    for channels in candidates:
        if any(rate > 0 and accepts(rate, channels) for rate in rates):
            rate = negotiate_rate(
                configured,
                default_rate,
                _with_channels(accepts, channels),
                device=device,
                channels=channels,
            )
            return channels, rate
    for channels in candidates:  # explain with the channel count the device does take
        if any(accepts(rate, channels) for rate in PROBED_RATES):
            negotiate_rate(
                configured,
                default_rate,
                _with_channels(accepts, channels),
                device=device,
                channels=channels,
            )
    raise DeviceError(
        f"{device} accepts none of {', '.join(map(str, PROBED_RATES))} Hz "
        f"({describe_channels(candidates)}, 16-bit)"
    )
