"""Which partition a target's records go to: Kafka's default partitioner (murmur2 of the key), as every
producer of the contract topics computes it, hashed once per target (kafka-python's murmur2 is pure Python).

    >>> partitions = Partitioner(8)
    >>> partitions.of(b"web-01") == partitions.of(b"web-01") < 8
    True
"""

from __future__ import annotations

from kafka.partitioner.default import murmur2


class Partitioner:
    """Key -> partition for a topic of ``count`` partitions, remembered per key."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._chosen: dict[bytes, int] = {}

    def of(self, key: bytes) -> int:
        partition = self._chosen.get(key)
        if partition is None:
            partition = self._chosen[key] = (murmur2(key) & 0x7FFFFFFF) % self.count
        return partition
