"""Faust's Kafka consumer with two mends.

After a rebalance, a partition with no committed offset is read again from its first message, as
``consumer_auto_offset_reset="earliest"`` promises.

Around a rebalance Faust drops records that a fetch already in flight brought back (its flow stopped, the
generation changed, or the partition was paused meanwhile) and relies on seeking every partition back to
its committed offset before the flow resumes. A partition nobody has committed yet is not sought at all,
so the consumer's position stays past the dropped records and they are never processed: a worker that
takes over a partition its previous owner had not committed (killed within ``broker_commit_interval`` of
its first batch, common on a loaded machine) skipped every sample already in it (``tests/test_streams.py``,
the takeover test; ``benchmarks/loaded_takeover.py``).

A fetch waits at most FETCH_MAX_WAIT_MS for data, not Faust's 1.5 s. aiokafka sends one fetch at a time to a
broker, for the partitions it holds no records of: while the worker works through a batch, those are the
quiet ones (an ``ntp`` partition between answers), and a fetch for them alone waits its whole wait for data
that does not come, while the busy partitions' next records wait behind it. In a live run at 10,000 samples/s
the samples were 0.8 s old (p50, up to 1.5 s) when they reached the worker; see README "Stream workers".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 100


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread; its consumer's fetches wait at most FETCH_MAX_WAIT_MS for data."""

    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes a fixed fetch_max_wait_ms=1500; the consumer hands this to its fetcher when it starts.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer: its fetches wait short; its seek to the committed offsets also seeks the
    partitions never committed."""

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

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
