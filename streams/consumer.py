"""Faust's Kafka consumer with one mend: after a rebalance, a partition with no committed offset is read
again from its first message, as ``consumer_auto_offset_reset="earliest"`` promises.

Around a rebalance Faust drops records that a fetch already in flight brought back (its flow stopped, the
generation changed, or the partition was paused meanwhile) and relies on seeking every partition back to
its committed offset before the flow resumes. A partition nobody has committed yet is not sought at all,
so the consumer's position stays past the dropped records and they are never processed: a worker that
takes over a partition its previous owner had not committed (killed within ``broker_commit_interval`` of
its first batch, common on a loaded machine) skipped every sample already in it (``tests/test_streams.py``,
the takeover test; ``benchmarks/loaded_takeover.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger(__name__)


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer; its seek to the committed offsets also seeks the partitions never committed."""

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        # Offset 0 is skipped too: aiokafka's seek_to_committed only seeks to offsets above 0. Changelogs are
        # positioned by Faust's recovery, which reads them from its own offsets.
        never = [tp for tp, offset in committed.items() if not offset and not self._is_changelog_tp(tp)]
        if never:
            log.info("read from their first message (no committed offset): %s",
                     ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in never)))  # fmt: skip
            await self._thread.seek_to_beginning(*never)
        return committed


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
