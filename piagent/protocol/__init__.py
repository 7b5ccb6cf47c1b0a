"""The ElevenLabs agent protocol, free of I/O: typed messages and the conversation state machine.

Nothing in this package imports asyncio, websockets, pyaudio or gpiozero.
"""
