"""The records of CONTRACT section 2, as typed classes that validate themselves.

Every record is a ``msgspec.Struct``: msgspec checks the JSON types while decoding (fast, in C), and each
record's ``__post_init__`` checks ranges and enumerations. ``__post_init__`` also runs when the code builds a
record, so a probe cannot publish what a worker would reject: validation holds on both sides of the wire.

Errors are :class:`FieldError` with one line that names the field and the value::

    >>> decode(PingSample, b'{"v":1,"target":"web-01","address":"192.0.2.10","kind":"vm","probe":"p",'
    ...                    b'"seq":1,"ts":1764180000.5,"rtt_ms":-5,"ttl":63}')
    Traceback (most recent call last):
    ...
    migwatch.contract.records.FieldError: rtt_ms: must be >= 0 or null, got -5.0

Readers ignore fields they do not know (CONTRACT preamble); ``encode`` then ``decode`` gives back an equal
record.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import json
import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec

SCHEMA_VERSION = 1

# A ping waits at most a minute (issue 3) and NTP answers come within seconds: an hour is far past any
# real value.
MAX_DURATION_MS = 3_600_000.0
# Sample times are UNIX seconds. The upper bound (2100-01-01) catches milliseconds sent as seconds.
MAX_TS = 4_102_444_800.0
MIN_PING_INTERVAL_S = 0.01
MAX_PING_INTERVAL_S = 60.0
MAX_NTP_INTERVAL_S = 86_400.0
MAX_ID_LENGTH = 255

TargetKind = Literal["vm", "host"]
AlertState = Literal["suspected", "likely", "confirmed", "cleared"]
Phase = Literal["memory-copy", "stop-and-copy", "switched"]
NtpError = Literal["timeout", "refused", "unsynchronized", "invalid"]
FeedbackLabel = Literal["migration", "benign"]

_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_ID_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")


class FieldError(ValueError):
    """A record that breaks the contract; the message names the field and the value."""


# ---------------------------------------------------------------------------------------------- checks
# Each check raises FieldError("field: what is wrong, got value"). Building a record in code gets it as it
# is; while decoding, msgspec wraps it in a ValidationError with the path of the enclosing record, which
# `explain` folds back into one dotted field name.


def _fail(name: str, rule: str, value: object) -> None:
    raise FieldError(f"{name}: {rule}, got {value!r}")


def _number(
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
            _fail(name, "must be a number, not null", value)
        return
    if not math.isfinite(value):
        _fail(name, "must be a finite number" + (" or null" if nullable else ""), value)
    if low is not None and value < low:
        _fail(name, f"must be >= {low:.15g}" + (" or null" if nullable else ""), value)
    if high is not None and value > high:
        _fail(name, f"must be <= {high:.15g}" + (" or null" if nullable else ""), value)


@functools.lru_cache(maxsize=65_536)
def is_identifier(value: str) -> bool:
    """Target ids and probe names are Kafka keys and label values: non-empty, short, no blanks."""
    return bool(value) and len(value) <= MAX_ID_LENGTH and not _ID_FORBIDDEN.search(value)


def check_identifier(name: str, value: str) -> None:
    if not is_identifier(value):
        _fail(name, f"must be 1 to {MAX_ID_LENGTH} characters without spaces or control characters", value)


def _version(value: int) -> None:
    if value != SCHEMA_VERSION:
        _fail("v", f"unsupported schema version (this reader knows {SCHEMA_VERSION})", value)


def check_timestamp(name: str, value: float) -> None:
    _number(name, value, low=0.0, high=MAX_TS)


# Every sample repeats its target's address: parsing it once per address keeps decoding fast.
@functools.lru_cache(maxsize=65_536)
def is_address(value: str) -> bool:
    """True for an IPv4/IPv6 address or a DNS host name (RFC 1123), which the probe resolves itself."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    name = value[:-1] if value.endswith(".") else value
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_HOSTNAME_LABEL.match(label) for label in labels):
        return False
    # All-numeric dotted names are mistyped IPv4 addresses (300.1.1.1), never host names.
    return not labels[-1].isdigit()


def _address(name: str, value: str) -> None:
    if not is_address(value):
        _fail(name, "must be an IPv4/IPv6 address or a host name", value)


def _iso_time(name: str, value: str) -> None:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        _fail(name, "must be an ISO 8601 time such as 2026-11-26T18:30:00.123Z", value)


# What the checks below enforce, said in JSON Schema words for the schema that SIEMs get (alert_schema.py).
# extra_json_schema only describes: msgspec does not enforce it, the records' __post_init__ does.
def _described(kind: Any, **schema: Any) -> Any:
    return Annotated[kind, msgspec.Meta(extra_json_schema=schema)]


ISO_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
IsoTime = _described(str, pattern=ISO_TIME_PATTERN)
Identifier = _described(str, minLength=1, maxLength=MAX_ID_LENGTH, pattern=r"^\S+$")
Timestamp = _described(float, minimum=0, maximum=MAX_TS)
Probability = _described(float, minimum=0, maximum=1)
Score = _described(float, minimum=0, maximum=100)
NonNegative = _described(float, minimum=0)
Count = _described(int, minimum=0)
NonEmpty = _described(str, minLength=1)
Severity = _described(int, minimum=1, maximum=4)


class Record(msgspec.Struct, kw_only=True):
    """Base of every record: keyword construction, and equality by value (msgspec's default)."""


# --------------------------------------------------------------------------------------------- records


class Target(Record, kw_only=True):
    """What to watch: a VM, or a hypervisor (``kind="host"``) whose samples help to tell which host a VM
    left. ``hosts`` lists the ids of the hypervisors the VM may legitimately run on."""

    v: int = SCHEMA_VERSION
    id: str
    address: str
    kind: TargetKind = "vm"
    hosts: list[str] = []
    ping_interval_s: float = 1.0
    ntp_interval_s: float = 30.0
    ntp: bool = True
    site: str = "default"
    labels: dict[str, str] = {}
    # Issue #3: a target's own ping timeout; left out of the JSON unless set (the probe's default applies).
    ping_timeout_s: float | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        _version(self.v)
        check_identifier("id", self.id)
        if self.ping_timeout_s is not msgspec.UNSET:
            _number("ping_timeout_s", self.ping_timeout_s, low=MIN_PING_INTERVAL_S, high=MAX_PING_INTERVAL_S)
        _address("address", self.address)
        for i, host in enumerate(self.hosts):
            check_identifier(f"hosts[{i}]", host)
        _number("ping_interval_s", self.ping_interval_s, low=MIN_PING_INTERVAL_S, high=MAX_PING_INTERVAL_S)
        _number("ntp_interval_s", self.ntp_interval_s, low=MIN_PING_INTERVAL_S, high=MAX_NTP_INTERVAL_S)
        check_identifier("site", self.site)


class PingSample(Record, kw_only=True):
    """One ICMP echo request. ``rtt_ms`` is null when no reply came within the timeout; ``ttl`` is the
    reply's TTL / hop limit, null when unknown. ``ts`` is the probe's wall clock when the request left."""

    v: int = SCHEMA_VERSION
    target: str
    address: str
    kind: TargetKind = "vm"
    probe: str
    seq: int
    ts: float
    rtt_ms: float | None
    ttl: int | None = None

    def __post_init__(self) -> None:
        # Samples are the bulk of the traffic: one expression passes a valid sample (NaN fails every
        # comparison); the checks below only run to say what is wrong.
        rtt, ttl = self.rtt_ms, self.ttl
        if (
            self.v == SCHEMA_VERSION
            and 0.0 <= self.ts <= MAX_TS
            and (rtt is None or 0.0 <= rtt <= MAX_DURATION_MS)
            and self.seq >= 0
            and (ttl is None or 0 <= ttl <= 255)
            and is_identifier(self.target)
            and is_identifier(self.probe)
            and is_address(self.address)
        ):
            return
        _version(self.v)
        check_identifier("target", self.target)
        _address("address", self.address)
        check_identifier("probe", self.probe)
        if self.seq < 0:
            _fail("seq", "must be >= 0", self.seq)
        check_timestamp("ts", self.ts)
        _number("rtt_ms", self.rtt_ms, low=0.0, high=MAX_DURATION_MS, nullable=True)
        if self.ttl is not None and not 0 <= self.ttl <= 255:
            _fail("ttl", "must be between 0 and 255 or null", self.ttl)


class ClockSample(Record, kw_only=True):
    """One NTP query of the target. ``offset_ms`` is the target's clock against the probe's, negative when
    the target is behind. On failure ``offset_ms`` and ``delay_ms`` are null and ``error`` says why."""

    v: int = SCHEMA_VERSION
    target: str
    address: str
    probe: str
    ts: float
    offset_ms: float | None
    delay_ms: float | None
    stratum: int | None = None
    ref_id: str | None = None
    leap: int | None = None
    root_delay_ms: float | None = None
    root_dispersion_ms: float | None = None
    error: NtpError | None = None

    def __post_init__(self) -> None:
        _version(self.v)
        check_identifier("target", self.target)
        _address("address", self.address)
        check_identifier("probe", self.probe)
        check_timestamp("ts", self.ts)
        # An answer has both figures, a failure neither: half a measurement would poison the detector.
        measured = self.error is None
        for name in ("offset_ms", "delay_ms"):
            value = getattr(self, name)
            if measured and value is None:
                _fail(name, "must be a number when error is null", value)
            if not measured and value is not None:
                _fail(name, f"must be null when error is {self.error!r}", value)
        _number("offset_ms", self.offset_ms, low=-MAX_DURATION_MS, high=MAX_DURATION_MS, nullable=True)
        _number("delay_ms", self.delay_ms, low=-MAX_DURATION_MS, high=MAX_DURATION_MS, nullable=True)
        if self.stratum is not None and not 0 <= self.stratum <= 16:
            _fail("stratum", "must be between 0 and 16 or null", self.stratum)
        if self.leap is not None and not 0 <= self.leap <= 3:
            _fail("leap", "must be between 0 and 3 or null", self.leap)
        _number("root_delay_ms", self.root_delay_ms, low=0.0, nullable=True)
        _number("root_dispersion_ms", self.root_dispersion_ms, low=0.0, nullable=True)


class Evidence(Record, kw_only=True):
    """What the detectors saw; every figure is null when that detector had nothing to say."""

    rtt_baseline_ms: NonNegative | None = None
    rtt_mean_ms: NonNegative | None = None
    rtt_max_ms: NonNegative | None = None
    outliers: Count | None = None
    unanswered: Count | None = None
    time_lag_ms: float | None = None
    ttl_change: int | None = None
    learner_score: Probability | None = None
    # Beyond the contract's example (issue #4), ignored by readers that do not know them, and left out of
    # the JSON unless known: the watched hypervisor whose pings showed the migration at the same time (most
    # likely the host the VM left), and the VM's clock skew and its last change (another physical clock).
    source_host: str | msgspec.UnsetType = msgspec.UNSET
    skew_ppm: float | msgspec.UnsetType = msgspec.UNSET
    skew_change_ppm: float | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        for name in ("rtt_baseline_ms", "rtt_mean_ms", "rtt_max_ms"):
            _number(name, getattr(self, name), low=0.0, nullable=True)
        for name in ("outliers", "unanswered"):
            value = getattr(self, name)
            if value is not None and value < 0:
                _fail(name, "must be >= 0 or null", value)
        _number("time_lag_ms", self.time_lag_ms, nullable=True)
        for name in ("skew_ppm", "skew_change_ppm"):
            value = getattr(self, name)
            if value is not msgspec.UNSET:
                _number(name, value)
        _number("learner_score", self.learner_score, low=0.0, high=1.0, nullable=True)


class AlertDetail(Record, kw_only=True):
    """The ``migwatch`` part of an Alert: our own fields, beside the ECS ones."""

    target: Identifier
    state: AlertState
    likelihood: Probability
    phase: Phase | None = None
    detected_ts: Timestamp
    first_evidence_ts: Timestamp | None = None
    evidence: Evidence = msgspec.field(default_factory=Evidence)

    def __post_init__(self) -> None:
        check_identifier("target", self.target)
        _number("likelihood", self.likelihood, low=0.0, high=1.0)
        check_timestamp("detected_ts", self.detected_ts)
        if self.first_evidence_ts is not None:
            check_timestamp("first_evidence_ts", self.first_evidence_ts)


class AlertEvent(Record, kw_only=True):
    """ECS ``event``."""

    kind: Literal["alert"] = "alert"
    category: list[str] = msgspec.field(default_factory=lambda: ["host"])
    type: list[str] = msgspec.field(default_factory=lambda: ["change"])
    action: Literal["vm-live-migration"] = "vm-live-migration"
    id: NonEmpty
    severity: Severity
    risk_score: Score
    risk_score_norm: Score
    start: IsoTime | None = None
    dataset: str = "migwatch.alerts"
    module: str = "migwatch"

    def __post_init__(self) -> None:
        if not self.id:
            _fail("id", "must not be empty", self.id)
        if not 1 <= self.severity <= 4:
            _fail("severity", "must be between 1 and 4", self.severity)
        _number("risk_score", self.risk_score, low=0.0, high=100.0)
        _number("risk_score_norm", self.risk_score_norm, low=0.0, high=100.0)
        if self.start is not None:
            _iso_time("start", self.start)


class AlertHost(Record, kw_only=True):
    """ECS ``host``: the watched VM."""

    name: NonEmpty
    ip: list[str] = []


class AlertObserver(Record, kw_only=True):
    """ECS ``observer``: the migwatch process that raised the alert."""

    name: NonEmpty
    vendor: str = "migwatch"
    type: str = "monitor"


class AlertRule(Record, kw_only=True):
    """ECS ``rule``."""

    name: str = "hybrid-ping-ntp"


class Alert(Record, kw_only=True):
    """An event for the SIEM, in Elastic Common Schema field names with ours under ``migwatch``."""

    timestamp: IsoTime = msgspec.field(name="@timestamp")
    event: AlertEvent
    host: AlertHost
    observer: AlertObserver
    rule: AlertRule = msgspec.field(default_factory=AlertRule)
    migwatch: AlertDetail

    def __post_init__(self) -> None:
        _iso_time("@timestamp", self.timestamp)


# What a probe measures and a detector reads: one echo request or one NTP query.
Sample = PingSample | ClockSample


class Feedback(Record, kw_only=True):
    """An analyst's verdict on an alert."""

    v: int = SCHEMA_VERSION
    alert_id: str
    target: str
    label: FeedbackLabel
    ts: float
    by: str

    def __post_init__(self) -> None:
        _version(self.v)
        if not self.alert_id:
            _fail("alert_id", "must not be empty", self.alert_id)
        check_identifier("target", self.target)
        check_timestamp("ts", self.ts)


# No contract record comes near this (a sample is about 200 bytes, an alert about 1.5 kB): a bigger message
# is garbage or an attack, refused before it is parsed.
MAX_RECORD_BYTES = 65_536
# A dead letter keeps this much of its message, so that, base64-encoded, it stays under MAX_RECORD_BYTES.
DEAD_LETTER_PAYLOAD_BYTES = 32_768


class DeadLetter(Record, kw_only=True):
    """A message that could not be used: kept with the reason and the raw bytes, never dropped silently."""

    v: int = SCHEMA_VERSION
    topic: str
    partition: int | None = None
    offset: int | None = None
    error: str
    payload_b64: str

    def __post_init__(self) -> None:
        _version(self.v)
        for name in ("partition", "offset"):
            value = getattr(self, name)
            if value is not None and value < 0:
                _fail(name, "must be >= 0 or null", value)
        try:
            base64.b64decode(self.payload_b64, validate=True)
        except binascii.Error:
            _fail("payload_b64", "must be base64", self.payload_b64[:40])

    @classmethod
    def of(cls, topic: str, partition: int | None, offset: int | None, error: str, payload: bytes) -> DeadLetter:
        """The dead letter of ``payload``; a payload over DEAD_LETTER_PAYLOAD_BYTES is cut (the letter must
        stay a record: a 1 MB message would make a dead letter over Kafka's and our size limits), and the
        error says so; topic, partition and offset still point at the whole message."""
        if len(payload) > DEAD_LETTER_PAYLOAD_BYTES:
            error += f" (payload cut to its first {DEAD_LETTER_PAYLOAD_BYTES} of {len(payload)} bytes)"
            payload = payload[:DEAD_LETTER_PAYLOAD_BYTES]
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            error=error,
            payload_b64=base64.b64encode(payload).decode("ascii"),
        )


# ---------------------------------------------------------------------------------------------- codec

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
