"""The Kafka topics of CONTRACT section 1: their names for a prefix and their cleanup policies.

    >>> TopicNames("test.").ping, TopicNames().all()["migwatch.targets"]
    ('test.ping', 'compact')

:mod:`migwatch.kafka_io.topic_admin` creates and checks them on a broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# name -> cleanup.policy. `targets` is compacted: the latest Target per id, null removes it; so are
# `silences` (maintenance windows by id), `hosts` (what each watched hypervisor showed, between workers) and
# `status` (each target's TargetStatus by id: the fleet page of every worker shows the whole fleet, issue #22).
TOPICS: dict[str, Literal["compact", "delete"]] = {
    "targets": "compact",
    "silences": "compact",
    "hosts": "compact",
    "status": "compact",
    "ping": "delete",
    "ntp": "delete",
    "alerts": "delete",
    "feedback": "delete",
    "deadletter": "delete",
}


@dataclass(frozen=True)
class TopicNames:
    """The full topic names for one prefix (CONTRACT: configurable, default ``migwatch.``)."""

    prefix: str = "migwatch."

    def __getattr__(self, name: str) -> str:
        if name in TOPICS:
            return self.prefix + name
        raise AttributeError(name)

    def all(self) -> dict[str, str]:
        """Full topic name -> cleanup policy."""
        return {self.prefix + name: policy for name, policy in TOPICS.items()}
