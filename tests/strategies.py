"""Hypothesis strategies that build valid contract records (every field within its rules)."""

from __future__ import annotations

from datetime import UTC

import msgspec
from hypothesis import strategies as st

from migwatch.contract.fields import MAX_TS
from migwatch.contract.records import (
    MAX_DURATION_MS,
    Alert,
    AlertDetail,
    AlertEvent,
    AlertHost,
    AlertObserver,
    ClockSample,
    DeadLetter,
    Evidence,
    Feedback,
    PingSample,
    Target,
)

identifiers = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-._:éß"), min_size=1, max_size=40)
host_names = st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True), min_size=1, max_size=4).map(
    ".".join
)
addresses = st.one_of(st.ip_addresses().map(str), host_names)
timestamps = st.floats(min_value=0.0, max_value=MAX_TS, allow_nan=False)
durations = st.floats(min_value=0.0, max_value=MAX_DURATION_MS, allow_nan=False)


def _maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


targets = st.builds(
    Target,
    id=identifiers,
    address=addresses,
    kind=st.sampled_from(["vm", "host"]),
    hosts=st.lists(identifiers, max_size=3),
    ping_interval_s=st.floats(min_value=0.01, max_value=60.0),
    ntp_interval_s=st.floats(min_value=0.01, max_value=86_400.0),
    ntp=st.booleans(),
    site=identifiers,
    labels=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
    ping_timeout_s=st.just(msgspec.UNSET) | st.floats(min_value=0.01, max_value=60.0),
)

pings = st.builds(
    PingSample,
    target=identifiers,
    address=addresses,
    kind=st.sampled_from(["vm", "host"]),
    probe=identifiers,
    seq=st.integers(min_value=0, max_value=2**53),
    ts=timestamps,
    rtt_ms=_maybe(durations),
    ttl=_maybe(st.integers(0, 255)),
)

_answered = st.fixed_dictionaries(
    {
        "offset_ms": st.floats(min_value=-MAX_DURATION_MS, max_value=MAX_DURATION_MS),
        "delay_ms": st.floats(min_value=-MAX_DURATION_MS, max_value=MAX_DURATION_MS),
        "error": st.none(),
    }
)
_failed = st.fixed_dictionaries(
    {
        "offset_ms": st.none(),
        "delay_ms": st.none(),
        "error": st.sampled_from(["timeout", "refused", "unsynchronized", "invalid"]),
    }
)
clocks = st.builds(
    lambda outcome, **fields: ClockSample(**outcome, **fields),
    outcome=_answered | _failed,
    target=identifiers,
    address=addresses,
    probe=identifiers,
    ts=timestamps,
    stratum=_maybe(st.integers(0, 16)),
    ref_id=_maybe(st.text(max_size=16)),
    leap=_maybe(st.integers(0, 3)),
    root_delay_ms=_maybe(durations),
    root_dispersion_ms=_maybe(durations),
)

iso_times = st.datetimes(timezones=st.just(UTC)).map(
    lambda moment: moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
)
evidence = st.builds(
    Evidence,
    rtt_baseline_ms=_maybe(durations),
    rtt_mean_ms=_maybe(durations),
    rtt_max_ms=_maybe(durations),
    outliers=_maybe(st.integers(0, 10_000)),
    unanswered=_maybe(st.integers(0, 10_000)),
    time_lag_ms=_maybe(st.floats(allow_nan=False, allow_infinity=False)),
    ttl_change=_maybe(st.integers(-255, 255)),
    learner_score=_maybe(st.floats(0.0, 1.0)),
    source_host=st.just(msgspec.UNSET) | identifiers,
    skew_ppm=st.just(msgspec.UNSET) | st.floats(allow_nan=False, allow_infinity=False),
    skew_change_ppm=st.just(msgspec.UNSET) | st.floats(allow_nan=False, allow_infinity=False),
)
alerts = st.builds(
    Alert,
    timestamp=iso_times,
    event=st.builds(
        AlertEvent,
        id=st.text(min_size=1, max_size=64),
        severity=st.integers(1, 4),
        risk_score=st.floats(0.0, 100.0),
        risk_score_norm=st.floats(0.0, 100.0),
        start=_maybe(iso_times),
    ),
    host=st.builds(AlertHost, name=identifiers, ip=st.lists(st.ip_addresses().map(str), max_size=2)),
    observer=st.builds(AlertObserver, name=identifiers),
    migwatch=st.builds(
        AlertDetail,
        target=identifiers,
        state=st.sampled_from(["suspected", "likely", "confirmed", "cleared"]),
        likelihood=st.floats(0.0, 1.0),
        phase=_maybe(st.sampled_from(["memory-copy", "stop-and-copy", "switched"])),
        detected_ts=timestamps,
        first_evidence_ts=_maybe(timestamps),
        evidence=evidence,
    ),
)

feedbacks = st.builds(
    Feedback,
    alert_id=st.text(min_size=1, max_size=64),
    target=identifiers,
    label=st.sampled_from(["migration", "benign"]),
    ts=timestamps,
    by=st.text(max_size=20),
)

dead_letters = st.builds(
    DeadLetter.of,
    topic=st.text(max_size=40),
    partition=_maybe(st.integers(0, 10_000)),
    offset=_maybe(st.integers(0, 2**62)),
    error=st.text(max_size=80),
    payload=st.binary(max_size=200),
)

# Each record type with a strategy for it, for tests that cover them all.
RECORDS = {
    Target: targets,
    PingSample: pings,
    ClockSample: clocks,
    Alert: alerts,
    Feedback: feedbacks,
    DeadLetter: dead_letters,
}
