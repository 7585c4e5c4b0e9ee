"""Shared fixtures. Tests that need Kafka talk to a real Apache Kafka broker: the one named by
``MIGWATCH_KAFKA_BOOTSTRAP``, else the local broker of ``deploy/local/kafka`` (reused when it runs, started
here and stopped afterwards when it does not)."""

from __future__ import annotations

import os
import random
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from kafka import KafkaAdminClient

from migwatch.contract.topics import TopicNames
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch_dev.local_kafka import DEFAULT_PORT, LocalKafka
from migwatch_dev.local_opensearch import DEFAULT_PORT as OPENSEARCH_PORT
from migwatch_dev.local_opensearch import LocalOpenSearch

TEST_PARTITIONS = 3

# The machine is shared: a slow example is no failure. Property tests are judged on what they find.
settings.register_profile("migwatch", deadline=None)
settings.load_profile("migwatch")


def free_port_pair() -> int:
    """A port p with p and p+1 free on 127.0.0.1 (the broker and its controller)."""
    return free_ports(2)


def free_ports(count: int) -> int:
    """A port p with p up to p+count-1 free on 127.0.0.1."""
    for _ in range(100):
        port = random.randrange(20_000, 30_000)
        if all(_bindable(p) for p in range(port, port + count)):
            return port
    raise RuntimeError(f"no {count} free ports in a row found")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def spare_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A second broker on free ports, its data under tmp_path, sharing the cached jars."""
    default = LocalKafka()
    broker = LocalKafka(port=free_port_pair(), root=tmp_path)
    # Reuse the jars fetched for the default broker instead of fetching them again.
    broker.libs.parent.mkdir(parents=True)
    broker.libs.symlink_to(default.libs)
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    named = os.environ.get("MIGWATCH_KAFKA_BOOTSTRAP")
    if named:
        yield named
        return
    broker = LocalKafka(port=int(os.environ.get("MIGWATCH_TEST_KAFKA_PORT", DEFAULT_PORT)))
    started = broker.pid() is None
    broker.start()
    yield broker.bootstrap
    if started:
        broker.stop()


@pytest.fixture(scope="session")
def opensearch() -> Iterator[LocalOpenSearch]:
    """The local OpenSearch node of ``deploy/local/opensearch`` (reused when it runs, else started here and
    stopped afterwards)."""
    node = LocalOpenSearch(port=int(os.environ.get("MIGWATCH_TEST_OPENSEARCH_PORT", OPENSEARCH_PORT)))
    started = node.pid() is None
    node.start()
    yield node
    if started:
        node.stop()


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="migwatch-tests")
    yield admin
    admin.close()


@pytest.fixture(scope="session")
def topics(kafka_admin: KafkaAdminClient) -> Iterator[TopicNames]:
    """The contract topics under a prefix of this test session's own, deleted afterwards."""
    names = TopicNames(prefix=f"test-{uuid.uuid4().hex[:8]}.")
    ensure_topics(kafka_admin, names.prefix, TEST_PARTITIONS)
    yield names
    kafka_admin.delete_topics(list(names.all()))
