"""Typed readers for one mapping of the config file: each problem recorded, none raised.

Owns the converters (a raw YAML value to a typed value, or ``Invalid`` with a hint), the way a
value is shown in a problem message (``show``, ``did_you_mean``), the shared patterns (names,
language codes, IDs without spaces), and ``Reader``: the keys of one mapping read through
converters, each problem recorded under its dotted key path while the default is returned
instead, so that one pass finds every problem. ``Context`` collects the problems and, at the
end, reports the keys nobody read as unknown.

Internal to ``piagent.config``: ``sections`` reads the file's sections with these. Pure.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from pathlib import Path
from typing import Final, Literal, TypeAlias, TypeVar
from urllib.parse import urlsplit

from piagent.config.schema import Color, DynamicValue
from piagent.errors import ConfigError

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PY_TARGET = re.compile(r"{0}(\.{0})*:{0}(\.{0})*".format(r"[A-Za-z_][A-Za-z0-9_]*"))
LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z]{2,4})?")
NO_SPACE = re.compile(r"\S+")
_HEX_COLOR = re.compile(r"#([0-9a-fA-F]{2})([0-9a-fA-F]{2})([0-9a-fA-F]{2})")
_FILE_MODE = re.compile(r"(?:0o|0)?([0-7]{3})")

# --- Typed field readers -------------------------------------------------------------------
# A converter turns one raw YAML value into a typed value or raises Invalid; a Reader applies
# converters to the keys of one mapping, records each problem under its key path and returns
# the default instead, so one pass finds everything.

T = TypeVar("T")
S = TypeVar("S", bound=str)
Convert: TypeAlias = Callable[[object], T]
MISSING: Final = object()


class Invalid(Exception):
    def __init__(self, hint: str = "") -> None:
        super().__init__(hint)
        self.hint = hint


def show(raw: object) -> str:
    """A raw value as the problem message shows it (YAML spelling; long strings cut)."""
    if raw is None or isinstance(raw, bool):
        return {None: "null", True: "true", False: "false"}[raw]
    if isinstance(raw, str):
        return repr(raw if len(raw) <= 60 else raw[:57] + "...")
    if isinstance(raw, int | float):
        return repr(raw)
    if isinstance(raw, list) and len(text := repr(raw)) <= 60:
        return text
    return "a mapping" if isinstance(raw, Mapping) else f"a {type(raw).__name__}"


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def int_range(lo: int, hi: int) -> Convert[int]:
    def convert(raw: object) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
            raise Invalid
        return raw

    return convert


def float_range(lo: float, hi: float) -> Convert[float]:
    def convert(raw: object) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not lo <= raw <= hi:
            raise Invalid  # NaN fails the range test too
        return float(raw)

    return convert


def boolean(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise Invalid
    return raw


def string(pattern: re.Pattern[str] | None = NO_SPACE, *, empty: bool = False) -> Convert[str]:
    """A string matching ``pattern`` (default: non-empty, no whitespace) or any string."""

    def convert(raw: object) -> str:
        if isinstance(raw, bool):  # YAML 1.1 reads no, yes, on, off as booleans
            raise Invalid(" (YAML reads yes/no/on/off as booleans: quote the value)")
        if not isinstance(raw, str) or (pattern and not pattern.fullmatch(raw)):
            raise Invalid
        if not raw and not empty:
            raise Invalid
        return raw

    return convert


def one_of(options: tuple[S, ...]) -> Convert[S]:
    def convert(raw: object) -> S:
        for option in options:
            if raw == option and isinstance(raw, str):
                return option
        raise Invalid(did_you_mean(raw, options) if isinstance(raw, str) else "")

    return convert


def optional(convert: Convert[T]) -> Convert[T | None]:
    return lambda raw: None if raw is None else convert(raw)


def file_path(raw: object) -> Path:
    if not isinstance(raw, str) or not raw or "\0" in raw:
        raise Invalid
    return Path(raw)


def url(schemes: tuple[str, ...], *, bare: bool) -> Convert[str]:
    """A URL with one of ``schemes``, a host, no credentials, query or fragment; no path if bare."""

    def convert(raw: object) -> str:
        if not isinstance(raw, str) or not NO_SPACE.fullmatch(raw):
            raise Invalid
        try:
            parts = urlsplit(raw)
            parts.port  # noqa: B018 -- raises ValueError for a bad port
        except ValueError:
            raise Invalid from None
        if (
            parts.scheme not in schemes
            or not parts.hostname
            or parts.username is not None
            or parts.query
            or parts.fragment
            or (bare and parts.path not in ("", "/"))
        ):
            raise Invalid
        return raw.rstrip("/")

    return convert


def _hex_color(raw: str) -> Color:
    match = _HEX_COLOR.fullmatch(raw)
    if not match:
        raise Invalid
    red, green, blue = (int(part, 16) / 255 for part in match.groups())
    return (red, green, blue)


def color(raw: object) -> Color:
    if isinstance(raw, str):
        return _hex_color(raw)
    if not isinstance(raw, list) or len(raw) != 3:
        raise Invalid
    red, green, blue = (float_range(0.0, 1.0)(part) for part in raw)
    return (red, green, blue)


def file_mode(raw: object) -> int:
    if isinstance(raw, str) and (match := _FILE_MODE.fullmatch(raw)):
        return int(match.group(1), 8)
    return int_range(0, 0o777)(raw)


def journal_setting(raw: object) -> bool | Literal["auto"]:
    return "auto" if raw == "auto" else boolean(raw)


def dynamic_value(raw: object) -> DynamicValue:
    if isinstance(raw, float) and not math.isfinite(raw):
        raise Invalid
    if not isinstance(raw, str | int | float):  # bool is an int
        raise Invalid
    return raw


def id_list(raw: object) -> tuple[str, ...]:
    """A list of IDs (strings without spaces), each once; [] is a list too."""
    if not isinstance(raw, list) or not all(
        isinstance(i, str) and NO_SPACE.fullmatch(i) for i in raw
    ):
        raise Invalid
    if len(set(raw)) != len(raw):
        raise Invalid(" (an ID is listed twice)")
    return tuple(raw)


def argv(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(a, str) for a in raw):
        raise Invalid
    if not Path(raw[0]).is_absolute():
        raise Invalid(" (the first element must be an absolute path; no shell is used)")
    return tuple(raw)


class Context:
    """The problems found so far, and every reader, to report unknown keys at the end."""

    def __init__(self) -> None:
        self.problems: list[ConfigError] = []
        self.readers: list[Reader] = []

    def add(self, key_path: str, message: str) -> None:
        self.problems.append(ConfigError(key_path, message))

    def failed(self, *key_paths: str) -> bool:
        return any(p.key_path in key_paths for p in self.problems)

    def finish(self) -> None:
        for reader in self.readers:
            reader.report_unknown_keys()


class Reader:
    """One mapping of the file: typed readers for its keys, each recording what it read."""

    def __init__(self, ctx: Context, path: str, data: object) -> None:
        self.ctx, self.path, self.seen = ctx, path, set[Hashable]()
        self.data: Mapping[Hashable, object] = data if isinstance(data, Mapping) else {}
        self.valid = data is None or isinstance(data, Mapping)  # else its keys go unreported
        if not self.valid:
            ctx.add(path, f"expected a mapping, got {show(data)}")
        ctx.readers.append(self)

    def key(self, name: object) -> str:
        return f"{self.path}.{name}" if self.path else str(name)

    def read(
        self, name: str, default: T, convert: Convert[T], expected: str, *, required: bool = False
    ) -> T:
        """The value of key ``name`` converted, or ``default`` if absent or invalid."""
        self.seen.add(name)
        raw = self.data.get(name, MISSING)
        if raw is MISSING:
            if required and self.valid:
                self.ctx.add(self.key(name), f"missing: expected {expected}")
            return default
        try:
            return convert(raw)
        except Invalid as exc:
            self.ctx.add(self.key(name), f"expected {expected}, got {show(raw)}{exc.hint}")
            return default

    def integer(self, name: str, default: int, lo: int, hi: int, what: str) -> int:
        return self.read(name, default, int_range(lo, hi), f"{what} ({lo}-{hi})")

    def opt_integer(self, name: str, lo: int, hi: int, what: str) -> int | None:
        return self.read(name, None, optional(int_range(lo, hi)), f"{what} ({lo}-{hi})")

    def number(self, name: str, default: float, lo: float, hi: float, what: str) -> float:
        return self.read(name, default, float_range(lo, hi), f"{what} ({lo:g}-{hi:g})")

    def opt_number(self, name: str, lo: float, hi: float, what: str) -> float | None:
        return self.read(name, None, optional(float_range(lo, hi)), f"{what} ({lo:g}-{hi:g})")

    def flag(self, name: str, default: bool) -> bool:
        return self.read(name, default, boolean, "true or false")

    def choice(self, name: str, default: S, options: tuple[S, ...]) -> S:
        return self.read(name, default, one_of(options), "one of " + ", ".join(options))

    def text(
        self, name: str, what: str = "a non-empty string", *, empty: bool = False
    ) -> str | None:
        """An optional free-text string (None when absent or null)."""
        return self.read(name, None, optional(string(None, empty=empty)), what)

    def section(self, name: str) -> Reader:
        self.seen.add(name)
        return Reader(self.ctx, self.key(name), self.data.get(name))

    def entries(self, name: str) -> list[tuple[str, str, object]]:
        """A mapping whose keys the user names: (key, key path, value) for each string key."""
        sub = self.section(name)
        sub.seen.update(sub.data)
        found = []
        for key, value in sub.data.items():
            if isinstance(key, str):
                found.append((key, sub.key(key), value))
            else:
                self.ctx.add(sub.key(key), f"expected a name (a string), got {show(key)}")
        return found

    def report_unknown_keys(self) -> None:
        known = sorted(str(k) for k in self.seen)
        for key in self.data:
            if key not in self.seen:
                hint = did_you_mean(key, known) or f" (known keys: {', '.join(known)})"
                self.ctx.add(self.key(key), f"unknown key{hint}")
