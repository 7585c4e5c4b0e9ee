"""Replay = worker: a lab corpus trace published into Kafka with `migwatch publish` (in batches, and one
sample per message) and run by a real `migwatch worker` gives the likely and confirmed alerts that
`migwatch replay` of the same trace gives, at the same event times: the capped run (a VM and its two
hypervisors over three partitions) and the fleet run (three VMs of one partition of eight, moves and
look-alikes among them; issue #20). The worker reads the ping and NTP topics
at different speeds (the NTP topic holds a tenth of the messages): only its event-time alignment
(migwatch.streams.alignment) makes the orders agree."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from migwatch.contract import config as config_module
from migwatch.contract.codec import decode
from migwatch.contract.records import Alert, ClockSample, PingSample
from migwatch.contract.topics import TopicNames
from migwatch.detectors.target_group import Directory
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch.replay import replay
from tests.processes import wait_for
from tests.stream_workers import StreamWorker, read_all, samples_in, worker_env

pytestmark = pytest.mark.kafka
CORPUS = Path(__file__).resolve().parents[1] / "deploy" / "dev" / "corpus"


def brief(alerts: list[Alert]) -> list[tuple[str, str, float]]:
    return sorted((a.migwatch.target, a.migwatch.state, a.migwatch.detected_ts) for a in alerts
                  if a.migwatch.state in ("likely", "confirmed"))  # fmt: skip


@pytest.mark.parametrize(
    "case",  # run, its pinging, partitions, samples per message
    [("capped", "100ms", 3, 1000), ("capped", "100ms", 3, 1), ("fleet", "1000ms", 8, 1000)],
    ids=["capped in batches", "capped in single samples", "fleet in batches"],
)
def test_a_published_trace_gives_the_worker_the_alerts_of_its_replay(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path, case: tuple[str, str, int, int]
) -> None:
    run, pings, partitions, batch = case
    trace, config_path = CORPUS / run / f"trace-{pings}.jsonl.gz", CORPUS / run / f"config-{pings}.toml"
    names = TopicNames(f"publish-{uuid.uuid4().hex[:6]}.")
    ensure_topics(kafka_admin, names.prefix, partitions)
    env = worker_env(kafka_bootstrap, names.prefix, partitions, tmp_path, f"publish-{uuid.uuid4().hex[:6]}")
    env["CONFIG"] = str(config_path)  # the lab's targets: the VM and the hypervisors it may run on
    published = subprocess.run(
        [sys.executable, "-m", "migwatch.cli", "publish", "--trace", str(trace), "--config", str(config_path),
         "--batch", str(batch)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    pings, clocks = (read_all(kafka_bootstrap, topic, partitions) for topic in (names.ping, names.ntp))
    sent = len(samples_in(pings, PingSample)) + len(samples_in(clocks, ClockSample))
    assert f"publish: {sent:,} samples" in published.stderr  # the summary names what Kafka holds
    messages = len(pings) + len(clocks)
    assert messages < sent / 10 if batch > 1 else messages == sent

    # Many small takes: the topics drift apart. The corpus keeps its recorded ts and ages by the day: a worker
    # takes the samples of a backfill this old only when told (max_sample_age_s, at most 10 years).
    worker = StreamWorker(env, "publish-1", tmp_path, batch_size="50", max_sample_age_s=str(10 * 365 * 86_400))
    try:
        wait_for(lambda: not worker.alive() or sum(worker.counted().values()) >= sent, 180,
                 lambda: f"every sample counted: {worker.counted()} of {sent}\n{worker.log_tail()}")  # fmt: skip
        assert worker.alive(), worker.log_tail()
        config = config_module.load(config_path)
        expected = list(replay(trace, config.detectors, "publish-1", quiet=True,
                               directory=Directory.of(config.targets, config.silences)))  # fmt: skip
        assert "confirmed" in {a.migwatch.state for a in expected}

        def live() -> list[Alert]:
            return [decode(Alert, m.value) for m in read_all(kafka_bootstrap, names.alerts, partitions)]

        wait_for(lambda: brief(live()) == brief(expected), 30,
                 lambda: f"the replay's alerts\n{brief(live())}\n!=\n{brief(expected)}")  # fmt: skip
    finally:
        worker.stop()
        kafka_admin.delete_topics([t for t in kafka_admin.list_topics() if t.startswith(names.prefix)])
