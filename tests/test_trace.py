"""Trace and label files (CONTRACT section 3): streaming, gzip, stable ts order, clear errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migwatch.contract.labels import Labels, MigrationLabel, read_labels, write_labels
from migwatch.contract.records import ClockSample, PingSample
from migwatch.contract.trace import TraceError, TraceWriter, encode_line, iter_lines, read_trace
from tests.strategies import clocks, pings


def ping(ts: float, target: str = "vm-1", seq: int = 0, rtt: float | None = 0.5) -> PingSample:
    return PingSample(target=target, address="192.0.2.1", probe="p", seq=seq, ts=ts, rtt_ms=rtt)


def clock(ts: float, target: str = "vm-1", offset: float = -1.5) -> ClockSample:
    return ClockSample(target=target, address="192.0.2.1", probe="p", ts=ts, offset_ms=offset, delay_ms=0.2)


@pytest.mark.parametrize("name", ["trace.jsonl", "trace.jsonl.gz"])
def test_written_trace_reads_back_equal(tmp_path: Path, name: str) -> None:
    samples = [ping(1.0, seq=0), clock(1.5), ping(2.0, seq=1, rtt=None)]
    with TraceWriter(tmp_path / name) as writer:
        writer.write_all(samples)
    assert writer.count == 3
    back = list(read_trace(tmp_path / name))
    assert [type(s).__bases__[0] for s in back] == [PingSample, ClockSample, PingSample]
    assert [s.ts for s in back] == [1.0, 1.5, 2.0] and back[2].rtt_ms is None


def test_lines_are_contract_records_with_a_type_field(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    with TraceWriter(path) as writer:
        writer.write(ping(1.0))
        writer.write(clock(2.0))
    lines = [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    assert [line["type"] for line in lines] == ["ping", "ntp"]
    assert lines[0] == {"type": "ping", "v": 1, "target": "vm-1", "address": "192.0.2.1", "kind": "vm",
                        "probe": "p", "seq": 0, "ts": 1.0, "rtt_ms": 0.5, "ttl": None}  # fmt: skip


def test_reader_sorts_stably_by_ts(tmp_path: Path) -> None:
    # Per target the lines are in order; across targets they interleave out of order.
    samples = [ping(5.0, "a", 0), ping(6.0, "a", 1), ping(1.0, "b", 0), ping(5.0, "b", 1), ping(5.0, "c", 0)]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"".join(encode_line(s) for s in samples))
    order = [(s.target, s.ts) for s in read_trace(path)]
    assert order == [("b", 1.0), ("a", 5.0), ("b", 5.0), ("c", 5.0), ("a", 6.0)]


@settings(max_examples=30, deadline=None)
@given(samples=st.lists(pings | clocks, max_size=40), chunk=st.integers(1, 7))
def test_chunked_merge_sort_equals_an_in_memory_stable_sort(
    tmp_path_factory: pytest.TempPathFactory, samples: list, chunk: int
) -> None:
    path = tmp_path_factory.mktemp("sort") / "t.jsonl"
    path.write_bytes(b"".join(encode_line(s) for s in samples))
    expected = [encode_line(s) for s in sorted(samples, key=lambda s: s.ts)]
    assert [encode_line(s) for s in read_trace(path, chunk=chunk)] == expected


def test_reader_streams_without_loading_the_file(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with TraceWriter(path) as writer:
        writer.write_all(ping(float(i), seq=i) for i in range(5000))
    lines = iter_lines(path)
    assert next(lines).seq == 0  # the generator yields the first line before reading the rest
    assert sum(1 for _ in read_trace(path, chunk=1000)) == 5000


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"type":"ping","target":"vm-1"}', ":2: address: required field is missing"),
        (b'{"type":"pong","target":"vm-1"}', ":2: type: invalid value 'pong'"),
        (b'{"target":"vm-1"}', ":2: type: required field is missing"),
        (b"not json", ":2: invalid JSON"),
    ],
)
def test_a_bad_line_names_file_line_and_field(tmp_path: Path, line: bytes, message: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(encode_line(ping(1.0)) + line + b"\n")
    with pytest.raises(TraceError) as caught:
        list(read_trace(path))
    assert str(caught.value).startswith(f"{path}{message}")


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot open"):
        list(read_trace(tmp_path / "absent.jsonl"))
    corrupt = tmp_path / "t.jsonl.gz"
    corrupt.write_bytes(gzip.compress(encode_line(ping(1.0)) * 100)[:-30])
    with pytest.raises(TraceError, match="cannot read"):
        list(read_trace(corrupt))


def test_labels_round_trip_and_validation(tmp_path: Path) -> None:
    labels = Labels(migrations=[MigrationLabel(target="web-01", start=10.0, end=22.5, downtime_ms=180)])
    write_labels(tmp_path / "labels.json", labels)
    assert read_labels(tmp_path / "labels.json") == labels
    (tmp_path / "bad.json").write_text('{"v":1,"benign":[{"target":"w","start":5,"end":1,"kind":"bulk-transfer"}]}')
    with pytest.raises(TraceError, match=r"bad.json: benign\[0\].end: must be >= start \(5.0\), got 1.0"):
        read_labels(tmp_path / "bad.json")
