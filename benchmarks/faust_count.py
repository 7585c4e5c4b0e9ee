"""The baseline of benchmarks/stream_worker.py: a bare Faust agent that only counts a topic, one event at a
time. Prints ``counted N in S s`` when it has seen --count messages, then exits. With --table-writes it also
writes each message to a table keyed by the message key (what a per-message state update costs in Faust).

    python benchmarks/faust_count.py --bootstrap H:P --topic T --count N --datadir D [--table-writes] worker
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

import faust

parser = argparse.ArgumentParser()
for name in ("--bootstrap", "--topic", "--count", "--datadir"):
    parser.add_argument(name, required=True)
parser.add_argument("--table-writes", action="store_true")
options, rest = parser.parse_known_args()
sys.argv = [sys.argv[0], *rest]

app = faust.App(
    f"bench-count-{uuid.uuid4().hex[:6]}", broker=f"kafka://{options.bootstrap}", store="memory://",
    datadir=options.datadir, web_enabled=False, broker_session_timeout=10, consumer_auto_offset_reset="earliest",
)  # fmt: skip
source = app.topic(options.topic, key_serializer="raw", value_serializer="raw")
state = app.Table("state", key_type=bytes, value_type=bytes)
wanted = int(options.count)


@app.agent(source)
async def count(stream: faust.StreamT[bytes]) -> None:
    seen, started = 0, 0.0
    async for key, value in stream.items():
        if options.table_writes:
            state[key] = value
        if seen == 0:
            started = time.perf_counter()
        seen += 1
        if seen >= wanted:
            # Straight to fd 1: Faust sends print() to its logger, which --loglevel error silences.
            os.write(1, f"counted {seen} in {time.perf_counter() - started:.3f} s\n".encode())
            os._exit(0)  # the figure is out; a Faust shutdown would only add noise


if __name__ == "__main__":
    app.main()
