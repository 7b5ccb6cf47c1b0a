"""piagent.logs: handler choice (journald or stderr), idempotence and secret redaction."""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from systemd.journal import JournalHandler

from piagent.config import Secret
from piagent.logs import (
    FIELD_CONVERSATION_ID,
    FIELD_STATE,
    FIELD_TURN,
    HANDLER_NAME,
    REDACTED,
    RedactingFilter,
    journal_fields,
    redact,
    register_secret,
    setup_logging,
    stderr_is_journal,
)

API_KEY = "sk_" + "0123456789abcdef" * 3
SIGNED_URL = (
    "wss://api.elevenlabs.io/v1/convai/conversation?agent_id=agent_1"
    "&conversation_signature=cvtkn_abcDEF123&token=tok_456"
)
log = logging.getLogger("piagent.test_logs")


@pytest.fixture(autouse=True)
def root_restored() -> Iterator[None]:
    """Leave the root logger as the test found it."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def ours() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME]


def fresh_secret() -> str:
    return f"secret-{uuid.uuid4().hex}"


def test_stderr_handler_format(capsys: pytest.CaptureFixture[str]) -> None:
    handler = setup_logging("info", journal=False)
    assert type(handler) is logging.StreamHandler
    assert ours() == [handler]
    log.info("hello %s", "world")
    log.debug("not shown at info")
    line = capsys.readouterr().err
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO piagent\.test_logs: hello world\n", line
    )


def test_verbose_means_debug(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("warning", journal=False, verbose=True)
    assert logging.getLogger().level == logging.DEBUG
    log.debug("details")
    assert "DEBUG piagent.test_logs: details" in capsys.readouterr().err


def test_level_names_and_a_bad_one(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("WARNING", journal=False)
    assert logging.getLogger().level == logging.WARNING
    setup_logging("error", journal=False)
    assert logging.getLogger().level == logging.ERROR
    with pytest.raises(ValueError, match="loud"):
        setup_logging("loud", journal=False)


def test_setup_twice_keeps_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    others = [h for h in root.handlers if h.get_name() != HANDLER_NAME]
    first = setup_logging("info", journal=False)
    second = setup_logging("debug", journal=False)
    assert ours() == [second]
    assert first is not second
    assert [h for h in root.handlers if h.get_name() != HANDLER_NAME] == others
    log.info("once")
    assert capsys.readouterr().err.count("once") == 1


def test_journal_handler_when_asked() -> None:
    handler = setup_logging("info", journal=True)
    assert isinstance(handler, JournalHandler)
    assert ours() == [handler]
    log.info("dropped without journald, which is fine")


def test_journal_without_systemd_python_falls_back(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "systemd.journal", None)  # as if not installed
    handler = setup_logging("info", journal=True)
    assert type(handler) is logging.StreamHandler
    assert "systemd-python is not installed" in capsys.readouterr().err


def test_auto_follows_journal_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open(tmp_path / "stderr", "w") as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        info = os.fstat(stream.fileno())

        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        assert stderr_is_journal()
        assert isinstance(setup_logging("info", journal="auto"), JournalHandler)

        # Inherited from a parent whose stderr was the journal, but ours is elsewhere.
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino + 1}")
        assert not stderr_is_journal()
        assert type(setup_logging("info", journal="auto")) is logging.StreamHandler

        monkeypatch.setenv("JOURNAL_STREAM", "garbage")
        assert not stderr_is_journal()
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not stderr_is_journal()
        handler = setup_logging("info", journal="auto")
        assert type(handler) is logging.StreamHandler
        logging.getLogger().removeHandler(handler)  # its stream closes with this block


def test_journal_fields_and_redaction_reach_the_journal_record() -> None:
    """What JournalHandler would send to journald, caught at its sender function."""
    secret = fresh_secret()
    register_secret(secret)
    handler = setup_logging("info", journal=True)
    assert isinstance(handler, JournalHandler)
    sent: list[dict[str, Any]] = []

    def sender(MESSAGE: str, /, **fields: Any) -> None:
        sent.append({"MESSAGE": MESSAGE, **fields})

    handler.send = sender  # JournalHandler's sender_function, set after construction
    try:
        raise RuntimeError(f"rejected key {API_KEY}")
    except RuntimeError:
        log.exception(
            "connect to %s with %s failed",
            SIGNED_URL,
            secret,
            extra=journal_fields(state="offline", conversation_id="conv_1", turn=3),
        )
    (fields,) = sent
    assert fields["SYSLOG_IDENTIFIER"] == "piagent"
    assert fields["PRIORITY"] == "3"
    assert fields[FIELD_STATE] == "offline"
    assert fields[FIELD_CONVERSATION_ID] == "conv_1"
    assert fields[FIELD_TURN] == "3"
    assert fields["MESSAGE"].startswith("connect to wss://api.elevenlabs.io/")
    assert "agent_id=agent_1" in fields["MESSAGE"]
    assert "RuntimeError: rejected key ***" in fields["EXCEPTION_TEXT"]
    everything = repr(fields)
    for leaked in (secret, API_KEY, "cvtkn_abcDEF123", "tok_456"):
        assert leaked not in everything


def test_journal_fields_leave_out_none() -> None:
    assert journal_fields() == {}
    assert journal_fields(turn=0) == {FIELD_TURN: "0"}


def test_redact_patterns() -> None:
    assert redact(f"key={API_KEY}.") == f"key={REDACTED}."
    assert redact("sk_short") == "sk_short"  # not a key: fewer than 20 characters
    assert redact(SIGNED_URL) == (
        "wss://api.elevenlabs.io/v1/convai/conversation?agent_id=agent_1"
        "&conversation_signature=***&token=***"
    )
    assert redact("GET /?access_token=abc HTTP/1.1") == "GET /?access_token=*** HTTP/1.1"
    assert redact("nothing to hide") == "nothing to hide"


def test_registered_secrets() -> None:
    plain, wrapped = fresh_secret(), fresh_secret()
    register_secret(plain)
    register_secret(Secret(wrapped))
    register_secret("abc")  # too short to register: would blot out ordinary words
    assert redact(f"{plain} and {wrapped} and abc") == f"{REDACTED} and {REDACTED} and abc"
    longer = plain + "-and-more"
    register_secret(longer)
    assert redact(longer) == REDACTED


@pytest.fixture
def redacted_stream() -> Iterator[io.StringIO]:
    """A stderr-style handler with the filter, as setup_logging installs it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.DEBUG)
    yield stream
    log.removeHandler(handler)
    log.setLevel(level)


def test_redacts_the_message(redacted_stream: io.StringIO) -> None:
    log.warning(f"key {API_KEY} in the message itself")
    assert redacted_stream.getvalue() == "WARNING key *** in the message itself\n"


def test_redacts_arguments(redacted_stream: io.StringIO) -> None:
    secret = fresh_secret()
    register_secret(secret)
    log.info("url %s, secret %r, key %s", SIGNED_URL, secret, Secret(API_KEY).reveal())
    text = redacted_stream.getvalue()
    assert "conversation_signature=***&token=***" in text
    assert f"secret '{REDACTED}'" in text
    assert f"key {REDACTED}" in text
    assert secret not in text
    assert API_KEY not in text


def test_redacts_exception_text_and_stack(redacted_stream: io.StringIO) -> None:
    secret = fresh_secret()
    register_secret(secret)
    try:
        raise ValueError(f"bad signature in {SIGNED_URL} for {secret}")
    except ValueError:
        log.exception("fetch failed", stack_info=True)
    text = redacted_stream.getvalue()
    assert "Traceback (most recent call last)" in text
    assert "ValueError: bad signature in" in text
    assert "Stack (most recent call last)" in text
    assert secret not in text
    assert "cvtkn_abcDEF123" not in text


def test_unformattable_arguments_are_redacted_too(redacted_stream: io.StringIO) -> None:
    log.info("two placeholders %s %s", API_KEY)
    text = redacted_stream.getvalue()
    assert "unformattable arguments" in text
    assert API_KEY not in text


def test_setup_logging_installs_the_filter(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", journal=False)
    log.info("key %s", API_KEY)
    err = capsys.readouterr().err
    assert API_KEY not in err
    assert f"key {REDACTED}" in err
