"""``migwatch publish``: a trace file into the sample topics, through the probes' own publisher (batches by
default, the same partitions, the same acknowledgements), for backfills, demos and tests.

The samples keep their recorded ``ts`` (event time): a worker that reads them raises the alerts
``migwatch replay`` of the trace raises. Paced at ``rate`` samples/s, or as fast as Kafka takes them (the
trace is read only as fast as the publisher's queue drains: a backfill never goes through the spill file).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from migwatch.contract.config import KafkaSettings
from migwatch.contract.topics import TopicNames
from migwatch.contract.trace import PingLine, encode_record, read_trace
from migwatch.kafka_io import clients
from migwatch.probes.publisher import Publisher
from migwatch.progress import Progress

# Samples handed to the publisher and not yet acknowledged, at most: reading waits beyond this.
QUEUE_LIMIT = 100_000


class PublishError(RuntimeError):
    """Not every sample was acknowledged; the message says how many."""


def publish(
    kafka: KafkaSettings,
    trace: str | os.PathLike[str],
    *,
    rate: float | None = None,
    batch_max_samples: int = 1000,
    linger_s: float = 0.1,
    quiet: bool = False,
) -> int:
    """Publish every sample of the trace in ``ts`` order; the number acknowledged by Kafka."""
    _check_topics(kafka)
    progress = None if quiet else Progress("publish")
    with tempfile.TemporaryDirectory(prefix="migwatch-publish-") as spill:
        publisher = Publisher(
            kafka, Path(spill) / "publish.spill", linger_s=linger_s, batch_max_samples=batch_max_samples
        )
        started, count = time.monotonic(), 0
        try:
            for line in read_trace(trace):
                topic = publisher.topics.ping if isinstance(line, PingLine) else publisher.topics.ntp
                publisher.publish_raw(topic, line.target.encode(), encode_record(line))
                count += 1
                if rate is not None and (ahead := started + count / rate - time.monotonic()) > 0:
                    time.sleep(ahead)
                while publisher.queued > QUEUE_LIMIT:
                    time.sleep(0.01)
                if progress is not None:
                    progress.add(1, f"{publisher.sent:,} acknowledged")
        finally:
            publisher.close(timeout_s=120)
    if progress is not None:
        progress.done(f"{publisher.sent:,} acknowledged in {publisher.messages:,} messages")
    if publisher.sent != count:
        raise PublishError(f"{count - publisher.sent} of {count} samples were not acknowledged by Kafka")
    return publisher.sent


def _check_topics(kafka: KafkaSettings) -> None:
    """PublishError naming the sample topics that do not exist (a broker that creates none on demand would
    leave every sample waiting)."""
    names = TopicNames(kafka.topic_prefix)
    admin = clients.admin(kafka)
    try:
        missing = sorted({names.ping, names.ntp} - set(admin.list_topics()))
    finally:
        admin.close()
    if missing:
        raise PublishError(f"the topics {', '.join(missing)} do not exist: a stream worker creates them at its "
                           f"start (or `deploy/local/kafka topics` on the local broker)")  # fmt: skip
