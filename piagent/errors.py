"""piagent's exception hierarchy: every error the project raises on purpose derives from one root.

    PiagentError
    ├── ConfigError            a config file or value is wrong; names the key path (exit 78)
    │   └── ConfigProblems     every problem found in one file, each a ConfigError
    ├── ProtocolError          the agent WebSocket protocol was broken
    │   ├── RemoteProtocolError    the peer sent something malformed (logged, message skipped)
    │   └── LocalProtocolError     our own code asked for something the protocol forbids now
    └── ScenarioError          a simulator scenario or agent file is invalid

The modules that own a kind of failure define its class next to the code that raises it, each
a ``PiagentError``:

    RestError            rest.py       an HTTP call failed; ``fatal`` says whether to retry
    ConnectFailed        transport.py  a socket could not be opened; carries the ``Ending``
    IllegalTransition    appliance/table.py  the appliance asked for a move its table lacks
    NotConnected         client.py     a request needs a live conversation
    DeviceError          audio/devices.py  an audio device is missing or refuses the format
    WavFileError         audio/wavio.py    a WAV file is missing or not 16-bit mono
    ControlSocketError   control.py    the control socket cannot be served or reached
    RequestError         control.py    a control request is malformed

This module is pure: it imports nothing from the rest of piagent and nothing that does I/O,
so the protocol core can use it.
"""

from __future__ import annotations

from collections.abc import Sequence


class PiagentError(Exception):
    """Root of every error piagent raises deliberately."""


class ConfigError(PiagentError):
    """A configuration problem, located by its dotted key path (``audio.input.rate``)."""

    def __init__(self, key_path: str, message: str) -> None:
        super().__init__(f"{key_path}: {message}" if key_path else message)
        self.key_path = key_path
        self.message = message


class ConfigProblems(ConfigError):
    """Every problem found in one config file at once: ``problems``, each a ConfigError.

    A ConfigError itself, so whatever maps ConfigError to exit status 78 covers it; its message
    is one line per problem, ``source: key.path: message``.
    """

    def __init__(self, source: str, problems: Sequence[ConfigError]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("", "\n".join(self.lines()))

    def lines(self) -> list[str]:
        """One line per problem, prefixed with the file: ``source: key.path: message``."""
        return [f"{self.source}: {problem}" for problem in self.problems]


class ProtocolError(PiagentError):
    """The ElevenLabs agent protocol was violated."""


class RemoteProtocolError(ProtocolError):
    """The peer sent a frame that is not a valid protocol message.

    The message says where (a JSON path such as ``audio_event.event_id``) and what was expected.
    """


class LocalProtocolError(ProtocolError):
    """Our side asked for something the protocol does not allow in the current state."""


class ScenarioError(PiagentError):
    """A simulator scenario or agent definition is invalid; the message names the entry."""
