"""The simulator's plain-HTTP side: signed URLs, voices, and error bodies in ElevenLabs' shape.

Owns ``SignedUrls`` (issues random ``conversation_signature`` tokens per agent and checks them,
with expiry: protocol.md §1.3) and the ``websockets.http11.Response`` builders the server's
``process_request`` returns: JSON bodies ``{"detail": {"status": ..., "message": ...}}`` for
errors, FastAPI's 422 shape for a missing query parameter (§1.3), ``{"voices": [...]}`` (§10).

No sockets here: the server decides which endpoint a request is for and passes what it needs.
"""

from __future__ import annotations

import email.utils
import http
import io
import json
import secrets
import wave
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from websockets.datastructures import Headers
from websockets.http11 import Response

from piagent.audio.codecs import encode_pcm16
from piagent.sim.voice import PREMADE_VOICES, synthesize, voice_json

__all__ = [
    "SignatureCheck",
    "SignedUrls",
    "api_error",
    "json_response",
    "missing_query_parameter",
    "voice_preview",
    "voices_response",
]

SignatureCheck = Literal["valid", "invalid", "expired"]


def _response(status: int, content_type: str, body: bytes) -> Response:
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def json_response(status: int, body: Mapping[str, Any]) -> Response:
    """An HTTP response with a JSON body."""
    return _response(status, "application/json", json.dumps(body).encode())


def api_error(status: int, code: str, message: str) -> Response:
    """The general ElevenLabs error body: ``{"detail": {"status": code, "message": ...}}``."""
    return json_response(status, {"detail": {"status": code, "message": message}})


def missing_query_parameter(name: str) -> Response:
    """422 in FastAPI's ``HTTPValidationError`` shape, as the real API answers."""
    detail = [{"loc": ["query", name], "msg": "Field required", "type": "missing"}]
    return json_response(422, {"detail": detail})


def voices_response(http_base: str) -> Response:
    """``GET /v1/voices``: the premade voices."""
    return json_response(200, {"voices": [voice_json(v, http_base) for v in PREMADE_VOICES]})


def voice_preview(voice_id: str) -> Response | None:
    """A short WAV of a premade voice (its ``preview_url``); None for an unknown voice."""
    for voice in PREMADE_VOICES:
        if voice.voice_id == voice_id:
            speech = synthesize(f"Hello, I am {voice.name}.", 22050, voice.voice_id)
            buffer = io.BytesIO()
            with wave.open(buffer, "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(22050)
                wav.writeframes(encode_pcm16(speech.samples))
            return _response(200, "audio/wav", buffer.getvalue())
    return None


@dataclass(frozen=True, slots=True)
class _Grant:
    agent_id: str
    expires_at: float


class SignedUrls:
    """Signatures handed out by ``get-signed-url``: random, per agent, valid for a while.

    A signature may start several conversations until it expires (the docs allow reuse)."""

    def __init__(self) -> None:
        self._grants: dict[str, _Grant] = {}

    def issue(self, agent_id: str, ttl: float, now: float) -> str:
        """A new signature for ``agent_id``, usable until ``now + ttl``."""
        self._grants = {k: g for k, g in self._grants.items() if g.expires_at > now}
        token = secrets.token_urlsafe(24)
        self._grants[token] = _Grant(agent_id, now + ttl)
        return token

    def check(self, token: str, agent_id: str, now: float) -> SignatureCheck:
        """Whether ``token`` lets ``agent_id`` start a conversation at ``now``."""
        grant = self._grants.get(token)
        if grant is None or grant.agent_id != agent_id:
            return "invalid"
        return "valid" if now < grant.expires_at else "expired"
