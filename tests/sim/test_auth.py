"""Private agents and signed URLs (protocol.md §1.3, §7.4), unknown agents, /v1/voices."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from piagent.protocol.messages import AgentResponse, ConversationInitiationMetadata
from piagent.sim.agent import ServerSettings
from piagent.sim.server import SimServer

from .conftest import Client, fast_agent, talk

KEY = "sk_test_key"


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], error.read()


async def get_json(url: str, key: str | None = None) -> tuple[int, Any]:
    headers = {"xi-api-key": key} if key is not None else {}
    status, content_type, body = await asyncio.to_thread(fetch, url, headers)
    assert content_type == "application/json"
    return status, json.loads(body)


def connect(url: str, **kwargs: Any) -> Any:
    """A client connection that keeps reading, so closing it is quick (see ``talk``)."""
    return ws_connect(url, max_queue=None, **kwargs)


def private_sim(**agent: Any) -> SimServer:
    agents = [
        fast_agent(agent_id="private", private=True, api_keys=(KEY,), **agent),
        fast_agent(agent_id="public"),
    ]
    return SimServer(agents)


async def signed_url(sim: SimServer, agent_id: str = "private") -> str:
    url = f"{sim.http_base}/v1/convai/conversation/get-signed-url?agent_id={agent_id}"
    status, body = await get_json(url, KEY)
    assert status == 200, body
    return str(body["signed_url"])


async def test_signed_url_endpoint_checks_the_api_key() -> None:
    async with private_sim() as sim:
        base = f"{sim.http_base}/v1/convai/conversation"
        status, body = await get_json(f"{base}/get-signed-url?agent_id=private")
        assert status == 401
        assert body["detail"]["status"] == "invalid_api_key"
        status, body = await get_json(f"{base}/get-signed-url?agent_id=private", "wrong")
        assert (status, body["detail"]["status"]) == (401, "invalid_api_key")
        status, body = await get_json(f"{base}/get-signed-url?agent_id=nobody", KEY)
        assert status == 404
        status, body = await get_json(f"{base}/get-signed-url", KEY)
        assert status == 422 and body["detail"][0]["loc"] == ["query", "agent_id"]
        for path in ("get-signed-url", "get_signed_url"):  # the deprecated alias too
            status, body = await get_json(f"{base}/{path}?agent_id=private", KEY)
            assert status == 200
            url = urlsplit(body["signed_url"])
            assert f"{url.scheme}://{url.netloc}" == sim.ws_base
            assert url.path == "/v1/convai/conversation"
            query = parse_qs(url.query)
            assert query["agent_id"] == ["private"]
            assert len(query["conversation_signature"][0]) >= 20


async def test_signatures_are_random() -> None:
    async with private_sim() as sim:
        assert await signed_url(sim) != await signed_url(sim)


async def test_private_agent_accepts_a_valid_signature() -> None:
    async with private_sim() as sim:
        url = await signed_url(sim)
        async with connect(url + "&source=python_sdk&version=2") as ws:
            client = Client(ws)
            await client.initiate()
            await client.wait_for(ConversationInitiationMetadata)
            await client.wait_for(AgentResponse)
        # A signature may be used again until it expires.
        async with connect(url) as ws:
            await Client(ws).initiate()
            await Client(ws).wait_for(ConversationInitiationMetadata)
        record = sim.conversations[0]
        assert record.query["conversation_signature"] == "***"  # kept out of records
        assert record.query["source"] == "python_sdk"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "Authentication failed: this agent requires a signed URL"),
        ("&conversation_signature=forged", "Authentication failed: invalid conversation signature"),
    ],
)
async def test_private_agent_without_a_valid_signature_is_closed_1008(
    query: str, reason: str
) -> None:
    async with private_sim() as sim, talk(sim, "private", query=query) as client:
        assert await client.wait_closed() == (1008, reason)
    record = sim.conversations[0]
    assert (record.close_code, record.close_reason) == (1008, reason)
    assert record.conversation_id is None


async def test_signature_of_another_agent_is_invalid() -> None:
    async with private_sim() as sim:
        url = await signed_url(sim, "public")
        token = parse_qs(urlsplit(url).query)["conversation_signature"][0]
        query = f"&conversation_signature={token}"
        async with talk(sim, "private", query=query) as client:
            code, _ = await client.wait_closed()
            assert code == 1008


async def test_expired_signature_is_closed_1008() -> None:
    async with private_sim(signed_url_ttl=0.2) as sim:
        url = await signed_url(sim)
        await asyncio.sleep(0.3)
        async with connect(url) as ws:
            client = Client(ws)
            code, reason = await client.wait_closed()
    assert (code, reason) == (1008, "Authentication failed: the signed URL has expired")


async def test_public_agent_needs_no_key_but_signed_urls_work_with_any_key() -> None:
    async with SimServer() as sim:
        status, body = await get_json(
            f"{sim.http_base}/v1/convai/conversation/get-signed-url?agent_id=demo", "any-key"
        )
        assert status == 200
        async with connect(body["signed_url"]) as ws:
            client = Client(ws)
            await client.initiate()
            await client.wait_for(ConversationInitiationMetadata)


async def test_unknown_agent_is_closed_1008_or_refused_404() -> None:
    async with SimServer([fast_agent()]) as sim, talk(sim, "nobody") as client:
        assert await client.wait_closed() == (1008, "Agent not found")
    assert sim.conversations[0].close_code == 1008
    settings = ServerSettings(unknown_agent="http_404")
    async with SimServer([fast_agent()], settings=settings) as sim:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{sim.ws_base}/v1/convai/conversation?agent_id=nobody"):
                pass
        assert refused.value.response.status_code == 404
        assert sim.conversations == []


async def test_missing_agent_id_is_closed_1008() -> None:
    async with SimServer() as sim, connect(f"{sim.ws_base}/v1/convai/conversation") as ws:
        assert await Client(ws).wait_closed() == (1008, "agent_id is required")


async def test_voices_endpoint() -> None:
    async with SimServer() as sim:
        status, body = await get_json(f"{sim.http_base}/v1/voices")  # no keys configured
        assert status == 200
        voices = body["voices"]
        assert len(voices) >= 3
        for voice in voices:
            assert {"voice_id", "name", "category", "labels", "description", "preview_url"} <= set(
                voice
            )
            assert voice["category"] == "premade"
            assert set(voice["settings"]) >= {"stability", "similarity_boost", "speed"}
        assert "21m00Tcm4TlvDq8ikWAM" in {v["voice_id"] for v in voices}
        status, content_type, wav = await asyncio.to_thread(fetch, voices[0]["preview_url"])
        assert (status, content_type) == (200, "audio/wav")
        assert wav[:4] == b"RIFF" and len(wav) > 1000


async def test_voices_endpoint_requires_a_key_when_keys_are_configured() -> None:
    async with private_sim() as sim:
        status, body = await get_json(f"{sim.http_base}/v1/voices")
        assert (status, body["detail"]["status"]) == (401, "invalid_api_key")
        status, body = await get_json(f"{sim.http_base}/v1/voices", "wrong")
        assert status == 401
        status, body = await get_json(f"{sim.http_base}/v1/voices", KEY)
        assert status == 200 and body["voices"]


async def test_unknown_http_path_is_404_json() -> None:
    async with SimServer() as sim:
        status, body = await get_json(f"{sim.http_base}/v1/nothing-here")
        assert status == 404 and body["detail"]["status"] == "not_found"


async def test_secrets_stay_out_of_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    async with private_sim() as sim:
        url = await signed_url(sim)
        token = parse_qs(urlsplit(url).query)["conversation_signature"][0]
        async with connect(url, subprotocols=["convai", "bearer.tok123"]) as ws:
            client = Client(ws)
            await client.initiate()
            await client.wait_for(ConversationInitiationMetadata)
    # The simulator's own loggers only: the test's client logs its request unredacted.
    ours = [r for r in caplog.records if r.name.startswith("piagent")]
    text = "\n".join(record.getMessage() for record in ours)
    assert "conversation_signature=***" in text  # the request line was logged, redacted
    for secret in (token, KEY, "tok123"):
        assert secret not in text
