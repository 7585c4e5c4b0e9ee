"""``migwatch alerts ship --to URL``: the alerts topic into OpenSearch or Elasticsearch, at least once.

A consumer group (``--group``, default ``migwatch-shipper``; more shippers share the partitions) reads the
alerts topic from its committed offsets (the oldest kept alert for a new group). What one poll brought goes
to the engine as one ``_bulk`` request, every alert indexed with ``_id = event.id``: an alert sent again
(after a worker's or the shipper's restart) overwrites itself, so repeats are harmless. Offsets are committed
only after the engine acknowledged every document of the bulk.

When the engine is away (refused connection, timeout, HTTP 429 or 5xx) the shipper keeps its batch, retries
with a growing pause (up to ``RETRY_MAX_S``), and reads nothing more meanwhile: the alerts wait on Kafka, not in
memory (its partitions are paused, and polling on keeps it in the group). A document the engine refuses for
good (a 4xx item, say a mapping conflict) and a message that is no Alert become dead letters on the deadletter
topic with the reason, and are committed: nothing is lost, nothing blocks the rest.

At start it puts the index template (``migwatch.contract.alert_index``) unless ``--no-template``.
"""

from __future__ import annotations

import base64
import functools
import json
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata

from migwatch.contract.alert_index import DEFAULT_INDEX, index_template
from migwatch.contract.codec import decode, encode
from migwatch.contract.config import KafkaSettings
from migwatch.contract.fields import FieldError
from migwatch.contract.records import Alert, DeadLetter
from migwatch.contract.topics import TopicNames
from migwatch.kafka_io import clients

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
HTTP_TIMEOUT_S = 30.0
PROGRESS_EVERY_S = 10.0
TEMPLATE_NAME = "migwatch-alerts"
T = TypeVar("T")


class EngineUnavailableError(Exception):
    """The engine did not take the request now (down, overloaded): try again later."""


@dataclass(frozen=True)
class Engine:
    """An OpenSearch/Elasticsearch HTTP endpoint: ``http(s)://[user:password@]host:port``."""

    url: str
    ca_file: str | None = None

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise FieldError(f"--to: must be an http:// or https:// URL of the search engine, got {self.url!r}")

    def request(self, method: str, path: str, body: bytes, content_type: str = "application/json") -> Any:
        """The engine's JSON answer; EngineUnavailableError when it is away or busy, FieldError when it refuses."""
        parts = urllib.parse.urlsplit(self.url)
        base = urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path.rstrip("/"), "", ""))
        request = urllib.request.Request(f"{base}{path}", data=body, method=method)
        request.add_header("Content-Type", content_type)
        if parts.username is not None:
            user = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            request.add_header("Authorization", "Basic " + base64.b64encode(user.encode()).decode())
        context = ssl.create_default_context(cafile=self.ca_file) if parts.scheme == "https" else None
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S, context=context) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")[:500]
            if error.code == 429 or error.code >= 500:
                raise EngineUnavailableError(f"HTTP {error.code}: {text}") from None
            raise FieldError(f"{method} {path}: the engine refused it (HTTP {error.code}): {text}") from None
        except (urllib.error.URLError, OSError) as error:
            raise EngineUnavailableError(str(getattr(error, "reason", error))) from None


@dataclass
class Shipped:
    """What a shipper did: alerts indexed, dead letters, retries of an unavailable engine."""

    indexed: int = 0
    dead: int = 0
    retries: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        rate = self.indexed / max(time.monotonic() - self.started, 1e-9)
        return f"shipped {self.indexed} alerts ({rate:,.0f}/s), {self.dead} dead letters, {self.retries} retries"


def ship(
    settings: KafkaSettings,
    engine: Engine,
    *,
    index: str = DEFAULT_INDEX,
    group: str = "migwatch-shipper",
    batch: int = 500,
    template: bool = True,
    count: int | None = None,
    idle_s: float | None = None,
) -> Shipped:
    """Ship until ``count`` alerts were indexed or none came for ``idle_s`` (both None: until interrupted)."""
    shipped = Shipped()
    if template:
        body = json.dumps(index_template()).encode()
        _retrying(shipped, None, functools.partial(engine.request, "PUT", f"/_index_template/{TEMPLATE_NAME}", body))
    names = TopicNames(settings.topic_prefix)
    consumer = clients.consumer(
        settings, names.alerts, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
        max_poll_records=batch,
    )  # fmt: skip
    producer = clients.producer(settings)
    last_message, last_progress = time.monotonic(), time.monotonic()
    try:
        while count is None or shipped.indexed < count:
            polled = consumer.poll(timeout_ms=500)
            records = [record for part in polled.values() for record in part]
            now = time.monotonic()
            if now - last_progress >= PROGRESS_EVERY_S:
                _say(shipped.line())
                last_progress = now
            if not records:
                if idle_s is not None and now - last_message > idle_s:
                    break
                continue
            dead = _retrying(shipped, consumer, functools.partial(_bulk, engine, index, records))
            for record, reason in dead:
                letter = DeadLetter.of(record.topic, record.partition, record.offset, reason, record.value or b"")
                producer.send(names.deadletter, key=record.key, value=encode(letter))
            producer.flush()  # the dead letters are on Kafka before their offsets are committed
            shipped.dead += len(dead)
            shipped.indexed += len(records) - len(dead)
            _commit(consumer, records)
            last_message = time.monotonic()
    finally:
        consumer.close(autocommit=False)
        producer.close()
    _say(shipped.line())
    return shipped


def _bulk(engine: Engine, index: str, records: list[ConsumerRecord]) -> list[tuple[ConsumerRecord, str]]:
    """Index the records' alerts in one bulk request; the records that are dead letters, with the reason.
    EngineUnavailableError when the engine, or any one document, asks to try again later."""
    lines: list[bytes] = []
    sent: list[ConsumerRecord] = []
    dead: list[tuple[ConsumerRecord, str]] = []
    for record in records:
        try:
            alert = decode(Alert, record.value or b"")
        except FieldError as error:
            dead.append((record, f"not an alert: {error}"))
            continue
        action = {"index": {"_index": index, "_id": alert.event.id}}
        lines += [json.dumps(action).encode(), record.value]
        sent.append(record)
    if not sent:
        return dead
    answer = engine.request("POST", "/_bulk", b"\n".join(lines) + b"\n", "application/x-ndjson")
    for record, item in zip(sent, answer["items"], strict=True):
        result = item["index"]
        status = result.get("status", 500)
        if status == 429 or status >= 500:
            # Indexing the whole bulk again is safe: the ids make the documents already in overwrite themselves.
            raise EngineUnavailableError(f"a document got HTTP {status}: {result.get('error')}")
        if status >= 400:
            dead.append((record, f"the search engine refused it (HTTP {status}): {json.dumps(result.get('error'))}"))
    return dead


def _retrying(shipped: Shipped, consumer: KafkaConsumer | None, attempt: Callable[[], T]) -> T:
    """``attempt()`` until the engine takes it; meanwhile the consumer's partitions are paused and polled,
    so that it stays in its group without reading more."""
    pause = RETRY_FIRST_S
    while True:
        try:
            result = attempt()
        except EngineUnavailableError as error:
            shipped.retries += 1
            _say(f"the search engine is unavailable ({error}); retrying in {pause:.1f} s")
            _wait(consumer, pause)
            pause = min(RETRY_MAX_S, pause * 2)
            continue
        if consumer is not None and consumer.paused():
            consumer.resume(*consumer.paused())
        return result


def _wait(consumer: KafkaConsumer | None, seconds: float) -> None:
    if consumer is None:
        time.sleep(seconds)
        return
    consumer.pause(*consumer.assignment())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        consumer.poll(timeout_ms=int(min(1.0, max(0.0, deadline - time.monotonic())) * 1000))


def _commit(consumer: KafkaConsumer, records: list[ConsumerRecord]) -> None:
    """Commit past the shipped records. A partition taken away meanwhile is re-read by its new owner: repeats
    overwrite themselves, nothing is lost."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        offsets[partition] = max(offsets.get(partition, 0), record.offset + 1)
    try:
        consumer.commit({partition: OffsetAndMetadata(offset, "", -1) for partition, offset in offsets.items()})
    except CommitFailedError as error:
        _say(f"commit failed after a rebalance ({error}); the new owner ships those again")


def _say(text: str) -> None:
    """Progress and trouble on stderr, at once (stdout stays free for a pipe)."""
    print(f"migwatch alerts ship: {text}", file=sys.stderr, flush=True)
