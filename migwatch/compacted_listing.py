"""``migwatch targets list`` and ``migwatch silences list``: what a compacted topic holds now, printed."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from migwatch.contract.codec import encode
from migwatch.kafka_io.compacted import CompactedTopic

R = TypeVar("R")


def show(topic: CompactedTopic[R], noun: str, order: Callable[[R], Any]) -> None:
    """The records in force as JSON lines in ``order`` on stdout; each bad record and the count on stderr."""
    table, problems = topic.read()
    for record in sorted(table.values(), key=order):
        print(encode(record).decode())
    for problem in problems:
        print(f"migwatch {noun}: skipped a bad record: {problem}", file=sys.stderr)
    print(f"{len(table)} {noun} in force", file=sys.stderr)
