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
from contextvars import Token
from typing import Any

from faust.streams import _current_event
from faust.types import EventT


class Acting:
    """Within the block, table writes go to the partition of the event last named by :meth:`switch` (a batch
    interleaves the samples of many partitions); on leaving it, the event before the block is restored."""

    def __init__(self) -> None:
        self._token: Token[Any] | None = None

    def __enter__(self) -> Acting:
        return self

    def switch(self, event: EventT) -> None:
        token = _current_event.set(weakref.ref(event))
        if self._token is None:  # the first token restores what was before the block
            self._token = token

    def __exit__(self, *_: object) -> None:
        if self._token is not None:
            _current_event.reset(self._token)
            self._token = None


@contextmanager
def acting_for(event: EventT) -> Iterator[None]:
    """Within the block, table writes go to ``event``'s partition."""
    with Acting() as acting:
        acting.switch(event)
        yield
