"""The ElevenLabs API key: where it comes from, and ``Secret``, which never shows it.

Owns ``resolve_api_key`` (the file ``agent.api_key_file``, else ``$ELEVENLABS_API_KEY``, else
the systemd credential ``elevenlabs_api_key``) and ``Secret``, whose repr, str and format give
``Secret('***')`` so that a key can reach no log line. Errors name the key path or file, never
the key; a key file readable by group or others is warned about.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from piagent.config.readers import NO_SPACE
from piagent.config.schema import API_KEY_CREDENTIAL, API_KEY_ENV, AgentConfig
from piagent.errors import ConfigError

__all__ = ["Secret", "resolve_api_key"]

logger = logging.getLogger(__name__)


class Secret:
    """A secret string that never shows itself: repr, str and format give ``Secret('***')``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: call this only where it is sent (an HTTP header), never to log."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return repr(self)


def resolve_api_key(agent: AgentConfig, env: Mapping[str, str] = os.environ) -> Secret | None:
    """The ElevenLabs API key, or None (a public agent needs none).

    From the first of: the file ``agent.api_key_file``; ``$ELEVENLABS_API_KEY``; the systemd
    credential ``$CREDENTIALS_DIRECTORY/elevenlabs_api_key``. Whitespace around it is dropped.
    Raises ConfigError (naming the key or file, never the secret) when the chosen source is
    unreadable or empty; warns when ``agent.api_key_file`` is readable by group or others.
    """
    if agent.api_key_file is not None:
        return _read_key_file(agent.api_key_file, "agent.api_key_file", check_mode=True)
    value = env.get(API_KEY_ENV, "").strip()
    if value:
        if not NO_SPACE.fullmatch(value):
            raise ConfigError(f"${API_KEY_ENV}", "expected the API key alone, without spaces")
        return Secret(value)
    credentials = env.get("CREDENTIALS_DIRECTORY")
    if credentials and (path := Path(credentials, API_KEY_CREDENTIAL)).exists():
        # The unit's SetCredential= fallback is a lone newline when /etc/piagent/api_key does
        # not exist: a blank credential means "no key" (a public agent), not an error.
        try:
            blank = not path.read_bytes().strip()
        except OSError:
            blank = False  # reported with its reason by _read_key_file
        if blank:
            return None
        return _read_key_file(path, "", check_mode=False)
    return None


def _read_key_file(path: Path, key_path: str, *, check_mode: bool) -> Secret:
    where = f"the API key file {path}"
    try:
        with path.open("rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            data = file.read(65536)
    except OSError as exc:
        raise ConfigError(key_path, f"cannot read {where}: {exc.strerror or exc}") from None
    if check_mode and mode & (stat.S_IRGRP | stat.S_IROTH):
        logger.warning(
            "%s is readable by group or others (mode %04o); run: chmod 600 %s",
            where,
            stat.S_IMODE(mode),
            path,
        )
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(key_path, f"{where} is not UTF-8 text") from None  # no key bytes
    if not value:
        raise ConfigError(key_path, f"{where} is empty")
    if not NO_SPACE.fullmatch(value):
        raise ConfigError(key_path, f"{where} must hold the key alone (found spaces or lines)")
    return Secret(value)
