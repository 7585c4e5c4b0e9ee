"""Soak (issue #8): one `migwatch probe` and one `migwatch worker` for --minutes at --targets targets.

    python benchmarks/soak.py [--targets 10000] [--interval 1.0] [--minutes 30] [--every 60]

Needs the local Kafka (deploy/local/kafka start). The targets are loopback addresses (127.4.0.0/14), which
answer every ping, without NTP. Every --every seconds it prints both processes' RSS, the probe's samples
sent and lateness p99, and the worker's samples counted and total consumer lag; at the end the first,
middle and last rows again, and the lag's and RSS's growth between the middle and the end. Both processes
are stopped, and the soak's topics deleted, when it ends (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from migwatch.contract.config import KafkaSettings
from migwatch.contract.topics import TopicNames
from migwatch.kafka_io import clients
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch_dev.lab.processes import stop

PARTITIONS = 8


def page(port: int) -> str:
    with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())
    return ""


def total(text: str, name: str) -> float:
    return sum(float(value) for value in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def rss_mb(pid: int) -> float:
    """The process's resident memory and its children's (the probe publishes from a child process)."""
    pids = [pid] + [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    kilobytes = [int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{p}/status").read_text())[1]) for p in pids]  # type: ignore[index]
    return sum(kilobytes) / 1024


def lateness_p99_ms(text: str) -> float:
    buckets = [
        (float(b), float(c))
        for b, c in re.findall(r'migwatch_probe_lateness_seconds_bucket\{le="([^"]+)"\} (\S+)', text)
    ]
    count = max((c for _, c in buckets), default=0.0)
    return next((b * 1000 for b, c in sorted(buckets) if c >= 0.99 * count), float("nan")) if count else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=1.0, help="each target's ping interval, seconds")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between report rows")
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
    rows: list[tuple[float, ...]] = []
    with open(folder / "probe.log", "wb") as probe_log, open(folder / "worker.log", "wb") as worker_log:
        worker = subprocess.Popen([*command, "worker", "--config", str(config)], env=env, stdout=worker_log,
                                  stderr=subprocess.STDOUT)  # fmt: skip
        probe = subprocess.Popen([*command, "probe", "--config", str(config)], env=env, stdout=probe_log,
                                 stderr=subprocess.STDOUT)  # fmt: skip
        started = time.monotonic()
        print(f"soak: {args.targets} targets every {args.interval:g} s for {args.minutes:g} min; logs in {folder}")
        print(
            f"{'min':>5} {'probe MB':>9} {'worker MB':>9} {'sent':>10} {'counted':>10} {'lag':>9} {'late p99 ms':>11}"
        )
        try:
            while (elapsed := time.monotonic() - started) < args.minutes * 60:
                time.sleep(min(args.every, args.minutes * 60 - elapsed) or 0.1)
                if probe.poll() is not None or worker.poll() is not None:
                    print("soak: a process exited; see the logs", file=sys.stderr)
                    break
                probe_text, worker_text = page(probe_port), page(worker_port)
                row = ((time.monotonic() - started) / 60, rss_mb(probe.pid), rss_mb(worker.pid),
                       total(probe_text, "migwatch_probe_samples_sent_total"),
                       total(worker_text, "migwatch_worker_samples_total"),
                       total(worker_text, "migwatch_worker_consumer_lag"), lateness_p99_ms(probe_text))  # fmt: skip
                rows.append(row)
                print(f"{row[0]:5.1f} {row[1]:9.0f} {row[2]:9.0f} {row[3]:10.0f} {row[4]:10.0f} {row[5]:9.0f} "
                      f"{row[6]:11.1f}", flush=True)  # fmt: skip
        except KeyboardInterrupt:
            print("soak: interrupted; the rows so far:", file=sys.stderr)
        finally:
            stop(probe, 60)
            stop(worker, 60)
            admin.delete_topics([t for t in admin.list_topics() if t.startswith(names.prefix)])
            admin.close()
    if len(rows) >= 3:
        first, middle, last = rows[0], rows[len(rows) // 2], rows[-1]
        seconds = (last[0] - middle[0]) * 60
        print(f"RSS probe {first[1]:.0f} / {middle[1]:.0f} / {last[1]:.0f} MB, worker {first[2]:.0f} / "
              f"{middle[2]:.0f} / {last[2]:.0f} MB (start / middle / end); consumer lag {first[5]:.0f} / "
              f"{middle[5]:.0f} / {last[5]:.0f}; in the second half the worker counted "
              f"{(last[4] - middle[4]) / seconds:.0f} samples/s, "
              f"the probe sent {(last[3] - middle[3]) / seconds:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
