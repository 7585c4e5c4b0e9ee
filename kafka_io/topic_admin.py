"""The contract's topics on a broker: created up front and idempotently, their layout checked.

Every keyed topic gets the same partition count: ``ping`` and ``ntp`` are joined per target
(co-partitioned), and Faust refuses a source topic whose count differs from its tables' changelogs
(PartitionsMismatch), so a topic that exists with another count is an error, never silently used.
"""

from __future__ import annotations

import time

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from migwatch.contract.topics import TopicNames


class TopicLayoutError(RuntimeError):
    """A topic exists with a layout that the pipeline cannot use."""


def ensure_topics(
    admin: KafkaAdminClient, prefix: str, partitions: int, *, replication: int = 1, min_insync: int = 1
) -> dict[str, str]:
    """Create every contract topic that is missing (``replication`` copies, ``min_insync`` of them in sync
    for a write); check those that exist.

    Returns full name -> ``"created"`` or ``"exists"``. Raises TopicLayoutError when an existing topic
    has another partition count or cleanup policy than asked for.
    """
    wanted = TopicNames(prefix).all()
    result = create_missing(
        admin,
        [
            NewTopic(
                name,
                partitions,
                replication,
                topic_configs={"cleanup.policy": policy, "min.insync.replicas": str(min_insync)},
            )
            for name, policy in wanted.items()
        ],
    )
    existing = _partition_counts(admin, [name for name, how in result.items() if how == "exists"])
    problems = [
        f"{name} has {count} partitions, wanted {partitions}" for name, count in existing.items() if count != partitions
    ]
    policies = cleanup_policies(admin, list(existing))
    problems += [
        f"{name} has cleanup.policy={policies[name]}, wanted {wanted[name]}"
        for name in existing
        if policies.get(name) != wanted[name]
    ]
    if problems:
        raise TopicLayoutError(
            "; ".join(problems) + " (recreate the topics, or set kafka.partitions to match; changing the "
            "count of a live topic would move targets between partitions)"
        )
    return {name: result[name] for name in wanted}


def broker_count(admin: KafkaAdminClient) -> int:
    """How many brokers the cluster has now."""
    return len(admin.describe_cluster()["brokers"])


def create_missing(admin: KafkaAdminClient, topics: list[NewTopic]) -> dict[str, str]:
    """Create those of ``topics`` that do not exist, and wait until the broker describes each one it created.

    Returns name -> ``"created"`` or ``"exists"`` (also for one another process created meanwhile). The wait
    matters to Faust: its consumer takes partition counts from its first metadata, and a changelog missing
    there reads as 0 partitions (PartitionsMismatch on the first table write).
    """
    existing = _partition_counts(admin, [topic.name for topic in topics])
    missing = [topic for topic in topics if topic.name not in existing]
    result = {topic.name: "exists" for topic in topics if topic.name in existing}
    if missing:
        try:
            admin.create_topics(missing, timeout_ms=30_000)
            result |= {topic.name: "created" for topic in missing}
        except TopicAlreadyExistsError:
            # Another process created them between our look and our create, or a busy broker did not yet
            # describe topics created a moment ago: either way they are checked like the others.
            result |= {topic.name: "exists" for topic in missing}
        _partition_counts(admin, [topic.name for topic in missing], wait_s=30.0)
    return result


def _partition_counts(admin: KafkaAdminClient, names: list[str], *, wait_s: float = 0.0) -> dict[str, int]:
    """Topic -> partition count, for those of ``names`` the broker describes; with ``wait_s``, all of them
    (a topic the broker said exists may take a moment to be described)."""
    deadline = time.monotonic() + wait_s
    while True:
        counts = {
            description["name"]: len(description["partitions"])
            for description in admin.describe_topics(names)
            if description.get("error_code", 0) == 0
        }
        if not wait_s or len(counts) == len(names):
            return counts
        if time.monotonic() > deadline:
            unseen = sorted(set(names) - set(counts))
            raise TopicLayoutError(
                f"the broker says {', '.join(unseen)} exist but did not describe them in {wait_s:g} s"
            )
        time.sleep(0.2)


def cleanup_policies(admin: KafkaAdminClient, topics: list[str]) -> dict[str, str]:
    """Topic -> its effective ``cleanup.policy``, as the broker reports it."""
    if not topics:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, topic, ["cleanup.policy"]) for topic in topics]
    described = admin.describe_configs(resources, config_filter="all").get("topic", {})
    return {
        name: configs["cleanup.policy"]["value"] for name, configs in described.items() if "cleanup.policy" in configs
    }
