"""`migwatch worker` processes for tests: started with their settings in the environment, watched through
their web server, read back through the topics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from migwatch.contract import batches
from migwatch.contract.codec import decode, encode
from migwatch.contract.records import ClockSample, PingSample, Sample
from migwatch.contract.topics import TopicNames
from migwatch_dev.lab.processes import stop
from tests.conftest import free_port_pair
from tests.processes import http_get

R = TypeVar("R", PingSample, ClockSample)


class StreamWorker:
    """One worker process with its own web port; state in memory, rebuilt from the changelogs."""

    def __init__(self, env: dict[str, str], name: str, folder: Path, **settings: str) -> None:
        self.name = name
        self.port = free_port_pair()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / f"{name}.log"
        worker_env = {
            **env, "MIGWATCH_WORKER_NAME": name, "MIGWATCH_WORKER_WEB_PORT": str(self.port),
            "MIGWATCH_WORKER_DATADIR": str(folder / name), "MIGWATCH_WORKER_STORE": "memory",
            "MIGWATCH_WORKER_SESSION_TIMEOUT_S": "6", "MIGWATCH_WORKER_REBALANCE_TIMEOUT_S": "20",
            **{f"MIGWATCH_WORKER_{key.upper()}": value for key, value in settings.items()},
        }  # fmt: skip
        self.env = worker_env
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop(); a restart appends
        self.process = subprocess.Popen(
            [sys.executable, "-m", "migwatch.cli", "worker", "--config", env["CONFIG"], "--loglevel", "info"],
            env=worker_env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def get(self, path: str) -> bytes | None:
        """The body of a page, or None while the web server is not up."""
        return http_get(self.url + path)

    def status(self) -> dict[str, dict[str, Any]]:
        """Target id -> its status, as /status reports it (empty while the worker is not up)."""
        body = self.get("/status")
        return {} if body is None else {t["target"]: t for t in json.loads(body)["targets"]}

    def partitions(self, topic: str) -> set[int]:
        """The partitions of ``topic`` this worker consumes, from its consumer-lag metric."""
        body = self.get("/metrics")
        if body is None:
            return set()
        marker = f'topic="{topic}"'
        return {
            int(line.split('partition="')[1].split('"')[0])
            for line in body.decode().splitlines()
            if line.startswith("migwatch_worker_consumer_lag{") and marker in line
        }

    def counted(self) -> dict[str, float]:
        """Samples the worker took, by topic (its Prometheus counter)."""
        metrics = (self.get("/metrics") or b"").decode()
        pattern = r'migwatch_worker_samples_total\{topic="([^"]+)"\} (\S+)'
        return {topic: float(value) for topic, value in re.findall(pattern, metrics)}

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        stop(self.process)
        self._log.close()


@contextmanager
def probe_process(config: Path, env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``migwatch probe --config config`` with the Kafka settings of ``env`` (a worker's), stopped on exit."""
    with open(log_path, "wb") as log:
        probe = subprocess.Popen(
            [sys.executable, "-m", "migwatch.cli", "probe", "--config", str(config)],
            env={**os.environ, **{k: v for k, v in env.items() if k.startswith("MIGWATCH_KAFKA")}},
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield probe
        finally:
            stop(probe, 60)


def worker_env(bootstrap: str, prefix: str, partitions: int, folder: Path, app_id: str) -> dict[str, str]:
    config = folder / "worker.toml"
    config.write_text("[kafka]\n")
    return {
        **os.environ, "CONFIG": str(config), "MIGWATCH_KAFKA_BOOTSTRAP": bootstrap,
        "MIGWATCH_KAFKA_TOPIC_PREFIX": prefix, "MIGWATCH_KAFKA_PARTITIONS": str(partitions),
        "MIGWATCH_WORKER_APP_ID": app_id,
    }  # fmt: skip


def produce(bootstrap: str, names: TopicNames, samples: Iterable[Sample]) -> None:
    """Each sample on its topic (ping or ntp), keyed by its target, all acknowledged before this returns."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    try:
        for sample in samples:
            topic = names.ping if isinstance(sample, PingSample) else names.ntp
            producer.send(topic, key=sample.target.encode(), value=encode(sample))
        producer.flush()
    finally:
        producer.close()


def samples_in(messages: Iterable[Any], kind: type[R]) -> list[R]:
    """The samples of sample-topic messages, batches unpacked, in the order they were consumed."""
    return [
        decode(kind, value)
        for message in messages
        for value in (batches.split_batch(message.value) if batches.is_batch(message.headers) else [message.value])
    ]


def read_all(bootstrap: str, topic: str, partitions: int) -> list[Any]:
    """Every message now on ``topic``, partition by partition."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        messages: list[Any] = []
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for batch in consumer.poll(timeout_ms=1000).values():
                messages += batch
        return messages
    finally:
        consumer.close()
