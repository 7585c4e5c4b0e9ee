"""Issue #8, security: nothing read from Kafka is unpickled or evaluated, and message sizes are bounded.

Every Kafka message migwatch reads is decoded by msgspec into a record (``contract.codec.decode``, which refuses
anything over ``MAX_RECORD_BYTES`` before parsing); the Faust worker's topics and tables hand over raw bytes
(JSON we decode ourselves), never a codec that could unpickle. The source holds no pickle, eval or exec."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from migwatch.contract.codec import MAX_RECORD_BYTES, decode, encode
from migwatch.contract.config import parse
from migwatch.contract.fields import FieldError
from migwatch.contract.records import DEAD_LETTER_PAYLOAD_BYTES, DeadLetter, PingSample
from migwatch.streams.app import WorkerApp

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [path for folder in ("contract", "detectors", "kafka_io", "probes", "streams", "migwatch", "deploy/dev")
           for path in (ROOT / folder).rglob("*.py")]  # fmt: skip
UNSAFE = re.compile(r"\b(import pickle|from pickle|pickle\.loads?|marshal\.loads?|cloudpickle|dill|yaml\.load\(|"
                    r"(?<![\w.])eval\(|(?<![\w.])exec\()")  # fmt: skip


def test_no_source_file_unpickles_or_evaluates() -> None:
    assert len(SOURCES) > 40
    found = [f"{path.relative_to(ROOT)}: {match.group(0)}" for path in SOURCES
             for match in UNSAFE.finditer(path.read_text())]  # fmt: skip
    assert not found, found


def test_the_worker_reads_and_keeps_raw_bytes_only() -> None:
    app = WorkerApp(parse("", source="empty.toml", environ={})).app
    channels = [agent.channel for agent in app.agents.values()]
    assert {topic for channel in channels for topic in channel.topics} == {
        "migwatch.ping", "migwatch.ntp", "migwatch.feedback"}  # fmt: skip
    assert all((channel.key_serializer, channel.value_serializer) == ("raw", "raw") for channel in channels)
    assert len(app.tables) == 3
    for table in app.tables.values():
        assert table.value_serializer == "raw" and table.value_type is bytes, table.name
        assert table.key_serializer in ("raw", "json"), table.name  # JSON keys: strings and window tuples


def test_an_oversized_message_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(FieldError, match=rf"value: {MAX_RECORD_BYTES + 1} bytes, more than a record may have"):
        decode(PingSample, b" " * (MAX_RECORD_BYTES + 1))


def test_a_dead_letter_of_a_huge_message_stays_a_record() -> None:
    letter = DeadLetter.of("migwatch.ping", 3, 7, "value: too big", b"x" * 1_000_000)
    raw = encode(letter)
    assert len(raw) < MAX_RECORD_BYTES and decode(DeadLetter, raw) == letter
    assert letter.error == f"value: too big (payload cut to its first {DEAD_LETTER_PAYLOAD_BYTES} of 1000000 bytes)"
