"""Stream worker throughput, alert latency, memory and state restore (issue #5's benchmark).

    python benchmarks/stream_worker.py [--samples 1000000] [--targets 10000] [--rate 10000]
                                       [--latency-s 60] [--restore-targets 10000,100000]

Needs the local Kafka (deploy/local/kafka start). In one run, on the same topic of --samples ping samples
for --targets targets (1 Hz each, event time in the past):
1. a raw kafka-python consumer reading the topic; 2. a bare Faust agent counting it one event at a time
(benchmarks/faust_count.py), and the same agent writing a table per message (on up to 100,000);
3. `migwatch worker` (RocksDB store) running the detectors on it: samples/s from its first to its last
sample, each as a ratio to the bare agent; then the same samples as the probes send them, in batches of
--batch per partition (issue #18), against the detectors alone on the same samples decoded in memory.
4. Alert latency: a fresh worker, samples published live through the probes' publisher (batches within its
100 ms linger) at --rate/s for --latency-s with ts = send time, to
--rate targets at 1 Hz (at most --targets); after 30 s, 1 % of them show a migration pattern; latency =
the alert's Kafka timestamp - the detected_ts of the sample that raised it (probe publish to alert in
topic). Worker RSS idle and with those targets.
5. --restore-targets targets' state written by one worker, which is then SIGKILLed: the time a new worker
takes to restore it from the changelogs (Faust's recovery, from its log).
6. The same state shared by two workers, one SIGKILLed: the time until the survivor has its partitions
(session timeout + rebalance + restore), without and with a standby replica.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from migwatch.contract import batches
from migwatch.contract.codec import decode, encode
from migwatch.contract.config import KafkaSettings
from migwatch.contract.records import Alert, PingSample
from migwatch.contract.topics import TopicNames
from migwatch.detectors.target_group import TargetGroup
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch.probes.publisher import Publisher

PARTITIONS = 8
HERE = Path(__file__).parent


def partition_of(key: bytes) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS


def record(target: int, seq: int, ts: float, rtt: float | None) -> PingSample:
    return PingSample(target=f"vm-{target:06d}", address=f"10.{target >> 16}.{(target >> 8) & 255}.{target & 255}",
                      probe="bench", seq=seq, ts=ts, rtt_ms=rtt)  # fmt: skip


def sample(target: int, seq: int, ts: float, rtt: float | None) -> tuple[bytes, bytes]:
    ping = record(target, seq, ts, rtt)
    return ping.target.encode(), encode(ping)


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    """Send pre-encoded messages fast: aiokafka batches built per partition (keyed as Kafka would)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type="lz4", linger_ms=50)
    await producer.start()
    try:
        batches = {p: producer.create_batch() for p in range(PARTITIONS)}
        pending = []
        for key, value in messages:
            partition = partition_of(key)
            if batches[partition].append(key=key, value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(batches[partition], topic, partition=partition))
                batches[partition] = producer.create_batch()
                batches[partition].append(key=key, value=value, timestamp=None)
        for partition, batch in batches.items():
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def produce_batches(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], size: int) -> int:
    """The same samples as the probes send them: per partition, ``size`` samples a message (a batch of
    migwatch.contract.batches, with its header); the number of messages."""
    by_partition: dict[int, list[bytes]] = {}
    for key, value in messages:
        by_partition.setdefault(partition_of(key), []).append(value)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type="lz4", linger_ms=50)
    await producer.start()
    try:
        pending = [
            await producer.send(topic, batches.encode_batch(values[first : first + size]), partition=partition,
                                headers=[(batches.HEADER, batches.ENCODING)])
            for partition, values in by_partition.items()
            for first in range(0, len(values), size)
        ]  # fmt: skip
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(pending)


def detectors_rate(messages: list[tuple[bytes, bytes]]) -> float:
    """The detectors alone on the same samples, decoded, in memory: one TargetGroup per partition, in order."""
    samples = [(partition_of(key), decode(PingSample, value)) for key, value in messages]
    groups: dict[int, TargetGroup] = {}
    started = time.perf_counter()
    for partition, record in samples:
        group = groups.get(partition)
        if group is None:
            group = groups[partition] = TargetGroup(observer="bench")
        group.update(record)
    return len(samples) / (time.perf_counter() - started)


def raw_consumer_rate(bootstrap: str, topic: str, count: int) -> float:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=10_000)
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    seen, started = 0, time.perf_counter()
    while seen < count and time.perf_counter() - started < 600:
        seen += sum(len(batch) for batch in consumer.poll(timeout_ms=1000).values())
    consumer.close()
    return seen / (time.perf_counter() - started)


def bare_faust_rate(bootstrap: str, topic: str, count: int, folder: Path, *, table_writes: bool = False) -> float:
    extra = ["--table-writes"] if table_writes else []
    result = subprocess.run(
        [sys.executable, str(HERE / "faust_count.py"), "--bootstrap", bootstrap, "--topic", topic,
         "--count", str(count), "--datadir", str(folder / "bare"), *extra, "worker", "--loglevel", "error"],
        capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    found = re.search(r"counted (\d+) in ([\d.]+) s", result.stdout)
    if found is None:
        raise RuntimeError(f"the bare Faust agent failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return int(found[1]) / float(found[2])


class Worker:
    def __init__(
        self, bootstrap: str, prefix: str, folder: Path, app_id: str, name: str, *, standby_replicas: int = 0
    ) -> None:
        self.port = random.randrange(30_000, 40_000)
        self.log = folder / f"{name}.log"
        env = {
            **os.environ, "MIGWATCH_KAFKA_BOOTSTRAP": bootstrap, "MIGWATCH_KAFKA_TOPIC_PREFIX": prefix,
            "MIGWATCH_KAFKA_PARTITIONS": str(PARTITIONS), "MIGWATCH_WORKER_APP_ID": app_id,
            "MIGWATCH_WORKER_NAME": name, "MIGWATCH_WORKER_DATADIR": str(folder / name),
            "MIGWATCH_WORKER_WEB_PORT": str(self.port), "MIGWATCH_WORKER_STANDBY_REPLICAS": str(standby_replicas),
        }  # fmt: skip
        config = folder / "empty.toml"
        config.write_text("")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "migwatch.cli", "worker", "--config", str(config), "--loglevel", "info"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def metric(self, name: str) -> float | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as response:
                text = response.read().decode()
        except OSError:
            return None
        values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
        return sum(values) if values else 0.0

    def wait_metric(self, name: str, at_least: float, timeout_s: float) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = self.metric(name)
            if value is not None and value >= at_least:
                return time.perf_counter()
            if self.process.poll() is not None:
                raise RuntimeError(f"worker died:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"{name} < {at_least} after {timeout_s} s:\n{self.log.read_text()[-3000:]}")

    def readies(self) -> int:
        """How often Faust logged the worker ready (partitions assigned, tables restored): once per rebalance."""
        return self.log.read_text(errors="replace").count("[^---Recovery]: Worker ready")

    def wait_ready(self, timeout_s: float, times: int = 1) -> None:
        deadline = time.monotonic() + timeout_s
        while self.readies() < times:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"worker not ready:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status)[1]) / 1024  # type: ignore[index]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def worker_rate(
    bootstrap: str, names: TopicNames, count: int, folder: Path, *, messages: int, name: str, workers: int = 1
) -> float:
    """Samples/s of ``workers`` workers of one group (each its own data folder) on ``count`` samples in
    ``messages`` messages: from the first take the group counted to the end of the take that held the last
    message (``migwatch_worker_batch_samples_sum``, observed after a take's alerts are published). A take
    may hold 100,000 samples: the samples counter alone moves in steps that large."""
    app_id = f"bench-{uuid.uuid4().hex[:6]}"
    group = [Worker(bootstrap, names.prefix, folder, app_id, f"{name}-{i}") for i in range(workers)]

    def reached(metric: str, at_least: float) -> float:
        deadline = time.monotonic() + 3600
        while sum(worker.metric(metric) or 0.0 for worker in group) < at_least:
            if time.monotonic() > deadline or any(worker.process.poll() is not None for worker in group):
                raise RuntimeError(f"{name}: {metric} < {at_least:,.0f}:\n{group[0].log.read_text()[-3000:]}")
            time.sleep(0.05)
        return time.perf_counter()

    try:
        first = reached("migwatch_worker_samples_total", 1)
        return count / (reached("migwatch_worker_batch_samples_sum", messages) - first)
    finally:
        for worker in group:
            worker.stop()


def latency(bootstrap: str, names: TopicNames, targets: int, rate: int, *, seconds: float, folder: Path) -> dict:
    worker = Worker(bootstrap, names.prefix, folder, f"bench-{uuid.uuid4().hex[:6]}", "latency")
    try:
        worker.wait_ready(120)
        time.sleep(3)
        idle_mb = worker.rss_mb()
        moving = set(range(0, targets, 100))  # 1 %
        started = time.time()

        # Through the probes' own publisher: batches per partition within its 100 ms linger, as a probe sends.
        publisher = Publisher(KafkaSettings(bootstrap=bootstrap, topic_prefix=names.prefix), folder / "live.spill")
        seq, tick = 0, 0.05  # send in 50 ms slices
        while (now := time.time()) - started < seconds:
            phase = now - started
            for i in range(int(rate * tick)):
                target = (seq * int(rate * tick) + i) % targets
                rtt: float | None = 0.4 + random.random() * 0.05
                if target in moving and 30 <= phase < 42:  # memory copy, then stop-and-copy
                    rtt = None if phase >= 40 else 3.0 + random.random() * 30
                publisher.publish(record(target, seq, time.time(), rtt))
            seq += 1
            time.sleep(max(0.0, started + seq * tick - time.time()))
        publisher.close()
        sent = time.time() - started
        deadline = time.monotonic() + 600
        alerts: list[float] = []
        while time.monotonic() < deadline:
            consumer = KafkaConsumer(names.alerts, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                     consumer_timeout_ms=3000)  # fmt: skip
            alerts = [m.timestamp / 1000 - decode(Alert, m.value).migwatch.detected_ts for m in consumer]
            consumer.close()
            lag = worker.metric("migwatch_worker_consumer_lag")
            if lag == 0 and len(alerts) >= len(moving):
                break
            time.sleep(2)
        rss_mb = worker.rss_mb()
        alerts.sort()
        return {
            "rate": rate, "sent_s": round(sent, 1), "alerts": len(alerts),
            "latency_p50_s": round(statistics.median(alerts), 3) if alerts else None,
            "latency_p99_s": round(alerts[int(0.99 * (len(alerts) - 1))], 3) if alerts else None,
            "rss_idle_mb": round(idle_mb, 1), "rss_mb": round(rss_mb, 1), "targets": targets,
        }  # fmt: skip
    finally:
        worker.stop()


def checkpointed_samples(targets: int) -> list[tuple[bytes, bytes]]:
    """Two samples per target, a checkpoint interval apart: the second one writes the target's row."""
    now = time.time()
    return [sample(t, seq, now - 60 + 31 * seq, 0.4) for seq in (0, 1) for t in range(targets)]


def restore(bootstrap: str, targets: int, folder: Path) -> dict:
    names = TopicNames(f"bench-restore-{uuid.uuid4().hex[:6]}.")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    ensure_topics(admin, names.prefix, PARTITIONS)
    app_id = f"bench-{uuid.uuid4().hex[:6]}"
    asyncio.run(produce(bootstrap, names.ping, checkpointed_samples(targets)))
    writer = Worker(bootstrap, names.prefix, folder, app_id, f"restore-writer-{app_id}")
    try:
        writer.wait_metric("migwatch_worker_samples_total", 2 * targets, 3600)
        rss = writer.rss_mb()
        time.sleep(5)  # the changelog writes flushed
    finally:
        writer.stop(signal.SIGKILL)
    reader = Worker(bootstrap, names.prefix, folder, app_id, f"restore-reader-{app_id}")
    try:
        reader.wait_ready(1800)
        log = reader.log.read_text()
    finally:
        reader.stop()
    took = _recovery_s(log)
    admin.delete_topics([t for t in admin.list_topics() if t.startswith(names.prefix) or t.startswith(app_id)])
    admin.close()
    return {
        "targets": targets, "restore_s": round(took, 1), "rows_in_changelog": _highwater(log, "detectors-changelog"),
        "writer_rss_mb": round(rss, 1),
    }  # fmt: skip


def _recovery_s(log: str) -> float:
    """Faust's last recovery in a worker's log: from the changelogs' highwaters to done (reading the
    changelogs, or nothing to read when a standby copy is current)."""

    def last(what: str) -> datetime:
        stamp = re.findall(rf"^(\d{{4}}-[\d\- :,]+) \w+ .*{what}", log, re.MULTILINE)[-1]  # the line's time
        return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")

    return (last("Recovery complete") - last("Highwater for active changelog partitions")).total_seconds()


def takeover(bootstrap: str, targets: int, standby_replicas: int, folder: Path) -> dict:
    """Two workers share ``targets`` targets' state; one is SIGKILLed: the time until the other has taken
    its partitions (session timeout, rebalance, restore from the changelogs or the standby copy)."""
    names = TopicNames(f"bench-takeover-{uuid.uuid4().hex[:6]}.")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    ensure_topics(admin, names.prefix, PARTITIONS)
    app_id = f"bench-{uuid.uuid4().hex[:6]}"
    workers = [
        Worker(bootstrap, names.prefix, folder, app_id, f"takeover-{n}-{app_id}", standby_replicas=standby_replicas)
        for n in ("victim", "survivor")
    ]
    victim, survivor = workers
    try:
        survivor.wait_ready(300)
        victim.wait_ready(300)
        asyncio.run(produce(bootstrap, names.ping, checkpointed_samples(targets)))
        deadline = time.monotonic() + 3600
        while sum(w.metric("migwatch_worker_samples_total") or 0.0 for w in workers) < 2 * targets:
            if time.monotonic() > deadline or any(w.process.poll() is not None for w in workers):
                raise RuntimeError(f"the workers did not take the samples:\n{victim.log.read_text()[-3000:]}")
            time.sleep(0.5)
        taken_by_victim = victim.metric("migwatch_worker_samples_total") or 0.0
        time.sleep(5)  # the changelog writes flushed (standby copies may still lag: the survivor's log says)
        readies = survivor.readies()
        victim.stop(signal.SIGKILL)
        killed = time.monotonic()
        survivor.wait_ready(1800, times=readies + 1)
        took = time.monotonic() - killed
        restore_s = _recovery_s(survivor.log.read_text(errors="replace"))
    finally:
        for worker in workers:
            worker.stop()
    admin.delete_topics([t for t in admin.list_topics() if t.startswith(names.prefix) or t.startswith(app_id)])
    admin.close()
    return {"targets": targets, "standby_replicas": standby_replicas, "victim_had_targets": int(taken_by_victim / 2),
            "takeover_s": round(took, 1), "survivor_restore_s": round(restore_s, 1)}  # fmt: skip


def _highwater(log: str, table: str) -> int:
    """The sum of a changelog's partition highwaters, from Faust's recovery table in the log."""
    total, inside = 0, False
    for line in log[: log.find("Restoring state from changelog topics")].splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[2].lstrip("-").isdigit():
            inside = table in cells[0] or (inside and cells[0] == "〃")
            if inside:
                total += int(cells[2]) + 1
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000, help="samples per batch message (default %(default)s)")
    parser.add_argument("--latency-s", type=float, default=60.0)
    parser.add_argument("--restore-targets", default="100000", help="comma-separated target counts")
    parser.add_argument(
        "--parts", default="throughput,latency,restore,takeover", help="which parts to run, comma-separated"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    folder = Path(tempfile.mkdtemp(prefix="migwatch-bench-"))
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    if "throughput" in parts:
        names = TopicNames(f"bench-{uuid.uuid4().hex[:6]}.")
        ensure_topics(admin, names.prefix, PARTITIONS)
        start = time.time() - args.samples / args.targets - 60
        messages = [
            sample(i % args.targets, i // args.targets, start + i / args.targets, 0.4 + (i % 7) * 0.01)
            for i in range(args.samples)
        ]
        began = time.perf_counter()
        asyncio.run(produce(args.bootstrap, names.ping, messages))
        print(f"produced {args.samples:,} samples for {args.targets:,} targets in {time.perf_counter() - began:.1f} s")
        raw = raw_consumer_rate(args.bootstrap, names.ping, args.samples)
        print(f"raw kafka-python consumer: {raw:,.0f} msg/s", flush=True)
        bare = bare_faust_rate(args.bootstrap, names.ping, args.samples, folder)
        print(f"bare Faust agent (one event at a time): {bare:,.0f} msg/s", flush=True)
        # Why the worker batches its table writes: one write per message, on the first 100,000.
        writing = bare_faust_rate(args.bootstrap, names.ping, min(args.samples, 100_000), folder, table_writes=True)
        print(f"bare agent writing a table per message: {writing:,.0f} msg/s = {writing / bare:.2f}x", flush=True)
        ours = worker_rate(args.bootstrap, names, args.samples, folder, messages=args.samples, name="throughput")
        print(
            f"migwatch worker: {ours:,.0f} samples/s = {ours / bare:.2f}x the bare agent, {ours / raw:.2f}x raw",
            flush=True,
        )
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(names.prefix)])
        batched = TopicNames(f"bench-{uuid.uuid4().hex[:6]}.")
        ensure_topics(admin, batched.prefix, PARTITIONS)
        sent = asyncio.run(produce_batches(args.bootstrap, batched.ping, messages, args.batch))
        alone = detectors_rate(messages)
        print(f"detectors alone (decoded samples in memory, a TargetGroup per partition): {alone:,.0f} samples/s")
        batched_rate = worker_rate(
            args.bootstrap, batched, args.samples, folder, messages=sent, name="throughput-batches"
        )
        print(
            f"migwatch worker on batches ({sent:,} messages of up to {args.batch} samples): {batched_rate:,.0f} "
            f"samples/s = {batched_rate / alone:.2f}x the detectors alone, {batched_rate / ours:.2f}x single samples, "
            f"{batched_rate / bare:.2f}x the bare agent's messages/s",
            flush=True,
        )
        pair = worker_rate(
            args.bootstrap, batched, args.samples, folder, messages=sent, name="throughput-pair", workers=2
        )
        print(f"two workers of one group on the same batches: {pair:,.0f} samples/s = {pair / batched_rate:.2f}x one")
        del messages
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(batched.prefix)])
    if "latency" in parts:
        live_names = TopicNames(f"bench-live-{uuid.uuid4().hex[:6]}.")
        ensure_topics(admin, live_names.prefix, PARTITIONS)
        live_targets = min(args.targets, args.rate)  # each pinged at 1 Hz, as a probe would
        result = latency(args.bootstrap, live_names, live_targets, args.rate, seconds=args.latency_s, folder=folder)
        print(f"live at {args.rate:,}/s: {json.dumps(result)}", flush=True)
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(live_names.prefix)])
    for targets in map(int, args.restore_targets.split(",")):
        if "restore" in parts:
            print(f"restore: {json.dumps(restore(args.bootstrap, targets, folder))}", flush=True)
        if "takeover" in parts:
            for standby in (0, 1):
                print(f"takeover: {json.dumps(takeover(args.bootstrap, targets, standby, folder))}", flush=True)
    admin.close()


if __name__ == "__main__":
    main()
