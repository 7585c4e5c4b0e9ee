"""Issue #17, alerts are never lost: two stream workers are SIGKILLed at random moments (each restarted at once
with the same data directory, one once with a fresh one) while a labelled trace with several migrations is
published paced, and the alerts topic refuses every alert for a while; afterwards every alert of a fault-free
run of the trace is on the topic, at its event time, and every poison message is a dead letter.

CI runs MIGWATCH_CHAOS_KILLS kills (default 5); ``benchmarks/chaos.py`` runs 50 and prints the figures of the
README's reliability table.
"""

from __future__ import annotations

import base64
import os
import random
import re
import signal
import statistics
import time
import uuid
from collections import defaultdict
from pathlib import Path

import msgspec
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from migwatch.contract.codec import decode
from migwatch.contract.config import KafkaSettings
from migwatch.contract.records import Alert, DeadLetter
from migwatch.contract.topics import TopicNames
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch.probes.publisher import Publisher
from migwatch_dev.synthetic import START_TS, Episode, generate
from tests.processes import wait_for
from tests.stream_workers import StreamWorker, read_all, worker_env
from tests.test_streams import PARTITIONS, expected_alerts

pytestmark = pytest.mark.kafka
KILLS = int(os.environ.get("MIGWATCH_CHAOS_KILLS", "5"))
PACED_S = float(os.environ.get("MIGWATCH_CHAOS_PACED_S", "80"))  # the trace's last part, published in real time
VMS = [f"vm-{i}" for i in range(1, 9)]
DURATION_S = 260.0
# Four migrations and a bulk copy in the paced part (the last PACED_S of the trace).
EPISODES = [
    Episode("migration", "vm-1", 182.0, copy_s=10.0, downtime_s=0.6),
    Episode("bulk-transfer", "vm-2", 185.0, copy_s=20.0),
    Episode("migration", "vm-3", 190.0, copy_s=12.0, downtime_s=0.5),
    Episode("migration", "vm-5", 196.0, copy_s=8.0, downtime_s=0.8),
    Episode("migration", "vm-7", 202.0, copy_s=10.0, downtime_s=0.5),
]
UNWRITABLE_S = (-2.0, 13.0)  # the alerts topic refuses every alert around vm-1's migration (from its start)


def _set_alert_size(admin: KafkaAdminClient, topic: str, limit: int) -> None:
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(limit)})])


def test_alerts_survive_workers_killed_at_random_and_a_refused_produce(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path
) -> None:
    names = TopicNames(f"chaos-{uuid.uuid4().hex[:6]}.")
    ensure_topics(kafka_admin, names.prefix, PARTITIONS)
    env = worker_env(kafka_bootstrap, names.prefix, PARTITIONS, tmp_path, f"chaos-{uuid.uuid4().hex[:6]}")
    samples, _ = generate(EPISODES, targets=VMS, duration_s=DURATION_S, ntp_interval_s=10.0, seed=3)
    begun = time.time()
    shift = begun + PACED_S - DURATION_S - START_TS  # the trace's last PACED_S are ahead of the wall clock
    samples = [msgspec.structs.replace(s, ts=s.ts + shift) for s in samples]
    expected = expected_alerts(samples, "chaos")
    assert {(a.migwatch.target, a.migwatch.state) for a in expected} >= {(f"vm-{i}", "confirmed") for i in (1, 3, 5, 7)}
    refused_from = EPISODES[0].start + shift + START_TS + UNWRITABLE_S[0]
    refused_until = refused_from + UNWRITABLE_S[1] - UNWRITABLE_S[0]

    seed = int(os.environ.get("MIGWATCH_CHAOS_SEED", "0")) or random.randrange(1, 10**6)  # kills differ per run
    rng = random.Random(seed)
    kills = sorted(rng.uniform(0.0, PACED_S + 20.0) for _ in range(KILLS))  # seconds after the start
    fresh_at = rng.randrange(KILLS)  # this restart gets an empty data directory
    settings = dict(store="rocksdb", checkpoint_s="10")
    workers = {name: StreamWorker(env, name, tmp_path, **settings) for name in ("w-a", "w-b")}
    publisher = Publisher(KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=names.prefix,
                                        partitions=PARTITIONS), tmp_path / "chaos.spill")  # fmt: skip
    poison = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    poisoned: list[bytes] = []
    refused = restored = False
    killed = 0
    try:
        position = 0
        while position < len(samples) or kills:
            now = time.time()
            while position < len(samples) and samples[position].ts <= now:
                publisher.publish(samples[position])
                position += 1
            if len(poisoned) < (now - begun) // 10:  # a poison message every 10 s, among the samples
                poisoned.append(f"not a sample {len(poisoned)}".encode())
                poison.send(names.ping, key=rng.choice(VMS).encode(), value=poisoned[-1])
            if not refused and now >= refused_from:
                _set_alert_size(kafka_admin, names.alerts, 64)
                refused = True
            if refused and not restored and now >= refused_until:
                _set_alert_size(kafka_admin, names.alerts, 1_048_588)
                restored = True
            if kills and now - begun >= kills[0]:
                kills.pop(0)
                name = rng.choice(sorted(workers))
                os.kill(workers[name].process.pid, signal.SIGKILL)
                killed += 1
                workers[name].stop()
                if len(kills) == KILLS - 1 - fresh_at:
                    name_dir = tmp_path / name
                    os.rename(name_dir, tmp_path / f"{name}-killed-{len(kills)}")
                workers[name] = StreamWorker(env, name, tmp_path, **settings)
            time.sleep(0.1)
        assert restored, "the alerts topic was made writable again"
        publisher.close(60)
        poison.flush()
        assert publisher.dropped == 0 and publisher.queued == 0

        def arrived() -> list[tuple[Alert, float]]:
            return [(decode(Alert, m.value), m.timestamp / 1000)
                    for m in read_all(kafka_bootstrap, names.alerts, PARTITIONS)]  # fmt: skip

        def missing() -> set[tuple[str, str, float]]:
            got = {(a.migwatch.target, a.migwatch.state, a.migwatch.detected_ts) for a, _ in arrived()}
            return {(a.migwatch.target, a.migwatch.state, a.migwatch.detected_ts) for a in expected} - got

        wait_for(lambda: not missing(), 240, lambda: f"seed {seed}: the alerts of a fault-free run, missing "
                 f"{sorted(missing())}\n"
                 + "\n".join(w.log_tail()[-1500:] for w in workers.values()))  # fmt: skip

        def unlettered() -> set[bytes]:
            letters = [decode(DeadLetter, m.value) for m in read_all(kafka_bootstrap, names.deadletter, PARTITIONS)]
            return set(poisoned) - {base64.b64decode(d.payload_b64) for d in letters if d.topic == names.ping}

        wait_for(lambda: not unlettered(), 120, lambda: f"every poison message a dead letter, not {unlettered()}")
        assert all(w.alive() for w in workers.values())
    finally:
        for worker in workers.values():
            worker.stop()
        poison.close()
    logs = "".join(path.read_text(errors="replace") for path in tmp_path.glob("w-*.log"))
    refusals = len(re.findall(r"Kafka did not take \d+ alerts", logs))
    assert refusals >= 1, "no alert was refused: the produce fault did not hit"
    # An event.id that came more than once came with the same content.
    contents: dict[str, set[bytes]] = defaultdict(set)
    delays = []
    first: dict[str, float] = {}
    for alert, sent in arrived():
        contents[alert.event.id].add(msgspec.json.encode(alert.migwatch))
        first.setdefault(alert.event.id, sent)
    assert all(len(found) == 1 for found in contents.values()), "an event.id with two contents"
    for alert, sent in arrived():
        if first[alert.event.id] == sent:
            delays.append(sent - alert.migwatch.detected_ts)
    print(f"chaos (seed {seed}): {killed} SIGKILLs (one restart with an empty data directory), alerts refused "
          f"{UNWRITABLE_S[1] - UNWRITABLE_S[0]:.0f} s ({refusals} refusals logged): {len(expected)} of "
          f"{len(expected)} expected alerts on the topic ({len(arrived())} messages, {len(contents)} event ids), "
          f"{len(poisoned)} of {len(poisoned)} poison messages dead-lettered; alert on the topic after its "
          f"event time: median {statistics.median(delays):.1f} s, max {max(delays):.1f} s")  # fmt: skip
