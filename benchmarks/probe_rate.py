"""Probe worker throughput against fping, on loopback only (issue #3's benchmark).

    python benchmarks/probe_rate.py [--targets 10000] [--seconds 60]

Needs the local Kafka (deploy/local/kafka start) and fping (Debian package, installed by deploy/setup).
1. --targets distinct loopback addresses (127.5.x.y) pinged at 1 Hz for --seconds by one probe process
   publishing to Kafka: samples/s acknowledged, scheduler lateness p50/p99, CPU and peak RSS.
2. On the same address list, in the same run: fping's rate (``fping -c1 -q -i 0``) against the ping
   engine's burst rate, and the median RTT fping and migwatch report (migwatch's taken under the 1 Hz load).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import ntp_responders
from kafka import KafkaAdminClient

from migwatch.contract.config import KafkaSettings, ProbeSettings
from migwatch.contract.records import PingSample, Target
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch.probes.icmp import Echo, IcmpProber
from migwatch.probes.ntp import NtpProber
from migwatch.probes.publisher_process import PublisherProcess, flush_regularly
from migwatch.probes.scheduler import Scheduler


def _addresses(count: int) -> list[str]:
    return [f"127.5.{i // 250}.{i % 250 + 1}" for i in range(count)]


def _fping(addresses: list[str], folder: Path) -> tuple[float, float]:
    listing = folder / "targets.txt"
    listing.write_text("\n".join(addresses) + "\n")
    started = time.perf_counter()
    result = subprocess.run(["fping", "-C", "1", "-q", "-i", "0", "-t", "2000", "-f", str(listing)],
                            capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    elapsed = time.perf_counter() - started
    rtts = [float(value) for value in re.findall(r"^\S+\s*:\s*([\d.]+)$", result.stderr, re.MULTILINE)]
    return len(addresses) / elapsed, statistics.median(rtts) if rtts else float("nan")


async def _burst(addresses: list[str]) -> float:
    """Echo requests/s of the engine sending to every address at once, through the callback API the
    scheduler uses (as fping does, one request after the other, every reply awaited)."""
    prober = IcmpProber()
    echoes: list[Echo] = []
    finished = asyncio.get_running_loop().create_future()

    def done(echo: Echo) -> None:
        echoes.append(echo)
        if len(echoes) == len(addresses):
            finished.set_result(None)

    try:
        started = time.perf_counter()
        for address in addresses:
            prober.send(address, 2.0, done)
        await finished
        elapsed = time.perf_counter() - started
    finally:
        prober.close()
    assert sum(echo.rtt_ms is not None for echo in echoes) == len(addresses)
    return len(addresses) / elapsed


async def _ntp_burst(addresses: list[str], port: int) -> tuple[float, int]:
    """Queries/s of one NtpProber asking every address at once, and how many answered."""
    prober = NtpProber(port=port)
    try:
        started = time.perf_counter()
        readings = await asyncio.gather(*(prober.query(address, 5.0) for address in addresses))
        elapsed = time.perf_counter() - started
    finally:
        prober.close()
    return len(addresses) / elapsed, sum(reading.error is None for reading in readings)


def _ntp_rate(count: int) -> tuple[float, int]:
    """Start NTP responders on ``count`` loopback addresses in another process, then query them all."""
    addresses = [f"127.6.{i // 250}.{i % 250 + 1}" for i in range(count)]
    port = 20123
    context = multiprocessing.get_context("spawn")
    responders = context.Process(target=ntp_responders.serve, args=(addresses, port, 120.0), daemon=True)
    responders.start()
    time.sleep(3.0)  # let it bind its sockets
    try:
        return asyncio.run(_ntp_burst(addresses, port))
    finally:
        responders.kill()


async def _sustained(addresses: list[str], seconds: float, kafka: KafkaSettings, folder: Path) -> dict[str, float]:
    publisher = PublisherProcess(kafka, folder / "spill")  # as `migwatch probe` runs it
    rtts: list[float] = []

    def sink(sample: PingSample) -> None:  # type: ignore[override]
        publisher.publish(sample)
        if sample.rtt_ms is not None:
            rtts.append(sample.rtt_ms)

    scheduler = Scheduler(ProbeSettings(name="bench"), sink)  # type: ignore[arg-type]
    flusher = asyncio.create_task(flush_regularly(publisher))
    scheduler.set_targets(Target(id=f"b-{i}", address=a, ntp=False) for i, a in enumerate(addresses))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    await scheduler.run(seconds)
    flusher.cancel()
    scheduler.close()
    await asyncio.to_thread(publisher.close, 60.0)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the publisher process, ended by close()
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    child_cpu = (after_children.ru_utime - children.ru_utime) + (after_children.ru_stime - children.ru_stime)
    lateness = scheduler.lateness_quantiles()
    return {
        "sent_per_s": publisher.sent / seconds, "dropped": publisher.dropped, "elapsed": elapsed,
        "lateness_p50_ms": lateness["p50"], "lateness_p99_ms": lateness["p99"], "skipped": scheduler.skipped,
        "cpu_share": cpu / elapsed, "child_cpu_share": child_cpu / elapsed, "rss_mb": after.ru_maxrss / 1024,
        "child_rss_mb": after_children.ru_maxrss / 1024, "median_rtt_ms": statistics.median(rtts),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args()
    if shutil.which("fping") is None:
        raise SystemExit("fping is not installed (apt-get install fping, or deploy/setup)")
    addresses = _addresses(args.targets)
    prefix = f"bench-{uuid.uuid4().hex[:6]}."
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    ensure_topics(admin, prefix, 8)
    try:
        with tempfile.TemporaryDirectory() as folder:
            fping_rate, fping_rtt = _fping(addresses, Path(folder))
            burst_rate = asyncio.run(_burst(addresses))
            ntp_rate, ntp_answered = _ntp_rate(min(args.targets, 5000))
            kafka = KafkaSettings(bootstrap=args.bootstrap, topic_prefix=prefix)
            run = asyncio.run(_sustained(addresses, args.seconds, kafka, Path(folder)))
    finally:
        admin.delete_topics([name for name in admin.list_topics() if name.startswith(prefix)])
        admin.close()
    print(f"{args.targets:,} loopback targets at 1 Hz for {args.seconds:.0f} s, one probe process -> Kafka")
    print(f"  samples acknowledged  {run['sent_per_s']:10,.0f} /s   (target >= {0.99 * args.targets:,.0f}/s), "
          f"dropped {run['dropped']:.0f}, skipped {run['skipped']:.0f}")  # fmt: skip
    print(f"  scheduler lateness    p50 {run['lateness_p50_ms']:.1f} ms, p99 {run['lateness_p99_ms']:.1f} ms "
          "(target p99 < 100 ms)")  # fmt: skip
    print(f"  CPU: probes {100 * run['cpu_share']:.0f} % of a core, publisher process "
          f"{100 * run['child_cpu_share']:.0f} %")  # fmt: skip
    print(f"  peak RSS: probes {run['rss_mb']:.0f} MB, publisher process {run['child_rss_mb']:.0f} MB")
    print(f"ping engine burst rate  {burst_rate:10,.0f} /s   fping {fping_rate:,.0f} /s   "
          f"ratio {burst_rate / fping_rate:.2f} (target >= 0.5)")  # fmt: skip
    print(f"NTP queries             {ntp_rate:10,.0f} /s   ({ntp_answered:,} of {min(args.targets, 5000):,} answered; "
          "target >= 2,000/s)")  # fmt: skip
    difference = abs(run["median_rtt_ms"] - fping_rtt)
    print(f"median RTT              migwatch {run['median_rtt_ms']:.3f} ms (under the 1 Hz load)   fping "
          f"{fping_rtt:.3f} ms   difference {difference:.3f} ms (target <= 0.05)")  # fmt: skip


if __name__ == "__main__":
    main()
