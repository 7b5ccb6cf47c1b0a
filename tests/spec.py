"""Validators for the official contract, ``../shared/spec/agent.asyncapi.yaml`` (AA-pkg).

The spec is an AsyncAPI 2.6 file: its payloads are JSON Schema with OpenAPI's ``nullable``
keyword. This module turns ``components.schemas`` into Draft 2020-12 schemas and validates a
message (a JSON object, as ``piagent.protocol.messages.to_json`` returns it) against the schema of
its ``type``: client messages against the channel's ``subscribe`` side, server messages against
its ``publish`` side.

Two transforms make the file mean what it says under a standard validator:

* ``nullable: true`` admits ``null``: the schema becomes ``anyOf: [<schema>, {type: null}]``,
  which also works beside ``$ref``, ``enum`` and ``anyOf`` (JSON Schema ignores ``nullable``).
* ``allOf`` whose members say ``additionalProperties: false`` (the ``MCPToolCall*`` states) is
  unsatisfiable as written: each member would reject the other's keys, so no message at all
  would validate. The members lose ``additionalProperties`` and the ``allOf`` gets
  ``unevaluatedProperties: false``, which keeps the intent: no key beyond the union.

Formats are checked: ``base64`` (standard alphabet, padded) and ``date-time`` (RFC 3339).
The YAML is read with YAML 1.2 booleans, so the language code ``no`` stays a string.

The spec lives outside the repository: tests that use it carry ``@requires_spec`` and skip in a
user's clone, which has no ``../shared``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = [
    "SPEC_AVAILABLE",
    "SPEC_PATH",
    "client_types_in_spec",
    "requires_spec",
    "server_types_in_spec",
    "validate_client_message",
    "validate_server_message",
]

SPEC_PATH: Path = (
    Path(__file__).resolve().parents[1].parent / "shared" / "spec" / "agent.asyncapi.yaml"
)
SPEC_AVAILABLE: bool = SPEC_PATH.is_file()

requires_spec = pytest.mark.skipif(
    not SPEC_AVAILABLE,
    reason="../shared/spec/agent.asyncapi.yaml not found (a user's clone has no ../shared)",
)

_BASE_URI = "urn:elevenlabs:agent-asyncapi"
_SCHEMAS_POINTER = "#/components/schemas/"

# Keywords whose value is one subschema, a list of them, or a name -> subschema map.
_ONE_SCHEMA = (
    "items",
    "additionalItems",
    "additionalProperties",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
)
_SCHEMA_LIST = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
# Annotations kept on the outside when a nullable schema is wrapped, so error messages and
# readers still see them where they were.
_ANNOTATIONS = ("description", "title", "default", "deprecated", "examples", "example")


# --------------------------------------------------------------------------------------------
# Schema transforms


def _map_subschemas(schema: dict[str, Any], fn: Any) -> dict[str, Any]:
    """A copy of ``schema`` with ``fn`` applied to each direct subschema."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _ONE_SCHEMA and isinstance(value, dict):
            out[key] = fn(value)
        elif (key in _ONE_SCHEMA or key in _SCHEMA_LIST) and isinstance(value, list):
            out[key] = [fn(v) for v in value]  # includes pre-2020 tuple ``items``
        elif key in _SCHEMA_MAP and isinstance(value, dict):
            out[key] = {name: fn(sub) for name, sub in value.items()}
        else:
            out[key] = copy.deepcopy(value)
    return out


def _admit_null(schema: Any) -> Any:
    """Rewrite OpenAPI ``nullable: true`` as JSON Schema, at every depth."""
    if not isinstance(schema, dict):
        return schema
    out = _map_subschemas(schema, _admit_null)
    nullable = out.pop("nullable", False)
    if nullable is not True:
        return out
    outer = {key: out.pop(key) for key in _ANNOTATIONS if key in out}
    outer["anyOf"] = [out, {"type": "null"}]
    return outer


def _close_all_of(schema: Any, components: Mapping[str, Any]) -> Any:
    """Move ``additionalProperties: false`` from ``allOf`` members to the ``allOf`` itself."""
    if not isinstance(schema, dict):
        return schema
    out = _map_subschemas(schema, lambda sub: _close_all_of(sub, components))
    members = out.get("allOf")
    if not isinstance(members, list):
        return out
    closed = False
    new_members = []
    for member in members:
        target = member
        ref = member.get("$ref") if isinstance(member, dict) else None
        if isinstance(ref, str) and ref.startswith(_SCHEMAS_POINTER) and len(member) == 1:
            # Inline the referenced schema so the original stays closed where used alone.
            target = components[ref.removeprefix(_SCHEMAS_POINTER)]
        if isinstance(target, dict) and target.get("additionalProperties") is False:
            target = {k: v for k, v in target.items() if k != "additionalProperties"}
            closed = True
            new_members.append(target)
        else:
            new_members.append(member)
    if closed:
        out["allOf"] = new_members
        out["unevaluatedProperties"] = False
    return out


# --------------------------------------------------------------------------------------------
# Formats


def _is_base64(value: object) -> bool:
    if not isinstance(value, str):
        return True  # formats only constrain strings
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z", re.ASCII
)


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False  # right shape, impossible date or time (2024-02-30, 25:00)
    return True


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    checker.checks("base64")(_is_base64)
    checker.checks("date-time")(_is_date_time)
    return checker


# --------------------------------------------------------------------------------------------
# Loading


class _SpecLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 booleans: PyYAML follows YAML 1.1, where a bare ``no``
    is ``false``, which would turn Norwegian (``Language`` enum: ``- no``) into ``False``."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass(frozen=True)
class _Side:
    """One direction of the channel: the message names and a validator per ``type``."""

    name: str  # "client" or "server", for error messages
    by_type: Mapping[str, Draft202012Validator]
    message_name: Mapping[str, str]  # type -> components.messages name
    untyped: Draft202012Validator | None  # the audio chunk, which has no ``type``


@dataclass(frozen=True)
class _Spec:
    client: _Side
    server: _Side


def _resolve_local(document: Mapping[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _build_side(
    name: str,
    raw: Mapping[str, Any],
    operation: str,
    registry: Registry,
    checker: FormatChecker,
) -> _Side:
    refs = raw["channels"]["AgentMessages"][operation]["message"]["oneOf"]
    by_type: dict[str, Draft202012Validator] = {}
    message_name: dict[str, str] = {}
    untyped: Draft202012Validator | None = None
    for entry in refs:
        message_key = entry["$ref"].rsplit("/", 1)[1]
        message = raw["components"]["messages"][message_key]
        payload_ref = message["payload"]["$ref"]
        validator = Draft202012Validator(
            {"$ref": _BASE_URI + payload_ref}, registry=registry, format_checker=checker
        )
        payload = _resolve_local(raw, payload_ref)
        type_const = payload.get("properties", {}).get("type", {}).get("const")
        if type_const is None:
            if untyped is not None:
                raise ValueError(f"{SPEC_PATH}: two untyped {name} messages")
            untyped = validator
            continue
        if type_const in by_type:
            raise ValueError(f"{SPEC_PATH}: {name} type {type_const!r} defined twice")
        by_type[type_const] = validator
        message_name[type_const] = message_key
    return _Side(name, by_type, message_name, untyped)


@functools.cache
def _load() -> _Spec:
    if not SPEC_AVAILABLE:
        raise AssertionError(f"{SPEC_PATH} not found; mark the test @requires_spec")
    raw = yaml.load(SPEC_PATH.read_text(encoding="utf-8"), Loader=_SpecLoader)
    components = raw["components"]["schemas"]
    nullable_done = {name: _admit_null(schema) for name, schema in components.items()}
    schemas = {name: _close_all_of(s, nullable_done) for name, s in nullable_done.items()}
    for name, schema in schemas.items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as exc:  # a broken transform must say which schema
            raise AssertionError(f"{SPEC_PATH}: components.schemas.{name}: {exc}") from exc
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": _BASE_URI,
        "components": {"schemas": schemas},
    }
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry = Registry().with_resource(_BASE_URI, resource)
    checker = _format_checker()
    return _Spec(
        client=_build_side("client", raw, "subscribe", registry, checker),
        server=_build_side("server", raw, "publish", registry, checker),
    )


# --------------------------------------------------------------------------------------------
# Validation


def _branch(error: ValidationError) -> Any:
    """Which alternative of the enclosing oneOf / anyOf an error of its context belongs to."""
    return error.relative_schema_path[0] if error.relative_schema_path else None


def _describe_error(error: ValidationError) -> str:
    line = f"  at {error.json_path}: {error.message}"
    if error.context:  # oneOf / anyOf: say why the closest alternative failed, all of it
        closest = best_match(error.context)
        reasons = [e for e in error.context if _branch(e) == _branch(closest)]
        for reason in reasons:
            line += f"\n    closest alternative failed at {reason.json_path}: {reason.message}"
    return line


def _shorten(obj: Any, limit: int = 600) -> str:
    text = json.dumps(obj, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[:limit] + "..."


def _validate(side: _Side, obj: Any, select_untyped: bool) -> None:
    if not isinstance(obj, dict):
        raise AssertionError(
            f"{side.name} message must be a JSON object, got {type(obj).__name__}: {_shorten(obj)}"
        )
    if select_untyped and "type" not in obj and side.untyped is not None:
        validator, label = side.untyped, "UserAudio (no type)"
    else:
        kind = obj.get("type")
        if not isinstance(kind, str) or kind not in side.by_type:
            known = ", ".join(sorted(side.by_type))
            raise AssertionError(
                f"{side.name} message type {kind!r} has no schema in {SPEC_PATH.name} "
                f"(known: {known}): {_shorten(obj)}"
            )
        validator, label = side.by_type[kind], f"{side.message_name[kind]} (type {kind!r})"
    errors = sorted(validator.iter_errors(obj), key=lambda e: (list(e.absolute_path), e.message))
    if errors:
        details = "\n".join(_describe_error(e) for e in errors)
        raise AssertionError(
            f"{side.name} message does not match {label} in {SPEC_PATH.name}:\n"
            f"{details}\n  message: {_shorten(obj)}"
        )


def validate_client_message(obj: dict[str, Any]) -> None:
    """Assert that ``obj`` is a valid client -> server message per the spec.

    A dict with ``user_audio_chunk`` and no ``type`` is checked as ``UserAudio``."""
    spec = _load()
    _validate(spec.client, obj, select_untyped=isinstance(obj, dict) and "user_audio_chunk" in obj)


def validate_server_message(obj: dict[str, Any]) -> None:
    """Assert that ``obj`` is a valid server -> client message per the spec
    (``type == "error"`` is checked as ``ErrorMessage``)."""
    _validate(_load().server, obj, select_untyped=False)


def server_types_in_spec() -> set[str]:
    """The ``type`` values the spec defines for server -> client messages."""
    return set(_load().server.by_type)


def client_types_in_spec() -> set[str]:
    """The ``type`` values the spec defines for client -> server messages (the untyped audio
    chunk has none, so it is not in the set)."""
    return set(_load().client.by_type)
