"""Alerts into OpenSearch through ``migwatch alerts ship``: how fast, and what a 30 s outage of the engine costs.

    python benchmarks/alert_shipping.py [--alerts 20000] [--outage-s 30]

Needs the local Kafka (``deploy/local/kafka start``) and OpenSearch (``deploy/local/opensearch start``).
1. --alerts alerts (a detector alert with its own event.id each) on a fresh alerts topic; in the same run
   ``migwatch alerts tail`` reads them all (Kafka and decoding alone: the baseline) and ``migwatch alerts ship``
   indexes them all; prints alerts/s of each and their ratio.
2. A shipper runs while OpenSearch is stopped for --outage-s seconds and alerts keep coming (a tenth of
   --alerts, half before, half during): prints how long after the engine was back every alert was indexed,
   and counts the documents (one per event.id: an alert indexed again overwrites itself).
All traffic is to 127.0.0.1; every loop is bounded.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import msgspec
from kafka import KafkaAdminClient, KafkaProducer

from migwatch.contract.fields import iso
from migwatch.contract.records import Alert, Evidence
from migwatch.contract.topics import TopicNames
from migwatch.detectors.fusion import make_alert
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch_dev.local_kafka import LocalKafka
from migwatch_dev.local_opensearch import LocalOpenSearch

PARTITIONS = 8


def alerts(count: int, start: int = 0) -> list[Alert]:
    """``count`` confirmed alerts of as many VMs, each with its own id."""
    made = []
    for i in range(start, start + count):
        alert = make_alert(
            "confirmed", 1_764_180_000.0 + i, (f"vm-{i:06d}", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "bench"),
            event_id=str(uuid.uuid4()), severity=4, likelihood=0.97, first_ts=1_764_179_990.0 + i,
            phase="switched", evidence=Evidence(time_lag_ms=-31.0, unanswered=2),
            action="vm-live-migration",
        )  # fmt: skip
        alert.event.created = iso(time.time())
        made.append(alert)
    return made


def index_name(topic: str) -> str:
    """The benchmark's own index (the template's pattern takes it), named after its topics."""
    return "migwatch-alerts-" + topic.partition(".")[0]


def publish(bootstrap: str, topic: str, batch: list[Alert]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    for alert in batch:
        producer.send(topic, key=alert.migwatch.target.encode(), value=msgspec.json.encode(alert))
    producer.flush()
    producer.close()


def migwatch(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "migwatch.cli", "alerts", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=1800, check=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--outage-s", type=float, default=30.0)
    args = parser.parse_args()
    broker, node = LocalKafka(), LocalOpenSearch()
    if not broker.ready() or not node.ready():
        sys.exit("start the local Kafka and OpenSearch first: deploy/local/kafka start; deploy/local/opensearch start")
    names = TopicNames(f"bench-ship-{uuid.uuid4().hex[:6]}.")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    ensure_topics(admin, names.prefix, PARTITIONS)
    index = index_name(names.alerts)
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "bench.toml"
        config.write_text(f'[kafka]\nbootstrap = "{broker.bootstrap}"\ntopic_prefix = "{names.prefix}"\n')
        try:
            publish(broker.bootstrap, names.alerts, alerts(args.alerts))
            started = time.perf_counter()
            migwatch(config, "tail", "--from-beginning", "--count", str(args.alerts))
            tail_s = time.perf_counter() - started
            started = time.perf_counter()
            shipped = migwatch(config, "ship", "--to", node.url, "--index", index, "--count", str(args.alerts))
            ship_s = time.perf_counter() - started
            assert node.count(index) == args.alerts, shipped.stderr
            print(f"{args.alerts:,} alerts: tail {args.alerts / tail_s:,.0f}/s ({tail_s:.1f} s), ship into OpenSearch "
                  f"{args.alerts / ship_s:,.0f}/s ({ship_s:.1f} s), ship/tail {tail_s / ship_s:.2f}x "
                  "(both include the process start and the group join)")  # fmt: skip
            _outage(broker.bootstrap, node, config, names.alerts, args)
        finally:
            admin.delete_topics([t for t in admin.list_topics() if t.startswith(names.prefix)])
            admin.close()
            urllib.request.urlopen(urllib.request.Request(f"{node.url}/{index}", method="DELETE"), timeout=30).close()


def _outage(bootstrap: str, node: LocalOpenSearch, config: Path, topic: str, args: argparse.Namespace) -> None:
    index = index_name(topic)
    more = max(2, args.alerts // 10)
    before, during = alerts(more // 2, args.alerts), alerts(more - more // 2, args.alerts + more // 2)
    expected = args.alerts + more
    with open(Path(config).parent / "ship.log", "wb") as log:
        shipper = subprocess.Popen(
            [sys.executable, "-m", "migwatch.cli", "alerts", "ship", "--config", str(config), "--to", node.url,
             "--index", index, "--count", str(more)], stderr=log,
        )  # fmt: skip
        try:
            publish(bootstrap, topic, before)
            deadline = time.monotonic() + 300
            while node.count(index) < args.alerts + len(before) and time.monotonic() < deadline:
                time.sleep(0.5)
            node.stop()
            stopped = time.monotonic()
            publish(bootstrap, topic, during)
            time.sleep(max(0.0, args.outage_s - (time.monotonic() - stopped)))
            node.start()
            back = time.monotonic()
            deadline = back + 600
            while node.count(index) < expected and time.monotonic() < deadline:
                time.sleep(0.5)
            caught_up = time.monotonic() - back
            shipper.wait(120)
        finally:
            if shipper.poll() is None:
                shipper.kill()
    indexed = node.count(index)
    retries = Path(config).parent.joinpath("ship.log").read_text().count("the search engine is unavailable")
    print(f"engine stopped for {args.outage_s:.0f} s while {len(during):,} alerts came: {indexed:,} of {expected:,} "
          f"indexed {caught_up:.1f} s after it was back (its own start included), {expected - indexed} lost; "
          f"{retries} retries logged")  # fmt: skip


if __name__ == "__main__":
    main()
