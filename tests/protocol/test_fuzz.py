"""Parser fuzz: whatever arrives, ``parse_server`` / ``parse_client`` either return a message or
raise ``RemoteProtocolError``; no other exception escapes.

Frames start as valid encodings of generated messages and are then mutated (keys deleted,
duplicated or renamed, values swapped for other JSON types, numbers pushed out of range, text
truncated, bytes flipped, unicode inserted, values nested deeply ...). Arbitrary JSON objects, some
with a known ``type`` and payload key, cover what the mutations do not reach. Whatever parses must
also encode again to a frame that parses to the same encoding.

Deterministic: hypothesis runs derandomized, and each generated message seeds a
``random.Random`` that drives its mutations.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from piagent.errors import RemoteProtocolError
from piagent.protocol.messages import (
    CLIENT_MESSAGE_TYPES,
    SERVER_EVENT_TYPES,
    encode,
    parse_client,
    parse_server,
)
from tests.protocol.strategies import (
    client_message_strategies,
    json_objects,
    json_values,
    server_event_strategies,
)

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MUTATIONS_PER_MESSAGE = 40
SERVER_MESSAGES = 300  # x 40 mutations: 12,000 server frames
CLIENT_MESSAGES = 100  # x 40 mutations: 4,000 client frames
ARBITRARY_OBJECTS = 1000  # each through both parsers

Parser = Callable[[str | bytes], Any]


@dataclass
class Tally:
    """What the fuzz did: frames parsed, and how many were accepted or rejected."""

    frames: int = 0
    accepted: int = 0
    rejected: int = 0
    seen_types: set[str] = field(default_factory=set)

    def feed(self, parse: Parser, frame: str | bytes) -> None:
        self.frames += 1
        try:
            message = parse(frame)
        except RemoteProtocolError:
            self.rejected += 1
            return
        except Exception as exc:
            raise AssertionError(
                f"{parse.__name__} raised {type(exc).__name__}: {exc} on {_show(frame)}"
            ) from exc
        self.accepted += 1
        self.seen_types.add(type(message).__name__)
        # Whatever we accept we can send again, and it reads back the same.
        wire = encode(message)
        again = parse(wire)
        assert encode(again) == wire, _show(frame)


def _show(frame: str | bytes, limit: int = 300) -> str:
    text = repr(frame)
    return text if len(text) <= limit else text[:limit] + f"... ({len(frame)} chars)"


# --------------------------------------------------------------------------------------------
# Mutations: each takes the decoded JSON of a valid frame (or its text) and returns a frame.

NASTY_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    2**63,
    -(2**70),
    "",
    "x",
    "AAAA",
    "pcm_16000",
    [],
    [None],
    {},
    {"event_id": 1},
]
NASTY_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "1" + "0" * 400, "1.0", "-0"]
KNOWN_TYPES = sorted(set(SERVER_EVENT_TYPES) | set(CLIENT_MESSAGE_TYPES) | {"guardrail_triggered"})


def _containers(node: Any, out: list[Any]) -> list[Any]:
    """Every dict and list inside ``node`` (``node`` included), depth first."""
    if isinstance(node, dict | list):
        out.append(node)
        for child in node.values() if isinstance(node, dict) else node:
            _containers(child, out)
    return out


def _slots(data: Any) -> list[tuple[Any, Any]]:
    """(container, key or index) for every value inside ``data``."""
    slots: list[tuple[Any, Any]] = []
    for container in _containers(data, []):
        keys = list(container) if isinstance(container, dict) else range(len(container))
        slots.extend((container, key) for key in keys)
    return slots


def _random_unicode(rng: random.Random) -> str:
    picks = [
        chr(rng.randrange(0x20, 0x7F)),
        chr(rng.randrange(0x80, 0x800)),
        chr(rng.randrange(0x800, 0xD800)),
        chr(rng.randrange(0xE000, 0x10000)),
        chr(rng.randrange(0x10000, 0x110000)),
        chr(rng.randrange(0xD800, 0xE000)),  # lone surrogate
        rng.choice(['"', "\\", "{", "}", "[", "]", ",", ":", "\x00", "\n", "\ufeff"]),
    ]
    return "".join(rng.choice(picks) for _ in range(rng.randint(1, 4)))


def _random_value(rng: random.Random) -> Any:
    return rng.choice([*NASTY_VALUES, _random_unicode(rng), rng.randint(-(10**6), 10**6)])


def _nested_text(rng: random.Random, inner: str) -> str:
    """``inner`` (JSON text) wrapped in arrays and objects, written as text: json.dumps could
    not write the deep cases."""
    # Shallow, or far beyond the recursion limit: depths in between would make the outcome
    # depend on how deep the test's own stack happens to be.
    depth = rng.choice([rng.randint(1, 40), rng.randint(3000, 20000)])
    kinds = [rng.random() < 0.5 for _ in range(depth)]
    opening = "".join("[" if is_list else '{"a":' for is_list in kinds)
    closing = "".join("]" if is_list else "}" for is_list in reversed(kinds))
    return opening + inner + closing


_MARKER = "__FUZZ_MARKER__"


def _dump(data: Any, replacement: str | None = None) -> str:
    """JSON text of ``data``; the string ``_MARKER`` in it, if any, becomes ``replacement``."""
    text = json.dumps(data, ensure_ascii=False)  # NaN from an earlier mutation stays NaN
    if replacement is not None:
        text = text.replace(json.dumps(_MARKER), replacement, 1)
    return text


def m_delete_key(rng: random.Random, data: Any, text: str) -> str | bytes:
    dicts = [c for c in _containers(data, []) if isinstance(c, dict) and c]
    if dicts:
        target = rng.choice(dicts)
        del target[rng.choice(list(target))]
    return _dump(data)


def m_replace_value(rng: random.Random, data: Any, text: str) -> str | bytes:
    slots = _slots(data)
    if slots:
        container, key = rng.choice(slots)
        container[key] = _random_value(rng)
    return _dump(data)


def m_rename_key(rng: random.Random, data: Any, text: str) -> str | bytes:
    dicts = [c for c in _containers(data, []) if isinstance(c, dict) and c]
    if dicts:
        target = rng.choice(dicts)
        old = rng.choice(list(target))
        target[old + _random_unicode(rng) if rng.random() < 0.5 else old.upper()] = target.pop(old)
    return _dump(data)


def m_duplicate_key(rng: random.Random, data: Any, text: str) -> str | bytes:
    # JSON objects may repeat a key (the last one wins): put a bad value first or last.
    if not isinstance(data, dict) or not data:
        return text
    key = rng.choice(list(data))
    pair = f"{json.dumps(key)}:{_dump(_random_value(rng))}"
    body = text[1:-1]
    return "{" + (f"{pair},{body}" if rng.random() < 0.5 else f"{body},{pair}") + "}"


def m_swap_type(rng: random.Random, data: Any, text: str) -> str | bytes:
    """Keep a value's content but change its JSON type (1 -> "1", "x" -> ["x"], ...)."""
    slots = _slots(data)
    if slots:
        container, key = rng.choice(slots)
        value = container[key]
        options = [str(value), [value], {"value": value}, None, bool(value)]
        if isinstance(value, bool):
            options.append(int(value))
        if isinstance(value, int | float) and not isinstance(value, bool):
            options += [-value, float(value) if abs(value) < 1e300 else 1e300]
        container[key] = rng.choice(options)
    return _dump(data)


def m_change_type(rng: random.Random, data: Any, text: str) -> str | bytes:
    """Another message's ``type`` over this one's payload."""
    if isinstance(data, dict):
        data["type"] = rng.choice([*KNOWN_TYPES, "", "error", "ERROR", 5, None])
    return _dump(data)


def m_nasty_number(rng: random.Random, data: Any, text: str) -> str | bytes:
    slots = [(c, k) for c, k in _slots(data) if isinstance(c[k], int | float | str)]
    if not slots:
        return text
    container, key = rng.choice(slots)
    container[key] = _MARKER
    return _dump(data, rng.choice(NASTY_NUMBERS))


def m_nest_deeply(rng: random.Random, data: Any, text: str) -> str | bytes:
    slots = _slots(data)
    if not slots:
        return _nested_text(rng, text)
    container, key = rng.choice(slots)
    inner = _dump(container[key])
    container[key] = _MARKER
    return _dump(data, _nested_text(rng, inner))


def m_truncate(rng: random.Random, data: Any, text: str) -> str | bytes:
    return text[: rng.randrange(len(text))] if text else text


def m_insert_unicode(rng: random.Random, data: Any, text: str) -> str | bytes:
    at = rng.randrange(len(text) + 1)
    return text[:at] + _random_unicode(rng) + text[at:]


def m_flip_bytes(rng: random.Random, data: Any, text: str) -> str | bytes:
    raw = bytearray(text.encode("utf-8", "surrogatepass"))
    for _ in range(rng.randint(1, 3)):
        if raw:
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    return bytes(raw)


def m_break_base64(rng: random.Random, data: Any, text: str) -> str | bytes:
    strings = [(c, k) for c, k in _slots(data) if isinstance(c[k], str) and k != "type"]
    if strings:
        container, key = rng.choice(strings)
        container[key] = rng.choice(["A", "AB=", "A===", "****", "AA==AA", "YQ", " AA==", "ÿÿ"])
    return _dump(data)


def m_replace_whole(rng: random.Random, data: Any, text: str) -> str | bytes:
    return rng.choice(
        ["", " ", "null", "[]", '"x"', "0", "{", "}", '{"type"}', "[" * 5000, text + text]
    )


MUTATIONS = [
    m_delete_key,
    m_replace_value,
    m_rename_key,
    m_duplicate_key,
    m_swap_type,
    m_change_type,
    m_nasty_number,
    m_nest_deeply,
    m_truncate,
    m_insert_unicode,
    m_flip_bytes,
    m_break_base64,
    m_replace_whole,
]


def mutate(rng: random.Random, text: str) -> str | bytes:
    """One to three mutations of a valid frame."""
    frame: str | bytes = text
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        current = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        try:
            data = json.loads(current)
        except (ValueError, RecursionError):
            data = None
        frame = rng.choice(MUTATIONS)(rng, data, current)
    return frame


# --------------------------------------------------------------------------------------------
# The fuzz


def _mutation_fuzz(
    strategy: st.SearchStrategy[Any], parse: Parser, messages: int, tally: Tally | None = None
) -> Tally:
    tally = tally if tally is not None else Tally()

    @settings(FUZZ, max_examples=messages)
    @given(message=strategy, seed=st.integers(min_value=0, max_value=2**32 - 1))
    def run(message: Any, seed: int) -> None:
        rng = random.Random(seed)
        text = encode(message)
        tally.feed(parse, text)  # the unmutated frame must parse
        for _ in range(MUTATIONS_PER_MESSAGE - 1):
            tally.feed(parse, mutate(rng, text))

    run()
    return tally


def test_mutated_server_frames_raise_only_remote_protocol_error() -> None:
    # Class by class, so every event type is fuzzed whatever hypothesis prefers to draw.
    strategies = server_event_strategies()
    per_class = -(-SERVER_MESSAGES // len(strategies))
    tally = Tally()
    for strategy in strategies:
        _mutation_fuzz(strategy, parse_server, per_class, tally)
    print(f"server fuzz: {tally.frames} frames, {tally.rejected} rejected, {tally.accepted} ok")
    assert tally.frames >= 10_000, tally
    # The mutations must exercise both outcomes, not just produce unparseable noise.
    assert tally.rejected >= tally.frames // 4, tally
    assert tally.accepted >= tally.frames // 10, tally
    every_class = {cls.__name__ for cls in SERVER_EVENT_TYPES.values()}
    assert every_class | {"UnknownMessage", "FlatErrorEvent"} <= tally.seen_types, tally


def test_mutated_client_frames_raise_only_remote_protocol_error() -> None:
    strategies = client_message_strategies()
    per_class = -(-CLIENT_MESSAGES // len(strategies))
    tally = Tally()
    for strategy in strategies:
        _mutation_fuzz(strategy, parse_client, per_class, tally)
    print(f"client fuzz: {tally.frames} frames, {tally.rejected} rejected, {tally.accepted} ok")
    assert tally.frames >= CLIENT_MESSAGES * MUTATIONS_PER_MESSAGE, tally
    assert tally.rejected >= tally.frames // 4, tally
    assert tally.accepted >= tally.frames // 10, tally
    every_class = {cls.__name__ for cls in CLIENT_MESSAGE_TYPES.values()}
    assert every_class | {"UserAudioChunk", "UnknownMessage"} <= tally.seen_types, tally


PAYLOAD_KEYS = sorted(
    {cls.SPEC.payload_key for cls in SERVER_EVENT_TYPES.values() if cls.SPEC.payload_key}
    | {"asr_initiation_metadata_event", "guardrail_triggered_event", "user_audio_chunk"}
)


@st.composite
def typed_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Arbitrary JSON objects, most with a known ``type`` and a payload key (of any type)."""
    data = draw(json_objects)
    if draw(st.booleans()):
        data["type"] = draw(st.sampled_from(KNOWN_TYPES))
    if draw(st.booleans()):
        data[draw(st.sampled_from(PAYLOAD_KEYS))] = draw(json_objects | json_values)
    return data


def test_arbitrary_json_raises_only_remote_protocol_error() -> None:
    server, client = Tally(), Tally()

    @settings(FUZZ, max_examples=ARBITRARY_OBJECTS)
    @given(typed_objects())
    def run(data: dict[str, Any]) -> None:
        text = json.dumps(data, ensure_ascii=False)
        server.feed(parse_server, text)
        client.feed(parse_client, text)

    run()
    assert server.frames == client.frames == ARBITRARY_OBJECTS
    assert server.rejected > 0 and server.accepted > 0, server
    assert client.rejected > 0 and client.accepted > 0, client
