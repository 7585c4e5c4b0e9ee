"""How fast records are decoded (with validation) and encoded, against plain ``json`` in the same run.

    python benchmarks/record_codec.py [--count N]

Prints samples/s for each path and the ratio to the stdlib baseline; this machine is shared and noisy, so
only the ratios are worth comparing between runs.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from migwatch.contract.codec import decode, encode
from migwatch.contract.records import PingSample
from migwatch.contract.trace import TraceWriter, read_trace


def _rate(count: int, work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200_000)
    count = parser.parse_args().count
    samples = [
        PingSample(
            target=f"vm-{i % 10_000}", address=f"10.{i % 10_000 // 256}.{i % 256}.1", probe="p",
            seq=i // 10_000, ts=1764180000.0 + i / 10_000, rtt_ms=0.25 + (i % 7) / 100, ttl=64,
        )
        for i in range(count)
    ]  # fmt: skip
    raw = [encode(sample) for sample in samples]
    documents = [json.loads(item) for item in raw]

    loads = "json.loads (baseline for decoding)"
    dumps = "json.dumps (baseline for encoding)"
    rows = {
        loads: (_rate(count, lambda: [json.loads(item) for item in raw]), loads),
        "decode(PingSample) with validation": (_rate(count, lambda: [decode(PingSample, item) for item in raw]), loads),
        dumps: (_rate(count, lambda: [json.dumps(doc, separators=(",", ":")) for doc in documents]), dumps),
        "encode(record)": (_rate(count, lambda: [encode(sample) for sample in samples]), dumps),
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.jsonl.gz"
        with TraceWriter(path) as writer:
            writer.write_all(samples)
        rows["read_trace (.gz, in order: streams)"] = (_rate(count, lambda: sum(1 for _ in read_trace(path))), loads)
        shuffled = Path(folder) / "shuffled.jsonl.gz"
        with TraceWriter(shuffled) as writer:
            writer.write_all(random.Random(1).sample(samples, len(samples)))
        in_memory = _rate(count, lambda: sum(1 for _ in read_trace(shuffled)))
        rows["read_trace (.gz, shuffled: sorted in memory)"] = (in_memory, loads)
        spilled = _rate(count, lambda: sum(1 for _ in read_trace(shuffled, chunk=count // 4 + 1)))
        rows["read_trace (.gz, shuffled, 4 chunks: spilled runs)"] = (spilled, loads)
    for name, (rate, baseline) in rows.items():
        print(f"{name:52s} {rate:12,.0f} samples/s   {rate / rows[baseline][0]:5.2f}x {baseline.split()[0]}")


if __name__ == "__main__":
    main()
