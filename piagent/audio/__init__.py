"""Audio for piagent: pure sample-format helpers here, device adapters beside them.

``codecs`` is pure numpy (int16 PCM and G.711 mu-law); nothing in this package's pure modules
opens a device or touches the event loop.
"""
