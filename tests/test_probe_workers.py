"""`migwatch probe` workers of one site share the targets of the compacted topic through the consumer
group: a second worker takes half, a killed worker's targets move to the survivor. Metrics are scraped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from migwatch.contract.codec import encode
from migwatch.contract.records import PingSample, Target
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch_dev.lab.processes import stop
from tests.conftest import free_port_pair
from tests.processes import wait_for
from tests.stream_workers import samples_in

pytestmark = pytest.mark.kafka
TARGETS = [Target(id=f"w-{i:02d}", address=f"127.4.0.{i + 1}", ping_interval_s=0.2, ntp=False, site="s1")
           for i in range(24)]  # fmt: skip
ELSEWHERE = Target(id="other-site", address="127.4.1.1", ping_interval_s=0.2, ntp=False, site="s2")


class PingLog:
    """Every ping sample on the topic as (target, probe, wall-clock time seen), collected in a thread."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.seen: list[tuple[str, str, float]] = []
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for messages in self._consumer.poll(timeout_ms=300).values():
                self.seen += [(ping.target, ping.probe, time.time()) for ping in samples_in(messages, PingSample)]

    def probes_of(self, since: float) -> dict[str, set[str]]:
        owners: dict[str, set[str]] = {}
        for target, probe, at in list(self.seen):
            if at >= since:
                owners.setdefault(target, set()).add(probe)
        return owners

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


@pytest.fixture
def site(kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path) -> Iterator[dict[str, str]]:
    prefix = f"workers-{uuid.uuid4().hex[:6]}."
    ensure_topics(kafka_admin, prefix, 4)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for target in [*TARGETS, ELSEWHERE]:
        producer.send(prefix + "targets", key=target.id.encode(), value=encode(target))
    producer.flush()
    producer.close()
    config = tmp_path / "probe.toml"
    config.write_text('[probe]\nsite = "s1"\ntargets_from = "topic"\nsession_timeout_s = 6.0\n')
    env = {
        **os.environ, "MIGWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap, "MIGWATCH_KAFKA_TOPIC_PREFIX": prefix,
        "MIGWATCH_PROBE_SPILL_DIR": str(tmp_path / "spill"), "MIGWATCH_PROBE_METRICS_PORT": "0",
        "CONFIG": str(config), "PREFIX": prefix,
    }  # fmt: skip
    yield env
    kafka_admin.delete_topics([name for name in kafka_admin.list_topics() if name.startswith(prefix)])


def _start(env: dict[str, str], name: str, tmp: Path, **extra: str) -> subprocess.Popen[bytes]:
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - owned by the process
    return subprocess.Popen(
        [sys.executable, "-m", "migwatch.cli", "probe", "--config", env["CONFIG"]],
        env={**env, "MIGWATCH_PROBE_NAME": name, **extra}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def test_two_workers_split_the_site_and_one_takes_over(
    kafka_bootstrap: str, site: dict[str, str], tmp_path: Path
) -> None:
    everyone = {t.id for t in TARGETS}
    pings = PingLog(kafka_bootstrap, site["PREFIX"] + "ping")
    metrics_port = free_port_pair()
    first = _start(site, "probe-a", tmp_path, MIGWATCH_PROBE_METRICS_PORT=str(metrics_port))
    second = None
    try:
        wait_for(lambda: set(pings.probes_of(0)) >= everyone, 60, "probe-a probes all targets")
        assert "other-site" not in pings.probes_of(0)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        assert "migwatch_probe_targets 24.0" in metrics and "migwatch_probe_samples_sent_total" in metrics
        assert 'migwatch_probe_lateness_seconds_bucket{le="+Inf"}' in metrics

        second = _start(site, "probe-b", tmp_path)

        def split() -> bool:
            owners = pings.probes_of(time.time() - 2)
            probes = {probe for who in owners.values() for probe in who}
            return (
                set(owners) >= everyone
                and probes == {"probe-a", "probe-b"}
                and all(len(who) == 1 for who in owners.values())
            )

        wait_for(split, 60, "the two workers split the targets, each target probed by one")
        second.send_signal(signal.SIGKILL)
        second.wait()
        killed = time.time()
        wait_for(
            lambda: (
                pings.probes_of(time.time() - 2).keys() >= everyone
                and all(who == {"probe-a"} for who in pings.probes_of(time.time() - 2).values())
            ),
            40,
            "probe-a takes over every target of the killed worker",
        )
        took = time.time() - killed
        print(f"takeover after SIGKILL: {took:.1f} s (session timeout 6 s)")
        assert took < 6.0 + 20, f"takeover took {took:.1f} s"
    finally:
        for process in (first, second):
            if process is not None:
                stop(process)
        pings.close()
    assert first.returncode == 0, (tmp_path / "probe-a.log").read_text()[-2000:]
