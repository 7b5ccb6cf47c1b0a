"""The built-in tools a config may enable: ``current_time``, ``set_volume``, ``hang_up`` and
``set_led``, each a quick call on the daemon's ``ToolHost``, and ``BuiltinRunner``, which runs
one within ``BUILTIN_TIMEOUT`` and turns a bad parameter into an error the agent can read."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from piagent.protocol.messages import ClientToolCall
from piagent.tools.declarations import (
    BUILTIN_TIMEOUT,
    BadParameters,
    LedRequest,
    Outcome,
    ToolHost,
    within,
)

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


async def _current_time(host: ToolHost, params: Mapping[str, Any]) -> str:
    zone_name = params.get("timezone")
    if zone_name is None or zone_name == "":
        now = datetime.now().astimezone()
    else:
        expected = "expected an IANA time zone name such as 'Europe/Berlin'"
        if not isinstance(zone_name, str):
            raise BadParameters(f"'timezone': {expected}")
        try:
            # ZoneInfo reads the tz database from disk the first time: keep that off the loop.
            zone = await asyncio.to_thread(ZoneInfo, zone_name)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise BadParameters(f"unknown time zone {zone_name!r}: {expected}") from exc
        now = datetime.now(zone)
    return json.dumps(
        {
            "iso": now.isoformat(timespec="seconds"),
            "weekday": _WEEKDAYS[now.weekday()],
            "timezone": now.tzname() or "",
        }
    )


def _percent(value: object, expected: str) -> float:
    """Read a volume in percent: an integer or a number beyond +-1 is percent, a fraction
    (a float from -1.0 to 1.0) is scaled, so ``50`` and ``0.5`` both mean half, ``1`` is one
    percent and ``1.0`` is full; ``"50%"`` and numeric strings are accepted."""
    number: int | float
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadParameters(expected)
    if isinstance(value, str):
        text = value.strip()
        try:
            if text.endswith("%"):
                return _finite(float(text[:-1]), expected)
            number = int(text) if text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise BadParameters(expected) from None
    else:
        number = value
    number = _finite(number, expected)
    if isinstance(number, float) and abs(number) <= 1.0:
        return number * 100.0
    return float(number)


def _finite(number: float, expected: str) -> float:
    if not math.isfinite(number):
        raise BadParameters(expected)
    return number


async def _set_volume(host: ToolHost, params: Mapping[str, Any]) -> str:
    level, change = params.get("level"), params.get("change")
    if (level is None) == (change is None):
        raise BadParameters(
            "expected either 'level' (0-100, or 0.0-1.0) or 'change' (relative, e.g. -10)"
        )
    if level is not None:
        target = _percent(level, "'level': expected a number, 0-100 or 0.0-1.0")
    else:
        expected = "'change': expected a relative number, e.g. -10 (percent) or -0.1"
        target = host.get_volume() * 100.0 + _percent(change, expected)
    applied = host.set_volume(min(max(target, 0.0), 100.0) / 100.0)
    return json.dumps({"level": round(applied * 100.0)})


async def _hang_up(host: ToolHost, params: Mapping[str, Any]) -> str:
    host.request_hang_up()
    return "ok"


async def _set_led(host: ToolHost, params: Mapping[str, Any]) -> str:
    state, color, on = params.get("state"), params.get("color"), params.get("on")
    expected = "expected 'state' (text), 'color' (text) and/or 'on' (true or false)"
    if state is None and color is None and on is None:
        raise BadParameters(expected)
    for value in (state, color):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise BadParameters(expected)
    if on is not None and not isinstance(on, bool):
        raise BadParameters(expected)
    host.set_led(LedRequest(state=state, color=color, on=on))
    return "ok"


_Builtin = Callable[[ToolHost, Mapping[str, Any]], Awaitable[str]]
_BUILTINS: dict[str, _Builtin] = {
    "current_time": _current_time,
    "set_volume": _set_volume,
    "hang_up": _hang_up,
    "set_led": _set_led,
}
BUILTIN_TOOLS: frozenset[str] = frozenset(_BUILTINS)
"""Names of the built-in tools a config may enable."""


class BuiltinRunner:
    def __init__(self, name: str, host: ToolHost) -> None:
        self._name = name
        self._host = host

    async def __call__(self, call: ClientToolCall) -> Outcome:
        async def work() -> Outcome:
            try:
                return Outcome(await _BUILTINS[self._name](self._host, call.parameters))
            except BadParameters as exc:
                text = f"Invalid parameters for {self._name}: {exc}"
                return Outcome(text, True, "invalid parameters")

        return await within(self._name, BUILTIN_TIMEOUT, work)
