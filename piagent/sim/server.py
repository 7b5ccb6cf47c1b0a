"""``SimServer``: the simulator's listening socket, its HTTP endpoints and the CLI entry point.

Owns the ``websockets`` server (``websockets.asyncio.server.serve``): routing of each HTTP
request in ``process_request`` (the conversation socket at ``/v1/convai/conversation``, signed
URLs, voices; upgrade refusals and delays injected per agent), sub-protocol selection
(``convai`` when offered, protocol.md §1.1), the per-socket checks before a conversation starts
(known agent, signature of a private agent: §1.2, §7.4), each agent's conversation slots
under its concurrency limit (``queue``), the list of ``ConversationRecord``
tests inspect, running in a background thread for synchronous tests, and ``run_from_args`` for
``piagent sim``. What happens inside a conversation lives in ``conversation``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import signal
import sys
import threading
from collections.abc import Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from piagent.errors import ScenarioError
from piagent.sim.agent import AgentDefinition, ServerSettings, load_agent_file
from piagent.sim.conversation import Conversation
from piagent.sim.endings import close_info
from piagent.sim.endpoints import (
    SignedUrls,
    api_error,
    json_response,
    missing_query_parameter,
    voice_preview,
    voices_response,
)
from piagent.sim.queue import Slots
from piagent.sim.record import ConversationRecord
from piagent.sim.scenario import Scenario, load_scenario

__all__ = ["SimServer", "run_from_args"]

logger = logging.getLogger(__name__)

CONVERSATION_PATH = "/v1/convai/conversation"
SIGNED_URL_PATHS = (f"{CONVERSATION_PATH}/get-signed-url", f"{CONVERSATION_PATH}/get_signed_url")
VOICES_PATH = "/v1/voices"
_PREVIEW_PATH = re.compile(r"^/v1/voices/([^/]+)/preview\.wav$")
EX_CONFIG = 78  # as piagent.cli: a bad agent or scenario file
EX_UNAVAILABLE = 69

T = TypeVar("T")

_SECRETS = re.compile(
    r"((?:conversation_signature|token)=)[^&\s\"]+|(xi-api-key:\s*)\S+|(bearer\.)[^,\s]+",
    re.IGNORECASE,
)


class _RedactSecrets(logging.Filter):
    """websockets logs request lines and headers at DEBUG: keep keys and signatures out."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRETS.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "***", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_SECRET_PARAMS = frozenset({"conversation_signature", "token"})

_ws_logger = logging.getLogger("piagent.sim.websockets")
_ws_logger.addFilter(_RedactSecrets())


def _select_subprotocol(
    connection: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    # The JS SDK offers "convai", possibly with "bearer.<token>" beside it; pick "convai".
    return Subprotocol("convai") if "convai" in offered else None


class SimServer:
    """The simulator. ``async with SimServer(...) as sim`` listens until the block ends.

    ``agents`` None: any ``agent_id`` is the public demo parrot (``AgentDefinition()`` under that
    id). ``scenario`` scripts every conversation. ``port`` 0 picks a free port."""

    def __init__(
        self,
        agents: Sequence[AgentDefinition] | None = None,
        scenario: Scenario | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        settings: ServerSettings | None = None,
    ) -> None:
        self._agents = None if agents is None else {a.agent_id: a for a in agents}
        self.scenario = scenario
        self.host = host
        self.settings = settings or ServerSettings()
        self.conversations: list[ConversationRecord] = []
        self._requested_port = port
        self._port: int | None = None
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._live: set[Conversation] = set()
        self._stopping = False
        self._started_count = 0
        self._new_conversation = asyncio.Event()
        self._signed = SignedUrls()
        self._refused: dict[str, int] = {}
        self._slots: dict[str, Slots] = {}
        self._thread_stop: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    # ----------------------------------------------------------------------------------------
    # Life cycle

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("SimServer is not started")
        return self._port

    @property
    def _public_host(self) -> str:
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"[{host}]" if ":" in host else host

    @property
    def ws_base(self) -> str:
        return f"ws://{self._public_host}:{self.port}"

    @property
    def http_base(self) -> str:
        return f"http://{self._public_host}:{self.port}"

    async def start(self) -> None:
        """Start listening (``OSError`` if the address is taken)."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._new_conversation = asyncio.Event()  # bound to this loop
        delays = [a.connect_delay for a in self._known_agents()]
        self._server = await serve(
            self._handle,
            self.host,
            self._requested_port,
            process_request=self._process_request,
            select_subprotocol=_select_subprotocol,
            compression=None,
            ping_interval=None,  # the JSON ping is the protocol's keepalive; stalls stay stalls
            close_timeout=3,
            open_timeout=10 + max(delays, default=0.0),
            max_size=self.settings.max_message_size,
            logger=_ws_logger,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        logger.info("simulator listening on %s", self.ws_base)

    async def stop(self) -> None:
        """End every conversation (close 1001), stop listening, wait for the handlers."""
        if self._server is None:
            return
        self._stopping = True
        for conversation in list(self._live):
            conversation.request_shutdown()
        self._server.close(close_connections=False)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def wait_for_conversations(
        self,
        n: int,
        timeout: float = 5.0,  # noqa: ASYNC109 (the test API takes a timeout)
    ) -> list[ConversationRecord]:
        """Wait until ``n`` conversations have started (sockets accepted); returns them."""
        async with asyncio.timeout(timeout):
            while self._started_count < n:
                self._new_conversation.clear()
                await self._new_conversation.wait()
        return self.conversations[:n]

    @contextlib.contextmanager
    def run_in_thread(self) -> Iterator[SimServer]:
        """Serve from an event loop in a daemon thread, for synchronous tests (the official
        SDK's client). Use ``run_coroutine`` to call the async helpers from outside."""
        ready = threading.Event()
        failures: list[BaseException] = []

        async def main() -> None:
            try:
                await self.start()
            except BaseException as exc:
                failures.append(exc)
                ready.set()
                return
            stop = asyncio.Event()
            self._thread_stop = (asyncio.get_running_loop(), stop)
            ready.set()
            try:
                await stop.wait()
            finally:
                await self.stop()

        thread = threading.Thread(target=asyncio.run, args=(main(),), name="piagent-sim")
        thread.daemon = True
        thread.start()
        if not ready.wait(10):
            raise RuntimeError("simulator thread did not start")
        if failures:
            thread.join(5)
            raise failures[0]
        try:
            yield self
        finally:
            assert self._thread_stop is not None
            loop, stop = self._thread_stop
            loop.call_soon_threadsafe(stop.set)
            thread.join(15)
            self._thread_stop = None

    def run_coroutine(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the server's loop from another thread and return its result."""
        if self._loop is None:
            raise RuntimeError("SimServer is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # ----------------------------------------------------------------------------------------
    # Agents

    def _known_agents(self) -> list[AgentDefinition]:
        agents = list(self._agents.values()) if self._agents is not None else [AgentDefinition()]
        return [self.scenario.apply(a) if self.scenario else a for a in agents]

    def agent(self, agent_id: str) -> AgentDefinition | None:
        """The definition used for ``agent_id`` (scenario applied), or None if unknown."""
        if self._agents is None:
            base = dataclasses.replace(AgentDefinition(), agent_id=agent_id or "demo")
        elif agent_id in self._agents:
            base = self._agents[agent_id]
        else:
            return None
        return self.scenario.apply(base) if self.scenario else base

    def _slots_for(self, agent: AgentDefinition) -> Slots | None:
        """The agent's conversation slots (one ``Slots`` per agent id), None without a limit."""
        if agent.concurrency_limit is None:
            return None
        slots = self._slots.get(agent.agent_id)
        if slots is None:
            slots = self._slots[agent.agent_id] = Slots(agent.concurrency_limit)
        return slots

    def _api_keys(self) -> set[str]:
        return {key for agent in self._known_agents() for key in agent.api_keys}

    # ----------------------------------------------------------------------------------------
    # HTTP

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        url = urlsplit(request.path)
        query = dict(parse_qsl(url.query))
        if url.path == CONVERSATION_PATH:
            return await self._check_upgrade(query.get("agent_id", ""))
        if url.path in SIGNED_URL_PATHS:
            return self._signed_url(request, query)
        if url.path == VOICES_PATH:
            keys = self._api_keys()
            if keys and request.headers.get("xi-api-key") not in keys:
                return api_error(401, "invalid_api_key", "Invalid API key")
            return voices_response(self.http_base)
        preview = _PREVIEW_PATH.match(url.path)
        if preview is not None:
            return voice_preview(preview.group(1)) or api_error(404, "not_found", "Not Found")
        return api_error(404, "not_found", "Not Found")

    async def _check_upgrade(self, agent_id: str) -> Response | None:
        """Refusals and delays injected before the upgrade completes."""
        agent = self.agent(agent_id)
        if agent is None:
            if agent_id and self.settings.unknown_agent == "http_404":
                return api_error(404, "agent_not_found", f"Agent {agent_id} not found")
            return None  # accepted, then closed 1008 by the handler
        if agent.connect_delay:
            await asyncio.sleep(agent.connect_delay)
        if agent.refuse_upgrade is not None:
            refused = self._refused.get(agent.agent_id, 0)
            if agent.refuse_upgrade_times is None or refused < agent.refuse_upgrade_times:
                self._refused[agent.agent_id] = refused + 1
                logger.info("refusing upgrade for %s with %d", agent.agent_id, agent.refuse_upgrade)
                status = agent.refuse_upgrade
                return api_error(status, "upgrade_refused", "Refused by the simulator (fault)")
        return None

    def _signed_url(self, request: Request, query: dict[str, str]) -> Response:
        key = request.headers.get("xi-api-key")
        if not key:
            return api_error(401, "invalid_api_key", "Missing xi-api-key header")
        agent_id = query.get("agent_id")
        if not agent_id:
            return missing_query_parameter("agent_id")
        agent = self.agent(agent_id)
        if agent is None:
            return api_error(404, "agent_not_found", f"Agent {agent_id} not found")
        if not agent.accepts_api_key(key):
            return api_error(401, "invalid_api_key", "Invalid API key")
        assert self._loop is not None
        token = self._signed.issue(agent.agent_id, agent.signed_url_ttl, self._loop.time())
        host = request.headers.get("Host") or f"{self._public_host}:{self.port}"
        url = f"ws://{host}{CONVERSATION_PATH}?agent_id={agent_id}&conversation_signature={token}"
        logger.info("issued a signed URL for %s", agent_id)
        return json_response(200, {"signed_url": url})

    # ----------------------------------------------------------------------------------------
    # WebSocket

    def _refusal(self, agent: AgentDefinition | None, query: dict[str, str]) -> str | None:
        """Why this socket may not start a conversation (closed 1008), or None."""
        if not query.get("agent_id"):
            return "agent_id is required"
        if agent is None:
            return "Agent not found"
        signature = query.get("conversation_signature") or query.get("token")
        if signature is None:
            return (
                "Authentication failed: this agent requires a signed URL" if agent.private else None
            )
        assert self._loop is not None
        check = self._signed.check(signature, agent.agent_id, self._loop.time())
        if check == "expired":
            return "Authentication failed: the signed URL has expired"
        if check == "invalid":
            return "Authentication failed: invalid conversation signature"
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        query = dict(parse_qsl(urlsplit(ws.request.path).query)) if ws.request else {}
        agent = self.agent(query.get("agent_id", ""))
        # The record may end up in a test's failure output: keep the signature out of it.
        shown = {k: "***" if k in _SECRET_PARAMS else v for k, v in query.items()}
        record = ConversationRecord(query.get("agent_id", ""), shown, ws.subprotocol)
        self.conversations.append(record)
        if self.settings.max_records is not None:
            del self.conversations[: -self.settings.max_records]
        self._started_count += 1
        self._new_conversation.set()
        refusal = "Server shutting down" if self._stopping else self._refusal(agent, query)
        if refusal is not None or agent is None:
            logger.info("closing socket for agent %r: %s", record.agent_id, refusal)
            await ws.close(1001 if self._stopping else 1008, refusal or "")
            await ws.wait_closed()
            record.mark_closed(*close_info(ws))
            return
        conversation = Conversation(
            ws,
            agent,
            self.scenario,
            record,
            record_traffic=self.settings.record_traffic,
            slots=self._slots_for(agent),
        )
        self._live.add(conversation)
        try:
            await conversation.run()
        finally:
            self._live.discard(conversation)


# --------------------------------------------------------------------------------------------
# piagent sim


async def _serve_until_signal(server: SimServer) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
    except OSError as exc:
        print(f"piagent sim: cannot listen on {server.host}: {exc.strerror}", file=sys.stderr)
        return EX_UNAVAILABLE
    print(f"piagent sim: listening on {server.ws_base}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()
    logger.info("simulator stopped")
    return 0


def run_from_args(host: str, port: int, scenario_path: str | None, agent_path: str | None) -> int:
    """``piagent sim``: serve until SIGINT/SIGTERM (exit 0); a bad file exits 78."""
    try:
        agent_file = load_agent_file(agent_path) if agent_path else None
        scenario = load_scenario(scenario_path) if scenario_path else None
        agents = agent_file.agents if agent_file else (AgentDefinition(),)
        for agent in agents:
            if scenario is not None:
                scenario.apply(agent)  # the merged definition must be valid too
    except ScenarioError as exc:
        print(f"piagent sim: {exc}", file=sys.stderr)
        return EX_CONFIG
    settings = agent_file.server if agent_file else ServerSettings()
    # A long-running simulator keeps only recent conversations and no audio or frames.
    settings = dataclasses.replace(settings, max_records=16, record_traffic=False)
    server = SimServer(
        list(agent_file.agents) if agent_file else None, scenario, host, port, settings=settings
    )
    return asyncio.run(_serve_until_signal(server))
