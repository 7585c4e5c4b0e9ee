"""Which sample messages may have their offsets committed: those whose every effect is already durable.

Faust commits a message's offset once every stream that took it has acked it, and ``take_events`` acks a
batch as it ends, even one whose work failed. So the detect agent holds one more reference of each message
(``message.incref()``) and lets it go only when the message is done: each of its samples went through the
detectors (none is still held for alignment), the alerts and dead letters they raised were acknowledged by
Kafka, and the target and partition rows that hold what the samples did were written in a later checkpoint
and flushed. A crash at any instruction then leaves the changelog no further than the alerts topic, and
the committed offsets no further than the changelog: the next owner restores the rows, is given again the
samples after the committed offsets (a restored detector passes over those it holds already), and raises
again whatever alert it had not yet published, with the same ``event.id``.

    >>> uncommitted = Uncommitted()
    >>> first = uncommitted.take("ping", 0, "message@10", samples=2)
    >>> second = uncommitted.take("ping", 0, "message@11", samples=1)
    >>> first.ran("vm-1", 1); second.ran("vm-2", 1)   # two of three samples ran in round 1
    >>> written = {("vm-1", 1), ("vm-2", 1)}          # rows in the tables: (target, up to round)
    >>> def durable(partition, target, round_):
    ...     return any(t == target and r >= round_ for t, r in written)
    >>> uncommitted.done(durable)                     # the first still has a sample held back
    []
    >>> first.ran("vm-3", 2)
    >>> uncommitted.done(durable)                     # ... which ran, but its row is not written yet
    []
    >>> written.add(("vm-3", 2))
    >>> uncommitted.done(durable)                     # in offset order
    ['message@10', 'message@11']
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

M = TypeVar("M")

# (partition, target, round) -> whether the rows written hold what the target's samples of that round did.
Durable = Callable[[int, str, int], bool]


class Held(Generic[M]):
    """A message not yet committable: how many of its samples wait, and the round each target's ran in."""

    __slots__ = ("message", "partition", "rounds", "waiting")

    def __init__(self, message: M, partition: int, samples: int) -> None:
        self.message, self.partition, self.waiting = message, partition, samples
        self.rounds: dict[str, int] = {}

    def ran(self, target: str, round_: int) -> None:
        """One of its samples went through the detectors in the partition's ``round_`` of updates."""
        self.waiting -= 1
        self.rounds[target] = round_

    def dead(self) -> None:
        """One of its samples became a dead letter (the detectors failed on it): nothing of it to write."""
        self.waiting -= 1

    def durable(self, durable: Durable) -> bool:
        if self.waiting:
            return False
        # A target found durable is dropped, so that a message long at the front is not checked over again.
        for target, round_ in list(self.rounds.items()):
            if not durable(self.partition, target, round_):
                return False
            del self.rounds[target]
        return True


class Uncommitted(Generic[M]):
    """Per topic-partition, the messages taken and not yet let go, in offset order."""

    def __init__(self) -> None:
        self._queues: dict[tuple[str, int], deque[Held[M]]] = {}

    def take(self, topic: str, partition: int, message: M, samples: int) -> Held[M]:
        """A message with ``samples`` usable samples (its unusable ones are dead letters of the same batch)."""
        held = Held(message, partition, samples)
        self._queues.setdefault((topic, partition), deque()).append(held)
        return held

    def done(self, durable: Durable) -> list[M]:
        """The messages that may go now, each topic-partition's in offset order up to its first that may not."""
        ready = []
        for queue in self._queues.values():
            while queue and queue[0].durable(durable):
                ready.append(queue.popleft().message)
        return ready

    def forget(self, partition: int) -> None:
        """A partition went to another worker: its messages are its new owner's to take again."""
        for key in [key for key in self._queues if key[1] == partition]:
            del self._queues[key]
