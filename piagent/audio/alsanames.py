"""ALSA device names as ALSA users write them, mapped onto what PortAudio can open.

PortAudio's ALSA backend lists each card's raw ``hw`` devices (as ``Card: Device (hw:N,M)``)
and the PCMs the ALSA configuration names without arguments (``default``, ``sysdefault``,
``dmix`` ...); it hides names starting with ``hw plughw plug dsnoop tee file null shm cards
rate_convert``, and it cannot open a PCM string it did not list. So piagent maps the forms
users write:

- ``hw:1,0``, ``hw:CARD=Device,DEV=0``, ``hw:Device``: the raw device, PortAudio's own
  ``(hw:N,M)`` entry; a card given by ID is looked up in /proc/asound/cards
  (:func:`alsa_hw_name`). piagent negotiates channels and rate itself.
- Any other ALSA PCM string with arguments (``plughw:CARD=Device,DEV=0``,
  ``sysdefault:CARD=Device``, ``dmix:...``, ``plug:...``, ``hw:1,0,1``): PortAudio cannot
  name it, so piagent defines an alias of its own, ``pcm.piagent_input { type asym;
  capture.pcm "..." }`` (``piagent_output`` for playback), in a small ALSA configuration file
  (:class:`AlsaOverlay`) read in addition to the system's (``$ALSA_CONFIG_PATH`` holds a
  colon-separated list of files; alsa-lib rereads it at every open when it changed), and
  opens PortAudio's device of that name. The user's plug layer is kept.
- Everything else (``default``, a PCM name, a part of PortAudio's name, an index) is
  resolved among PortAudio's devices as it is.

Owns the parsing of these names, the alias names and the overlay file; imports nothing from
piagent but ``audio.alsalib``. The overlay writes a file and sets ``$ALSA_CONFIG_PATH`` in
this process only when ``install()`` is called, never at import.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Final

from piagent.audio import alsalib

__all__ = [
    "ALIASES",
    "AlsaOverlay",
    "alsa_hw_name",
    "alsa_pcm_to_wrap",
    "overlay_text",
    "read_cards",
]

# The PortAudio device names piagent gives to the PCMs it defines, by direction (is_input).
ALIASES: Final[Mapping[bool, str]] = {True: "piagent_input", False: "piagent_output"}

_PROC_ASOUND_CARDS: Final = Path("/proc/asound/cards")
_ALSA_HW = re.compile(r"hw:(?:CARD=)?(?P<card>[^,\s]+)(?:,(?:DEV=)?(?P<dev>\d+))?", re.IGNORECASE)
_CARD_LINE = re.compile(r"^\s*(?P<number>\d+)\s+\[(?P<id>[^\]]+?)\s*\]")
# ALSA's "name:arguments" syntax; PortAudio's own names ("USB Audio: - (hw:1,0)") contain
# spaces, so they never match.
_PCM_WITH_ARGUMENTS = re.compile(r"[A-Za-z_][\w.-]*:\S+")


def read_cards() -> str | None:
    """The text of /proc/asound/cards, or None without ALSA."""
    try:
        return _PROC_ASOUND_CARDS.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _card_numbers(cards: str) -> dict[str, str]:
    return {m["id"]: m["number"] for line in cards.splitlines() if (m := _CARD_LINE.match(line))}


def alsa_hw_name(name: str, cards: str | None = None) -> str | None:
    """``hw:N,M`` for a raw ALSA hardware name, as PortAudio shows it: ``... (hw:N,M)``.

    Takes ``hw:1``, ``hw:1,0``, ``hw:CARD=Device,DEV=0``, ``hw:Device``; a card given by
    its ID is looked up in ``cards`` (the text of /proc/asound/cards, read when None). None
    when ``name`` is not such a name or its card does not exist (yet).
    """
    match = _ALSA_HW.fullmatch(name.strip())
    if match is None:
        return None
    card, dev = match["card"], match["dev"] or "0"
    if not card.isdigit():
        if cards is None:
            cards = read_cards()
        numbers = _card_numbers(cards or "")
        if card not in numbers:
            return None
        card = numbers[card]
    return f"hw:{int(card)},{int(dev)}"


def is_alsa_hw_name(name: str) -> bool:
    """Whether ``name`` is a raw ``hw:`` name :func:`alsa_hw_name` translates."""
    return _ALSA_HW.fullmatch(name.strip()) is not None


def describe_cards(cards: str | None = None) -> str:
    """``0 [Headphones], 1 [Device]`` from /proc/asound/cards (read when None), or ``none``."""
    numbers = _card_numbers((read_cards() if cards is None else cards) or "")
    return ", ".join(f"{number} [{card}]" for card, number in numbers.items()) or "none"


def alsa_pcm_to_wrap(wanted: str | int) -> str | None:
    """The ALSA PCM string piagent must define an alias for, or None when PortAudio can find
    ``wanted`` by itself (an index, a listed name, a part of one, or a raw ``hw:`` name)."""
    if not isinstance(wanted, str):
        return None
    name = wanted.strip()
    if is_alsa_hw_name(name) or _PCM_WITH_ARGUMENTS.fullmatch(name) is None:
        return None
    return name


def _quoted(text: str) -> str:
    """An ALSA configuration string literal (alsa-lib unescapes backslashes in quotes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def overlay_text(pcms: Mapping[bool, str]) -> str:
    """The ALSA configuration defining ``ALIASES[is_input]`` for each (is_input -> PCM)."""
    lines = ["# Written by piagent: the ALSA devices its configuration names.\n"]
    for is_input, pcm in sorted(pcms.items()):
        direction = "capture" if is_input else "playback"
        lines.append(f"pcm.{ALIASES[is_input]} {{ type asym; {direction}.pcm {_quoted(pcm)} }}\n")
    return "".join(lines)


class AlsaOverlay:
    """piagent's own ALSA configuration file, read by alsa-lib after the system's.

    ``define`` records a PCM per direction (no I/O); ``install`` writes the file and points
    ``$ALSA_CONFIG_PATH`` at the system's configuration followed by it. The system's part is
    the ``$ALSA_CONFIG_PATH`` found at the first install (a test's fake card), else
    ``alsa.conf`` in alsa-lib's configuration directory, which itself reads /etc/asound.conf
    and ~/.asoundrc as usual. The file goes into ``$RUNTIME_DIRECTORY`` (systemd's
    ``RuntimeDirectory=``), else a private temporary directory removed at exit.
    """

    def __init__(self) -> None:
        self._pcms: dict[bool, str] = {}
        self._base: str | None = None
        self._path: Path | None = None
        self._written: str | None = None

    @property
    def pcms(self) -> Mapping[bool, str]:
        """The PCM defined per direction (is_input)."""
        return dict(self._pcms)

    def define(self, pcm: str, *, is_input: bool) -> str:
        """Define ``ALIASES[is_input]`` as ``pcm``; returns the alias (PortAudio's name)."""
        self._pcms[is_input] = pcm
        return ALIASES[is_input]

    def install(self, environ: MutableMapping[str, str] | None = None) -> Path | None:
        """Write the file if it changed and set ``$ALSA_CONFIG_PATH``; None with nothing to
        define (then the environment is left alone). Call before PortAudio initialises."""
        if not self._pcms:
            return None
        environ = os.environ if environ is None else environ
        if self._path is None:
            system = Path(alsalib.config_topdir()) / "alsa.conf"
            self._base = environ.get("ALSA_CONFIG_PATH") or str(system)
            self._path = _overlay_directory(environ) / f"piagent-asound-{os.getpid()}.conf"
        text = overlay_text(self._pcms)
        if text != self._written:
            self._path.write_text(text, encoding="utf-8")
            self._written = text
        environ["ALSA_CONFIG_PATH"] = f"{self._base}:{self._path}"
        return self._path


def _overlay_directory(environ: Mapping[str, str]) -> Path:
    runtime = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime and Path(runtime).is_dir():
        return Path(runtime)
    directory = tempfile.mkdtemp(prefix="piagent-alsa-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return Path(directory)
