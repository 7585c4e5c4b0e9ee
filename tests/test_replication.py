"""Issue #17, replication: on a three-broker local KRaft cluster a worker picks 3 copies and 2 in sync for every
topic it creates; one broker is SIGKILLed while a real `migwatch probe` (loopback targets) and the worker run
and a migration plays out in published samples: no sample and no alert is lost, and the worker carries on.

CI runs it with MIGWATCH_REPL_TARGETS loopback targets (default 100); the README's figures are of 2,000."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from migwatch.contract.codec import decode
from migwatch.contract.config import KafkaSettings
from migwatch.contract.fields import FieldError
from migwatch.contract.records import Alert, PingSample
from migwatch.contract.topics import TopicNames
from migwatch.probes.publisher import Publisher
from migwatch_dev.local_kafka import LocalKafkaCluster
from migwatch_dev.synthetic import START_TS, Episode, generate
from tests.conftest import free_ports
from tests.processes import wait_for
from tests.stream_workers import StreamWorker, probe_process, read_all, samples_in, worker_env
from tests.test_streams import PARTITIONS, expected_alerts

pytestmark = pytest.mark.kafka
TARGETS = int(os.environ.get("MIGWATCH_REPL_TARGETS", "100"))  # the long version: 2000
VMS = ["vm-a", "vm-b", "vm-c", "vm-d"]
DURATION_S, PACED_S, KILL_AFTER_S = 220.0, 100.0, 8.0
# In the paced part: the broker dies 8 s in, the copies begin at 20 s and 30 s, vm-a switches at 50 s.
EPISODES = [Episode("migration", "vm-a", 150.0, copy_s=20.0, downtime_s=0.8),
            Episode("bulk-transfer", "vm-b", 140.0, copy_s=30.0)]  # fmt: skip


def test_replication_is_picked_by_the_brokers_and_checked_against_them() -> None:
    assert KafkaSettings().replication_for(1).replication_factor == 1
    three = KafkaSettings().replication_for(5)
    assert (three.replication_factor, three.min_insync_replicas) == (3, 2)
    with pytest.raises(FieldError, match=r"kafka.replication_factor: 3 copies, but the cluster has 1 broker"):
        KafkaSettings(replication_factor=3).replication_for(1)
    with pytest.raises(FieldError, match=r"min_insync_replicas: must be between 1 and replication_factor \(2\)"):
        KafkaSettings(replication_factor=2, min_insync_replicas=3)


def led_by(admin: KafkaAdminClient, node: int, *topics: str) -> list[tuple[str, int]]:
    """The partitions of ``topics`` whose leader is ``node``."""
    return [(t["topic"], p["partition_index"]) for t in admin.describe_topics(list(topics)) for p in t["partitions"]
            if p["leader_id"] == node]  # fmt: skip


@pytest.fixture
def cluster() -> Iterator[LocalKafkaCluster]:
    """Three brokers of this test's own, one of which it kills."""
    nodes = LocalKafkaCluster(3, port=free_ports(6))
    nodes.start(fresh=True)
    yield nodes
    nodes.stop()


def test_a_broker_killed_in_a_three_broker_cluster_loses_no_sample_and_no_alert(
    cluster: LocalKafkaCluster, tmp_path: Path
) -> None:
    bootstrap = cluster.bootstrap
    names = TopicNames(f"repl-{uuid.uuid4().hex[:6]}.")
    env = worker_env(bootstrap, names.prefix, PARTITIONS, tmp_path, f"repl-{uuid.uuid4().hex[:6]}")
    config = tmp_path / "probe.toml"
    config.write_text('[probe]\nname = "repl-probe"\nmetrics_port = 0\n'
                      f'spill_dir = "{tmp_path / "spill"}"\n'
                      + "".join(f'[[targets]]\nid = "lo-{i}"\naddress = "127.1.{i // 250}.{i % 250 + 1}"\nntp = false\n'
                                for i in range(TARGETS)))  # fmt: skip
    samples, _ = generate(EPISODES, targets=VMS, duration_s=DURATION_S, ntp_interval_s=10.0)
    begun = time.time()
    # The trace's last PACED_S are ahead of the wall clock and published as their time comes, as a probe would.
    samples = [msgspec.structs.replace(s, ts=s.ts + begun + PACED_S - DURATION_S - START_TS) for s in samples]
    worker = StreamWorker(env, "repl-worker", tmp_path)  # creates the topics: 3 copies, 2 in sync
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        wait_for(lambda: b"ready:" in (worker.get("/readyz") or b""), 120,
                 lambda: f"the worker ready\n{worker.log_tail()}")  # fmt: skip
        group = env["MIGWATCH_WORKER_APP_ID"]
        topics = [names.alerts, names.ping, *(t for t in admin.list_topics() if t.startswith(f"{group}-"))]
        described = admin.describe_topics(topics)
        assert all(len(p["replica_nodes"]) == 3 for t in described for p in t["partitions"]), described
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, ["min.insync.replicas"]) for t in topics], config_filter="all"
        )
        insync = {name: c["min.insync.replicas"]["value"] for name, c in configs.get("topic", {}).items()}
        assert set(insync) == set(topics) and set(insync.values()) == {"2"}, insync
        publisher = Publisher(KafkaSettings(bootstrap=bootstrap, topic_prefix=names.prefix, partitions=PARTITIONS),
                              tmp_path / "synthetic.spill")  # fmt: skip
        victim, killed = cluster.nodes[1], None
        with probe_process(config, env, tmp_path / "probe.log"):
            position = 0
            while position < len(samples):
                while position < len(samples) and samples[position].ts <= time.time():
                    publisher.publish(samples[position])
                    position += 1
                if killed is None and time.time() - begun >= KILL_AFTER_S:
                    pid = victim.pid()
                    assert pid is not None
                    os.kill(pid, signal.SIGKILL)
                    killed, before = time.monotonic(), sum(worker.counted().values())
                time.sleep(0.05)
            assert killed is not None
            wait_for(lambda: sum(worker.counted().values()) > before + TARGETS * 10, 120,
                     lambda: f"the worker carrying on\n{worker.log_tail()}")  # fmt: skip
            leaders = led_by(admin, victim.node_id, names.ping, names.ntp, names.alerts)
            publisher.close(120)
            assert publisher.dropped == 0 and publisher.queued == 0
        want = {(a.migwatch.target, a.migwatch.state, a.migwatch.detected_ts) for a in expected_alerts(samples, "x")}

        def arrived() -> set[tuple[str, str, float]]:
            alerts = [decode(Alert, m.value) for m in read_all(bootstrap, names.alerts, PARTITIONS)]
            return {(a.migwatch.target, a.migwatch.state, a.migwatch.detected_ts) for a in alerts
                    if a.migwatch.target in VMS}  # fmt: skip

        wait_for(lambda: arrived() >= want, 120,
                 lambda: f"the alerts, missing {sorted(want - arrived())}, arrived {sorted(arrived())}")  # fmt: skip
        assert worker.alive(), worker.log_tail()
    finally:
        worker.stop()
        admin.close()
    seqs: dict[str, list[int]] = defaultdict(list)
    for sample in samples_in(read_all(bootstrap, names.ping, PARTITIONS), PingSample):
        if sample.probe == "repl-probe":
            seqs[sample.target].append(sample.seq)
    final = re.search(r"probe repl-probe: (\d+) samples sent, (\d+) dropped, (\d+) left",
                      (tmp_path / "probe.log").read_text())  # fmt: skip
    assert final is not None and final.group(2, 3) == ("0", "0"), (tmp_path / "probe.log").read_text()[-2000:]
    assert len(seqs) == TARGETS
    assert all(sorted(s) == list(range(len(s))) for s in seqs.values()), "a gap or a repeat in a target's seq"
    assert sum(map(len, seqs.values())) == int(final.group(1))
    assert not leaders, f"partitions still led by the killed broker: {leaders}"
    print(f"three brokers, one SIGKILLed: {int(final.group(1))} probe samples of {TARGETS} targets all in Kafka, "
          f"{len(want)} of {len(want)} alerts on the topic at their event times")  # fmt: skip
