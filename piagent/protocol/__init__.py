"""The ElevenLabs agent protocol, free of I/O: typed messages and the conversation state machine.

* ``messages``: the entry points (``parse_server``, ``parse_client``, ``encode``) and every
  message class, re-exported from ``codec``, ``overrides``, ``client_messages``,
  ``server_events`` and ``tool_events``;
* ``session``: ``Session``, one conversation's sans-I/O state machine (``queue_status``
  included);
* ``endings``: how a conversation ended, and whether retrying can help.

Nothing in this package imports asyncio, websockets, pyaudio or gpiozero.
"""
