"""Shared fixtures. Tests that need Kafka talk to a real Apache Kafka broker: the one named by
``MIGWATCH_KAFKA_BOOTSTRAP``, else the local broker of ``deploy/local/kafka`` (reused when it runs, started
here and stopped afterwards when it does not)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaAdminClient

from migwatch.local_kafka import DEFAULT_PORT, LocalKafka
from migwatch.topics import TopicNames, ensure_topics

TEST_PARTITIONS = 3


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
