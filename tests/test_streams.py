"""`migwatch worker` against the real broker: the join of ping and NTP per target gives the alerts a
replay gives, poison messages go to dead letters while good ones around them count, the web pages show
the worker's targets (the fleet page: tests/test_fleet_page.py), and a second worker takes over a killed one's
state."""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.partitioner.default import murmur2

from migwatch.contract.codec import decode, encode
from migwatch.contract.records import Alert, ClockSample, DeadLetter, Feedback, PingSample
from migwatch.contract.topics import TopicNames
from migwatch.detectors.target_group import TargetGroup
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch_dev.synthetic import START_TS, Episode, generate
from tests.processes import wait_for
from tests.siem import alert_schema_validator
from tests.stream_workers import StreamWorker, read_all, worker_env

pytestmark = pytest.mark.kafka
PARTITIONS = 4
TARGETS = ["vm-1", "vm-2", "vm-3", "vm-4", "vm-5"]
GOOD = b'{"v":1,"target":"vm-1","address":"10.0.0.0","probe":"p","seq":1,"ts":1.0,"rtt_ms":0.5}'
# (bytes on the ping topic, key): each must land in dead letters, none may stop the worker.
POISON = [
    (b"\xff\xfe garbage", b"vm-1"),
    (b'{"v":1,"target":"vm-1"}', b"vm-1"),  # fields missing
    (GOOD.replace(b'"seq":1', b'"seq":"one"'), b"vm-1"),  # wrong type
    (GOOD.replace(b"0.5}", b"NaN}"), b"vm-1"),
    (GOOD.replace(b"0.5}", b"1e999}"), b"vm-1"),  # inf
    (GOOD.replace(b"0.5}", b"-5}"), b"vm-1"),
    (GOOD.replace(b'"v":1', b'"v":99'), b"vm-1"),  # a schema version we do not know
    (GOOD, b"vm-2"),  # keyed by another target: it would sit in that target's partition
    (b"", b"vm-1"),
]


def partition_of(key: str) -> int:
    """Where Kafka's default partitioner (murmur2, as every client here uses) puts a key."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


def expected_alerts(samples: list, observer: str) -> list[Alert]:
    """What the detectors raise with one TargetGroup per partition, as the worker keeps them."""
    fleets: dict[int, TargetGroup] = {}
    alerts: list[Alert] = []
    for sample in samples:
        partition = partition_of(sample.target)
        alerts += fleets.setdefault(partition, TargetGroup(observer=observer)).update(sample)
    return alerts


@pytest.fixture(scope="module")
def fed_worker(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[StreamWorker, TopicNames, list, list[Alert]]]:
    folder = tmp_path_factory.mktemp("fed")
    names = TopicNames(f"streams-{uuid.uuid4().hex[:6]}.")
    ensure_topics(kafka_admin, names.prefix, PARTITIONS)
    samples, _ = generate(
        [Episode("migration", "vm-1", 300.0, copy_s=20.0, downtime_s=0.5),
         Episode("bulk-transfer", "vm-2", 320.0, copy_s=30.0)],
        targets=TARGETS, duration_s=600.0,
    )  # fmt: skip
    # Recent event time, so that the chart windows are not expired by the wall clock.
    shift = time.time() - 610.0 - START_TS
    samples = [msgspec.structs.replace(s, ts=s.ts + shift) for s in samples]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=20)
    every = len(samples) // (len(POISON) + 1)
    for i, sample in enumerate(samples):
        topic = names.ping if isinstance(sample, PingSample) else names.ntp
        producer.send(topic, key=sample.target.encode(), value=encode(sample))
        if i % every == every // 2 and i // every < len(POISON):  # poison spread among the good samples
            value, key = POISON[i // every]
            producer.send(names.ping, key=key, value=value)
    producer.send(names.ping, key=b"vm-1", value=None)  # a tombstone is no sample either
    producer.flush()
    producer.close()
    env = worker_env(kafka_bootstrap, names.prefix, PARTITIONS, folder, f"fed-{uuid.uuid4().hex[:6]}")
    # One batch holds the whole corpus (the first batch closes `within` after the agent starts: long enough
    # for every fetch): sorted by ts it is the exact event-time order of the replay. RocksDB (the default
    # store): table writes must land in the partition of the samples they come from.
    worker = StreamWorker(env, "fed-1", folder, batch_size="100000", batch_within_s="10.0", store="rocksdb")
    expected = expected_alerts(samples, "fed-1")
    try:
        wait_for(
            lambda: not worker.alive() or sum(worker.counted().values()) >= len(samples), 120, "every sample counted"
        )
        assert worker.alive(), worker.log_tail()
        yield worker, names, samples, expected
    finally:
        worker.stop()
        kafka_admin.delete_topics([t for t in kafka_admin.list_topics() if t.startswith(names.prefix)])


def test_worker_raises_the_alerts_a_replay_raises(kafka_bootstrap: str, fed_worker: tuple) -> None:
    _, names, _, expected = fed_worker
    live = [decode(Alert, m.value) for m in read_all(kafka_bootstrap, names.alerts, PARTITIONS)]
    assert {a.migwatch.state for a in expected} >= {"suspected", "confirmed", "cleared"}

    def brief(alerts: list[Alert]) -> list[tuple]:
        return sorted((a.migwatch.target, a.migwatch.state, a.migwatch.detected_ts, a.migwatch.likelihood)
                      for a in alerts)  # fmt: skip

    assert brief(live) == brief(expected)
    # The same alerts, field by field, but when the worker sent them (event.created: a replay has none).
    assert all(a.event.created is not msgspec.UNSET for a in live)
    for alert in live:
        alert.event.created = msgspec.UNSET
    assert sorted(map(encode, live)) == sorted(map(encode, expected))
    assert all(
        m.key == a.migwatch.target.encode()
        for m, a in zip(read_all(kafka_bootstrap, names.alerts, PARTITIONS), live, strict=True)
    )


def test_alerts_tail_prints_alerts_the_siem_schema_accepts(kafka_bootstrap: str, fed_worker: tuple) -> None:
    worker, names, _, expected = fed_worker
    result = subprocess.run(
        [sys.executable, "-m", "migwatch.cli", "alerts", "tail", "--config", worker.env["CONFIG"],
         "--from-beginning", "--count", str(len(expected)), "--idle", "30"],
        env=worker.env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sorted(lines) == sorted(m.value for m in read_all(kafka_bootstrap, names.alerts, PARTITIONS))
    validator = alert_schema_validator()
    for line in lines:
        assert not list(validator.iter_errors(json.loads(line)))


def test_poison_messages_go_to_dead_letters_with_their_reason(kafka_bootstrap: str, fed_worker: tuple) -> None:
    worker, names, samples, _ = fed_worker
    wait_for(
        lambda: len(read_all(kafka_bootstrap, names.deadletter, PARTITIONS)) >= len(POISON) + 1, 30, "dead letters"
    )
    letters = [(m.key, decode(DeadLetter, m.value)) for m in read_all(kafka_bootstrap, names.deadletter, PARTITIONS)]
    letters = [(key, letter) for key, letter in letters if letter.topic == names.ping]
    assert len(letters) == len(POISON) + 1
    kept = {base64.b64decode(letter.payload_b64): letter for _, letter in letters}
    keys = {base64.b64decode(letter.payload_b64): key for key, letter in letters}
    for value, key in POISON:
        letter = kept[value]
        assert keys[value] == key  # kept under the key it came with
        assert letter.topic == names.ping and letter.offset is not None and letter.partition is not None
        assert letter.error
    assert "rtt_ms" in kept[GOOD.replace(b"0.5}", b"-5}")].error
    assert "key: must be the target id 'vm-1'" in kept[GOOD].error
    assert "v" in kept[GOOD.replace(b'"v":1', b'"v":99')].error
    # Every good sample around them was counted, and the worker lives on.
    metrics = worker.get("/metrics").decode()
    pings = sum(isinstance(s, PingSample) for s in samples)
    assert worker.counted() == {names.ping: pings, names.ntp: len(samples) - pings}
    assert f'migwatch_worker_dead_letters_total{{topic="{names.ping}"}} {len(POISON) + 1}.0' in metrics
    assert worker.alive()


def test_analysts_feedback_reaches_the_learners(kafka_bootstrap: str, fed_worker: tuple) -> None:
    worker, names, _, expected = fed_worker
    likely = next(a for a in expected if a.migwatch.state in ("likely", "confirmed"))
    verdict = Feedback(alert_id=likely.event.id, target=likely.migwatch.target, label="migration", ts=time.time(),
                       by="analyst-7")  # fmt: skip
    unknown = msgspec.structs.replace(verdict, alert_id="no-such-alert")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for feedback in (verdict, unknown):
        producer.send(names.feedback, key=feedback.target.encode(), value=encode(feedback))
    producer.send(names.feedback, key=b"vm-1", value=b'{"v":1,"label":"maybe"}')
    producer.flush()
    producer.close()

    def learned() -> dict[str, float]:
        metrics = (worker.get("/metrics") or b"").decode()
        return {k: float(v) for k, v in re.findall(r'migwatch_worker_feedback_total\{learned="(\w+)"\} (\S+)', metrics)}

    wait_for(lambda: learned() == {"true": 1.0, "false": 1.0}, 30, f"both verdicts counted: {learned()}")
    letters = [decode(DeadLetter, m.value) for m in read_all(kafka_bootstrap, names.deadletter, PARTITIONS)]
    assert any(letter.topic == names.feedback and "label" in letter.error for letter in letters)


def test_status_reports_every_target(fed_worker: tuple) -> None:
    worker, _, _, expected = fed_worker
    status = worker.status()
    assert sorted(status) == TARGETS
    vm1 = status["vm-1"]
    assert vm1["rtt_baseline_ms"] == pytest.approx(0.5, abs=0.2)
    assert vm1["clock_offset_ms"] is not None and vm1["last_rtt_ms"] is not None
    last_vm1 = [a for a in expected if a.migwatch.target == "vm-1"][-1]
    assert vm1["last_alert"]["id"] == last_vm1.event.id
    chart = json.loads(worker.get("/targets/vm-1/chart"))
    points = chart["points"]
    assert len(points) >= 15  # 600 s in 30 s windows: closed ones from the windowed table, the open one
    assert sum(p["unanswered"] for p in points) >= 1  # the migration's stop-and-copy
    assert max(p["rtt_max_ms"] for p in points if p["rtt_max_ms"]) > 5 * vm1["rtt_baseline_ms"]
    assert worker.get("/targets/nope/chart") is None  # 404


def test_fausts_own_views_are_off(fed_worker: tuple) -> None:
    """Faust's /table/ would serve every table row (the targets' state) and /router/ the partition map to anyone
    on the web port (issue #17); the worker's own pages answer."""
    worker = fed_worker[0]
    for path in ("/router/", "/table/", "/stats/", "/graph/"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(worker.url + path, timeout=5).close()
        assert refused.value.code == 404, path
    assert worker.get("/status") is not None and worker.get("/healthz") == b"ok\n"


def test_a_killed_workers_targets_move_with_their_state(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path
) -> None:
    """Issue #8: SIGKILL one of two workers; the survivor takes the victim's targets with their state, and a
    migration of one of them that happens during the takeover is still confirmed."""
    names = TopicNames(f"takeover-{uuid.uuid4().hex[:6]}.")
    ensure_topics(kafka_admin, names.prefix, PARTITIONS)
    app_id = f"takeover-{uuid.uuid4().hex[:6]}"
    env = worker_env(kafka_bootstrap, names.prefix, PARTITIONS, tmp_path, app_id)
    targets = [f"vm-{i:02d}" for i in range(12)]
    workers = [StreamWorker(env, name, tmp_path, checkpoint_s="5") for name in ("w-a", "w-b")]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    start = time.time() - 160

    def feed(first: int, last: int, *, mover: str = "", copy: range = range(0), lost: range = range(0),
             lag_from: int = 10**6) -> None:  # fmt: skip
        for t in range(first, last):
            for i, target in enumerate(targets):
                moving = target == mover
                rtt = 0.4 + 0.01 * (t % 5)
                if moving and t in copy:
                    rtt = 3.0 + 4.0 * (t % 3)  # the memory copy: raised RTT with outliers
                sample = PingSample(target=target, address=f"10.0.1.{i}", probe="p", seq=t, ts=start + t,
                                    rtt_ms=None if moving and t in lost else rtt)  # fmt: skip
                producer.send(names.ping, key=target.encode(), value=encode(sample))
                if t % 5 == 0:
                    clock = ClockSample(target=target, address=f"10.0.1.{i}", probe="p", ts=start + t + 0.5,
                                        offset_ms=-200.0 if moving and t >= lag_from else 0.1 * (t % 3),
                                        delay_ms=0.5)  # fmt: skip
                    producer.send(names.ntp, key=target.encode(), value=encode(clock))
        producer.flush()

    try:
        wait_for(lambda: all(w.partitions(names.ping) for w in workers), 90, "both workers own partitions")
        feed(0, 30)  # 30 s of event time: baselines learned (20 pings)

        def learned() -> int:
            return sum(s["rtt_baseline_ms"] is not None for w in workers for s in w.status().values())

        def saved() -> set[str]:
            rows = read_all(kafka_bootstrap, f"{app_id}-detectors-changelog", PARTITIONS)
            return {json.loads(m.key) for m in rows}

        wait_for(lambda: learned() == len(targets), 60, "every target has learned its baseline")
        # A target's state is written checkpoint_s (5 s) of event time after the batch that first saw it: a
        # later batch writes them all. Whether the victim has also committed its offsets is left to chance
        # (every 2.8 s): the survivor must take over either way.
        feed(30, 60)
        wait_for(lambda: saved() == set(targets), 60, "every target's state is in the changelog")
        victim = max(workers, key=lambda w: len(w.status()))
        survivor = next(w for w in workers if w is not victim)
        moved = set(victim.status())
        mover = sorted(moved)[0]
        victim.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        # While the survivor takes over, one of the victim's VMs migrates: copy, stop-and-copy, clock behind.
        feed(60, 130, mover=mover, copy=range(62, 82), lost=range(82, 85), lag_from=85)
        wait_for(lambda: moved <= set(survivor.status()), 60,
                 lambda: f"the survivor takes over {sorted(moved)}\n{survivor.log_tail()}")  # fmt: skip
        took = time.monotonic() - killed
        status = survivor.status()
        quiet = moved - {mover}
        assert all(status[target]["rtt_baseline_ms"] == pytest.approx(0.42, abs=0.05) for target in quiet), status

        def states() -> set[str]:
            alerts = [decode(Alert, m.value) for m in read_all(kafka_bootstrap, names.alerts, PARTITIONS)]
            return {a.migwatch.state for a in alerts if a.migwatch.target == mover}

        wait_for(lambda: "confirmed" in states(), 60, f"{mover}'s migration confirmed: {states()}")
        print(f"takeover of {len(moved)} targets after SIGKILL: {took:.1f} s (session timeout 6 s); "
              f"{mover}'s migration during it: {sorted(states())}")  # fmt: skip
    finally:
        producer.close()
        for worker in workers:
            worker.stop()
        kafka_admin.delete_topics([t for t in kafka_admin.list_topics() if t.startswith(names.prefix)])


def test_a_stopped_worker_writes_its_state_first(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path
) -> None:
    names = TopicNames(f"stop-{uuid.uuid4().hex[:6]}.")
    ensure_topics(kafka_admin, names.prefix, 2)
    env = worker_env(kafka_bootstrap, names.prefix, 2, tmp_path, f"stop-{uuid.uuid4().hex[:6]}")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    start = time.time() - 100

    def ping(seq: int) -> None:
        sample = PingSample(target="vm-1", address="10.0.0.1", probe="p", seq=seq, ts=start + seq, rtt_ms=0.4)
        producer.send(names.ping, key=b"vm-1", value=encode(sample))
        producer.flush()

    # No checkpoint falls due in this test: only the stop can have written the state.
    first = StreamWorker(env, "first", tmp_path, checkpoint_s="86400", store="rocksdb")
    second = None
    try:
        wait_for(lambda: bool(first.partitions(names.ping)), 90, "the first worker owns the partitions")
        for seq in range(30):
            ping(seq)
        wait_for(lambda: first.status().get("vm-1", {}).get("rtt_baseline_ms") is not None, 60, "a baseline")
        first.process.send_signal(signal.SIGTERM)
        assert first.process.wait(60) == 0
        second = StreamWorker(env, "second", tmp_path, store="rocksdb")
        wait_for(lambda: bool(second.partitions(names.ping)), 90, "the second worker owns the partitions")
        ping(30)  # one ping: a baseline now can only be the one restored
        wait_for(lambda: "vm-1" in second.status(), 60, "vm-1 in the second worker")
        assert second.status()["vm-1"]["rtt_baseline_ms"] == pytest.approx(0.4)
    finally:
        producer.close()
        for worker in (first, second):
            if worker is not None:
                worker.stop()
        kafka_admin.delete_topics([t for t in kafka_admin.list_topics() if t.startswith(names.prefix)])
