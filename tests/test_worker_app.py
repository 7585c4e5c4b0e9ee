"""The stream worker's agents, driven in this process: Faust events in, alerts and dead letters out.

:class:`WorkerApp` declares the real Faust app; its agents' work (``process_samples``, ``process_feedback``)
runs here on real ``faust.Event`` objects, with the in-memory tables instead of changelog-backed ones (no
broker). The whole worker against a real Kafka is tested in test_streams.py and test_pipeline.py.
"""

from __future__ import annotations

import asyncio
import base64
from itertools import pairwise

import faust
import msgspec
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import Message

from migwatch.contract import batches
from migwatch.contract.codec import encode
from migwatch.contract.config import parse
from migwatch.contract.records import Alert, ClockSample, Feedback, PingSample, Sample
from migwatch.detectors.target_group import TargetGroup
from migwatch.streams.app import WorkerApp
from migwatch.streams.consumer import FETCH_MAX_WAIT_MS
from migwatch.streams.tables import MemoryTables
from migwatch_dev.synthetic import Episode, generate


def worker_app() -> WorkerApp:
    config = parse("[worker]\nname = 'w-1'\nstore = 'memory'\nweb_port = 0\n", source="test.toml", environ={})
    return WorkerApp(config, tables=MemoryTables())


def event(
    app: WorkerApp, topic: str, offset: int, key: bytes | None, value: bytes, *, partition: int = 0, batch: bool = False
) -> faust.Event:
    headers = [(batches.HEADER, batches.ENCODING)] if batch else []
    message = Message(topic, partition, offset, timestamp=0.0, timestamp_type=0, headers=headers, key=key,
                      value=value, checksum=None)  # fmt: skip
    return faust.Event(app.app, key, value, {}, message)


def batch_events(app: WorkerApp, samples: list[Sample], size: int) -> list[list[faust.Event]]:
    """The samples as the probes send them, a linger's worth at a time: per topic and partition, up to
    ``size`` samples a message. Each linger's messages are taken together (the alignment of the topics, which
    needs the consumer's offsets, is tested through Kafka in test_publish.py)."""
    rounds, offset = [], 0
    for first in range(0, len(samples), size * 4):
        groups: dict[tuple[str, int], list[bytes]] = {}
        for sample in samples[first : first + size * 4]:
            topic = app.names.ping if isinstance(sample, PingSample) else app.names.ntp
            groups.setdefault((topic, app.partitioner.of(sample.target.encode())), []).append(encode(sample))
        events = []
        for (topic, partition), values in groups.items():
            for start in range(0, len(values), size):
                batch = batches.encode_batch(values[start : start + size])
                events.append(event(app, topic, offset, None, batch, partition=partition, batch=True))
                offset += 1
        rounds.append(events)
    return rounds


def sample_events(app: WorkerApp, samples: list[Sample]) -> list[faust.Event]:
    """One message per sample, on its target's partition."""
    return [
        event(app, app.names.ping if isinstance(sample, PingSample) else app.names.ntp, offset,
              sample.target.encode(), encode(sample), partition=app.partitioner.of(sample.target.encode()))
        for offset, sample in enumerate(samples)
    ]  # fmt: skip


def states(alerts: list[Alert]) -> list[tuple[str, str, float]]:
    return [(a.migwatch.target, a.migwatch.state, a.migwatch.detected_ts) for a in alerts]


def test_the_detect_agents_work_gives_the_alerts_of_a_replay() -> None:
    samples, labels = generate([Episode("migration", "vm-1", 200.0, copy_s=15.0, downtime_s=0.5)], ["vm-1"], 500.0)
    app = worker_app()
    alerts: list[Alert] = []
    for first in range(0, len(samples), 100):  # batches, as take_events gives them
        batch = sample_events(app, samples[first : first + 100])
        raised, dead = app.process_samples(batch, now=samples[-1].ts)
        assert dead == []
        alerts += raised
    group = TargetGroup(observer="w-1")
    replayed = [alert for sample in samples for alert in group.update(sample)]
    assert states(alerts) == states(replayed)
    assert "confirmed" in [state for _, state, _ in states(alerts)]
    assert labels.migrations[0].start <= alerts[-1].migwatch.detected_ts
    counted = app.metrics.registry.get_sample_value("migwatch_worker_samples_total", {"topic": app.names.ping})
    assert counted == sum(isinstance(sample, PingSample) for sample in samples)


def test_bad_messages_become_dead_letters_with_their_reason_and_key() -> None:
    app = worker_app()
    good = PingSample(target="vm-1", address="192.0.2.1", probe="p", seq=1, ts=1_764_180_000.0, rtt_ms=0.4)
    clock = ClockSample(target="vm-1", address="192.0.2.1", probe="p", ts=1_764_180_000.5, offset_ms=1.0, delay_ms=0.3)
    events = [
        event(app, app.names.ping, 7, b"vm-1", encode(good)),
        event(app, app.names.ping, 8, b"vm-1", b'{"v":1,"target":"vm-1"}'),
        event(app, app.names.ntp, 9, b"vm-2", encode(clock)),  # keyed by another target
        event(app, app.names.ping, 10, b"vm-1", encode(good).replace(b"1764180000.0", b"1864180000.0")),
    ]
    alerts, dead = app.process_samples(events, now=1_764_180_001.0)
    assert alerts == []
    assert [(letter.topic, letter.offset, key) for letter, key in dead] == [
        (app.names.ping, 8, b"vm-1"), (app.names.ntp, 9, b"vm-2"), (app.names.ping, 10, b"vm-1")]  # fmt: skip
    reasons = [letter.error for letter, _ in dead]
    assert reasons[0] == "address: required field is missing"
    assert reasons[1] == "key: must be the target id 'vm-1', got b'vm-2'"
    assert reasons[2].startswith("ts: ") and "ahead of this worker's clock" in reasons[2]
    assert app.partitions.target_count() == 1


def test_batches_and_single_samples_alike_give_the_alerts_of_a_replay() -> None:
    episodes = [Episode("migration", "vm-1", 200.0, copy_s=15.0, downtime_s=0.5),
                Episode("migration", "vm-3", 300.0, copy_s=10.0, downtime_s=0.5)]  # fmt: skip
    samples, _ = generate(episodes, ["vm-1", "vm-2", "vm-3"], 500.0)
    app = worker_app()
    # A rolling upgrade: the first half as single samples, the rest in batches.
    half = len(samples) // 2
    events = sample_events(app, samples[:half])
    rounds = [events[first : first + 20] for first in range(0, half, 20)] + batch_events(app, samples[half:], 50)
    alerts: list[Alert] = []
    for taken in rounds:
        raised, dead = app.process_samples(taken, now=samples[-1].ts)
        assert dead == []
        alerts += raised
    groups: dict[int, TargetGroup] = {}  # one per partition, as the worker keeps them
    replayed = [
        alert for sample in samples
        for alert in groups.setdefault(app.partitioner.of(sample.target.encode()), TargetGroup(observer="w-1"))
        .update(sample)
    ]  # fmt: skip
    assert sorted(states(alerts)) == sorted(states(replayed))  # across partitions in the order batches came
    assert {target for target, state, _ in states(alerts) if state == "confirmed"} == {"vm-1", "vm-3"}
    counted = app.metrics.registry.get_sample_value("migwatch_worker_samples_total", {"topic": app.names.ping})
    assert counted == sum(isinstance(sample, PingSample) for sample in samples)


def test_a_bad_sample_in_a_batch_is_its_own_dead_letter_and_a_bad_batch_one() -> None:
    app = worker_app()
    good = PingSample(target="vm-1", address="192.0.2.1", probe="p", seq=1, ts=1_764_180_000.0, rtt_ms=0.4)
    partition = app.partitioner.of(b"vm-1")
    stranger = next(f"vm-{i}" for i in range(2, 100) if app.partitioner.of(f"vm-{i}".encode()) != partition)
    inside = [
        encode(good),
        b'{"v":1,"target":"vm-1"}',
        encode(msgspec.structs.replace(good, target=stranger)),  # belongs to another partition
        encode(msgspec.structs.replace(good, seq=2, ts=1_764_180_000.5)),
    ]
    events = [
        event(app, app.names.ping, 3, None, batches.encode_batch(inside), partition=partition, batch=True),
        event(app, app.names.ping, 4, None, b"not json", partition=partition, batch=True),
        event(app, app.names.ping, 5, None, b'{"v":1,"samples":{"a":1}}', partition=partition, batch=True),
    ]
    alerts, dead = app.process_samples(events, now=1_764_180_001.0)
    assert alerts == []
    assert [(letter.offset, letter.error) for letter, _ in dead] == [
        (3, "address: required field is missing"),
        (3, f"target: {stranger!r} belongs to partition {app.partitioner.of(stranger.encode())}, "
            f"the batch is on partition {partition}"),
        (4, "batch: not JSON (JSON is malformed: invalid character (byte 4))"),
        (5, 'batch: samples: expected array, got {"a": 1}'),
    ]  # fmt: skip
    # Each bad sample's dead letter holds that sample's bytes, an unreadable batch's the whole message.
    payloads = [base64.b64decode(letter.payload_b64) for letter, _ in dead]
    assert payloads == [inside[1], inside[2], b"not json", b'{"v":1,"samples":{"a":1}}']
    assert app.partitions.target_count() == 1  # the two good samples of vm-1 were used
    counted = app.metrics.registry.get_sample_value("migwatch_worker_samples_total", {"topic": app.names.ping})
    assert counted == 2


def test_the_learn_agents_work_teaches_or_dead_letters() -> None:
    app = worker_app()
    verdict = Feedback(alert_id="a-1", target="vm-1", label="benign", ts=1_764_180_000.0, by="analyst")
    assert app.process_feedback(event(app, app.names.feedback, 0, b"vm-1", encode(verdict))) is None
    # An alert this partition does not remember: counted as not learned.
    assert app.metrics.registry.get_sample_value("migwatch_worker_feedback_total", {"learned": "false"}) == 1
    letter, key = app.process_feedback(event(app, app.names.feedback, 1, b"vm-1", b"not json")) or (None, None)
    assert letter is not None and key == b"vm-1" and letter.error.startswith("invalid JSON")


def test_the_app_declares_its_agents_topics_and_tables() -> None:
    app = WorkerApp(parse("[worker]\nstore = 'memory'\n", source="test.toml", environ={}))
    assert sorted(agent.name for agent in app.app.agents.values()) == ["detect", "learn"]
    assert sorted(app.app.tables) == ["chart-slots", "detectors", "fleets"]
    assert set(app.samples_topic.topics) == {"migwatch.ping", "migwatch.ntp"}


def test_the_workers_fetches_wait_a_tenth_of_faust_s() -> None:
    """A fetch for the quiet partitions alone holds the busy ones' next records back for its whole wait
    (streams/consumer.py): the worker's consumer waits FETCH_MAX_WAIT_MS, Faust's own 1.5 s."""

    async def waits() -> tuple[int, int]:
        app = WorkerApp(parse("[worker]\nstore = 'memory'\n", source="test.toml", environ={})).app
        consumer = app.consumer
        faust_own = faust_aiokafka.AIOKafkaConsumerThread(consumer, loop=consumer.loop, beacon=consumer.beacon)
        clients = [
            thread._create_worker_consumer(app.transport) for thread in (consumer._new_consumer_thread(), faust_own)
        ]
        try:
            return clients[0]._fetch_max_wait_ms, clients[1]._fetch_max_wait_ms
        finally:
            for client in clients:
                await client.stop()

    assert asyncio.run(waits()) == (FETCH_MAX_WAIT_MS, 1500)
    assert FETCH_MAX_WAIT_MS <= 100


def test_the_hypervisors_are_reported_to_the_other_workers_as_their_pattern_begins_goes_on_and_ends() -> None:
    samples, _ = generate([Episode("bulk-transfer", "hv-1", 200.0, copy_s=40.0)], ["hv-1"], 400.0)
    samples = [msgspec.structs.replace(s, kind="host") if isinstance(s, PingSample) else s for s in samples]
    app = worker_app()
    told = []
    for first in range(0, len(samples), 5):  # batches of a few seconds, as a live worker takes them
        app.process_samples(sample_events(app, samples[first : first + 5]), now=samples[-1].ts)
        told += app.host_reports
        app.host_reports = []
    during = [view for view in told if view.pattern_last_ts is not None]
    # Told when the pattern began, when its copy (the raised mean, issue #20) began, and every third of
    # host_window_s (30 s) of either while they lasted, then that it ended.
    assert 3 <= len(during) <= 8 and during[0].copy_last_ts is None and during[1].copy_last_ts is not None

    def advanced(a: float | None, b: float | None) -> bool:
        return (a is None) != (b is None) or (a is not None and b is not None and b - a >= 10.0)

    assert all(
        advanced(a.pattern_last_ts, b.pattern_last_ts) or advanced(a.copy_last_ts, b.copy_last_ts)
        for a, b in pairwise(during)
    )
    assert all(b.pattern_last_ts - a.pattern_last_ts <= 20.0 for a, b in pairwise(during))  # type: ignore[operator]
    assert told[-1].pattern_last_ts is None and told[-1].floor_ms is not None and told[-1].host == "hv-1"
