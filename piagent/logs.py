"""Logging set-up: journald under systemd, stderr elsewhere, and secrets kept out of both.

Owns the root logger's piagent handler (:func:`setup_logging`) and the last guard against a
secret reaching a log line (:class:`RedactingFilter`, :func:`register_secret`, :func:`redact`).
The code already avoids logging secrets; the filter is belt and braces.

Where records go. Under systemd (``logging.journal: true``, or ``auto`` with stderr connected
to the journal, which systemd announces in ``$JOURNAL_STREAM``) records are sent to journald
by ``systemd.journal.JournalHandler`` with ``SYSLOG_IDENTIFIER=piagent``, so that
``journalctl -t piagent`` finds them and priorities map from levels. Elsewhere one stderr line
per record: ``%(asctime)s %(levelname)s %(name)s: %(message)s``.

Structured fields, the convention: pass journal fields through ``extra=`` with names in
upper case, prefixed ``PIAGENT_``; :func:`journal_fields` builds the usual ones::

    logger.info("turn %d done", turn, extra=journal_fields(conversation_id=cid, turn=turn))

    PIAGENT_STATE            the appliance state (``ready``, ``listening``, ...)
    PIAGENT_CONVERSATION_ID  the open conversation's id
    PIAGENT_TURN             the agent turn's event_id

The journal keeps them (``journalctl -t piagent PIAGENT_CONVERSATION_ID=conv_...``); the
stderr format leaves them out. Never put a secret in one (they are redacted all the same).

Imports nothing from piagent but ``config`` (for ``Secret``); no side effects at import.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from typing import Final, Literal

from piagent.config import Secret

SYSLOG_IDENTIFIER: Final = "piagent"
STDERR_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HANDLER_NAME: Final = "piagent"  # marks the root handler setup_logging installed
REDACTED: Final = "***"

FIELD_STATE: Final = "PIAGENT_STATE"
FIELD_CONVERSATION_ID: Final = "PIAGENT_CONVERSATION_ID"
FIELD_TURN: Final = "PIAGENT_TURN"

MIN_SECRET_CHARS: Final = 4  # shorter registered strings are ignored: they would blot out words

# An ElevenLabs API key (sk_ and 40-odd hex digits; any 20+ letters or digits to be safe), and
# the secret query values of a signed conversation URL (protocol.md §2).
_API_KEY = re.compile(r"sk_[A-Za-z0-9]{20,}")
_QUERY_SECRET = re.compile(r"((?:conversation_signature|token)=)[^&\s\"'#]+")

# Longest first, so that a secret containing another is replaced whole. A tuple replaced as a
# whole, never mutated: records are redacted on any thread (PortAudio's, gpiozero's).
_secrets: tuple[str, ...] = ()


def register_secret(value: str | Secret) -> None:
    """Redact ``value`` wherever it appears in a log record from now on (process-wide)."""
    global _secrets
    text = value.reveal() if isinstance(value, Secret) else value
    if len(text) >= MIN_SECRET_CHARS and text not in _secrets:
        _secrets = tuple(sorted((*_secrets, text), key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` with every API key, signed-URL secret and registered secret replaced by ***."""
    for secret in _secrets:
        text = text.replace(secret, REDACTED)
    text = _API_KEY.sub(REDACTED, text)
    return _QUERY_SECRET.sub(rf"\1{REDACTED}", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record in place so that no handler can format a secret back into it.

    The message is formatted once and redacted, and ``args`` dropped (JournalHandler also sends
    ``str(args)`` as ``CODE_ARGS``); an exception becomes redacted ``exc_text`` and ``exc_info``
    is dropped (JournalHandler sends ``str(exc_info)`` as ``EXCEPTION_INFO``); ``stack_info`` and
    upper-case ``extra=`` fields are redacted too. Never rejects a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            # A bad format string: keep what there is rather than let the handler's error
            # report print the raw arguments.
            message = f"{record.msg} (unformattable arguments: {record.args!r})"
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in vars(record).items():
            if name.isupper() and isinstance(value, str):
                setattr(record, name, redact(value))
        return True


def journal_fields(
    *,
    state: str | None = None,
    conversation_id: str | None = None,
    turn: int | None = None,
) -> dict[str, str]:
    """The ``extra=`` mapping of piagent's journal fields; None values are left out."""
    fields: dict[str, str] = {}
    if state is not None:
        fields[FIELD_STATE] = state
    if conversation_id is not None:
        fields[FIELD_CONVERSATION_ID] = conversation_id
    if turn is not None:
        fields[FIELD_TURN] = str(turn)
    return fields


def stderr_is_journal() -> bool:
    """True when stderr is the journal stream systemd connected (``$JOURNAL_STREAM``).

    systemd sets ``JOURNAL_STREAM=device:inode`` of that stream; comparing it with stderr's own
    device and inode tells a service's stderr from an inherited variable (systemd.exec(5))."""
    announced = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in announced.split(":"))
        info = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def setup_logging(
    level: str, journal: bool | Literal["auto"], verbose: bool = False
) -> logging.Handler:
    """Route piagent's logs (the root logger's) and return the handler now in use.

    ``level`` is a level name (``info``, ``DEBUG``, ...); ``verbose`` means DEBUG whatever it
    says. ``journal``: True for journald, False for stderr, ``"auto"`` for journald exactly when
    stderr is the journal stream. Asking for journald without systemd-python falls back to
    stderr with a warning. Calling again replaces the handler installed before (handlers of
    others stay).
    """
    levels = logging.getLevelNamesMapping()
    name = "DEBUG" if verbose else level.upper()
    if name not in levels:
        raise ValueError(f"unknown log level {level!r}")
    use_journal = stderr_is_journal() if journal == "auto" else journal
    handler = _journal_handler() if use_journal else None
    fell_back = use_journal and handler is None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(STDERR_FORMAT))
    handler.set_name(HANDLER_NAME)
    handler.addFilter(RedactingFilter())

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(levels[name])
    if fell_back:
        logging.getLogger(__name__).warning(
            "journal logging asked for but systemd-python is not installed: logging to stderr"
        )
    return handler


def _journal_handler() -> logging.Handler | None:
    """A JournalHandler tagged ``SYSLOG_IDENTIFIER=piagent``, or None without systemd-python."""
    # importlib, not an import statement: the repository's own systemd/ folder (unit files)
    # would otherwise pass for the package when type checking.
    try:
        journal = importlib.import_module("systemd.journal")
    except ImportError:
        return None
    handler: logging.Handler = journal.JournalHandler(SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER)
    return handler
