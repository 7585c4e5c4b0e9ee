"""Acting for a Kafka message when a table is written outside Faust's per-event iteration.

Faust tables take the partition of a write (its changelog partition, its RocksDB column) from the event
being processed. A batched agent (``stream.take_events``) has no such event in its own task, and a batch
mixes partitions, so the worker names the event whose partition a write belongs to. Faust has no public
setter for this; ``faust.streams._current_event`` is the context variable its own stream iteration sets.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from faust.streams import _current_event
from faust.types import EventT


@contextmanager
def acting_for(event: EventT) -> Iterator[None]:
    """Within the block, table writes go to ``event``'s partition."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
