"""The records of CONTRACT section 2, as typed classes that validate themselves.

Every record is a ``msgspec.Struct``: msgspec checks the JSON types while decoding (fast, in C), and each
record's ``__post_init__`` checks ranges and enumerations. ``__post_init__`` also runs when the code builds a
record, so a probe cannot publish what a worker would reject: validation holds on both sides of the wire.

Errors are :class:`~migwatch.contract.fields.FieldError` with one line that names the field and the value
(:mod:`~migwatch.contract.codec` decodes and encodes)::

    >>> from migwatch.contract.codec import decode
    >>> decode(PingSample, b'{"v":1,"target":"web-01","address":"192.0.2.10","kind":"vm","probe":"p",'
    ...                    b'"seq":1,"ts":1764180000.5,"rtt_ms":-5,"ttl":63}')
    Traceback (most recent call last):
    ...
    migwatch.contract.fields.FieldError: rtt_ms: must be >= 0 or null, got -5.0

Readers ignore fields they do not know (CONTRACT preamble); ``encode`` then ``decode`` gives back an equal
record.
"""

from __future__ import annotations

import base64
import binascii
import importlib.metadata
from typing import Literal

import msgspec

from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings, with_overrides
from migwatch.contract.fields import (
    MAX_TS,
    Count,
    Identifier,
    IsoTime,
    NonEmpty,
    NonNegative,
    Probability,
    Score,
    Severity,
    Timestamp,
    check_address,
    check_identifier,
    check_iso_time,
    check_number,
    check_timestamp,
    fail,
    is_address,
    is_identifier,
    is_ip,
)

SCHEMA_VERSION = 1

# A ping waits at most a minute (issue 3) and NTP answers come within seconds: an hour is far past any
# real value.
MAX_DURATION_MS = 3_600_000.0
MIN_PING_INTERVAL_S = 0.01
MAX_PING_INTERVAL_S = 60.0
MAX_NTP_INTERVAL_S = 86_400.0

TargetKind = Literal["vm", "host"]
AlertState = Literal["suspected", "likely", "confirmed", "cleared"]
Phase = Literal["memory-copy", "stop-and-copy", "switched"]
NtpError = Literal["timeout", "refused", "unsynchronized", "invalid"]
# event.action: a move (its states rise suspected -> likely -> confirmed), and, once the moved VM's round
# trip has settled at a level beyond the noise from the old one, where it went (issue #21).
# A VM that stopped answering ping and NTP altogether is told apart (issue #19): a stolen VM may simply vanish.
# Issue #20: what only looks like a migration is named for what it is, never a likely/confirmed migration: a
# pause, the guest's own clock stepping back, a reboot, a route change (their state stays `suspected`).
AlertAction = Literal[
    "vm-live-migration", "vm-relocated", "vm-silent", "vm-paused", "vm-clock-step", "vm-rebooted", "vm-route-change"
]
# migwatch.outcome: inside a declared maintenance window between allowed hosts, or not.
Outcome = Literal["expected", "unexpected"]
FeedbackLabel = Literal["migration", "benign"]


def _version(value: int) -> None:
    if value != SCHEMA_VERSION:
        fail("v", f"unsupported schema version (this reader knows {SCHEMA_VERSION})", value)


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
    # Issue #21: this target's own values of named detector settings (a chatty VM's noisy RTT, an NTP
    # server that answers every 64 s), over the [detectors] ones; left out of the JSON unless set.
    detectors: dict[str, float | int | str] | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        _version(self.v)
        check_identifier("id", self.id)
        if self.ping_timeout_s is not msgspec.UNSET:
            check_number("ping_timeout_s", self.ping_timeout_s, low=MIN_PING_INTERVAL_S, high=MAX_PING_INTERVAL_S)
        check_address("address", self.address)
        for i, host in enumerate(self.hosts):
            check_identifier(f"hosts[{i}]", host)
        check_number("ping_interval_s", self.ping_interval_s, low=MIN_PING_INTERVAL_S, high=MAX_PING_INTERVAL_S)
        check_number("ntp_interval_s", self.ntp_interval_s, low=MIN_PING_INTERVAL_S, high=MAX_NTP_INTERVAL_S)
        check_identifier("site", self.site)
        if self.detectors is not msgspec.UNSET:
            with_overrides(DEFAULTS, self.detectors)  # a bad name or value fails here, named

    def settings(self, group: DetectorSettings) -> DetectorSettings:
        """The detector settings of this target: the group's, with its own ``detectors`` values over them."""
        return group if not self.detectors else with_overrides(group, self.detectors)


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
        check_address("address", self.address)
        check_identifier("probe", self.probe)
        if self.seq < 0:
            fail("seq", "must be >= 0", self.seq)
        check_timestamp("ts", self.ts)
        check_number("rtt_ms", self.rtt_ms, low=0.0, high=MAX_DURATION_MS, nullable=True)
        if self.ttl is not None and not 0 <= self.ttl <= 255:
            fail("ttl", "must be between 0 and 255 or null", self.ttl)


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
    # Issue #20: how far the probe's own wall clock stepped since its previous query of this target (0.0:
    # not at all), seen against its raw monotonic clock; left out by probes that do not watch their clock.
    probe_step_ms: float | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        _version(self.v)
        check_identifier("target", self.target)
        check_address("address", self.address)
        check_identifier("probe", self.probe)
        check_timestamp("ts", self.ts)
        # An answer has both figures, a failure neither: half a measurement would poison the detector.
        measured = self.error is None
        for name in ("offset_ms", "delay_ms"):
            value = getattr(self, name)
            if measured and value is None:
                fail(name, "must be a number when error is null", value)
            if not measured and value is not None:
                fail(name, f"must be null when error is {self.error!r}", value)
        check_number("offset_ms", self.offset_ms, low=-MAX_DURATION_MS, high=MAX_DURATION_MS, nullable=True)
        check_number("delay_ms", self.delay_ms, low=-MAX_DURATION_MS, high=MAX_DURATION_MS, nullable=True)
        if self.stratum is not None and not 0 <= self.stratum <= 16:
            fail("stratum", "must be between 0 and 16 or null", self.stratum)
        if self.leap is not None and not 0 <= self.leap <= 3:
            fail("leap", "must be between 0 and 3 or null", self.leap)
        check_number("root_delay_ms", self.root_delay_ms, low=0.0, nullable=True)
        check_number("root_dispersion_ms", self.root_dispersion_ms, low=0.0, nullable=True)
        if self.probe_step_ms is not msgspec.UNSET:
            check_number("probe_step_ms", self.probe_step_ms, low=-MAX_DURATION_MS, high=MAX_DURATION_MS)


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
    # Issue #21: the allowed hypervisor that showed the migration stream beside the source (where the VM went),
    # and whether the move stayed among the VM's allowed hosts (false: the source showed the stream, no
    # other allowed host did).
    destination_host: str | msgspec.UnsetType = msgspec.UNSET
    destination_allowed: bool | msgspec.UnsetType = msgspec.UNSET
    hosts_seen: list[str] | msgspec.UnsetType = msgspec.UNSET  # the allowed hosts that showed the stream
    # Issue #20: the stop the pings showed before a clock lag (their longest gap beyond their usual spacing), s.
    outage_s: float | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        for name in ("rtt_baseline_ms", "rtt_mean_ms", "rtt_max_ms"):
            check_number(name, getattr(self, name), low=0.0, nullable=True)
        for name in ("outliers", "unanswered"):
            value = getattr(self, name)
            if value is not None and value < 0:
                fail(name, "must be >= 0 or null", value)
        check_number("time_lag_ms", self.time_lag_ms, nullable=True)
        for name in ("skew_ppm", "skew_change_ppm"):
            value = getattr(self, name)
            if value is not msgspec.UNSET:
                check_number(name, value)
        check_number("learner_score", self.learner_score, low=0.0, high=1.0, nullable=True)


class RelocationEvidence(Record, kw_only=True):
    """Where a moved VM settled: its lowest round trip before and after the move, and how much farther it
    can at most be (about 100 km per millisecond of round trip in fibre; a longer route explains a shift too)."""

    rtt_min_before_ms: NonNegative
    rtt_min_after_ms: NonNegative
    shift_ms: float
    distance_km_max: float
    settled_ts: Timestamp
    ttl_before: int | None = None  # the replies' TTL (hop limit) before and after: another count of routers
    ttl_after: int | None = None

    def __post_init__(self) -> None:
        check_number("rtt_min_before_ms", self.rtt_min_before_ms, low=0.0)
        check_number("rtt_min_after_ms", self.rtt_min_after_ms, low=0.0)
        check_number("shift_ms", self.shift_ms)
        check_number("distance_km_max", self.distance_km_max)
        check_timestamp("settled_ts", self.settled_ts)


# The Alert's own version (``migwatch.v``): 2 since issue #19 made it ECS-valid (ecs.version, message, rule.id,
# related, host.ip only for addresses). A reader of version 1 alerts finds every field it knew where it was.
ALERT_VERSION = 2
try:  # observer.version: the migwatch release that raised an alert
    PRODUCT_VERSION = importlib.metadata.version("migwatch")
except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
    PRODUCT_VERSION = "unknown"
# The ECS release whose field definitions the alerts follow (tests check every field against its list).
ECS_VERSION = "8.17.0"


class AlertDetail(Record, kw_only=True):
    """The ``migwatch`` part of an Alert: our own fields, beside the ECS ones."""

    v: int = ALERT_VERSION
    target: Identifier
    address: str | msgspec.UnsetType = msgspec.UNSET  # as the target's record has it: an IP or a DNS name
    state: AlertState
    likelihood: Probability
    phase: Phase | None = None
    detected_ts: Timestamp
    first_evidence_ts: Timestamp | None = None
    evidence: Evidence = msgspec.field(default_factory=Evidence)
    # Issue #21, left out of the JSON unless known: the VM's site and where it settled after a move, whether
    # the move was planned (a maintenance window, and its id), and the hypervisors it may run on.
    site: str | msgspec.UnsetType = msgspec.UNSET
    relocation: RelocationEvidence | msgspec.UnsetType = msgspec.UNSET
    outcome: Outcome | msgspec.UnsetType = msgspec.UNSET
    window: str | msgspec.UnsetType = msgspec.UNSET
    allowed_hosts: list[str] | msgspec.UnsetType = msgspec.UNSET
    silent_s: float | msgspec.UnsetType = msgspec.UNSET  # vm-silent: how long no ping or NTP query was answered

    def __post_init__(self) -> None:
        if not 1 <= self.v <= ALERT_VERSION:
            fail("v", f"unsupported alert version (this reader knows 1 to {ALERT_VERSION})", self.v)
        check_identifier("target", self.target)
        check_number("likelihood", self.likelihood, low=0.0, high=1.0)
        check_timestamp("detected_ts", self.detected_ts)
        if self.first_evidence_ts is not None:
            check_timestamp("first_evidence_ts", self.first_evidence_ts)


class AlertEvent(Record, kw_only=True):
    """ECS ``event``. ``risk_score`` is the detectors' likelihood on its own 0-1 scale, ``risk_score_norm`` the
    same on ECS's 0-100; ``url`` and ``reference`` open the VM on the fleet page (when its public URL is
    configured; the runbook is ``rule.reference``); ``created`` is when the alert was made (wall clock),
    ``@timestamp`` when it was detected."""

    kind: Literal["alert"] = "alert"
    category: list[str] = msgspec.field(default_factory=lambda: ["host"])
    type: list[str] = msgspec.field(default_factory=lambda: ["change"])
    action: AlertAction = "vm-live-migration"
    id: NonEmpty
    severity: Severity
    risk_score: Score
    risk_score_norm: Score
    start: IsoTime | None = None
    created: IsoTime | msgspec.UnsetType = msgspec.UNSET
    url: str | msgspec.UnsetType = msgspec.UNSET
    reference: str | msgspec.UnsetType = msgspec.UNSET
    dataset: str = "migwatch.alerts"
    module: str = "migwatch"

    def __post_init__(self) -> None:
        if not self.id:
            fail("id", "must not be empty", self.id)
        if not 1 <= self.severity <= 4:
            fail("severity", "must be between 1 and 4", self.severity)
        check_number("risk_score", self.risk_score, low=0.0, high=100.0)
        check_number("risk_score_norm", self.risk_score_norm, low=0.0, high=100.0)
        if self.start is not None:
            check_iso_time("start", self.start)
        if self.created is not msgspec.UNSET:
            check_iso_time("created", self.created)


class AlertHost(Record, kw_only=True):
    """ECS ``host``: the watched VM (``type: vm``) or hypervisor (``type: hypervisor``). ``ip`` only when the
    target's address is an IP address (ECS maps it as ``ip``: a DNS name there makes a SIEM reject the
    document); a DNS name is ``hostname``."""

    name: NonEmpty
    ip: list[str] | msgspec.UnsetType = msgspec.UNSET
    hostname: str | msgspec.UnsetType = msgspec.UNSET
    type: str | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if self.ip is not msgspec.UNSET:
            for value in self.ip:
                if not is_ip(value):
                    fail("host.ip", "must be an IP address (a host name goes in host.hostname)", value)


class AlertObserver(Record, kw_only=True):
    """ECS ``observer``: the migwatch process that raised the alert."""

    name: NonEmpty
    product: str = "migwatch"
    version: str | msgspec.UnsetType = msgspec.UNSET
    type: str = "monitor"


class AlertRule(Record, kw_only=True):
    """ECS ``rule``: the detector rule that fired (see :mod:`migwatch.detectors.alert_text`)."""

    id: str | msgspec.UnsetType = msgspec.UNSET
    name: str = "hybrid-ping-ntp"
    description: str | msgspec.UnsetType = msgspec.UNSET
    reference: str | msgspec.UnsetType = msgspec.UNSET  # the runbook, when configured
    ruleset: str = "migwatch"


class AlertRelated(Record, kw_only=True):
    """ECS ``related``: every host named in the alert (the target, its hypervisors) and its IP, to pivot on."""

    hosts: list[str] = []
    ip: list[str] | msgspec.UnsetType = msgspec.UNSET


class AlertEcs(Record, kw_only=True):
    """ECS ``ecs``: the ECS version the alert follows."""

    version: str = ECS_VERSION


class Alert(Record, kw_only=True):
    """An event for the SIEM, in Elastic Common Schema field names with ours under ``migwatch``."""

    timestamp: IsoTime = msgspec.field(name="@timestamp")
    ecs: AlertEcs = msgspec.field(default_factory=AlertEcs)
    message: str | msgspec.UnsetType = msgspec.UNSET  # one line a person reads in the SIEM's event list
    event: AlertEvent
    host: AlertHost
    observer: AlertObserver
    rule: AlertRule = msgspec.field(default_factory=AlertRule)
    related: AlertRelated | msgspec.UnsetType = msgspec.UNSET
    # ECS ``labels``: the watched target's own labels (its Target record's), for SIEM rules and filters.
    labels: dict[str, str] | msgspec.UnsetType = msgspec.UNSET
    migwatch: AlertDetail

    def __post_init__(self) -> None:
        check_iso_time("@timestamp", self.timestamp)


class HostView(Record, kw_only=True):
    """What a watched hypervisor showed lately: when its ping pattern (a migration stream) was last seen and
    its lowest round trip. Between stream workers only (the compacted ``hosts`` topic, keyed by ``host``):
    the worker that watches a hypervisor tells the others, whose VMs name it as source or destination."""

    v: int = SCHEMA_VERSION
    host: str = ""
    pattern_last_ts: float | None = None
    floor_ms: float | None = None
    # Issue #20: the first and latest window of its latest run of raised mean RTT (a memory copy leaving it).
    copy_first_ts: float | None = None
    copy_last_ts: float | None = None

    def __post_init__(self) -> None:
        _version(self.v)
        for name in ("pattern_last_ts", "copy_first_ts", "copy_last_ts"):
            if getattr(self, name) is not None:
                check_timestamp(name, getattr(self, name))
        check_number("floor_ms", self.floor_ms, low=0.0, nullable=True)


class LastAlert(Record, kw_only=True):
    """The latest alert of a target, as the fleet page shows it."""

    id: str
    state: AlertState
    action: AlertAction
    detected_ts: float
    likelihood: float


class TargetStatus(Record, kw_only=True):
    """One target as the stream worker that watches it last told (issue #22): its state, likelihood, round
    trips and clock, its latest alert, its site and hosts, and which worker serves its chart (``url``).
    ``state`` is the target's level now (``none`` below ``suspected``); ``ts`` the event time of its latest
    sample. Sent in a :class:`StatusChunk`."""

    v: int = SCHEMA_VERSION
    target: str
    address: str
    kind: TargetKind | None = None  # None: no Target record (a target known from its samples only)
    site: str | None = None
    labels: dict[str, str] = {}
    allowed_hosts: list[str] = []
    last_host: str | None = None  # the hypervisor it moved to last, when its pings named it
    state: str = "none"
    likelihood: float = 0.0
    last_rtt_ms: float | None = None
    rtt_baseline_ms: float | None = None
    rtt_floor_ms: float | None = None
    clock_offset_ms: float | None = None
    time_lag_ms: float | None = None
    last_alert: LastAlert | None = None
    partition: int = 0
    worker: str = ""
    url: str = ""  # the worker's web address: where the target's chart is served
    ts: float = 0.0

    def __post_init__(self) -> None:
        _version(self.v)
        check_identifier("target", self.target)
        if self.state not in STATUS_STATES:
            fail("state", f"must be one of {', '.join(STATUS_STATES)}", self.state)
        check_number("likelihood", self.likelihood, low=0.0, high=1.0)


class StatusChunk(Record, kw_only=True):
    """The statuses of the targets of one sample partition whose ids hash to ``chunk``: a message of the
    compacted ``status`` topic, keyed ``<partition>/<chunk>``, between the workers and the fleet page only.
    A chunk is sent whole, so a new owner of the partition overwrites what the old one told and a target
    gone from it drops out; one message for many targets keeps the workers' cost per target small."""

    v: int = SCHEMA_VERSION
    partition: int
    chunk: int
    statuses: list[TargetStatus] = []

    def __post_init__(self) -> None:
        _version(self.v)
        check_number("partition", self.partition, low=0)
        check_number("chunk", self.chunk, low=0)

    @property
    def key(self) -> str:
        return f"{self.partition}/{self.chunk}"


# The states a target can be in, least to most alarming: the fleet page's order of risk.
STATUS_STATES = ("none", "suspected", "likely", "confirmed")


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
            fail("alert_id", "must not be empty", self.alert_id)
        check_identifier("target", self.target)
        check_timestamp("ts", self.ts)


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
                fail(name, "must be >= 0 or null", value)
        try:
            base64.b64decode(self.payload_b64, validate=True)
        except binascii.Error:
            fail("payload_b64", "must be base64", self.payload_b64[:40])

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
