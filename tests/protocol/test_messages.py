"""The message model's front door: audio formats, unknown types kept whole, round trips.

Every other aspect has its own file: ``test_server_events`` (server wire examples),
``test_client_messages`` (client messages encoded exactly, tolerant parsing) and
``test_malformed`` (every malformed input rejected, naming its JSON path).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from piagent.protocol.messages import (
    AudioFormat,
    UnknownMessage,
    UserAudioChunk,
    encode,
    parse_client,
    parse_server,
    to_json,
)
from tests.protocol.strategies import client_messages, server_events, unknown_messages

ROUND_TRIP = settings(max_examples=300, deadline=None)


# --------------------------------------------------------------------------------------------
# AudioFormat


@pytest.mark.parametrize(
    ("fmt", "rate", "ulaw", "width", "silence"),
    [
        (AudioFormat.PCM_8000, 8000, False, 2, 0x00),
        (AudioFormat.PCM_16000, 16000, False, 2, 0x00),
        (AudioFormat.PCM_22050, 22050, False, 2, 0x00),
        (AudioFormat.PCM_24000, 24000, False, 2, 0x00),
        (AudioFormat.PCM_44100, 44100, False, 2, 0x00),
        (AudioFormat.PCM_48000, 48000, False, 2, 0x00),
        (AudioFormat.ULAW_8000, 8000, True, 1, 0xFF),
    ],
)
def test_audio_format_properties(
    fmt: AudioFormat, rate: int, ulaw: bool, width: int, silence: int
) -> None:
    assert fmt.sample_rate == rate
    assert fmt.is_ulaw is ulaw
    assert fmt.bytes_per_sample == width
    assert fmt.silence_byte == silence


def test_audio_formats_are_the_seven_of_the_protocol() -> None:
    assert {f.value for f in AudioFormat} == {
        "pcm_8000",
        "pcm_16000",
        "pcm_22050",
        "pcm_24000",
        "pcm_44100",
        "pcm_48000",
        "ulaw_8000",
    }


# --------------------------------------------------------------------------------------------
# Unknown types


def test_unknown_server_type_is_kept_whole() -> None:
    wire = '{"type":"dtmf_request","dtmf_request_event":{"digits":"12#"},"extra":[1,2.5,null]}'
    event = parse_server(wire)
    assert event == UnknownMessage(
        "dtmf_request",
        {"type": "dtmf_request", "dtmf_request_event": {"digits": "12#"}, "extra": [1, 2.5, None]},
    )
    assert encode(event) == wire  # the simulator can replay it unchanged
    assert to_json(event) == json.loads(wire)


def test_unknown_client_type_is_kept_whole() -> None:
    wire = '{"type":"enclave_setup_config","config":{"a":1}}'
    message = parse_client(wire)
    assert message == UnknownMessage("enclave_setup_config", json.loads(wire))
    assert encode(message) == wire


def test_server_type_is_unknown_to_parse_client_and_vice_versa() -> None:
    # The two directions have separate catalogues: a ping is not a client message.
    assert parse_client('{"type":"ping","ping_event":{"event_id":1}}') == UnknownMessage(
        "ping", {"type": "ping", "ping_event": {"event_id": 1}}
    )
    assert parse_server('{"type":"pong","event_id":1}') == UnknownMessage(
        "pong", {"type": "pong", "event_id": 1}
    )


# --------------------------------------------------------------------------------------------
# Round trips over generated messages


@ROUND_TRIP
@given(client_messages())
def test_client_round_trip(message: Any) -> None:
    wire = encode(message)
    assert parse_client(wire) == message
    assert json.loads(wire) == to_json(message)


@ROUND_TRIP
@given(server_events())
def test_server_round_trip(event: Any) -> None:
    wire = encode(event)
    assert parse_server(wire) == event
    assert json.loads(wire) == to_json(event)


@settings(max_examples=50, deadline=None)
@given(unknown_messages())
def test_unknown_round_trip_both_directions(message: UnknownMessage) -> None:
    wire = encode(message)
    assert parse_server(wire) == message
    assert parse_client(wire) == message


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=512))
def test_audio_chunk_round_trip(audio: bytes) -> None:
    assert parse_client(encode(UserAudioChunk(audio))) == UserAudioChunk(audio)
