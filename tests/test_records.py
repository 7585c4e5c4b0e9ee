"""Contract records (CONTRACT section 2): validation with clear errors, lossless JSON round trips."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migwatch.contract.codec import decode, encode
from migwatch.contract.fields import FieldError, is_address
from migwatch.contract.records import Alert, ClockSample, DeadLetter, Feedback, PingSample, Target
from tests.strategies import RECORDS

PING = {
    "v": 1, "target": "web-01", "address": "192.0.2.10", "kind": "vm", "probe": "probe-a",
    "seq": 42, "ts": 1764180000.123456, "rtt_ms": 0.84, "ttl": 63,
}  # fmt: skip
CLOCK = {
    "v": 1, "target": "web-01", "address": "192.0.2.10", "probe": "probe-a", "ts": 1764180000.1,
    "offset_ms": -152.3, "delay_ms": 0.9, "stratum": 3, "ref_id": "192.0.2.1", "leap": 0,
    "root_delay_ms": 1.2, "root_dispersion_ms": 3.4, "error": None,
}  # fmt: skip
# The contract's own examples, verbatim.
CONTRACT_EXAMPLES = {
    Target: {"v": 1, "id": "web-01", "address": "192.0.2.10", "kind": "vm", "hosts": ["hv-1", "hv-2"],
             "ping_interval_s": 1.0, "ntp_interval_s": 30.0, "ntp": True, "site": "dc1", "labels": {}},
    PingSample: PING,
    ClockSample: CLOCK,
    Alert: {"@timestamp": "2026-11-26T18:30:00.123Z",
            "event": {"kind": "alert", "category": ["host"], "type": ["change"], "action": "vm-live-migration",
                      "id": "a1", "severity": 3, "risk_score": 87.0, "risk_score_norm": 87.0,
                      "start": "2026-11-26T18:29:41.000Z", "dataset": "migwatch.alerts", "module": "migwatch"},
            "host": {"name": "web-01", "ip": ["192.0.2.10"]},
            "observer": {"name": "worker-1", "vendor": "migwatch", "type": "monitor"},
            "rule": {"name": "hybrid-ping-ntp"},
            "migwatch": {"target": "web-01", "state": "confirmed", "likelihood": 0.97, "phase": "switched",
                         "detected_ts": 1764180012.7, "first_evidence_ts": 1764180001.0,
                         "evidence": {"rtt_baseline_ms": 0.4, "rtt_mean_ms": 2.9, "rtt_max_ms": 41.0,
                                      "outliers": 3, "unanswered": 2, "time_lag_ms": -183.0, "ttl_change": None,
                                      "learner_score": 0.91}}},
    Feedback: {"v": 1, "alert_id": "a1", "target": "web-01", "label": "migration", "ts": 1764180100.0,
               "by": "analyst-7"},
    DeadLetter: {"v": 1, "topic": "migwatch.ping", "partition": 3, "offset": 1234,
                 "error": "rtt_ms: must be >= 0, got -5", "payload_b64": "eyJydHRfbXMiOi01fQ=="},
}  # fmt: skip


@pytest.mark.parametrize("kind", [k for k in CONTRACT_EXAMPLES if k is not Alert], ids=lambda kind: kind.__name__)
def test_contract_examples_decode_and_encode_back_to_the_same_json(kind: type) -> None:
    document = CONTRACT_EXAMPLES[kind]
    record = decode(kind, json.dumps(document))
    assert json.loads(encode(record)) == document


def _flat(document: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in document.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_a_version_1_alert_reads_and_keeps_its_fields_in_version_2() -> None:
    """Issue #19 made the Alert ECS-valid (version 2): the contract's version 1 example still decodes, and
    every field of it is where it was with its value, but observer.vendor (a product name: observer.product)."""
    document = CONTRACT_EXAMPLES[Alert]
    again = _flat(json.loads(encode(decode(Alert, json.dumps(document)))))
    before = _flat(document)
    assert {key: again.get(key) for key in before if key != "observer.vendor"} == {
        key: value for key, value in before.items() if key != "observer.vendor"
    }
    assert set(again) - set(before) == {"ecs.version", "migwatch.v", "observer.product", "rule.ruleset"}
    assert again["observer.product"] == "migwatch" and again["migwatch.v"] == 2


def _with(base: dict, **changes: object) -> bytes:
    document = {**base, **changes}
    for key, value in changes.items():
        if value is ...:
            del document[key]
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("kind", "raw", "message"),
    [
        (PingSample, _with(PING, rtt_ms=-5), "rtt_ms: must be >= 0 or null, got -5.0"),
        (PingSample, _with(PING, rtt_ms="fast"), 'rtt_ms: expected float or null, got "fast"'),
        (PingSample, _with(PING, rtt_ms=1e12), "rtt_ms: must be <= 3600000 or null, got 1000000000000.0"),
        (PingSample, _with(PING, target=...), "target: required field is missing"),
        (PingSample, _with(PING, target=""), "target: must be 1 to 255 characters"),
        (PingSample, _with(PING, target=7), "target: expected str, got 7"),
        (PingSample, _with(PING, seq=-1), "seq: must be >= 0, got -1"),
        (PingSample, _with(PING, ttl=300), "ttl: must be between 0 and 255 or null, got 300"),
        (PingSample, _with(PING, ts=1764180000123.0), "ts: must be <= 4102444800, got 1764180000123.0"),
        (PingSample, _with(PING, kind="container"), "kind: invalid enum value 'container'"),
        (PingSample, _with(PING, address="300.1.1.1"), "address: must be an IPv4/IPv6 address or a host name"),
        (PingSample, _with(PING, v=2), "v: unsupported schema version (this reader knows 1), got 2"),
        (PingSample, b'{"v":1,"rtt_ms":NaN}', "invalid JSON"),
        (PingSample, b"\xff\x00garbage", "invalid JSON"),
        (PingSample, b"[1, 2]", "value: expected object, got [1, 2]"),
        (ClockSample, _with(CLOCK, offset_ms=None), "offset_ms: must be a number when error is null, got None"),
        (ClockSample, _with(CLOCK, error="timeout"), "offset_ms: must be null when error is 'timeout', got -152.3"),
        (ClockSample, _with(CLOCK, error="boom"), "error: invalid enum value 'boom'"),
        (ClockSample, _with(CLOCK, stratum=17), "stratum: must be between 0 and 16 or null, got 17"),
        (Target, b'{"id":"a","address":"192.0.2.1","ping_interval_s":0}', "ping_interval_s: must be >= 0.01, got 0.0"),
        (Target, b'{"id":"a b","address":"192.0.2.1"}', "id: must be 1 to 255 characters without spaces"),
        (Target, b'{"id":"a","address":"192.0.2.1","hosts":["hv 1"]}', "hosts[0]: must be 1 to 255"),
        (Feedback, b'{"alert_id":"x","target":"t","label":"maybe","ts":1,"by":"me"}', "label: invalid enum value"),
        (DeadLetter, b'{"topic":"t","error":"e","payload_b64":"***"}', "payload_b64: must be base64"),
        (PingSample, _with(PING, pad="x" * 70_000), "value: 70"),
    ],
)
def test_a_bad_field_is_named_with_its_value(kind: type, raw: bytes, message: str) -> None:
    with pytest.raises(FieldError) as caught:
        decode(kind, raw)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_nested_alert_errors_name_the_full_path() -> None:
    document = json.loads(json.dumps(CONTRACT_EXAMPLES[Alert]))
    document["migwatch"]["evidence"]["learner_score"] = 3.0
    with pytest.raises(FieldError, match=r"^migwatch\.evidence\.learner_score: must be <= 1 or null, got 3\.0"):
        decode(Alert, json.dumps(document))
    document["migwatch"]["evidence"]["learner_score"] = None
    document["event"]["severity"] = 9
    with pytest.raises(FieldError, match=r"^event\.severity: must be between 1 and 4, got 9"):
        decode(Alert, json.dumps(document))


def test_records_built_in_code_are_validated_too() -> None:
    with pytest.raises(FieldError, match=r"^rtt_ms: must be a finite number or null, got nan"):
        PingSample(target="a", address="192.0.2.1", probe="p", seq=0, ts=1.0, rtt_ms=math.nan)


def test_unknown_fields_are_ignored_by_readers() -> None:
    record = decode(PingSample, _with(PING, future_field={"x": 1}))
    assert record.rtt_ms == 0.84


def test_unanswered_ping_is_a_sample_with_null_rtt() -> None:
    record = decode(PingSample, _with(PING, rtt_ms=None, ttl=None))
    assert record.rtt_ms is None and record.ttl is None
    assert json.loads(encode(record))["rtt_ms"] is None


@pytest.mark.parametrize(
    ("address", "valid"),
    [("192.0.2.1", True), ("2001:db8::1", True), ("vm-1.dc1.example", True), ("localhost", True),
     ("300.1.1.1", False), ("", False), ("-bad.example", False), ("a b", False), ("1.2.3", False)],
)  # fmt: skip
def test_addresses(address: str, valid: bool) -> None:
    assert is_address(address) is valid


@pytest.mark.parametrize("kind", list(RECORDS), ids=lambda kind: kind.__name__)
def test_json_round_trip_is_lossless(kind: type) -> None:
    @given(RECORDS[kind])
    def check(record: object) -> None:
        assert decode(kind, encode(record)) == record

    check()


@pytest.mark.parametrize("kind", list(RECORDS), ids=lambda kind: kind.__name__)
def test_any_json_is_a_record_or_a_record_error(kind: type) -> None:
    json_values = st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=20,
    )
    fields = st.fixed_dictionaries({}, optional={name: json_values for name in kind.__struct_encode_fields__})

    @given(st.one_of(fields.map(json.dumps), json_values.map(json.dumps), st.binary()))
    def check(raw: str | bytes) -> None:
        try:
            decode(kind, raw)
        except FieldError as error:
            assert str(error) and "\n" not in str(error)

    check()
