"""The quickstart demo of the streaming pipeline: a stream worker, and a synthetic fleet's samples in Kafka.

Until the migration lab (issue #6) brings VMs on test hosts, the demo publishes a synthetic ten minutes of
six VMs that ends now: one of them live-migrates (raised RTT, unanswered pings, its clock behind
afterwards) and another receives a bulk copy (the paper's control: raised RTT only). A real
``migwatch worker`` joins the samples, raises the alerts and serves the fleet page; the demo prints each
alert as it arrives on the alerts topic, then keeps the worker up until Ctrl-C (``--hold`` seconds when
not on a terminal). Its topics live under their own prefix, removed at the end.

    python -m migwatch.demo [--bootstrap 127.0.0.1:9092] [--port 6066] [--hold 0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import msgspec
from kafka import KafkaConsumer

from migwatch import kafka_clients
from migwatch.config import KafkaSettings
from migwatch.records import Alert, PingSample, decode, encode, to_builtins
from migwatch.synthetic import START_TS, Episode, generate
from migwatch.topics import TopicNames, ensure_topics

VMS = ["web-01", "web-02", "db-01", "db-02", "cache-01", "mail-01"]
DURATION_S = 600.0


def _publish(settings: KafkaSettings, names: TopicNames) -> int:
    samples, _ = generate(
        [Episode("migration", "web-01", 420.0, copy_s=25.0, downtime_s=0.6),
         Episode("bulk-transfer", "db-01", 300.0, copy_s=40.0)],
        targets=VMS, duration_s=DURATION_S,
    )  # fmt: skip
    shift = time.time() - DURATION_S - START_TS  # the ten minutes end now
    producer = kafka_clients.producer(settings, linger_ms=20)
    for original in samples:
        sample = msgspec.structs.replace(original, ts=original.ts + shift)
        topic = names.ping if isinstance(sample, PingSample) else names.ntp
        producer.send(topic, key=sample.target.encode(), value=encode(sample))
    producer.flush()
    producer.close()
    return len(samples)


def _ready(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url + "/metrics", timeout=2) as response:
        return b"migwatch_worker_consumer_lag{" in response.read()
    return False


def run(bootstrap: str, port: int, hold_s: float) -> int:
    settings = KafkaSettings(bootstrap=bootstrap)
    names = TopicNames(f"demo-{uuid.uuid4().hex[:6]}.")
    admin = kafka_clients.admin(settings)
    ensure_topics(admin, names.prefix, 4)
    folder = Path(tempfile.mkdtemp(prefix="migwatch-demo-"))
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ, "MIGWATCH_KAFKA_BOOTSTRAP": bootstrap, "MIGWATCH_KAFKA_TOPIC_PREFIX": names.prefix,
        "MIGWATCH_KAFKA_PARTITIONS": "4", "MIGWATCH_WORKER_APP_ID": names.prefix + "worker",
        "MIGWATCH_WORKER_NAME": "demo-worker", "MIGWATCH_WORKER_DATADIR": str(folder / "worker"),
        "MIGWATCH_WORKER_WEB_PORT": str(port), "MIGWATCH_WORKER_STORE": "memory",
    }  # fmt: skip
    config = folder / "demo.toml"
    config.write_text("# everything from the environment\n")
    log = open(folder / "worker.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [sys.executable, "-m", "migwatch.cli", "worker", "--config", str(config)], env=env, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        print(f"== a stream worker starts (log: {folder / 'worker.log'}) ...", flush=True)
        deadline = time.monotonic() + 120
        while not _ready(url):
            if worker.poll() is not None or time.monotonic() > deadline:
                print((folder / "worker.log").read_text()[-3000:], file=sys.stderr)
                return 1
            time.sleep(0.5)
        count = _publish(settings, names)
        print(f"== {count} samples of {len(VMS)} VMs published to {names.ping} and {names.ntp}", flush=True)
        print("   web-01 live-migrates near the end; db-01 gets a bulk copy (a look-alike that must not alarm)")
        consumer = KafkaConsumer(names.alerts, bootstrap_servers=settings.servers, auto_offset_reset="earliest")
        confirmed = False
        deadline = time.monotonic() + 120
        while not confirmed and time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=1000).values():
                for message in messages:
                    alert = decode(Alert, message.value).migwatch
                    evidence = {
                        k: round(v, 3) if isinstance(v, float) else v
                        for k, v in to_builtins(alert.evidence).items()
                        if v is not None
                    }
                    print(f"== alert {alert.state:9} {alert.target:8} likelihood {alert.likelihood:.2f} "
                          f"phase {alert.phase}: {json.dumps(evidence)}", flush=True)  # fmt: skip
                    confirmed |= alert.state == "confirmed"
        consumer.close()
        if not confirmed:
            print("no confirmed alert within 120 s", file=sys.stderr)
            return 1
        print(f"\nThe fleet page: {url}/   (web-01's chart: {url}/#web-01)   JSON: {url}/status")
        if sys.stdin.isatty() or hold_s:
            print("The worker keeps running" + (f" for {hold_s:.0f} s" if hold_s else ": Ctrl-C ends the demo"))
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(hold_s or 10 * 365 * 86400)
        return 0
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(names.prefix)])
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="the migwatch streaming demo")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--port", type=int, default=6066, help="the worker's web port (on 127.0.0.1)")
    parser.add_argument("--hold", type=float, default=0.0, help="seconds to keep the worker up (0: until Ctrl-C)")
    args = parser.parse_args()
    sys.exit(run(args.bootstrap, args.port, args.hold))


if __name__ == "__main__":
    main()
