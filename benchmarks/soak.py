"""Soak and end to end (issues #8, #18): one `migwatch probe` and one `migwatch worker` for --minutes at
--targets targets.

    python benchmarks/soak.py [--targets 10000] [--interval 1.0] [--minutes 30] [--every 60] [--migrating 0.01]

Needs the local Kafka (deploy/local/kafka start). The targets are loopback addresses (127.4.0.0/14), which
answer every ping, without NTP. Loopback cannot be slowed down, so the migrations are played beside the
probe: --migrating x --targets more targets, sampled at 1 Hz through the probes' own publisher (batches
within its linger, ts = send time), each showing a live migration once (10 s of bulk copy with RTT 3-33 ms,
then 2 s unanswered), their starts spread over the run after a 60 s baseline.

Every --every seconds it prints both processes' RSS and CPU (the probe's with its publisher child), the
probe's samples sent and lateness p99, the worker's samples counted and its consumer lag in seconds of
samples (the lag's messages over the messages the probe sends per second). At the end: the first, middle
and last rows again, the growth between the middle and the end, what the worker took over what was sent,
the largest lag, and the alert latency of the played migrations (the alert's Kafka timestamp minus the
detected_ts of the sample that raised it: probe publish to alert in topic). Both processes are stopped,
and the soak's topics deleted, when it ends (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from kafka import KafkaConsumer

from migwatch.contract.codec import decode
from migwatch.contract.config import KafkaSettings
from migwatch.contract.records import Alert, PingSample
from migwatch.contract.topics import TopicNames
from migwatch.kafka_io import clients
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch.probes.publisher import Publisher
from migwatch_dev.lab.processes import stop

PARTITIONS = 8


def page(port: int) -> str:
    with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())
    return ""


def total(text: str, name: str) -> float:
    return sum(float(value) for value in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def family(pid: int) -> list[int]:
    """The process and its children (the probe publishes from a child process)."""
    return [pid] + [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def rss_mb(pid: int) -> float:
    kilobytes = [int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{p}/status").read_text())[1]) for p in family(pid)]  # type: ignore[index]
    return sum(kilobytes) / 1024


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process and its living children."""
    ticks = 0
    for member in family(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (the stat fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def lateness_p99_ms(text: str) -> float:
    buckets = [
        (float(b), float(c))
        for b, c in re.findall(r'migwatch_probe_lateness_seconds_bucket\{le="([^"]+)"\} (\S+)', text)
    ]
    count = max((c for _, c in buckets), default=0.0)
    return next((b * 1000 for b, c in sorted(buckets) if c >= 0.99 * count), float("nan")) if count else float("nan")


class MigrationPlayer(threading.Thread):
    """``count`` targets beside the probe's, sampled at 1 Hz through the probes' publisher; target i migrates
    once, at ``first`` + i x ``spread`` / count seconds: 10 s of bulk copy, then 2 s without answers."""

    COPY_S, PAUSE_S = 10.0, 2.0

    def __init__(self, settings: KafkaSettings, spill: Path, count: int, first: float, spread: float) -> None:
        super().__init__(daemon=True)
        self.count, self.first, self.spread = count, first, spread
        self.publisher = Publisher(settings, spill)
        self.halt = threading.Event()

    def run(self) -> None:
        started = time.time()
        seq = 0
        while not self.halt.wait(max(0.0, started + seq - time.time())):
            for i in range(self.count):
                into = time.time() - started - (self.first + i * self.spread / self.count)
                rtt: float | None = 0.4 + random.random() * 0.05
                if 0 <= into < self.COPY_S + self.PAUSE_S:
                    rtt = None if into >= self.COPY_S else 3.0 + random.random() * 30
                address = f"127.5.{i // 250}.{i % 250 + 1}"
                ping = PingSample(
                    target=f"m{i}", address=address, probe="soak-player", seq=seq, ts=time.time(), rtt_ms=rtt
                )
                self.publisher.publish(ping)
            seq += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(10)
        self.publisher.close()


def alert_latencies(bootstrap: str, topic: str) -> list[float]:
    """Seconds from the raising sample's detected_ts to each alert's Kafka timestamp, likely and confirmed."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000)
    try:
        alerts = [(m.timestamp / 1000, decode(Alert, m.value)) for m in consumer]
    finally:
        consumer.close()
    return sorted(at - a.migwatch.detected_ts for at, a in alerts if a.migwatch.state in ("likely", "confirmed"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=1.0, help="each target's ping interval, seconds")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between report rows")
    parser.add_argument("--migrating", type=float, default=0.01, help="played migrations, a share of --targets")
    args = parser.parse_args()
    names = TopicNames(f"soak-{uuid.uuid4().hex[:6]}.")
    settings = KafkaSettings(bootstrap=args.bootstrap, topic_prefix=names.prefix, partitions=PARTITIONS)
    admin = clients.admin(settings)
    ensure_topics(admin, names.prefix, PARTITIONS)
    folder = Path(tempfile.mkdtemp(prefix="migwatch-soak-"))
    probe_port, worker_port = 29108, 29066
    config = folder / "soak.toml"
    config.write_text(
        f'[probe]\nname = "soak"\nmetrics_port = {probe_port}\nspill_dir = "{folder / "spill"}"\n'
        f'[worker]\nname = "soak"\nweb_port = {worker_port}\napp_id = "{names.prefix}worker"\n'
        f'datadir = "{folder / "w"}"\n'
        + "".join(f'[[targets]]\nid = "t{i}"\naddress = "127.4.{i // 250}.{i % 250 + 1}"\n'
                  f"ping_interval_s = {args.interval}\nntp = false\n" for i in range(args.targets))
    )  # fmt: skip
    env = {**os.environ, "MIGWATCH_KAFKA_BOOTSTRAP": args.bootstrap, "MIGWATCH_KAFKA_TOPIC_PREFIX": names.prefix,
           "MIGWATCH_KAFKA_PARTITIONS": str(PARTITIONS)}  # fmt: skip
    command = [sys.executable, "-m", "migwatch.cli"]
    migrating = round(args.targets * args.migrating)
    player = MigrationPlayer(settings, folder / "player.spill", migrating, 60.0, max(0.0, args.minutes * 60 - 120))
    rows: list[tuple[float, ...]] = []
    latencies: list[float] = []
    with open(folder / "probe.log", "wb") as probe_log, open(folder / "worker.log", "wb") as worker_log:
        worker = subprocess.Popen([*command, "worker", "--config", str(config)], env=env, stdout=worker_log,
                                  stderr=subprocess.STDOUT)  # fmt: skip
        probe = subprocess.Popen([*command, "probe", "--config", str(config)], env=env, stdout=probe_log,
                                 stderr=subprocess.STDOUT)  # fmt: skip
        if migrating:
            player.start()
        started = time.monotonic()
        print(f"soak: {args.targets} targets every {args.interval:g} s for {args.minutes:g} min, {migrating} "
              f"migrations played; logs in {folder}")  # fmt: skip
        print(f"{'min':>5} {'probe MB':>9} {'worker MB':>9} {'probe cpu':>9} {'worker cpu':>10} {'sent':>10} "
              f"{'counted':>10} {'lag s':>7} {'late p99 ms':>11}")  # fmt: skip
        before = (0.0, 0.0, 0.0, 0.0)  # time, probe CPU, worker CPU, messages sent
        try:
            while (elapsed := time.monotonic() - started) < args.minutes * 60:
                time.sleep(min(args.every, args.minutes * 60 - elapsed) or 0.1)
                if probe.poll() is not None or worker.poll() is not None:
                    print("soak: a process exited; see the logs", file=sys.stderr)
                    break
                probe_text, worker_text = page(probe_port), page(worker_port)
                now, probe_cpu, worker_cpu = time.monotonic() - started, cpu_s(probe.pid), cpu_s(worker.pid)
                messages = total(probe_text, "migwatch_probe_messages_sent_total")
                per_second = (messages - before[3]) / (now - before[0])
                row = (now / 60, rss_mb(probe.pid), rss_mb(worker.pid),
                       (probe_cpu - before[1]) / (now - before[0]), (worker_cpu - before[2]) / (now - before[0]),
                       total(probe_text, "migwatch_probe_samples_sent_total") + player.publisher.sent,
                       total(worker_text, "migwatch_worker_samples_total"),
                       total(worker_text, "migwatch_worker_consumer_lag") / per_second if per_second else float("nan"),
                       lateness_p99_ms(probe_text))  # fmt: skip
                before = (now, probe_cpu, worker_cpu, messages)
                rows.append(row)
                print(f"{row[0]:5.1f} {row[1]:9.0f} {row[2]:9.0f} {row[3]:9.2f} {row[4]:10.2f} {row[5]:10.0f} "
                      f"{row[6]:10.0f} {row[7]:7.2f} {row[8]:11.1f}", flush=True)  # fmt: skip
        except KeyboardInterrupt:
            print("soak: interrupted; the rows so far:", file=sys.stderr)
        finally:
            if migrating:
                player.stop()
            stop(probe, 60)
            time.sleep(10)  # the worker drains what was sent
            latencies = alert_latencies(args.bootstrap, names.alerts)
            stop(worker, 60)
            admin.delete_topics([t for t in admin.list_topics() if t.startswith(names.prefix)])
            admin.close()
    if len(rows) >= 3:
        first, middle, last = rows[0], rows[len(rows) // 2], rows[-1]
        seconds = (last[0] - middle[0]) * 60
        print(
            f"RSS probe {first[1]:.0f} / {middle[1]:.0f} / {last[1]:.0f} MB, worker {first[2]:.0f} / "
            f"{middle[2]:.0f} / {last[2]:.0f} MB (start / middle / end); lag {first[7]:.2f} / {middle[7]:.2f} / "
            f"{last[7]:.2f} s; in the second half the worker counted {(last[6] - middle[6]) / seconds:.0f} "
            f"samples/s, the probe and player sent {(last[5] - middle[5]) / seconds:.0f}"
        )
        steady = rows[1:]  # the first row holds the start-up
        print(
            f"worker took {last[6] / last[5]:.3f}x of what was sent; largest lag {max(r[7] for r in steady):.2f} s;"
            f" CPU probe with publisher {statistics.mean(r[3] for r in steady):.2f} cores, worker "
            f"{statistics.mean(r[4] for r in steady):.2f} (means of the rows after the first)"
        )
    if migrating:
        found = f"{len(latencies)} alerts for {migrating} played migrations"
        if latencies:
            p99 = latencies[int(0.99 * (len(latencies) - 1))]
            found += f"; latency p50 {statistics.median(latencies):.3f} s, p99 {p99:.3f} s, max {latencies[-1]:.3f} s"
        print(found)


if __name__ == "__main__":
    main()
