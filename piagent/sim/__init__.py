"""The local ElevenLabs-compatible agent (``piagent sim``): the server side of protocol.md.

Used by the test suite and by ``piagent demo``; it never talks to the network beyond its own
listening socket. Modules:

* ``agent``: agent definitions (frozen dataclasses), server settings and the agent-file loader
* ``scenario``: the YAML scenario format that scripts an exchange step by step
* ``overrides``: override permissions, dynamic variables and the settings they produce
* ``vad``: the energy-based end-of-turn detector fed with user audio
* ``voice``: deterministic speech-like audio for text answers, and the premade voice list
* ``turns``: one agent turn cut into aligned audio chunks, with its playback clock
* ``speaker``: plays agent turns paced on one connection and handles barge-in
* ``keepalive``: the agent's JSON pings and the pongs that answer them
* ``tool_calls``: client tool calls and their results
* ``steps``: carries out a scenario's steps on a conversation
* ``queue``: an agent's conversation slots under its concurrency limit, and their queue
* ``endings``: how conversations end (close codes, error events)
* ``record``: ``ConversationRecord``, what tests inspect
* ``conversation``: the per-connection conversation (one TaskGroup per connection)
* ``endpoints``: the plain-HTTP side (signed URLs, voices)
* ``server``: ``SimServer`` and ``run_from_args`` for the CLI

README.md beside this file documents the agent-file keys and the scenario format.
"""
