"""The stream worker's Faust app, declared top to bottom: topics, tables, agents, web pages.

``ping`` and ``ntp`` are co-partitioned (same key, same partition count), so one agent reading both topics
sees every sample of a target in the same partition: that is the join. A message is one sample or a batch of
them (CONTRACT section 1, migwatch.contract.batches); messages are taken in batches too (Faust's
``take_events``); a batch of them is decoded, what cannot be used goes to the dead-letter topic, the
samples are sorted by ``ts`` and each runs through its partition's detectors
(:mod:`~migwatch.streams.partitions`); the alerts and dead letters are published and awaited, then the rows
that are due are written, and a message's offset may be committed only once the rows holding what its
samples did are flushed (:mod:`~migwatch.streams.commits`): at least once at every instruction, and
``event.id`` is stable, so a SIEM drops repeats.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import faust
from aiokafka.errors import IllegalStateError
from faust.types import TP, EventT, StreamT
from faust.web import Request, Response, View

from migwatch.contract import batches
from migwatch.contract.codec import MAX_RECORD_BYTES, decode, encode
from migwatch.contract.config import Config, KafkaSettings, WorkerSettings
from migwatch.contract.fields import FieldError
from migwatch.contract.records import (
    Alert,
    ClockSample,
    DeadLetter,
    Feedback,
    HostView,
    PingSample,
    Sample,
    StatusChunk,
)
from migwatch.contract.topics import TopicNames
from migwatch.detectors.alert_text import stamp_created
from migwatch.detectors.target_group import Directory
from migwatch.kafka_io.partitioning import Partitioner
from migwatch.streams import views
from migwatch.streams.alignment import Aligner
from migwatch.streams.commits import Held, Uncommitted
from migwatch.streams.consumer import Transport
from migwatch.streams.event_context import Acting, acting_for
from migwatch.streams.fleet import FleetStatuses, FleetView
from migwatch.streams.metrics import WorkerMetrics
from migwatch.streams.partitions import STATUS_GAP_S, STATUS_SENDS_PER_S, Partitions
from migwatch.streams.tables import FaustTables, Tables

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


def faust_app(config: Config) -> faust.App:
    """The Faust app of the config: the consumer group, state store, broker timeouts and web server."""
    worker, kafka = config.worker, config.kafka
    app = faust.App(
        worker.app_id,
        broker=[f"kafka://{server}" for server in kafka.servers],
        broker_client_id=kafka.client_id,
        broker_credentials=_credentials(kafka),
        store="rocksdb://" if worker.store == "rocksdb" else "memory://",
        datadir=worker.datadir,
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
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
        # Faust's producer sends each changelog row, status chunk and alert in a request of its own when its
        # linger is 0: thousands of small requests a second, a tenth of the worker's core in socket writes at
        # 10,000 samples/s (benchmarks/soak.py). A short linger batches them; lz4 shrinks the JSON rows.
        producer_linger=0.02,
        producer_compression_type="lz4",
        # A message's offset waits for the rows that hold its effect (streams/commits.py), so the agents may
        # hold messages over many batches: a rebalance must not wait for them to be acked (it never would).
        stream_wait_empty=False,
        web_enabled=worker.web_port != 0,
        web_bind=worker.web_bind,
        web_port=worker.web_port or 6066,
        web_host=worker.web_bind,
        # Faust's own views stay off: /table/... would serve every table row (the targets' state) and /router/
        # the partition map to anyone on the web port; /stats/ and /graph/ are debugging aids.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
    )
    app.transport = Transport(app.conf.broker_consumer, app)  # Faust's, mended (see streams/consumer.py)
    return app


# A message of a batch that could not be used, with the key it came with.
Dead = tuple[DeadLetter, bytes | None]
# A sample, the message it came in (held until it may be committed) and its own bytes (for its dead letter).
Pair = tuple[Sample, Held[EventT], bytes]
# A sample topic-partition behind for this long without a new message counts as caught up (see behind()).
ALIGN_STALL_S = 5.0
# How often the messages found done are let go: each time costs a flush of the producer (its acks).
RELEASE_EVERY_S = 1.0
# The first wait before an alert or dead letter that Kafka refused is sent again; doubled up to the last.
RETRY_S = (0.5, 30.0)


class WorkerApp:
    """The stream worker, declared top to bottom like a Faust example: topics, tables, agents, pages.

    The agents are the methods :meth:`detect` (ping and NTP samples) and :meth:`learn` (analysts'
    feedback); what they do with a batch is :meth:`process_samples` and :meth:`process_feedback`, which
    return the alerts and dead letters to publish, so that a test can drive them with Faust events and
    :class:`~migwatch.streams.tables.MemoryTables` instead of the changelog-backed tables.
    """

    def __init__(
        self,
        config: Config,
        tables: Tables | None = None,
        directory: Directory | None = None,
        status_chunks: Callable[[], Mapping[str, StatusChunk]] | None = None,
    ) -> None:
        self.settings = config.worker
        self.names = names = TopicNames(config.kafka.topic_prefix)
        self.partitioner = Partitioner(config.kafka.partitions)  # which partition a batch's targets belong to
        self.app = app = faust_app(config)

        # ---------------------------------------------------------------------------------------- topics
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        self.samples_topic = app.topic(names.ping, names.ntp, **raw)
        self.feedback_topic = app.topic(names.feedback, **raw)
        self.alerts_topic = app.topic(names.alerts, **raw)
        self.deadletter_topic = app.topic(names.deadletter, **raw)
        self.hosts_topic = app.topic(names.hosts, **raw)  # what our hypervisors showed, for the other workers
        self.status_topic = app.topic(names.status, **raw)  # our targets' statuses, for every fleet page

        # ---------------------------------------------------------------------------------------- tables
        # Values are our own JSON bytes (never pickle): value_type=bytes makes Faust store and restore them
        # raw. Keys are JSON (Faust's choice for str keys): target id -> TargetDetector, "partition-N" ->
        # the partition's TargetGroup state (the table keeps its earlier name "fleets": its changelog is the
        # workers' saved state), "target/slot" -> ChartWindow (see FaustTables).
        if tables is None:
            tables = FaustTables(
                *(app.Table(name, key_type=str, value_type=bytes, options=dict(ROCKSDB))
                  for name in ("detectors", "fleets", "chart-slots")),
                width_s=self.settings.chart_window_s, slots=self.settings.chart_windows,
            )  # fmt: skip
        # The targets' records, the maintenance windows and the other workers' hypervisors: read whole by
        # every worker (streams/worker.py follows the compacted topics), the config's own on top.
        self.partitions = Partitions.for_worker(tables, config, directory)
        self.host_reports: list[HostView] = []
        # The whole fleet's statuses as the status topic holds them (streams/worker.py follows it).
        self.statuses, self.fleet = FleetStatuses(status_chunks, self.partitions.status), FleetView()
        self.metrics = WorkerMetrics()
        self.metrics.start_at_zero([names.ping, names.ntp], names.feedback)
        self.partition_events: dict[int, EventT] = {}  # the latest event of each partition: whom a write acts for
        self.aligner: Aligner[Pair] = Aligner((names.ping, names.ntp))
        self.stalls: dict[tuple[str, int], tuple[int | None, float]] = {}  # behind since (offset, monotonic)
        self.uncommitted: Uncommitted[EventT] = Uncommitted()
        self.released_at = 0.0  # monotonic time the done messages were last let go
        self.assigned: set[int] | None = None  # the sample partitions assigned (None: no consumer, a test)
        # Partitions with alerts not yet acknowledged by Kafka: their rows wait (a row's level must never be
        # ahead of the alerts topic), whichever task would write them (the agent, a revocation, a stop).
        self.unpublished: Counter[int] = Counter()

        # ---------------------------------------------------------------------------------------- agents
        app.agent(self.samples_topic, name="detect")(self.detect)
        app.agent(self.feedback_topic, name="learn")(self.learn)
        app.on_partitions_revoked.connect(self.on_revoked)
        app.on_partitions_assigned.connect(self.on_assigned)
        app.on_before_shutdown.connect(self.on_shutdown)
        app.timer(interval=STATUS_GAP_S, name="tell_statuses")(self.tell_statuses)

        # ---------------------------------------------------------------------------------------- web
        _declare_pages(self)

    async def detect(self, stream: StreamT[bytes]) -> None:
        """Agent: samples in batches; alerts and dead letters acknowledged, then the rows, then the offsets."""
        async for events in stream.take_events(self.settings.batch_size, within=self.settings.batch_within_s):
            started = time.perf_counter()
            for event in events:
                # Before any await: take_events acks the batch even when this body fails. Let go by
                # release_done() once what the message did is durable.
                event.message.incref()
            alerts, dead = self.process_samples(events, now=time.time(), behind=await self.behind())
            await self.publish(alerts, dead)
            self.checkpoint()  # after the alerts: a row's level is never ahead of the alerts topic
            await self.release_done()
            await self.report_hosts()
            self.metrics.batch_samples.observe(len(events))
            self.metrics.batch_seconds.observe(time.perf_counter() - started)

    async def behind(self) -> set[tuple[str, int]]:
        """The sample topic-partitions with messages this agent has not yet seen (migwatch.streams.alignment).

        One seen moves on by its offsets; one not seen since the assignment by the consumer's position (a
        new group at the end of an old topic is not behind). One that stays behind without a new message for
        ALIGN_STALL_S counts as caught up: no sample waits for ever on a partition that delivers nothing.
        """
        consumer, behind, now = self.app.consumer, set(), time.monotonic()
        for tp in consumer.assignment():
            if tp.topic not in self.aligner.topics:
                continue
            key = (tp.topic, tp.partition)
            seen = self.aligner.offsets.get(key)
            try:
                end = consumer.highwater(tp)
                read = seen + 1 if seen is not None else await consumer.position(tp)
            except (AssertionError, IllegalStateError):
                # Revoked meanwhile (the consumer's thread rebalances while the agent works): its messages in
                # this batch are skipped (process_samples), so it holds nothing back.
                continue
            if end is None or read is None or read >= end:
                self.stalls.pop(key, None)
                continue
            since = self.stalls.setdefault(key, (seen, now))
            if since[0] != seen:
                self.stalls[key] = (seen, now)
            elif now - since[1] > ALIGN_STALL_S:
                continue
            behind.add(key)
        return behind

    def process_samples(
        self, events: Sequence[EventT], *, now: float, behind: Collection[tuple[str, int]] = ()
    ) -> tuple[list[Alert], list[Dead]]:
        """Decode a batch, run the samples that may go (the partition's other topic has reached them, see
        migwatch.streams.alignment; ``behind``: the sample topic-partitions not yet read to their end)
        through their partitions' detectors in ``ts`` order across the partitions (a VM's hypervisor may sit
        in another one), write the rows that are due; the alerts raised and the dead letters. ``now`` is this
        worker's clock."""
        dead: list[Dead] = []
        counts: Counter[str] = Counter()
        for event in events:
            message = event.message
            if self.assigned is not None and message.partition not in self.assigned:
                continue  # revoked while this batch waited: its new owner takes it (it stays uncommitted here)
            good = self.unpack(event, now, dead)
            held = self.uncommitted.take(message.topic, message.partition, event, len(good))
            self.aligner.add(message.topic, message.partition, message.offset,
                             [(sample.ts, (sample, held, payload)) for sample, payload in good])  # fmt: skip
            counts[message.topic] += len(good)
        for topic, count in counts.items():
            self.metrics.samples.labels(topic).inc(count)
        released = [self.aligner.release(partition, behind) for partition in self.aligner.partitions()]
        return self.detect_released(released, dead), dead

    def detect_released(self, released: list[list[Pair]], dead: list[Dead]) -> list[Alert]:
        """Run released samples (each partition's in ``ts`` order) through the detectors, merged in ``ts``
        order across the partitions (a VM's hypervisor may sit in another one), a sample at a time: the merge
        interleaves partitions so finely (~1.1 samples a run at 8 partitions) that a call per run cost more
        than the detectors. A sample the detectors fail on becomes a dead letter in ``dead``."""
        rounds: dict[int, int] = {}
        for run in released:
            if run:
                partition, last = run[-1][1].partition, run[-1][1].message
                self.partition_events[partition] = last
                rounds[partition] = self.partitions.start_round(partition)
        alerts: list[Alert] = []
        update, current = self.partitions.update_one, None
        with Acting() as acting:  # chart windows are written as they close, to their sample's partition
            for sample, held, payload in heapq.merge(*released, key=_ts):
                partition = held.partition
                if partition != current:
                    current = partition
                    acting.switch(held.message)
                try:
                    alerts += update(partition, sample)
                except Exception as error:
                    # A detector bug must neither stop the agent nor hold the partition back: the sample is
                    # kept as a dead letter, to be replayed once fixed.
                    log.exception("detectors failed on a sample of %s in partition %d", sample.target, partition)
                    dead.append((dead_letter(held.message, f"detectors failed: {error!r}", payload),
                                 held.message.message.key))  # fmt: skip
                    held.dead()
                    continue
                held.ran(sample.target, rounds[partition])
        for partition in rounds:
            self.host_reports += self.partitions.host_reports(partition)
        return alerts

    def checkpoint(self, partitions: Collection[int] | None = None, *, force: bool = False) -> None:
        """Write the rows that are due (all unwritten ones with ``force``) of the partitions that ran samples
        (of ``partitions`` of them), but of none with alerts still unpublished."""
        for partition, last in self.partition_events.items():
            if (partitions is None or partition in partitions) and not self.unpublished[partition]:
                with acting_for(last):
                    self.metrics.checkpoints.inc(self.partitions.checkpoint(partition, force=force))

    async def release_done(self, *, now: bool = False) -> None:
        """Let go the messages whose every effect is durable (their offsets may be committed), at most once
        every RELEASE_EVERY_S unless ``now``: the rows written so far are flushed first."""
        clock = time.monotonic()
        if not now and clock - self.released_at < RELEASE_EVERY_S:
            return
        self.released_at = clock
        done = self.uncommitted.done(self.partitions.durable)
        if done:
            await self.app.producer.flush()
            consumer = self.app.consumer
            for event in done:
                event.message.ack(consumer)

    def unpack(self, event: EventT, now: float, dead: list[Dead]) -> list[tuple[Sample, bytes]]:
        """A message's usable samples, each with its own bytes; what cannot be used goes to ``dead``. A
        message is one sample, or a batch (CONTRACT section 1): an unreadable batch is one dead letter, a
        bad sample inside a good batch its own, and so is a sample of a target of another partition (its
        state would split between workers)."""
        message = event.message
        kind = PingSample if message.topic == self.names.ping else ClockSample
        batched = batches.is_batch(message.headers)
        try:
            payloads = batches.split_batch(message.value) if batched else [message.value]
        except FieldError as error:
            dead.append((dead_letter(event, str(error)), message.key))
            return []
        good = []
        for payload in payloads:
            try:
                if batched:
                    sample = decode(kind, payload)
                    if (owner := self.partitioner.of(sample.target.encode())) != message.partition:
                        raise FieldError(f"target: {sample.target!r} belongs to partition {owner}, "
                                         f"the batch is on partition {message.partition}")  # fmt: skip
                else:
                    sample = decode_message(kind, message.key, payload)
                check_time(sample, now, self.settings)
            except FieldError as error:
                dead.append((dead_letter(event, str(error), payload), message.key))
                continue
            good.append((sample, payload))
        return good

    async def learn(self, stream: StreamT[bytes]) -> None:
        """Agent: analysts' verdicts, one at a time."""
        async for event in stream.events():
            letter = self.process_feedback(event)
            if letter is not None:
                await self.publish([], [letter])

    def process_feedback(self, event: EventT) -> Dead | None:
        """Teach the partition's learners one verdict; its dead letter when it cannot be used."""
        message = event.message
        try:
            feedback = decode_message(Feedback, message.key, message.value)
        except FieldError as error:
            return dead_letter(event, str(error)), message.key
        learned = self.partitions.learn(message.partition, feedback)
        self.metrics.feedback.labels(str(learned).lower()).inc()
        return None

    async def publish(self, alerts: Sequence[Alert], dead: Sequence[Dead]) -> None:
        """Send and wait until Kafka has them all, sending them again for as long as Kafka refuses any (the
        agent waits meanwhile: its state already holds these alerts, so they must not be skipped)."""
        now = time.time()
        for alert in alerts:
            stamp_created(alert, now)
        waiting = Counter({self.partitioner.of(alert.migwatch.target.encode()) for alert in alerts})
        self.unpublished += waiting
        try:
            await self._send(alerts, dead)
        finally:
            self.unpublished -= waiting
        for alert in alerts:
            self.metrics.alerts.labels(alert.migwatch.state).inc()
        for letter, _ in dead:
            self.metrics.dead_letters.labels(letter.topic).inc()

    async def _send(self, alerts: Sequence[Alert], dead: Sequence[Dead]) -> None:
        wait, attempt = RETRY_S[0], 1
        while alerts or dead:
            try:
                sent = [await self.alerts_topic.send(key=alert.migwatch.target.encode(), value=encode(alert))
                        for alert in alerts]  # fmt: skip
                sent += [await self.deadletter_topic.send(key=key, value=encode(letter)) for letter, key in dead]
                await asyncio.gather(*sent)
                break
            except Exception as error:  # whatever Kafka or its client raised: the alerts stay
                self.metrics.publish_failures.inc()
                log.error("Kafka did not take %d alerts and %d dead letters (attempt %d: %r): sending them again in "
                          "%.1f s", len(alerts), len(dead), attempt, error, wait)  # fmt: skip
                await asyncio.sleep(wait)
                wait, attempt = min(2 * wait, RETRY_S[1]), attempt + 1

    async def report_hosts(self) -> None:
        """Tell the other workers what our hypervisors showed (their VMs name them as source or destination).
        Sent, not awaited: a lost report costs a host's name on an alert, never an alert."""
        reports, self.host_reports = self.host_reports, []
        for report in reports:
            await self.hosts_topic.send(key=report.host.encode(), value=encode(report))

    async def tell_statuses(self, *_: Any) -> None:
        """Timer: send the status chunks of our partitions that are due (streams/partitions.py), so the fleet
        pages of every worker show our targets. Sent, not awaited: a lost chunk costs a stale row until the
        next, never an alert."""
        now, budget, every = time.time(), STATUS_SENDS_PER_S, self.settings.status_every_s
        chunks: list[StatusChunk] = []
        for changed_only in (True, False):  # what changed, of every partition, before what is only due
            for partition in list(self.partitions.owned):
                told = self.partitions.status_reports(partition, every, now, budget, changed_only=changed_only)
                budget -= len(told)
                chunks += told
        for chunk in chunks:
            value = encode(chunk)
            if len(value) > MAX_RECORD_BYTES:  # the followers would refuse it: say what to change
                log.error("status chunk %s: %d targets, %d bytes, over the %d-byte record cap: more partitions "
                          "(kafka.partitions) would spread them", chunk.key, len(chunk.statuses), len(value),
                          MAX_RECORD_BYTES)  # fmt: skip
                continue
            await self.status_topic.send(key=chunk.key.encode(), value=value)

    async def on_assigned(self, app: faust.App, assigned: set[TP], **_: Any) -> None:
        self.assigned = {tp.partition for tp in assigned if tp.topic in (self.names.ping, self.names.ntp)}

    async def on_revoked(self, app: faust.App, revoked: set[TP], **_: Any) -> None:
        """Write what is not yet written while the partitions are still ours, let go what is then durable,
        and forget them: if one comes back it is read again, since another worker may have moved it on."""
        moved = {tp.partition for tp in revoked if tp.topic in (self.names.ping, self.names.ntp)}
        if self.assigned is not None:
            self.assigned -= moved  # a batch taken before this signal skips their messages
        await self.detect_held(moved)
        self.checkpoint(moved, force=True)
        await self.release_done(now=True)
        self.partitions.drop(moved)
        for partition in moved:
            self.aligner.forget(partition)
            self.uncommitted.forget(partition)
            self.partition_events.pop(partition, None)

    async def on_shutdown(self, app: faust.App, **_: Any) -> None:
        """A stop (SIGTERM: a deploy, a scale-in) writes what a crash would lose and lets go what is then
        durable; Faust commits the offsets as it stops."""
        await self.detect_held(self.aligner.partitions())
        self.checkpoint(force=True)
        await self.release_done(now=True)

    async def detect_held(self, partitions: set[int]) -> None:
        """The samples the partitions still hold for alignment go to the detectors before the partitions go:
        their offsets may be committed already."""
        dead: list[Dead] = []
        alerts = self.detect_released([self.aligner.flush(partition) for partition in partitions], dead)
        await self.publish(alerts, dead)
        self.checkpoint(partitions)


def dead_letter(event: EventT, error: str, payload: bytes | None = None) -> DeadLetter:
    """The dead letter of a message (or of one sample of a batch: ``payload``, its own bytes)."""
    message = event.message
    if payload is None:
        payload = message.value if isinstance(message.value, bytes) else b""
    return DeadLetter.of(message.topic, message.partition, message.offset, error, payload)


def _declare_pages(worker: WorkerApp) -> None:
    """The web pages: ``/status`` (this worker's targets), ``/fleet`` (the whole fleet's), a target's chart,
    ``/metrics``, the fleet page, ``/healthz`` and ``/readyz``."""
    app, settings, partitions, metrics = worker.app, worker.settings, worker.partitions, worker.metrics

    @app.page("/status")
    async def status(web: View, request: Request) -> Response:
        return web.json(views.status(settings, partitions))

    @app.page("/fleet")
    async def fleet(web: View, request: Request) -> Response:
        body, code = views.fleet(settings, partitions, worker.fleet, worker.statuses(), request.query)
        return web.json(body, status=code)

    @app.page("/targets/{target}/chart")
    async def chart(web: View, request: Request, target: str) -> Response:
        forward = request.query.get("forward") != "0"
        body, code = await views.chart(settings, partitions, worker.statuses(), target, forward=forward)
        return web.json(body, status=code)

    @app.page("/metrics")
    async def prometheus(web: View, request: Request) -> Response:
        await _measure_lag(app, metrics, (worker.names.ping, worker.names.ntp))
        body, content_type = views.metrics(metrics, partitions)
        return web.bytes(body, headers={"Content-Type": content_type})

    @app.page("/")
    async def fleet_page(web: View, request: Request) -> Response:
        return web.html(views.fleet_page())

    @app.page("/healthz")
    async def healthz(web: View, request: Request) -> Response:
        return web.text("ok\n")  # the event loop answers: the agents' loop is not stuck

    @app.page("/readyz")
    async def readyz(web: View, request: Request) -> Response:
        """Ready once it joined the group and has sample partitions to work on (cheap: no table is read)."""
        owned = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == worker.names.ping)
        if owned:
            return web.text(f"ready: partitions {owned}\n")
        return web.text("not ready: no partition assigned (yet)\n", status=503)


async def _measure_lag(app: faust.App, metrics: WorkerMetrics, topics: tuple[str, ...]) -> None:
    consumer = app.consumer
    for tp in consumer.assignment():
        if tp.topic in topics:
            # Either is None until the first fetch of the partition has answered.
            position, end = await consumer.position(tp), consumer.highwater(tp)
            if position is not None and end is not None:
                metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, end - position))


def _ts(pair: Pair) -> float:
    return pair[0].ts
