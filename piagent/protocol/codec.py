"""The wire codec shared by every message class: value codecs, field specs, audio formats.

Each message class describes its wire shape declaratively in a ``SPEC``: the ``type`` string,
the key of the payload object, and one ``Field`` per attribute, each with the ``Codec`` that
turns its JSON value into a Python value and back. ``decode_fields`` / ``encode_fields`` read
and write any such class, so the message modules hold shapes and no parsing code. Decoding is
strict about types (integers are not booleans, numbers are finite, base64 is valid) and every
failure is a ``RemoteProtocolError`` naming the JSON path of the offending value. Optional
fields left at their default are omitted on encoding (protocol.md §3.2: "omit fields you do not
want to override"), and a nested object with nothing set is omitted by its parent.

Also owns ``AudioFormat``, the seven audio format names (protocol.md §6).

Internal to ``piagent.protocol``: the rest of the application imports messages from
``piagent.protocol.messages``. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from piagent.errors import RemoteProtocolError

JsonObject: TypeAlias = Mapping[str, Any]

__all__ = [
    "AUDIO_FORMAT",
    "BASE64",
    "BOOL",
    "INT",
    "INT_LIST",
    "NUMBER",
    "OBJECT",
    "OBJECT_LIST",
    "REQUIRED",
    "STR",
    "STR_LIST",
    "AudioFormat",
    "Codec",
    "Field",
    "JsonObject",
    "Spec",
    "decode_fields",
    "encode_fields",
    "fail",
    "list_of",
    "nested",
    "one_of",
    "opt",
    "req",
]


class AudioFormat(enum.StrEnum):
    """The seven audio formats, identical for both directions (protocol.md §6)."""

    PCM_8000 = "pcm_8000"
    PCM_16000 = "pcm_16000"
    PCM_22050 = "pcm_22050"
    PCM_24000 = "pcm_24000"
    PCM_44100 = "pcm_44100"
    PCM_48000 = "pcm_48000"
    ULAW_8000 = "ulaw_8000"

    @property
    def sample_rate(self) -> int:
        """Samples per second."""
        return int(self.value.rsplit("_", 1)[1])

    @property
    def is_ulaw(self) -> bool:
        """True for G.711 mu-law (one byte a sample), False for little-endian int16 PCM."""
        return self is AudioFormat.ULAW_8000

    @property
    def bytes_per_sample(self) -> int:
        """1 for mu-law, 2 for 16-bit PCM."""
        return 1 if self.is_ulaw else 2

    @property
    def silence_byte(self) -> int:
        """The byte that, repeated, is digital silence: 0xFF is mu-law's code for zero."""
        return 0xFF if self.is_ulaw else 0x00


# --------------------------------------------------------------------------------------------
# The generic codec: a value codec per JSON kind, a field spec per attribute.


@dataclass(frozen=True, slots=True)
class Codec:
    """How one JSON value becomes a Python value (``decode(raw, path)``) and back."""

    decode: Callable[[Any, str], Any]
    encode: Callable[[Any], Any]
    drop_empty: bool = False  # an optional value that encodes to {} is omitted
    # For a codec that decodes a valid value to itself: whether it takes ``raw``, so that a
    # list of such values is checked with one call an item (alignment has three a character).
    accepts: Callable[[Any], bool] | None = None


def fail(path: str, expected: str, raw: Any) -> RemoteProtocolError:
    return RemoteProtocolError(f"{path}: expected {expected}, got {_describe(raw)}")


def _describe(raw: Any) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "boolean"
    if isinstance(raw, int | float):
        return "number"
    if isinstance(raw, str):
        return "string"
    if isinstance(raw, list):
        return "array"
    return "object"


def _identity(value: Any) -> Any:
    return value


def _checked(expected: str, test: Callable[[Any], bool], convert: Callable[[Any], Any]) -> Codec:
    def decode(raw: Any, path: str) -> Any:
        if not test(raw):
            raise fail(path, expected, raw)
        return convert(raw)

    return Codec(decode, _identity, accepts=test if convert is _identity else None)


def _is_int(raw: Any) -> bool:
    return isinstance(raw, int) and not isinstance(raw, bool)


def _is_number(raw: Any) -> bool:
    return isinstance(raw, int | float) and not isinstance(raw, bool)


STR = _checked("string", lambda raw: isinstance(raw, str), _identity)
INT = _checked("integer", _is_int, _identity)


def _decode_number(raw: Any, path: str) -> float:
    if not _is_number(raw):
        raise fail(path, "number", raw)
    try:
        return float(raw)
    except OverflowError:
        # JSON integers are unbounded; one too large for a float must not escape as OverflowError.
        raise RemoteProtocolError(f"{path}: number out of range") from None


NUMBER = Codec(_decode_number, _identity)
BOOL = _checked("boolean", lambda raw: isinstance(raw, bool), _identity)
OBJECT = _checked("object", lambda raw: isinstance(raw, dict), dict)


def list_of(item: Codec, expected: str) -> Codec:
    accepts = item.accepts

    def decode(raw: Any, path: str) -> tuple[Any, ...]:
        if not isinstance(raw, list):
            raise fail(path, expected, raw)
        if accepts is not None and all(map(accepts, raw)):
            return tuple(raw)
        # Each item decoded on its own, with its path: the one that fails is named.
        return tuple(item.decode(value, f"{path}[{i}]") for i, value in enumerate(raw))

    return Codec(decode, lambda value: [item.encode(v) for v in value])


STR_LIST = list_of(STR, "array of strings")
INT_LIST = list_of(INT, "array of integers")
OBJECT_LIST = list_of(OBJECT, "array of objects")


def one_of(*choices: str) -> Codec:
    expected = " | ".join(repr(c) for c in choices)
    return _checked(expected, lambda raw: isinstance(raw, str) and raw in choices, _identity)


def _decode_base64(raw: Any, path: str) -> bytes:
    if not isinstance(raw, str):
        raise fail(path, "base64 string", raw)
    try:
        return binascii.a2b_base64(raw, strict_mode=True)  # as b64decode(validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RemoteProtocolError(f"{path}: invalid base64 ({exc})") from exc


BASE64 = Codec(_decode_base64, lambda value: base64.b64encode(value).decode("ascii"))


def _decode_format(raw: Any, path: str) -> AudioFormat:
    try:
        return AudioFormat(raw)
    except ValueError:
        raise fail(path, f"one of {', '.join(f.value for f in AudioFormat)}", raw) from None


AUDIO_FORMAT = Codec(_decode_format, str)

REQUIRED: Any = object()


@dataclass(frozen=True, slots=True)
class Field:
    """One attribute: its wire key, codec, default (``REQUIRED`` if none) and nullability.

    ``send_default``: encode the field even at its default, for fields the spec requires on the
    wire although readers may assume the default when it is missing."""

    attr: str
    key: str
    codec: Codec
    default: Any = REQUIRED
    nullable: bool = False
    send_default: bool = False


def req(attr: str, codec: Codec, key: str | None = None, *, nullable: bool = False) -> Field:
    return Field(attr, key or attr, codec, REQUIRED, nullable)


def opt(attr: str, codec: Codec, key: str | None = None, default: Any = None) -> Field:
    return Field(attr, key or attr, codec, default, nullable=True)


@dataclass(frozen=True, slots=True)
class Spec:
    """Wire shape of a message: ``type`` (None for the untyped audio chunk and nested objects)
    and the key under which the fields sit (None: beside ``type`` at the top level)."""

    type: str | None
    payload_key: str | None
    fields: tuple[Field, ...]


def decode_fields(cls: type[Any], data: Any, path: str) -> Any:
    spec: Spec = cls.SPEC
    if not isinstance(data, dict):
        raise fail(path or "message", "object", data)
    kwargs: dict[str, Any] = {}
    prefix = f"{path}." if path else ""
    for f in spec.fields:
        if f.key not in data:
            if f.default is REQUIRED:
                raise RemoteProtocolError(f"{prefix}{f.key}: required field missing")
            kwargs[f.attr] = f.default
            continue
        raw = data[f.key]
        if raw is None and f.nullable:
            kwargs[f.attr] = None if f.default is REQUIRED else f.default
        else:
            kwargs[f.attr] = f.codec.decode(raw, prefix + f.key)
    return cls(**kwargs)


def encode_fields(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in obj.SPEC.fields:
        value = getattr(obj, f.attr)
        if f.default is not REQUIRED and value == f.default and not f.send_default:
            continue  # unset optional field: omitted, never sent empty (protocol.md §3.2)
        encoded = None if value is None else f.codec.encode(value)
        if f.codec.drop_empty and encoded == {}:
            continue  # an override object with nothing set is not sent either
        out[f.key] = encoded
    return out


def nested(cls: type[Any]) -> Codec:
    """A codec for a nested object described by ``cls.SPEC``. One whose fields are all unset
    is omitted by its parent, so an override tree with nothing set sends nothing at all."""
    return Codec(lambda raw, path: decode_fields(cls, raw, path), encode_fields, True)
