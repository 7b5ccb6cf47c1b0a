"""piagent's exception hierarchy: every error the project raises on purpose derives from one root.

    PiagentError
    ├── ConfigError            a config file or value is wrong; names the key path (exit 78)
    ├── ProtocolError          the agent WebSocket protocol was broken
    │   ├── RemoteProtocolError    the peer sent something malformed (logged, message skipped)
    │   └── LocalProtocolError     our own code asked for something the protocol forbids now
    └── ScenarioError          a simulator scenario or agent file is invalid

This module is pure: it imports nothing from the rest of piagent and nothing that does I/O,
so the protocol core can use it.
"""

from __future__ import annotations


class PiagentError(Exception):
    """Root of every error piagent raises deliberately."""


class ConfigError(PiagentError):
    """A configuration problem, located by its dotted key path (``audio.input.rate``)."""

    def __init__(self, key_path: str, message: str) -> None:
        super().__init__(f"{key_path}: {message}" if key_path else message)
        self.key_path = key_path
        self.message = message


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
