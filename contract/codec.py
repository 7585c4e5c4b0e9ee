"""JSON in and out of the records: decoding that validates (msgspec, then each record's own checks), errors
explained as ``field.path: what is wrong, got value``, and compact encoding.

    >>> from migwatch.contract.records import Feedback
    >>> decode(Feedback, b'{"v":1,"alert_id":"a","target":"web-01","label":"maybe","ts":1.0,"by":"x"}')
    Traceback (most recent call last):
    ...
    migwatch.contract.fields.FieldError: label: invalid enum value 'maybe'
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import msgspec

from migwatch.contract.fields import FieldError

# No contract record comes near this (a sample is about 200 bytes, an alert about 1.5 kB): a bigger message
# is garbage or an attack, refused before it is parsed.
MAX_RECORD_BYTES = 65_536

R = TypeVar("R", bound=msgspec.Struct)

_encoder = msgspec.json.Encoder()
_decoders: dict[type, msgspec.json.Decoder[Any]] = {}

_AT_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")
_OURS = re.compile(r"^[\w@.\[\]]+: ")
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _lookup(document: object, path: str) -> object:
    """The value at a msgspec path such as ``.targets[1].address`` (best effort, for error messages)."""
    value = document
    for key, index in _PATH_PART.findall(path):
        try:
            value = value[int(index)] if index else value[key]  # type: ignore[index]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return value


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def explain(error: msgspec.ValidationError, document: object) -> str:
    """Turn msgspec's message into ``field.path: what is wrong, got value``.

    ``document`` is the decoded JSON (or TOML) the error is about; it supplies the offending value, which
    msgspec's own messages leave out.
    """
    match = _AT_PATH.match(str(error))
    assert match is not None  # the pattern matches every string
    message, raw_path = match["message"], match["path"] or ""
    path = _PATH_PART.sub(lambda m: f".{m[1]}" if m[1] else f"[{m[2]}]", raw_path).lstrip(".")
    if found := _EXPECTED.match(message):
        want = found["want"].replace(" | null", " or null").replace("`", "")
        value = _lookup(document, raw_path)
        return f"{path or 'value'}: expected {want}, got {json.dumps(value) if value is not None else found['got']}"
    if found := _MISSING.match(message):
        return f"{_join(path, found['field'])}: required field is missing"
    if found := _UNKNOWN.match(message):
        return f"{_join(path, found['field'])}: unknown key"
    if _OURS.match(message):
        # Our own checks already start with the field's name; prefix the record's position.
        return _join(path, message)
    # The rest of msgspec's messages ("Invalid enum value 'zz'", "Number out of range", ...) carry the
    # value or need none.
    return f"{path or 'value'}: {message[:1].lower()}{message[1:]}"


def _decoder(kind: type[R]) -> msgspec.json.Decoder[R]:
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    return decoder


def decode(kind: type[R], raw: bytes | str) -> R:
    """Decode one JSON document into a record of ``kind``, or raise :class:`FieldError`."""
    if len(raw) > MAX_RECORD_BYTES:
        raise FieldError(f"value: {len(raw)} bytes, more than a record may have ({MAX_RECORD_BYTES})")
    try:
        return _decoder(kind).decode(raw)
    except msgspec.ValidationError as error:
        try:
            document: object = json.loads(raw)
        except ValueError:
            document = None
        raise FieldError(explain(error, document)) from None
    except msgspec.DecodeError as error:
        raise FieldError(f"invalid JSON: {str(error).removeprefix('JSON is malformed: ')}") from None


def convert(kind: type[R], document: object) -> R:
    """Build a record of ``kind`` from already parsed data (TOML tables, say), or raise FieldError."""
    try:
        return msgspec.convert(document, kind)
    except msgspec.ValidationError as error:
        raise FieldError(explain(error, document)) from None


def encode(record: msgspec.Struct) -> bytes:
    """The record as compact UTF-8 JSON; floats keep every digit, so decoding gives an equal record."""
    return _encoder.encode(record)


def to_builtins(record: msgspec.Struct) -> dict[str, Any]:
    """The record as plain dicts and lists, as JSON would give it."""
    return msgspec.to_builtins(record)
