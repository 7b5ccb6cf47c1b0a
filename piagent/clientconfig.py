"""From the config to what the agent client needs: where to connect, what to send first, and
the conversation policy.

Owns ``ClientOptions`` (the policy's settings in seconds, from the ``session`` and ``audio``
sections; ``policy()`` hands the appliance its share), ``initiation_from_config`` (the
``conversation_initiation_client_data`` the config asks for) and ``endpoint_from_config``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from piagent import __version__
from piagent.appliance.options import Options
from piagent.config import AgentConfig, Config, Secret
from piagent.protocol.messages import (
    AgentConfigOverride,
    ConversationConfigOverride,
    ConversationInitiationClientData,
    PromptOverride,
    SourceInfo,
    TtsConfigOverride,
)
from piagent.transport import Endpoint


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Conversation policy (seconds unless stated)."""

    idle_timeout: float = 30.0
    max_duration: float = 600.0
    always_connected: bool = False
    connect_timeout: float = 10.0
    stall_timeout: float = 15.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    half_duplex: bool = True  # send silence while the agent speaks, unless the user holds
    chunk_ms: int = 20  # microphone frame length, for the hold buffer's bound
    hold_limit: float = 30.0  # most audio held while connecting; older frames are dropped
    ending_grace: float = 10.0  # after the server announced the end, wait this long for it
    # "thinking" ends without a reply: after empty_turn_timeout when the server never heard a
    # user turn (the button was pressed with nothing said), else after reply_timeout.
    empty_turn_timeout: float = 5.0
    reply_timeout: float = 30.0

    def policy(self) -> Options:
        """The appliance's share of these settings (the fields both have, by name)."""
        shared = {f.name for f in dataclasses.fields(Options)} & {
            f.name for f in dataclasses.fields(self)
        }
        return Options(**{name: getattr(self, name) for name in shared})

    @property
    def hold_frames(self) -> int:
        """How many microphone frames the held turn keeps."""
        return int(self.hold_limit * 1000 / self.chunk_ms)


def initiation_from_config(agent: AgentConfig) -> ConversationInitiationClientData:
    """The ``conversation_initiation_client_data`` the config asks for (protocol.md §3.2).

    Only what the user set is sent: an agent that does not allow an override rejects the whole
    conversation, so a key left out of the config must not appear on the wire, not even empty.
    Dynamic variables keep their YAML types (string, number, boolean)."""
    prompt = None
    if agent.prompt is not None or agent.reasoning_effort is not None:
        prompt = PromptOverride(prompt=agent.prompt, reasoning_effort=agent.reasoning_effort)
    override = ConversationConfigOverride(
        agent=AgentConfigOverride(
            prompt=prompt, first_message=agent.first_message, language=agent.language
        ),
        tts=TtsConfigOverride(
            voice_id=agent.voice_id,
            stability=agent.tts.stability,
            speed=agent.tts.speed,
            similarity_boost=agent.tts.similarity_boost,
            model_id=agent.tts.model_id,
        ),
    )
    llm = {
        key: value
        for key, value in (
            ("temperature", agent.llm.temperature),
            ("max_tokens", agent.llm.max_tokens),
        )
        if value is not None
    }
    return ConversationInitiationClientData(
        conversation_config_override=override,
        custom_llm_extra_body=llm or None,
        dynamic_variables=dict(agent.dynamic_variables) or None,
        user_id=agent.user_id,
        source_info=SourceInfo(source="unknown", version=f"piagent/{__version__}"),
        procedure_ids=agent.procedure_ids,
    )


def options_from_config(config: Config, *, full_duplex: bool = False) -> ClientOptions:
    """Conversation policy from the ``session`` and ``audio`` sections; ``full_duplex`` when
    echo cancellation runs (the microphone then never hears the agent, so it is not gated)."""
    session = config.session
    return ClientOptions(
        idle_timeout=session.idle_timeout,
        max_duration=session.max_duration,
        always_connected=session.always_connected,
        connect_timeout=session.connect_timeout,
        stall_timeout=session.stall_timeout,
        backoff_initial=session.backoff_initial,
        backoff_max=session.backoff_max,
        half_duplex=config.audio.half_duplex and not full_duplex,
        chunk_ms=config.audio.input.chunk_ms,
    )


def endpoint_from_config(agent: AgentConfig, api_key: Secret | None) -> Endpoint:
    """Where to connect; the key is revealed only into the endpoint, whose repr hides it."""
    return Endpoint(
        agent.agent_id, agent.server, agent.api_base, api_key.reveal() if api_key else None
    )


__all__ = ["ClientOptions", "endpoint_from_config", "initiation_from_config", "options_from_config"]
