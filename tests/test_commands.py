"""The control commands are declared once: the parser, the dispatcher, the usage line, the
help and interface.md follow from ``COMMANDS``."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from piagent.commands import (
    COMMANDS,
    NAMES,
    USAGE,
    ControlHandler,
    RequestError,
    dispatch,
    help_text,
    parse_request,
)

INTERFACE = Path("/work/shared/interface.md")


class Recorder:
    """A ``ControlHandler`` that remembers what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        def method(*args: Any) -> Any:
            self.calls.append((name, args))
            return {"state": "ready"} if name == "status" else None

        return method


def test_every_command_is_a_handler_method_and_only_those() -> None:
    methods = {
        name
        for name, _ in inspect.getmembers(ControlHandler, inspect.isfunction)
        if not name.startswith("_")
    }
    assert methods == set(NAMES)


@pytest.mark.parametrize(
    ("words", "call"),
    [
        (["press"], ("press", ())),
        (["say", "hello", "there"], ("say", ("hello there",))),
        (["context", "kitchen"], ("context", ("kitchen",))),
        (["feedback", "like"], ("feedback", ("like",))),
        (["status", "--json"], ("status", ())),
    ],
)
def test_dispatch_calls_the_method_of_the_commands_name(
    words: list[str], call: tuple[str, tuple[Any, ...]]
) -> None:
    handler = Recorder()
    result = dispatch(handler, parse_request(words[0], words[1:]))  # type: ignore[arg-type]
    assert handler.calls == [call]
    assert result == ({"state": "ready"} if words[0] == "status" else None)


def test_usage_and_help_list_every_command() -> None:
    for command in COMMANDS:
        assert command.usage in USAGE
        assert f"{command.usage} " in help_text() and command.help in help_text()
    assert USAGE == (
        "usage: piagent ctl [--socket PATH] press | release | say TEXT | context TEXT | hangup | "
        "mute | unmute | feedback like|dislike | status [--json]"
    )


@pytest.mark.skipif(not INTERFACE.exists(), reason="the shared docs are not here")
def test_interface_md_lists_the_same_commands() -> None:
    text = INTERFACE.read_text(encoding="utf-8")
    for command in COMMANDS:
        assert command.name in text


def test_unknown_commands_are_refused_with_a_suggestion() -> None:
    with pytest.raises(RequestError, match="did you mean 'say'"):
        parse_request("sya", [])
