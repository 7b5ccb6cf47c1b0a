"""The ElevenLabs REST calls piagent makes: signed conversation URLs and the voice list.

Owns HTTP requests to ``agent.api_base`` (protocol.md §1.3, §10) and the classification of their
failures into transient (network, 429, 5xx: worth retrying) and fatal (401/403 key rejected,
404 agent unknown, 422 invalid request: retrying cannot help). Uses the standard library's
urllib in a worker thread, so it needs no HTTP dependency; each call has a timeout.

Secrets: the API key goes only into the ``xi-api-key`` header, and a signed URL is returned to
the caller but never put into an exception message or a log record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from piagent.errors import PiagentError

logger = logging.getLogger(__name__)

SIGNED_URL_PATH = "/v1/convai/conversation/get-signed-url"
VOICES_PATH = "/v1/voices"
_MAX_BODY = 4 * 1024 * 1024


class RestError(PiagentError):
    """A REST call failed. ``status`` is the HTTP status (None for network failures);
    ``fatal`` is True when retrying cannot help until the configuration changes."""

    def __init__(self, message: str, *, status: int | None, fatal: bool) -> None:
        super().__init__(message)
        self.status = status
        self.fatal = fatal


@dataclass(frozen=True, slots=True)
class Voice:
    """One entry of ``GET /v1/voices``."""

    voice_id: str
    name: str
    category: str
    labels: dict[str, str]


def _describe_http_error(status: int, body: bytes) -> str:
    """The server's own words from an ElevenLabs error body, if it has any."""
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return ""
    if isinstance(detail, dict):
        return str(detail.get("message") or detail.get("status") or "")
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        return str(detail[0].get("msg", ""))
    return ""


_FATAL_STATUS = {
    400: "bad request",
    401: "API key rejected",
    403: "access denied (API key lacks permission for this agent)",
    404: "agent not found",
    422: "request rejected as invalid",
}


def _get_json(url: str, api_key: str | None, timeout: float) -> Any:
    headers = {"Accept": "application/json", "User-Agent": "piagent"}
    if api_key:
        headers["xi-api-key"] = api_key
    request = urllib.request.Request(url, headers=headers, method="GET")
    path = urllib.parse.urlsplit(url).path
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(_MAX_BODY + 1)
    except urllib.error.HTTPError as exc:
        body = exc.read(64 * 1024) if exc.fp is not None else b""
        words = _describe_http_error(exc.code, body)
        what = _FATAL_STATUS.get(exc.code, "server error" if exc.code >= 500 else "failed")
        message = f"GET {path}: HTTP {exc.code} ({what})" + (f": {words}" if words else "")
        raise RestError(message, status=exc.code, fatal=exc.code in _FATAL_STATUS) from None
    except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise RestError(f"GET {path}: {reason}", status=None, fatal=False) from None
    if len(body) > _MAX_BODY:
        raise RestError(f"GET {path}: response too large", status=None, fatal=False)
    try:
        return json.loads(body)
    except ValueError:
        raise RestError(f"GET {path}: response is not JSON", status=None, fatal=False) from None


async def get_signed_url(
    api_base: str, agent_id: str, api_key: str, *, request_timeout: float
) -> str:
    """A fresh signed WebSocket URL for a private agent (valid 15 minutes to start with)."""
    query = urllib.parse.urlencode({"agent_id": agent_id})
    url = f"{api_base.rstrip('/')}{SIGNED_URL_PATH}?{query}"
    data = await asyncio.to_thread(_get_json, url, api_key, request_timeout)
    signed = data.get("signed_url") if isinstance(data, dict) else None
    if not isinstance(signed, str) or not signed.startswith(("ws://", "wss://")):
        raise RestError("signed-URL response has no usable signed_url", status=None, fatal=False)
    return signed


async def get_voices(api_base: str, api_key: str | None, *, request_timeout: float) -> list[Voice]:
    """The voices the account can use, sorted by name."""
    data = await asyncio.to_thread(
        _get_json, f"{api_base.rstrip('/')}{VOICES_PATH}", api_key, request_timeout
    )
    raw = data.get("voices") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        raise RestError("voices response has no voices list", status=None, fatal=False)
    voices = [
        Voice(
            voice_id=str(item["voice_id"]),
            name=str(item.get("name") or ""),
            category=str(item.get("category") or ""),
            labels={str(k): str(v) for k, v in (item.get("labels") or {}).items()},
        )
        for item in raw
        if isinstance(item, dict) and "voice_id" in item
    ]
    return sorted(voices, key=lambda voice: voice.name.lower())


def redact_url(url: str) -> str:
    """A URL fit for logs: scheme, host and path, and of the query only ``agent_id``.

    A signed URL carries ``conversation_signature`` (older: ``token``), which is a secret."""
    parts = urllib.parse.urlsplit(url)
    kept = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k == "agent_id"]
    query = urllib.parse.urlencode(kept)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))
