"""The stream worker's Faust app, declared top to bottom: topics, tables, agents, web pages.

``ping`` and ``ntp`` are co-partitioned (same key, same partition count), so one agent reading both topics
sees every sample of a target in the same partition: that is the join. Samples come in batches; a batch is
decoded, bad messages go to the dead-letter topic, each partition's samples are sorted by ``ts`` and run
through that partition's detectors (:mod:`~migwatch.streams.partitions`), alerts are published and awaited
before the batch's offsets are committed (at least once; ``event.id`` is stable, so a SIEM drops repeats).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import MutableMapping, Sequence
from typing import Any

import faust
import msgspec
from faust.types import TP, EventT, StreamT
from faust.web import Request, Response, View

from migwatch.contract.config import Config, KafkaSettings, WorkerSettings
from migwatch.contract.records import Alert, ClockSample, DeadLetter, Feedback, FieldError, PingSample, decode, encode
from migwatch.contract.topics import TopicNames
from migwatch.streams import views
from migwatch.streams.charts import ChartWindow
from migwatch.streams.consumer import Transport
from migwatch.streams.event_context import acting_for
from migwatch.streams.metrics import WorkerMetrics
from migwatch.streams.partitions import Partitions

log = logging.getLogger(__name__)


def decode_message(kind: type[PingSample] | type[ClockSample] | type[Feedback], key: bytes | None, value: Any) -> Any:
    """A message's record, or FieldError naming what is wrong with it."""
    if not isinstance(value, bytes) or not value:
        raise FieldError("value: must be a JSON object, got an empty message")
    record = decode(kind, value)
    target = record.target
    if key is None or key.decode("utf-8", "replace") != target:
        # Keyed by another id it sits in another partition than the target's other records: its state
        # would split between workers.
        raise FieldError(f"key: must be the target id {target!r}, got {key!r}")
    return record


def check_time(sample: PingSample | ClockSample, now: float, settings: WorkerSettings) -> None:
    """FieldError when ``sample.ts`` is too far from this worker's clock (``max_sample_ahead_s``/``age_s``)."""
    if sample.ts > now + settings.max_sample_ahead_s:
        raise FieldError(f"ts: {sample.ts - now:.0f} s ahead of this worker's clock (max_sample_ahead_s "
                          f"{settings.max_sample_ahead_s:g}), got {sample.ts!r}")  # fmt: skip
    if sample.ts < now - settings.max_sample_age_s:
        raise FieldError(f"ts: {now - sample.ts:.0f} s old (max_sample_age_s {settings.max_sample_age_s:g}), "
                          f"got {sample.ts!r}")  # fmt: skip


class FaustTables:
    """The worker's :class:`~migwatch.streams.partitions.Tables` on Faust tables (changelog-backed).

    Chart windows live in a ring of ``slots`` rows per target (key ``target/slot``), each overwritten one
    lap later. A Faust windowed table would keep every live window's key in memory for its expiry (at
    10,000 targets, 30 s windows and 1 h of history: 1.2 million keys), so the worker's memory would
    grow for the whole first hour; the ring holds nothing in memory. Plain dicts stand in for the tables:

    >>> tables = FaustTables({}, {}, {}, width_s=30.0, slots=4)
    >>> for start in range(0, 240, 30):  # two laps: the second overwrites the first
    ...     tables.save_window("vm-1", ChartWindow(start=float(start)))
    >>> [window.start for window in tables.history("vm-1", before=240.0, count=10)]
    [120.0, 150.0, 180.0, 210.0]
    >>> [window.start for window in tables.history("vm-1", before=300.0, count=4)]  # 240 and 270 never came
    [180.0, 210.0]
    """

    def __init__(
        self,
        detectors: MutableMapping[str, bytes],
        fleets: MutableMapping[str, bytes],
        charts: MutableMapping[str, bytes],
        *,
        width_s: float,
        slots: int,
    ) -> None:
        self.detectors, self.fleets, self.charts = detectors, fleets, charts
        self.width_s, self.slots = width_s, slots

    def load_target(self, target: str) -> bytes | None:
        return self.detectors.get(target)

    def save_target(self, target: str, state: bytes) -> None:
        self.detectors[target] = state

    def load_fleet(self, partition: int) -> bytes | None:
        return self.fleets.get(f"partition-{partition}")

    def save_fleet(self, partition: int, state: bytes) -> None:
        self.fleets[f"partition-{partition}"] = state

    def _slot(self, target: str, start: float) -> str:
        # The slot is the key's last part and has no "/": two targets never share a key.
        return f"{target}/{round(start / self.width_s) % self.slots}"

    def save_window(self, target: str, window: ChartWindow) -> None:
        self.charts[self._slot(target, window.start)] = msgspec.json.encode(window)

    def history(self, target: str, before: float, count: int) -> list[ChartWindow]:
        first = math.floor(before / self.width_s) * self.width_s
        found = []
        for i in range(min(count, self.slots), 0, -1):
            start = first - i * self.width_s
            raw = self.charts.get(self._slot(target, start))
            if raw is not None:
                window = msgspec.json.decode(raw, type=ChartWindow)
                if abs(window.start - start) < 1e-6:  # not a window of an earlier lap
                    found.append(window)
        return found


def _credentials(kafka: KafkaSettings) -> faust.auth.Credentials | None:
    """The same security as the kafka-python clients (migwatch.kafka_io.clients), in Faust's terms for aiokafka."""
    if kafka.uses_sasl:
        # Faust chooses SASL_SSL when it gets a TLS context, SASL_PLAINTEXT without one.
        return faust.SASLCredentials(username=kafka.sasl_username, password=kafka.password(),
                                     ssl_context=kafka.ssl_context(), mechanism=kafka.sasl_mechanism)  # fmt: skip
    context = kafka.ssl_context()
    return None if context is None else faust.SSLCredentials(context)


# Faust's RocksDB defaults (64 MB write buffers, 3 of them, a 2 GB block cache) are per partition's
# database: with 8 partitions of 3 tables the memtables alone could reach gigabytes before their first flush,
# and the worker's memory grew by ~17 MB a minute at 10,000 targets (benchmarks/soak.py). Our rows are small
# and read once per takeover, so small buffers and a small cache cost nothing measurable.
ROCKSDB = {"write_buffer_size": 4 * 2**20, "max_write_buffer_number": 2, "block_cache_size": 8 * 2**20}


def create_app(config: Config) -> faust.App:
    worker, kafka = config.worker, config.kafka
    names = TopicNames(kafka.topic_prefix)
    app = faust.App(
        worker.app_id,
        broker=[f"kafka://{server}" for server in kafka.servers],
        broker_client_id=kafka.client_id,
        broker_credentials=_credentials(kafka),
        store="rocksdb://" if worker.store == "rocksdb" else "memory://",
        datadir=worker.datadir,
        topic_partitions=kafka.partitions,
        # The contract topics exist already (created up front with kafka.partitions); Faust creates only
        # its changelogs, with the same count.
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",  # a new group starts at the oldest sample: nothing skipped
        broker_session_timeout=worker.session_timeout_s,
        broker_rebalance_timeout=worker.rebalance_timeout_s,
        broker_request_timeout=max(90.0, worker.session_timeout_s + 30),
        broker_heartbeat_interval=max(1.0, worker.session_timeout_s / 5),
        table_standby_replicas=worker.standby_replicas,
        producer_acks=-1,
        web_enabled=worker.web_port != 0,
        web_bind=worker.web_bind,
        web_port=worker.web_port or 6066,
        web_host=worker.web_bind,
    )
    app.transport = Transport(app.conf.broker_consumer, app)  # Faust's, mended (see streams/consumer.py)

    # ---------------------------------------------------------------------------------------- topics
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    samples_topic = app.topic(names.ping, names.ntp, **raw)  # type: ignore[arg-type]
    feedback_topic = app.topic(names.feedback, **raw)  # type: ignore[arg-type]
    alerts_topic = app.topic(names.alerts, **raw)  # type: ignore[arg-type]
    deadletter_topic = app.topic(names.deadletter, **raw)  # type: ignore[arg-type]

    # ---------------------------------------------------------------------------------------- tables
    # Values are our own JSON bytes (never pickle): value_type=bytes makes Faust store and restore them raw.
    # Keys are JSON (Faust's choice for str keys): target id -> TargetDetector, "partition-N" -> fleet-wide
    # state, "target/slot" -> ChartWindow (see FaustTables).
    detectors = app.Table("detectors", key_type=str, value_type=bytes, options=dict(ROCKSDB))
    fleets = app.Table("fleets", key_type=str, value_type=bytes, options=dict(ROCKSDB))
    charts = app.Table("chart-slots", key_type=str, value_type=bytes, options=dict(ROCKSDB))
    tables = FaustTables(detectors, fleets, charts, width_s=worker.chart_window_s, slots=worker.chart_windows)
    shards = Partitions.for_worker(tables, config)
    metrics = WorkerMetrics()
    metrics.start_at_zero([names.ping, names.ntp], names.feedback)
    partition_events: dict[int, EventT] = {}  # the latest event of each partition: whom a write acts for

    async def publish(alerts: Sequence[Alert], dead: Sequence[DeadLetter], keys: Sequence[bytes | None]) -> None:
        """Send and wait until Kafka has them: the batch's offsets are committed only after this."""
        sent = [await alerts_topic.send(key=alert.migwatch.target.encode(), value=encode(alert)) for alert in alerts]
        sent += [
            await deadletter_topic.send(key=key, value=encode(letter)) for letter, key in zip(dead, keys, strict=True)
        ]
        if sent:
            await asyncio.gather(*sent)
        for alert in alerts:
            metrics.alerts.labels(alert.migwatch.state).inc()
        for letter in dead:
            metrics.dead_letters.labels(letter.topic).inc()

    def dead_letter(event: EventT, error: str) -> DeadLetter:
        message = event.message
        payload = message.value if isinstance(message.value, bytes) else b""
        return DeadLetter.of(message.topic, message.partition, message.offset, error, payload)

    # ---------------------------------------------------------------------------------------- agents
    @app.agent(samples_topic)
    async def detect(stream: StreamT[bytes]) -> None:
        async for events in stream.take_events(worker.batch_size, within=worker.batch_within_s):
            started = time.perf_counter()
            by_partition: dict[int, list[tuple[PingSample | ClockSample, EventT]]] = defaultdict(list)
            dead: list[DeadLetter] = []
            dead_keys: list[bytes | None] = []
            counts: Counter[str] = Counter()
            now = time.time()
            for event in events:
                message = event.message
                kind = PingSample if message.topic == names.ping else ClockSample
                try:
                    sample = decode_message(kind, message.key, message.value)
                    check_time(sample, now, worker)
                except FieldError as error:
                    dead.append(dead_letter(event, str(error)))
                    dead_keys.append(message.key)
                    continue
                by_partition[message.partition].append((sample, event))
                counts[message.topic] += 1
            alerts: list[Alert] = []
            for partition, pairs in by_partition.items():
                pairs.sort(key=_ts)  # stable: each target's samples in event-time order, ping and ntp merged
                partition_events[partition] = pairs[-1][1]
                with acting_for(pairs[-1][1]):
                    try:
                        alerts += shards.update(partition, [sample for sample, _ in pairs])
                    except Exception as error:
                        # A detector bug must neither stop the agent nor lose the batch (Faust acks it):
                        # its messages are kept as dead letters, to be replayed once fixed.
                        log.exception("detectors failed on %d samples of partition %d", len(pairs), partition)
                        dead += [dead_letter(event, f"detectors failed: {error!r}") for _, event in pairs]
                        dead_keys += [event.message.key for _, event in pairs]
                    metrics.checkpoints.inc(shards.checkpoint(partition))
            for topic, count in counts.items():
                metrics.samples.labels(topic).inc(count)
            await publish(alerts, dead, dead_keys)
            metrics.batch_samples.observe(len(events))
            metrics.batch_seconds.observe(time.perf_counter() - started)

    @app.agent(feedback_topic)
    async def learn(stream: StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            try:
                feedback = decode_message(Feedback, message.key, message.value)
            except FieldError as error:
                await publish([], [dead_letter(event, str(error))], [message.key])
                continue
            learned = shards.learn(message.partition, feedback)
            metrics.feedback.labels(str(learned).lower()).inc()

    def write_unwritten(partitions: set[int]) -> None:
        for partition in partitions:
            last = partition_events.pop(partition, None)
            if last is not None:
                with acting_for(last):
                    metrics.checkpoints.inc(shards.checkpoint(partition, force=True))

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set[TP], **_: Any) -> None:
        # Write what is not yet written while the partitions are still ours, then forget them: if one comes
        # back it is read again, since another worker may have moved it on meanwhile.
        moved = {tp.partition for tp in revoked if tp.topic in (names.ping, names.ntp)}
        write_unwritten(moved)
        shards.drop(moved)
        await app.producer.flush()

    @app.on_before_shutdown.connect
    async def on_shutdown(app: faust.App, **_: Any) -> None:
        # A stop (SIGTERM: a deploy, a scale-in) writes what a crash would lose; Faust flushes the producer
        # right after this signal.
        write_unwritten(set(partition_events))

    # ---------------------------------------------------------------------------------------- web
    @app.page("/status")
    async def status(web: View, request: Request) -> Response:
        return web.json(views.status(worker, shards))

    @app.page("/targets/{target}/chart")
    async def chart(web: View, request: Request, target: str) -> Response:
        body, code = views.chart(worker, shards, target)
        return web.json(body, status=code)

    @app.page("/metrics")
    async def prometheus(web: View, request: Request) -> Response:
        await _measure_lag(app, metrics, (names.ping, names.ntp))
        body, content_type = views.metrics(metrics, shards)
        return web.bytes(body, headers={"Content-Type": content_type})

    @app.page("/")
    async def fleet_page(web: View, request: Request) -> Response:
        return web.html(views.fleet_page())

    return app


async def _measure_lag(app: faust.App, metrics: WorkerMetrics, topics: tuple[str, ...]) -> None:
    consumer = app.consumer
    for tp in consumer.assignment():
        if tp.topic in topics:
            # Either is None until the first fetch of the partition has answered.
            position, end = await consumer.position(tp), consumer.highwater(tp)
            if position is not None and end is not None:
                metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, end - position))


def _ts(pair: tuple[PingSample | ClockSample, EventT]) -> float:
    return pair[0].ts
