"""``migwatch alerts tail``: the alerts topic as JSON Lines, for a SIEM shipper, a pipe or a person.

Each alert is printed exactly as it is on the topic (its bytes, one per line); a message that is not a
valid Alert is named on stderr and skipped, never printed as if it were one.
"""

from __future__ import annotations

import sys
import time
from typing import BinaryIO

from migwatch.contract.codec import decode
from migwatch.contract.config import KafkaSettings
from migwatch.contract.fields import FieldError
from migwatch.contract.records import Alert
from migwatch.contract.topics import TopicNames
from migwatch.kafka_io import clients


def tail(
    settings: KafkaSettings,
    out: BinaryIO,
    *,
    from_beginning: bool = False,
    count: int | None = None,
    idle_s: float | None = None,
) -> int:
    """Print alerts until ``count`` were printed or none came for ``idle_s`` (both: forever if None)."""
    topic = TopicNames(settings.topic_prefix).alerts
    consumer = clients.consumer(
        settings, topic, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )  # fmt: skip
    printed = 0
    last = time.monotonic()
    try:
        while count is None or printed < count:
            batches = consumer.poll(timeout_ms=500)
            if not batches and idle_s is not None and time.monotonic() - last > idle_s:
                break
            for message in (m for batch in batches.values() for m in batch):
                last = time.monotonic()
                try:
                    decode(Alert, message.value or b"")
                except FieldError as error:
                    where = f"{message.topic}[{message.partition}]@{message.offset}"
                    print(f"migwatch alerts: skipped {where}: {error}", file=sys.stderr)
                    continue
                out.write(message.value + b"\n")
                out.flush()
                printed += 1
                if count is not None and printed >= count:
                    break
    finally:
        consumer.close()
    return printed
