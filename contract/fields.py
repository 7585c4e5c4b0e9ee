"""Checks of single fields, shared by every record and setting: each raises :class:`FieldError` with one line
that names the field and the value, and the types that say in JSON Schema words what the checks enforce.

    >>> check_identifier("target", "two words")
    Traceback (most recent call last):
    ...
    migwatch.contract.fields.FieldError: target: must be 1 to 255 characters without spaces or control characters, \
got 'two words'
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

# Sample times are UNIX seconds. The upper bound (2100-01-01) catches milliseconds sent as seconds.
MAX_TS = 4_102_444_800.0
MAX_ID_LENGTH = 255

_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_ID_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")


class FieldError(ValueError):
    """A value that breaks the contract (of a record, a setting, a file); the message names the field and the value."""


# ---------------------------------------------------------------------------------------------- checks
# Each check raises FieldError("field: what is wrong, got value"). Building a record in code gets it as it
# is; while decoding, msgspec wraps it in a ValidationError with the path of the enclosing record, which
# `codec.explain` folds back into one dotted field name.


def fail(name: str, rule: str, value: object) -> None:
    raise FieldError(f"{name}: {rule}, got {value!r}")


def check_number(
    name: str,
    value: float | None,
    *,
    low: float | None = None,
    high: float | None = None,
    nullable: bool = False,
) -> None:
    """Finite, within [low, high]; null only where the contract allows it."""
    if value is None:
        if not nullable:
            fail(name, "must be a number, not null", value)
        return
    if not math.isfinite(value):
        fail(name, "must be a finite number" + (" or null" if nullable else ""), value)
    if low is not None and value < low:
        fail(name, f"must be >= {low:.15g}" + (" or null" if nullable else ""), value)
    if high is not None and value > high:
        fail(name, f"must be <= {high:.15g}" + (" or null" if nullable else ""), value)


@functools.lru_cache(maxsize=65_536)
def is_identifier(value: str) -> bool:
    """Target ids and probe names are Kafka keys and label values: non-empty, short, no blanks."""
    return bool(value) and len(value) <= MAX_ID_LENGTH and not _ID_FORBIDDEN.search(value)


def check_identifier(name: str, value: str) -> None:
    if not is_identifier(value):
        fail(name, f"must be 1 to {MAX_ID_LENGTH} characters without spaces or control characters", value)


def check_timestamp(name: str, value: float) -> None:
    check_number(name, value, low=0.0, high=MAX_TS)


def is_ip(value: str) -> bool:
    """True for an IPv4 or IPv6 address (not a host name).

    >>> is_ip("192.0.2.10"), is_ip("2001:db8::1"), is_ip("web-01.example")
    (True, True, False)
    """
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# Every sample repeats its target's address: parsing it once per address keeps decoding fast.
@functools.lru_cache(maxsize=65_536)
def is_address(value: str) -> bool:
    """True for an IPv4/IPv6 address or a DNS host name (RFC 1123), which the probe resolves itself."""
    if is_ip(value):
        return True
    name = value[:-1] if value.endswith(".") else value
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_HOSTNAME_LABEL.match(label) for label in labels):
        return False
    # All-numeric dotted names are mistyped IPv4 addresses (300.1.1.1), never host names.
    return not labels[-1].isdigit()


def check_address(name: str, value: str) -> None:
    if not is_address(value):
        fail(name, "must be an IPv4/IPv6 address or a host name", value)


def iso(ts: float) -> str:
    """UNIX seconds as the ISO 8601 UTC time ECS wants (milliseconds, ``Z``).

    >>> iso(1764180000.1234)
    '2025-11-26T18:00:00.123Z'
    """
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_iso_time(name: str, value: str) -> None:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        fail(name, "must be an ISO 8601 time such as 2026-11-26T18:30:00.123Z", value)


# What the checks below enforce, said in JSON Schema words for the schema that SIEMs get (alert_schema.py).
# extra_json_schema only describes: msgspec does not enforce it, the records' __post_init__ does.
def described(kind: Any, **schema: Any) -> Any:
    return Annotated[kind, msgspec.Meta(extra_json_schema=schema)]


ISO_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
IsoTime = described(str, pattern=ISO_TIME_PATTERN)
Identifier = described(str, minLength=1, maxLength=MAX_ID_LENGTH, pattern=r"^\S+$")
Timestamp = described(float, minimum=0, maximum=MAX_TS)
Probability = described(float, minimum=0, maximum=1)
Score = described(float, minimum=0, maximum=100)
NonNegative = described(float, minimum=0)
Count = described(int, minimum=0)
NonEmpty = described(str, minLength=1)
Severity = described(int, minimum=1, maximum=4)
