"""Tests for piagent.tools: real subprocesses, real modules on sys.path, a fake ToolHost."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import stat
import sys
import time
from collections.abc import Coroutine, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from piagent.protocol.messages import ClientToolCall, ClientToolResult
from piagent.tools import (
    MAX_RESULT_CHARS,
    CommandTool,
    LedRequest,
    PythonTool,
    ToolHost,
    ToolRegistry,
)

pytestmark = pytest.mark.timeout(10)

MARGIN = 1.0
"""Seconds a result may arrive after its tool's timeout (covers killing and reaping)."""

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make_call(
    name: str, params: dict[str, Any] | None = None, *, expects_response: bool = True
) -> ClientToolCall:
    return ClientToolCall(name, "call_7", params or {}, 44, expects_response)


def result_of(
    registry: ToolRegistry, name: str, params: dict[str, Any] | None = None
) -> ClientToolResult:
    result = run(registry.run(make_call(name, params)))
    assert result is not None
    assert result.tool_call_id == "call_7"
    return result


def timed_result_of(
    registry: ToolRegistry, name: str, params: dict[str, Any] | None = None
) -> tuple[ClientToolResult, float]:
    async def timed() -> tuple[ClientToolResult | None, float]:
        started = time.monotonic()
        result = await registry.run(make_call(name, params))
        return result, time.monotonic() - started

    result, elapsed = run(timed())
    assert result is not None
    return result, elapsed


class FakeHost:
    """A ToolHost with an 'audio output' that applies volume in steps of ``step``."""

    def __init__(self, volume: float = 0.5, step: float = 0.01) -> None:
        self.volume = volume
        self.step = step
        self.hang_up_requested = False
        self.led: LedRequest | None = None

    def get_volume(self) -> float:
        return self.volume

    def set_volume(self, level: float) -> float:
        assert 0.0 <= level <= 1.0
        self.volume = round(round(level / self.step) * self.step, 6)
        return self.volume

    def request_hang_up(self) -> None:
        self.hang_up_requested = True

    def set_led(self, request: LedRequest) -> None:
        if request.color not in (None, "red", "green", "blue"):
            raise ValueError(f"unsupported colour {request.color!r}; use red, green or blue")
        self.led = request


_: type[ToolHost] = FakeHost  # mypy checks that FakeHost implements the protocol


def write_script(directory: Path, name: str, body: str, *, python: bool = False) -> Path:
    path = directory / name
    shebang = f"#!{sys.executable}" if python else "#!/bin/sh"
    path.write_text(f"{shebang}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def command_registry(*tools: CommandTool) -> ToolRegistry:
    return ToolRegistry(FakeHost(), commands=tools)


def is_gone(pid: int) -> bool:
    """Dead: no such process, or a zombie waiting for a reaper we do not control.

    A killed grandchild closes its pipes a moment before it turns into a zombie: allow for it."""
    deadline = time.monotonic() + 1.0
    while True:
        try:
            os.kill(pid, 0)
            status = Path(f"/proc/{pid}/stat").read_text()
        except (ProcessLookupError, FileNotFoundError):
            return True
        if status.rpartition(")")[2].split()[0] == "Z":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def has_text(path: Path) -> bool:
    return path.exists() and bool(path.read_text().strip())


async def wait_for_file(path: Path) -> None:
    """Wait until a script has written ``path`` (polling: a script cannot set an Event)."""
    async with asyncio.timeout(5):
        while not await asyncio.to_thread(has_text, path):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


# --- command tools ----------------------------------------------------------------------------


def test_command_gets_parameters_as_json_on_stdin(tmp_path: Path) -> None:
    echo = write_script(tmp_path, "echo.sh", "cat\n")
    registry = command_registry(CommandTool("echo", (str(echo),)))
    params = {"city": "Zürich", "days": 3, "tags": ["a", "b"]}
    result = result_of(registry, "echo", params)
    assert not result.is_error
    assert json.loads(result.result) == params


def test_command_environment_is_minimal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_secret_key")
    monkeypatch.setenv("SOME_OTHER_SETTING", "daemon only")
    dump = write_script(
        tmp_path, "env.py", "import json, os\nprint(json.dumps(dict(os.environ)))\n", python=True
    )
    registry = command_registry(CommandTool("env", (str(dump),)))
    env = json.loads(result_of(registry, "env").result)
    assert "ELEVENLABS_API_KEY" not in env
    assert "sk_secret_key" not in json.dumps(env)
    # Python itself may add LC_CTYPE (locale coercion); nothing else beyond the allow-list.
    allowed = {"PATH", "LANG", "HOME", "PIAGENT_TOOL_NAME", "PIAGENT_TOOL_CALL_ID", "LC_CTYPE"}
    assert set(env) <= allowed
    assert env["PIAGENT_TOOL_NAME"] == "env"
    assert env["PIAGENT_TOOL_CALL_ID"] == "call_7"
    assert env["PATH"]


def test_shell_metacharacters_are_inert(tmp_path: Path) -> None:
    script = write_script(tmp_path, "args.sh", 'printf "%s\\n" "$1"\ncat\n')
    registry = command_registry(CommandTool("args", (str(script), "$HOME; touch fixed")))
    payload = f"$(touch {tmp_path}/a); `touch {tmp_path}/b` | touch {tmp_path}/c && touch c > d"
    result = result_of(registry, "args", {"q": payload})
    assert not result.is_error
    fixed, params = result.result.split("\n", 1)
    assert fixed == "$HOME; touch fixed"
    assert json.loads(params) == {"q": payload}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["args.sh"]


def test_nonzero_exit_reports_status_and_last_stderr_lines(tmp_path: Path) -> None:
    body = 'for i in 1 2 3 4 5 6 7 8; do echo "problem $i" >&2; done\necho partial\nexit 3\n'
    failing = write_script(tmp_path, "fail.sh", body)
    result = result_of(command_registry(CommandTool("fail", (str(failing),))), "fail")
    assert result.is_error
    assert "exit status 3" in result.result
    lines = result.result.splitlines()
    assert lines[-5:] == [f"problem {i}" for i in range(4, 9)]
    assert "problem 3" not in lines


def test_death_by_signal_is_reported(tmp_path: Path) -> None:
    script = write_script(tmp_path, "die.sh", "kill -TERM $$\n")
    result = result_of(command_registry(CommandTool("die", (str(script),))), "die")
    assert result.is_error
    assert "SIGTERM" in result.result


def test_timeout_kills_the_process_group_and_answers_in_time(tmp_path: Path) -> None:
    body = f"echo $$ > {tmp_path}/pid\nsleep 30 &\necho $! > {tmp_path}/child\nwait\n"
    sleeper = write_script(tmp_path, "sleeper.sh", body)
    registry = command_registry(CommandTool("sleeper", (str(sleeper),), timeout=0.5))
    result, elapsed = timed_result_of(registry, "sleeper")
    assert result.is_error
    assert "timed out after 0.5 s" in result.result
    assert elapsed < 0.5 + MARGIN
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "pid").read_text()), 0)
    assert is_gone(int((tmp_path / "child").read_text()))


def test_child_holding_stdout_after_exit_is_killed_at_the_timeout(tmp_path: Path) -> None:
    # The program exits at once, but a background child keeps stdout open.
    body = f"sleep 30 &\necho $! > {tmp_path}/child\necho done\n"
    script = write_script(tmp_path, "detach.sh", body)
    registry = command_registry(CommandTool("detach", (str(script),), timeout=0.5))
    result, elapsed = timed_result_of(registry, "detach")
    assert result.is_error
    assert "timed out" in result.result
    assert elapsed < 0.5 + MARGIN
    assert is_gone(int((tmp_path / "child").read_text()))


def test_huge_output_is_truncated_with_a_note(tmp_path: Path) -> None:
    script = write_script(tmp_path, "huge.sh", "head -c 3000000 /dev/zero | tr '\\0' a\n")
    registry = command_registry(CommandTool("huge", (str(script),)))
    result = result_of(registry, "huge")
    assert not result.is_error
    text, _, note = result.result.partition("\n")
    assert note == "[output truncated: 3000000 bytes in all]"
    assert text == "a" * (MAX_RESULT_CHARS - len(note) - 1)


def test_truncation_does_not_split_a_character(tmp_path: Path) -> None:
    script = write_script(tmp_path, "euro.py", "print('a' + '€' * 20000)\n", python=True)
    result = result_of(command_registry(CommandTool("euro", (str(script),))), "euro")
    assert len(result.result) <= MAX_RESULT_CHARS
    text = result.result.partition("\n")[0]
    assert text.startswith("a€€")
    assert set(text[1:]) == {"€"}


def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    script = write_script(tmp_path, "bytes.sh", "printf 'caf\\351 \\377ok\\n'\n")
    result = result_of(command_registry(CommandTool("bytes", (str(script),))), "bytes")
    assert not result.is_error
    assert result.result == "caf\ufffd \ufffdok"


def test_silent_success_gets_the_sdk_sentence(tmp_path: Path) -> None:
    script = write_script(tmp_path, "quiet.sh", "exit 0\n")
    registry = command_registry(CommandTool("quiet", (str(script),)))
    # Large parameters the program never reads: the broken pipe is not an error.
    result = result_of(registry, "quiet", {"blob": "x" * 300_000})
    assert result == ClientToolResult("call_7", "Client tool: quiet called successfully.", False)


def test_missing_program_is_an_error(tmp_path: Path) -> None:
    registry = command_registry(CommandTool("ghost", (str(tmp_path / "nowhere"),)))
    result = result_of(registry, "ghost")
    assert result.is_error
    assert "not found" in result.result
    assert str(tmp_path / "nowhere") in result.result


def test_non_executable_program_is_an_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\necho hi\n")
    result = result_of(command_registry(CommandTool("plain", (str(plain),))), "plain")
    assert result.is_error
    assert "not executable" in result.result


@pytest.mark.parametrize(
    ("command", "timeout"),
    [((), 1.0), (("relative/tool",), 1.0), (("/bin/true",), 0.0), (("/bin/true",), float("inf"))],
)
def test_command_declaration_is_checked(command: tuple[str, ...], timeout: float) -> None:
    with pytest.raises(ValueError, match="'t'"):
        CommandTool("t", command, timeout=timeout)


# --- Python tools -----------------------------------------------------------------------------

TOOL_MODULE = """
import asyncio
import datetime
import threading
import time

def echo(params):
    in_worker = threading.current_thread() is not threading.main_thread()
    return {"got": params, "in_worker_thread": in_worker}

async def async_echo(params):
    await asyncio.sleep(0)
    return {"got": params, "async": True}

def greet(params):
    return "hello " + params["name"]

def nothing(params):
    return None

def odd(params):
    return {"day": datetime.date(2024, 1, 2)}

def fail(params):
    raise RuntimeError("disk on fire")

def quit(params):
    raise SystemExit(2)

def own_timeout(params):
    raise TimeoutError("upstream too slow")

async def slow_async(params):
    await asyncio.sleep(30)

def slow_sync(params):
    time.sleep(0.8)

def big(params):
    return "x" * 20000

class Weather:
    @staticmethod
    def today(params):
        return "sunny"

NOT_CALLABLE = 3
"""

_module_numbers = itertools.count()


@pytest.fixture
def tool_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"piagent_test_tool_module_{os.getpid()}_{next(_module_numbers)}"
    (tmp_path / f"{name}.py").write_text(TOOL_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def python_registry(module: str, **functions: str | tuple[str, float]) -> ToolRegistry:
    tools = []
    for name, spec in functions.items():
        target, timeout = spec if isinstance(spec, tuple) else (spec, 10.0)
        tools.append(PythonTool(name, f"{module}:{target}", timeout))
    return ToolRegistry(FakeHost(), python=tools)


def test_python_tool_is_imported_at_first_use_and_runs_in_a_thread(tool_module: str) -> None:
    registry = python_registry(tool_module, echo="echo")
    assert tool_module not in sys.modules
    result = result_of(registry, "echo", {"a": 1})
    assert tool_module in sys.modules
    assert not result.is_error
    assert json.loads(result.result) == {"got": {"a": 1}, "in_worker_thread": True}


def test_async_python_tool_is_awaited(tool_module: str) -> None:
    result = result_of(python_registry(tool_module, echo="async_echo"), "echo", {"b": [1]})
    assert json.loads(result.result) == {"got": {"b": [1]}, "async": True}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("greet", "hello Ada"),
        ("nothing", "Client tool: t called successfully."),
        ("odd", '{"day": "2024-01-02"}'),
        ("Weather.today", "sunny"),
    ],
)
def test_python_return_values(tool_module: str, target: str, expected: str) -> None:
    result = result_of(python_registry(tool_module, t=target), "t", {"name": "Ada"})
    assert result == ClientToolResult("call_7", expected, False)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("fail", "RuntimeError: disk on fire"),
        ("own_timeout", "TimeoutError: upstream too slow"),
        ("quit", "SystemExit: 2"),
    ],
)
def test_python_exception_is_an_error_result(tool_module: str, target: str, expected: str) -> None:
    result = result_of(python_registry(tool_module, t=target), "t")
    assert result == ClientToolResult("call_7", expected, True)


@pytest.mark.parametrize("target", ["slow_async", "slow_sync"])
def test_python_timeout_answers_in_time(tool_module: str, target: str) -> None:
    registry = python_registry(tool_module, t=(target, 0.3))
    result, elapsed = timed_result_of(registry, "t")
    assert result.is_error
    assert result.result == "Tool 't' timed out after 0.3 s."
    assert elapsed < 0.3 + MARGIN


def test_python_result_is_truncated_with_a_note(tool_module: str) -> None:
    result = result_of(python_registry(tool_module, t="big"), "t")
    note = "\n[result truncated: 20000 characters in all]"
    assert result.result == "x" * (MAX_RESULT_CHARS - len(note)) + note


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("piagent_test_no_such_module:run", "ModuleNotFoundError"),
        ("{module}:no_such_function", "AttributeError"),
        ("{module}:NOT_CALLABLE", "not callable"),
    ],
)
def test_python_bad_target_is_an_error(tool_module: str, target: str, reason: str) -> None:
    target = target.format(module=tool_module)
    registry = ToolRegistry(FakeHost(), python=[PythonTool("t", target)])
    result = result_of(registry, "t")
    assert result.is_error
    assert repr(target) in result.result
    assert reason in result.result


@pytest.mark.parametrize("target", ["no_colon", "mod:", ":func", "a b:c", "mod:func()"])
def test_python_target_is_checked(target: str) -> None:
    with pytest.raises(ValueError, match=r"package\.module:function"):
        PythonTool("t", target)


# --- built-ins --------------------------------------------------------------------------------


def builtin_registry(host: FakeHost) -> ToolRegistry:
    return ToolRegistry(host, builtins=["current_time", "set_volume", "hang_up", "set_led"])


@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def check_now(answer: dict[str, str], offsets: set[timedelta]) -> datetime:
    when = datetime.fromisoformat(answer["iso"])
    assert when.utcoffset() in offsets
    assert abs(when - datetime.now().astimezone()) < timedelta(seconds=5)
    assert answer["weekday"] == when.strftime("%A")
    return when


def test_current_time_is_local_by_default(berlin: None) -> None:
    result = result_of(builtin_registry(FakeHost()), "current_time")
    answer = json.loads(result.result)
    check_now(answer, {timedelta(hours=1), timedelta(hours=2)})
    assert answer["timezone"] in {"CET", "CEST"}


def test_current_time_in_a_named_zone() -> None:
    result = result_of(builtin_registry(FakeHost()), "current_time", {"timezone": "Asia/Tokyo"})
    answer = json.loads(result.result)
    check_now(answer, {timedelta(hours=9)})
    assert answer["timezone"] == "JST"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "Europe", 42])
def test_current_time_rejects_unknown_zones(zone: object) -> None:
    result = result_of(builtin_registry(FakeHost()), "current_time", {"timezone": zone})
    assert result.is_error
    assert "expected an IANA time zone name" in result.result


@pytest.mark.parametrize(
    ("params", "volume"),
    [
        ({"level": 30}, 0.3),
        ({"level": 0.25}, 0.25),
        ({"level": "80%"}, 0.8),
        ({"level": "65"}, 0.65),
        ({"level": 1.0}, 1.0),
        ({"change": -10}, 0.4),
        ({"change": 0.2}, 0.7),
        ({"change": "+15"}, 0.65),
        ({"level": 150}, 1.0),
        ({"level": -5}, 0.0),
        ({"change": -80}, 0.0),
        ({"change": 70}, 1.0),
    ],
)
def test_set_volume(params: dict[str, Any], volume: float) -> None:
    host = FakeHost(volume=0.5)
    result = result_of(builtin_registry(host), "set_volume", params)
    assert not result.is_error
    assert host.volume == volume
    assert json.loads(result.result) == {"level": round(volume * 100)}


def test_set_volume_reports_the_level_the_host_applied() -> None:
    host = FakeHost(step=0.25)
    result = result_of(builtin_registry(host), "set_volume", {"level": 40})
    assert host.volume == 0.5
    assert json.loads(result.result) == {"level": 50}


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"level": "loud"},
        {"level": True},
        {"level": None},
        {"level": "inf"},
        {"level": [50]},
        {"level": 50, "change": 10},
        {"change": "%"},
    ],
)
def test_set_volume_rejects_bad_parameters(params: dict[str, Any]) -> None:
    host = FakeHost(volume=0.5)
    result = result_of(builtin_registry(host), "set_volume", params)
    assert result.is_error
    assert result.result.startswith("Invalid parameters for set_volume: ")
    assert "expected" in result.result
    assert host.volume == 0.5


def test_hang_up() -> None:
    host = FakeHost()
    result = result_of(builtin_registry(host), "hang_up")
    assert result == ClientToolResult("call_7", "ok", False)
    assert host.hang_up_requested


@pytest.mark.parametrize(
    ("params", "request_"),
    [
        ({"state": "listening"}, LedRequest(state="listening")),
        ({"color": "red", "on": True, "extra": 1}, LedRequest(color="red", on=True)),
        ({"on": False}, LedRequest(on=False)),
    ],
)
def test_set_led(params: dict[str, Any], request_: LedRequest) -> None:
    host = FakeHost()
    result = result_of(builtin_registry(host), "set_led", params)
    assert result == ClientToolResult("call_7", "ok", False)
    assert host.led == request_


@pytest.mark.parametrize("params", [{}, {"on": "yes"}, {"color": ""}, {"state": 3}])
def test_set_led_rejects_bad_parameters(params: dict[str, Any]) -> None:
    host = FakeHost()
    result = result_of(builtin_registry(host), "set_led", params)
    assert result.is_error
    assert "expected 'state' (text), 'color' (text) and/or 'on' (true or false)" in result.result
    assert host.led is None


def test_set_led_hook_refusal_is_an_error_result() -> None:
    host = FakeHost()
    result = result_of(builtin_registry(host), "set_led", {"color": "ultraviolet"})
    assert result.is_error
    assert result.result == ("ValueError: unsupported colour 'ultraviolet'; use red, green or blue")


# --- the registry -----------------------------------------------------------------------------


def test_unknown_tool_names_it_and_lists_the_available_ones() -> None:
    registry = ToolRegistry(FakeHost(), builtins=["hang_up", "current_time"])
    assert registry.names == ("current_time", "hang_up")
    result = result_of(registry, "launch_rockets")
    assert result.is_error
    assert result.result == (
        "Unknown tool 'launch_rockets'; available tools: current_time, hang_up"
    )


def test_unknown_builtin_names_are_refused() -> None:
    with pytest.raises(ValueError, match=r"'reboot', 'format_disk'.*available: current_time"):
        ToolRegistry(FakeHost(), builtins=["hang_up", "reboot", "format_disk"])


def test_duplicate_tool_names_are_refused() -> None:
    with pytest.raises(ValueError, match="'hang_up' is declared twice"):
        ToolRegistry(
            FakeHost(), builtins=["hang_up"], python=[PythonTool("hang_up", "os.path:join")]
        )


def test_no_result_when_none_is_expected_but_the_tool_runs(tmp_path: Path) -> None:
    host = FakeHost()
    touch = write_script(tmp_path, "touch.sh", f"cat > {tmp_path}/ran\n")
    registry = ToolRegistry(
        host, builtins=["hang_up"], commands=[CommandTool("touch", (str(touch),))]
    )
    assert run(registry.run(make_call("hang_up", expects_response=False))) is None
    assert host.hang_up_requested
    assert run(registry.run(make_call("touch", {"k": 1}, expects_response=False))) is None
    assert json.loads((tmp_path / "ran").read_text()) == {"k": 1}
    assert run(registry.run(make_call("nope", expects_response=False))) is None


def test_cancelling_run_kills_the_running_command(tmp_path: Path) -> None:
    body = f"echo $$ > {tmp_path}/pid\nsleep 30 &\necho $! > {tmp_path}/child\nwait\n"
    sleeper = write_script(tmp_path, "sleeper.sh", body)
    registry = command_registry(CommandTool("sleeper", (str(sleeper),), timeout=30))

    async def scenario() -> None:
        task = asyncio.create_task(registry.run(make_call("sleeper")))
        await wait_for_file(tmp_path / "child")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.monotonic()
    run(scenario())
    assert time.monotonic() - started < 5
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "pid").read_text()), 0)
    assert is_gone(int((tmp_path / "child").read_text()))


def test_calls_run_concurrently(tmp_path: Path) -> None:
    nap = write_script(tmp_path, "nap.sh", "sleep 0.3\ncat\n")
    registry = command_registry(CommandTool("nap", (str(nap),)))

    async def both() -> list[ClientToolResult | None]:
        async with asyncio.TaskGroup() as tasks:
            first = tasks.create_task(registry.run(make_call("nap", {"n": 1})))
            second = tasks.create_task(registry.run(make_call("nap", {"n": 2})))
        return [first.result(), second.result()]

    started = time.monotonic()
    results = run(both())
    assert time.monotonic() - started < 0.3 * 2
    assert [json.loads(r.result) for r in results if r] == [{"n": 1}, {"n": 2}]


def test_info_log_has_no_parameter_values(caplog: pytest.LogCaptureFixture) -> None:
    registry = ToolRegistry(FakeHost(), builtins=["set_volume"])
    with caplog.at_level(logging.INFO, logger="piagent.tools"):
        result_of(registry, "set_volume", {"level": "secret-volume-words"})
    info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(info) == 1
    assert "'set_volume'" in info[0]
    assert "error (invalid parameters)" in info[0]
    assert "secret-volume-words" not in info[0]
