"""piagent: a Raspberry Pi voice terminal for ElevenLabs Agents Platform agents."""

__version__ = "0.1.0"
