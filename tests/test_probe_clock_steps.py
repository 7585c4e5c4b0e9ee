"""Issue #20: a step of the probe's own clock is no migration, and a lag counts without waiting for the fleet,
in replay and in the stream worker alike, whatever the partitioning."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import msgspec
import pytest
from kafka import KafkaAdminClient

from migwatch.contract.codec import decode
from migwatch.contract.records import Alert, ClockSample, Sample
from migwatch.contract.topics import TopicNames
from migwatch.detectors.target_group import TargetGroup
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch_dev.synthetic import START_TS, Episode, generate
from tests.processes import wait_for
from tests.stream_workers import StreamWorker, produce, read_all, worker_env
from tests.test_streams import PARTITIONS, partition_of

FLEET = ["vm-1", "vm-2", "vm-3", "vm-6", "vm-9", "vm-10"]  # over 3 of the 4 partitions
STEP_AT, STEP_MS = 900.0, 50.0


def watched_by_a_stepping_probe(samples: Sequence[Sample]) -> list[Sample]:
    """The samples as a probe that watches its clock sends them, its wall clock stepping +50 ms at 900 s:
    every offset from then on 50 ms lower, and each target's first query after it says so."""
    told: set[str] = set()
    out: list[Sample] = []
    for sample in samples:
        if not isinstance(sample, ClockSample):
            out.append(sample)
            continue
        after = sample.ts >= START_TS + STEP_AT
        step = STEP_MS if after and sample.target not in told else 0.0
        if after:
            told.add(sample.target)
        offset = None if sample.offset_ms is None else sample.offset_ms - (STEP_MS if after else 0.0)
        out.append(msgspec.structs.replace(sample, offset_ms=offset, probe_step_ms=step))
    return out


def _trace() -> tuple[list[Sample], float]:
    samples, labels = generate([Episode("migration", "vm-1", 300.0, copy_s=20.0, downtime_s=0.5)], FLEET, 1500.0,
                               ntp_interval_s=10.0)  # fmt: skip
    return watched_by_a_stepping_probe(samples), labels.migrations[0].end


def test_the_probes_own_step_raises_nothing_and_a_lag_counts_at_once_in_a_fleet() -> None:
    samples, end = _trace()
    group = TargetGroup()
    alerts = [alert for sample in samples for alert in group.update(sample)]
    states = [(a.migwatch.target, a.migwatch.state) for a in alerts]
    assert {target for target, _ in states} == {"vm-1"}  # the step of 900 s: nothing
    confirmed = next(a for a in alerts if a.migwatch.state == "confirmed")
    # The first lagged answer comes within one NTP interval (10 s) of the switch; no wait for the fleet
    # (before: common_wait_s, 30 s, with six NTP targets).
    assert 0 < confirmed.migwatch.detected_ts - end <= 10.0 + 0.1
    # The same samples from a probe that does not watch its clock: the fleet check waits, and rejects the step.
    legacy = [msgspec.structs.replace(s, probe_step_ms=msgspec.UNSET) if isinstance(s, ClockSample) else s
              for s in samples]  # fmt: skip
    fleet = TargetGroup()
    old = [a for sample in legacy for a in fleet.update(sample)]
    late = next(a for a in old if a.migwatch.state == "confirmed")
    assert late.migwatch.detected_ts - confirmed.migwatch.detected_ts >= 20.0
    assert {a.migwatch.target for a in old} == {"vm-1"}


@pytest.mark.kafka
def test_in_the_worker_the_step_raises_nothing_across_partitions_and_the_alerts_are_replays(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert len({partition_of(target) for target in FLEET}) >= 3  # the fleet spreads over the partitions
    samples, _ = _trace()
    shift = time.time() - 1510.0 - START_TS
    samples = [msgspec.structs.replace(s, ts=s.ts + shift) for s in samples]
    folder = tmp_path_factory.mktemp("steps")
    names = TopicNames(f"steps-{uuid.uuid4().hex[:6]}.")
    ensure_topics(kafka_admin, names.prefix, PARTITIONS)
    produce(kafka_bootstrap, names, samples)
    env = worker_env(kafka_bootstrap, names.prefix, PARTITIONS, folder, f"steps-{uuid.uuid4().hex[:6]}")
    # One batch, in ts order as a replay: a backlog read in smaller batches reaches the worker with the ping
    # and NTP topics at different event times (see the closing note of issue #20).
    worker = StreamWorker(env, "steps-1", folder, batch_size="100000", batch_within_s="10.0")
    try:
        wait_for(lambda: not worker.alive() or sum(worker.counted().values()) >= len(samples), 120, "all counted")
        assert worker.alive(), worker.log_tail()
        live = [decode(Alert, m.value) for m in read_all(kafka_bootstrap, names.alerts, PARTITIONS)]
    finally:
        worker.stop()
        kafka_admin.delete_topics([t for t in kafka_admin.list_topics() if t.startswith(names.prefix)])
    group = TargetGroup(observer="steps-1")
    replayed = [alert for sample in samples for alert in group.update(sample)]

    def brief(alerts: list[Alert]) -> list[tuple[str, str, float]]:
        return sorted((a.migwatch.target, a.migwatch.state, a.migwatch.detected_ts) for a in alerts)

    assert {a.migwatch.target for a in live} == {"vm-1"}
    assert brief(live) == brief(replayed)
