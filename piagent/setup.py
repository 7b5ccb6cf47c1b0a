"""``piagent setup``: the first run on a Pi: pick the microphone and the speaker, check the
microphone's level, and write the choice (and the agent's ID) into the config file.

Owns choosing devices (:func:`candidates`: hardware devices by their stable ALSA names,
``plughw:CARD=<id>,DEV=<n>``, USB ones first), editing the YAML file in place with its
comments kept (:func:`set_keys`, a line-based edit of the named keys only), and replacing the
file atomically, with its mode and owner, once the result has been validated by
:func:`piagent.config.check_config`. An edit that would leave the file invalid is refused
(exit 78) and the file left alone.

PyAudio is only reached through ``piagent.audio.devices``' public functions and the doctor's
recording probe, imported when devices are listed. No I/O at import.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

import yaml

from piagent.errors import ConfigError, ConfigProblems

__all__ = [
    "Candidate",
    "SetupError",
    "candidates",
    "parse_cards",
    "replace_file",
    "run_setup",
    "set_keys",
]

EX_OK: Final = 0
EX_UNAVAILABLE: Final = 69
EX_CONFIG: Final = 78
RECORD_SECONDS: Final = 2.0
PROC_ASOUND_CARDS: Final = Path("/proc/asound/cards")

KeyPath = tuple[str, ...]


class SetupError(Exception):
    """What setup cannot do, worded for the user; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = EX_CONFIG) -> None:
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------------------------
# Devices


@dataclass(frozen=True, slots=True)
class Card:
    """One line pair of /proc/asound/cards: `` 1 [Device ]: USB-Audio - USB Audio Device``."""

    number: int
    id: str  # stable across boots, unlike the number
    driver: str
    description: str

    @property
    def is_usb(self) -> bool:
        return self.driver.lower().startswith("usb")


_CARD = re.compile(r"^\s*(\d+)\s+\[([^\]]+?)\s*\]:\s*(\S+)\s+-\s+(.*?)\s*$")
_HW = re.compile(r"\(hw:(\d+),(\d+)\)\s*$")


def parse_cards(text: str) -> dict[int, Card]:
    """The cards of /proc/asound/cards' text, by number."""
    cards = {}
    for line in text.splitlines():
        if match := _CARD.match(line):
            number = int(match[1])
            cards[number] = Card(number, match[2], match[3], match[4])
    return cards


@dataclass(frozen=True, slots=True)
class Candidate:
    """A device setup offers: its stable name for the config and what to show."""

    name: str  # plughw:CARD=<id>,DEV=<n>: plug converts rate and channels as needed
    label: str
    is_usb: bool


def candidates(devices: Sequence[object], cards_text: str, *, is_input: bool) -> list[Candidate]:
    """The hardware devices (PortAudio names ending ``(hw:N,M)``) with channels in the wanted
    direction, named by card ID rather than number (numbers change across boots when USB
    cards are plugged in a different order); USB ones first, then in card order."""
    from piagent.audio.devices import DeviceInfo

    cards = parse_cards(cards_text)
    found: list[tuple[bool, int, int, Candidate]] = []
    for device in devices:
        assert isinstance(device, DeviceInfo)
        match = _HW.search(device.name)
        if match is None or device.channels(is_input=is_input) <= 0:
            continue
        number, dev = int(match[1]), int(match[2])
        card = cards.get(number)
        if card is None:
            continue
        name = f"plughw:CARD={card.id},DEV={dev}"
        label = f"{name}  ({card.description}; PortAudio: {device.name})"
        found.append((not card.is_usb, number, dev, Candidate(name, label, card.is_usb)))
    return [c for *_, c in sorted(found, key=lambda f: f[:3])]


# ----------------------------------------------------------------------------------------------
# Editing the YAML file in place


_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?P<rest>.*)$")


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar: plain when YAML reads it back unchanged, else quoted."""
    plain_ok = "#" not in value and ": " not in value and value == value.strip()
    try:
        if plain_ok and value and yaml.safe_load(value) == value:
            return value
    except yaml.YAMLError:
        pass
    return json.dumps(value)  # a JSON string is a YAML double-quoted scalar


def _split_comment(rest: str) -> tuple[str, str]:
    """``(value, "   # comment")`` of what follows ``key:`` (a ``#`` after a space starts a
    comment unless inside quotes)."""
    quote = ""
    for i, char in enumerate(rest):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or rest[i - 1] in " \t"):
            value = rest[:i].rstrip()
            return value, rest[len(value) :]
    return rest.rstrip(), ""


def set_keys(text: str, values: Mapping[KeyPath, str]) -> str:
    """``text`` with each key path set to its string value, every other line untouched.

    A key present as a scalar (``device: default   # comment``) has its value replaced, the
    comment kept at its column; a missing key is added under its section (created at the end
    when absent). Raises SetupError for what a line edit cannot do safely: a key inside a
    flow mapping (``input: {device: x}``) or one holding a block.
    """
    lines = text.splitlines(keepends=True)
    todo = dict(values)
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing block keys
    ends: dict[KeyPath, int] = {}  # section path -> index after its last line
    starts: dict[KeyPath, tuple[int, int]] = {}  # section path -> (header index, child indent)
    for i, line in enumerate(lines):
        match = _KEY_LINE.match(line.rstrip("\n"))
        if match is None:
            if line.strip() and not line.lstrip().startswith("#"):
                for depth in range(1, len(stack) + 1):
                    ends[tuple(k for _, k in stack[:depth])] = i + 1
            continue
        indent, key = len(match["indent"]), match["key"]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(k for _, k in stack), key)
        for depth in range(1, len(stack) + 1):
            section = tuple(k for _, k in stack[:depth])
            ends[section] = i + 1
            header, child = starts[section]
            if child < 0:
                starts[section] = (header, indent)
        value, comment = _split_comment(match["rest"])
        if path in todo:
            if not value.strip():
                raise SetupError(f"{'.'.join(path)} holds a block: edit it by hand")
            new = f"{match['indent']}{key}: {_scalar(todo.pop(path))}"
            if comment:
                remark = comment.lstrip()
                column = len(line.rstrip("\n")) - len(remark)  # keep the comment's column
                new = new.ljust(column) if len(new) < column else new + " "
                new += remark
            lines[i] = new + "\n"
        elif value.strip().startswith("{") and any(p[: len(path)] == path for p in todo):
            raise SetupError(f"{'.'.join(path)} is a flow mapping ({{...}}): edit it by hand")
        if not value.strip():
            stack.append((indent, key))
            starts[path] = (i, -1)
            ends[path] = i + 1
    # Keys not found: under the deepest existing section, after its last line.
    for path, value in todo.items():
        for depth in range(len(path) - 1, -1, -1):
            section = path[:depth]
            if depth == 0 or section in starts:
                break
        if depth == 0:
            at, indent = len(lines), 0
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
        else:
            header, child = starts[section]
            at = ends[section]
            indent = child if child >= 0 else 2 * depth
        added = [f"{' ' * (indent + 2 * n)}{name}:\n" for n, name in enumerate(path[depth:-1])]
        added.append(
            f"{' ' * (indent + 2 * (len(path) - depth - 1))}{path[-1]}: {_scalar(value)}\n"
        )
        lines[at:at] = added
        # Later insertions into the same sections shift down.
        ends = {p: e + len(added) if e >= at else e for p, e in ends.items()}
        starts = {p: (h + len(added) if h >= at else h, c) for p, (h, c) in starts.items()}
        for n in range(len(path) - depth - 1):
            starts[path[: depth + n + 1]] = (at + n, indent + 2 * (n + 1))
            ends[path[: depth + n + 1]] = at + len(added)
    return "".join(lines)


def _lookup(data: object, path: KeyPath) -> object:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _agent_id_of(text: str) -> object:
    try:
        return _lookup(yaml.safe_load(text), ("agent", "agent_id"))
    except yaml.YAMLError:
        return None


def validate(text: str, values: Mapping[KeyPath, str], path: Path) -> None:
    """Raise SetupError unless ``text`` reads back with ``values`` and is a valid config (as
    ``piagent check-config`` judges it), one line per problem."""
    from piagent.config import check_config

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SetupError(f"{path}: the edit would break the YAML ({exc}); file unchanged") from exc
    for key, value in values.items():
        if _lookup(data, key) != value:
            raise SetupError(f"{path}: could not set {'.'.join(key)}: edit it by hand")
    with tempfile.TemporaryDirectory(prefix="piagent-setup-") as directory:
        trial = Path(directory, path.name)
        trial.write_text(text, encoding="utf-8")
        try:
            check_config(trial)
        except ConfigProblems as exc:
            lines = [str(p) for p in exc.problems]
            raise SetupError(
                f"{path}: not changed: the result would be invalid:\n" + "\n".join(lines)
            ) from exc
        except ConfigError as exc:
            raise SetupError(f"{path}: not changed: the result would be invalid: {exc}") from exc


def replace_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file in the same directory, renamed
    over it), keeping its mode and owner: /etc/piagent/config.yaml is root:piagent 0640."""
    info = path.stat()
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fchmod(file.fileno(), info.st_mode & 0o7777)
            if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
                os.fchown(file.fileno(), info.st_uid, info.st_gid)
            os.fsync(file.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------------------------
# The command


@dataclass(frozen=True, slots=True)
class Options:
    config: Path
    agent_id: str | None = None
    server: str | None = None
    input: str | None = None
    output: str | None = None
    yes: bool = False


Ask = Callable[[str], str]


def _pick(
    what: str, found: list[Candidate], given: str | None, ask: Ask | None, out: TextIO
) -> str | None:
    """The device name to write: ``given`` as is; else asked for, or the first candidate."""
    if given is not None:
        return given
    if not found:
        return None
    out.write(f"{what}:\n")
    for n, candidate in enumerate(found, 1):
        out.write(f"  {n}. {candidate.label}\n")
    if ask is None:
        out.write(f"{what}: {found[0].name}\n")
        return found[0].name
    while True:
        answer = ask(f"{what} [1-{len(found)}, Enter for 1]: ").strip()
        if not answer:
            return found[0].name
        if answer.isdigit() and 1 <= int(answer) <= len(found):
            return found[int(answer) - 1].name
        out.write(f"  type a number from 1 to {len(found)}\n")


def check_level(device: str, out: TextIO) -> None:
    """Record RECORD_SECONDS from ``device`` and say how loud it is (the doctor's judgement)."""
    from piagent.config import AudioInputConfig
    from piagent.doctor.probes import judge, record_device

    out.write(f"recording {RECORD_SECONDS:g} s from {device}: say something...\n")
    out.flush()
    config = AudioInputConfig(device=device)
    try:
        take = record_device(config, RECORD_SECONDS)
    except Exception as exc:  # PortAudio's many errors: the choice is still written
        out.write(f"  cannot record: {exc}\n")
        return
    check = judge(take, "pyaudio", config)
    out.write(f"  {check.detail}\n")
    if check.hint:
        out.write(f"  -> {check.hint}\n")


def run_setup(
    options: Options,
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    ask: Ask | None = None,
    cards_text: str | None = None,
) -> int:
    """``piagent setup``: returns the exit status (0; 69: no device to choose; 78: the file
    is missing or the result would be invalid)."""
    path = options.config
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        err.write(f"piagent setup: cannot read {path}: {exc.strerror or exc}\n")
        return EX_CONFIG
    values: dict[KeyPath, str] = {}
    if options.agent_id is not None:
        values["agent", "agent_id"] = options.agent_id
    if options.server is not None:
        values["agent", "server"] = options.server
    try:
        from piagent.audio.devices import list_devices

        devices = list_devices()
    except Exception as exc:  # no PortAudio: the agent keys can still be set
        err.write(f"piagent setup: cannot list the sound devices: {exc}\n")
        devices = []
    if cards_text is None:
        try:
            cards_text = PROC_ASOUND_CARDS.read_text(encoding="utf-8", errors="replace")
        except OSError:
            cards_text = ""
    interactive = None if options.yes else ask
    if options.agent_id is None and interactive is not None and not _agent_id_of(text):
        answer = interactive("agent ID (ElevenLabs dashboard, Agents, your agent): ").strip()
        if answer:
            values["agent", "agent_id"] = answer
    mic = _pick(
        "microphone", candidates(devices, cards_text, is_input=True), options.input,
        interactive, out,
    )  # fmt: skip
    speaker = _pick(
        "speaker", candidates(devices, cards_text, is_input=False), options.output,
        interactive, out,
    )  # fmt: skip
    if mic is None or speaker is None:
        which, option = ("microphone", "--input") if mic is None else ("speaker", "--output")
        err.write(
            f"piagent setup: no sound card with a {which} found (`piagent devices` lists what "
            f"PortAudio sees): plug one in, or name it with {option}\n"
        )
        return EX_UNAVAILABLE
    values["audio", "input", "device"] = mic
    values["audio", "output", "device"] = speaker
    if devices:
        check_level(mic, out)
    try:
        edited = set_keys(text, values)
        validate(edited, values, path)
    except SetupError as exc:
        err.write(f"piagent setup: {exc}\n")
        return exc.status
    if edited == text:
        out.write(f"{path}: already set, unchanged\n")
        return EX_OK
    replace_file(path, edited)
    for key, value in values.items():
        out.write(f"{path}: {'.'.join(key)} = {value}\n")
    out.write("next: sudo piagent doctor, then sudo systemctl restart piagent\n")
    return EX_OK
