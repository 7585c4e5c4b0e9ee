"""The quickstart demo: the whole pipeline watching a VM that is live-migrated while you look.

The demo sets up the migration lab (a QEMU guest between two hypervisor namespaces, or an emulated host
where QEMU is missing), starts a real ``migwatch probe`` and ``migwatch worker`` against the local Kafka,
waits until the worker has learned the VM's round-trip time and clock, then plays two episodes: a bulk
copy into the VM (the paper's look-alike: at most ``suspected``) and a live migration to the other
hypervisor (``confirmed`` by the VM's clock lag). Each alert is printed as it arrives on the alerts topic,
with the fleet page's address. The worker stays up until Ctrl-C on a terminal (``--hold S`` seconds
elsewhere); processes, namespaces and the demo's topics are removed at the end, also after Ctrl-C.

    python -m migwatch_dev.demo [--bootstrap 127.0.0.1:9092] [--port 6066] [--lab qemu|emulated] [--hold 0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from migwatch.contract.codec import decode, to_builtins
from migwatch.contract.config import KafkaSettings
from migwatch.contract.records import Alert
from migwatch.contract.topics import TopicNames
from migwatch.kafka_io import clients
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch_dev.lab.cli import open_lab
from migwatch_dev.lab.errors import LabError
from migwatch_dev.lab.processes import stop
from migwatch_dev.lab.targets import VM_ID, write_config

PARTITIONS = 4


class Demo:
    """The demo's clock, printer and alert reader."""

    def __init__(self, settings: KafkaSettings, names: TopicNames) -> None:
        self.began = time.monotonic()
        self.consumer = clients.consumer(settings, names.alerts, auto_offset_reset="earliest")
        self.alerts: list[tuple[float, Any]] = []  # (wall-clock time seen, AlertDetail)

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.began:5.1f} s] {text}", flush=True)

    def read_alerts(self, seconds: float) -> None:
        """Print the alerts that arrive within ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for messages in self.consumer.poll(timeout_ms=int(min(left, 0.5) * 1000) + 1).values():
                for message in messages:
                    alert = decode(Alert, message.value).migwatch
                    self.alerts.append((time.time(), alert))
                    evidence = {k: round(v, 3) if isinstance(v, float) else v
                                for k, v in to_builtins(alert.evidence).items() if v is not None}  # fmt: skip
                    self.say(f"alert {alert.state:9} {alert.target} likelihood {alert.likelihood:.2f} "
                             f"phase {alert.phase}: {json.dumps(evidence)}")  # fmt: skip

    def wait_for_state(self, state: str, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if any(alert.state == state and alert.target == VM_ID for _, alert in self.alerts):
                return True
            self.read_alerts(0.5)
        return False


def _status(url: str) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url + "/status", timeout=2) as response:
        return {t["target"]: t for t in json.loads(response.read())["targets"]}
    return {}


@contextlib.contextmanager
def _process(command: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            stop(process, 30)


def run(bootstrap: str, port: int, hold_s: float, lab_mode: str) -> int:
    settings = KafkaSettings(bootstrap=bootstrap)
    names = TopicNames(f"demo-{uuid.uuid4().hex[:6]}.")
    admin = clients.admin(settings)
    ensure_topics(admin, names.prefix, PARTITIONS)
    folder = Path(tempfile.mkdtemp(prefix="migwatch-demo-"))
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ, "MIGWATCH_KAFKA_BOOTSTRAP": bootstrap, "MIGWATCH_KAFKA_TOPIC_PREFIX": names.prefix,
        "MIGWATCH_KAFKA_PARTITIONS": str(PARTITIONS), "MIGWATCH_WORKER_APP_ID": names.prefix + "worker",
        "MIGWATCH_WORKER_NAME": "demo-worker", "MIGWATCH_WORKER_DATADIR": str(folder / "worker"),
        "MIGWATCH_WORKER_WEB_PORT": str(port), "MIGWATCH_WORKER_STORE": "memory",
        "MIGWATCH_PROBE_SPILL_DIR": str(folder / "spill"),
    }  # fmt: skip
    demo = Demo(settings, names)
    command = [sys.executable, "-m", "migwatch.cli"]
    try:
        (folder / "worker.toml").write_text("# everything from the environment\n")
        with contextlib.ExitStack() as stack:
            stack.enter_context(_process([*command, "worker", "--config", str(folder / "worker.toml")], env,
                                         folder / "worker.log"))  # fmt: skip
            demo.say(f"a stream worker starts (log {folder / 'worker.log'}); the {lab_mode} lab is set up ...")
            lab = stack.enter_context(open_lab(lab_mode, folder))
            demo.say("lab up: " + ", ".join(f"{name} {address}" for name, address in lab.addresses.items()))
            config = write_config(folder / "probe.toml", lab.addresses, ping_interval_s=0.2, ntp_interval_s=1.0,
                                  bootstrap=bootstrap, topic_prefix=names.prefix)  # fmt: skip
            stack.enter_context(_process([*command, "probe", "--config", str(config)], env, folder / "probe.log"))
            demo.say(f"a probe pings every 0.2 s and asks the VM's NTP server every 1 s (config {config})")
            deadline = time.monotonic() + 120
            while not ((vm := _status(url).get(VM_ID)) and vm["rtt_baseline_ms"] and vm["clock_offset_ms"] is not None):
                if time.monotonic() > deadline:
                    demo.say(f"the worker did not learn {VM_ID}'s baseline within 120 s; logs in {folder}")
                    return 1
                time.sleep(0.5)
            demo.say(f"{VM_ID}: RTT baseline {vm['rtt_baseline_ms']:.2f} ms, clock offset "
                     f"{vm['clock_offset_ms']:.1f} ms; {url}/#{VM_ID} charts it")  # fmt: skip
            demo.read_alerts(8)  # more quiet windows and NTP answers first
            demo.say("a bulk copy into the VM for 8 s (the paper's look-alike: raised RTT, no lost pings, no lag)")
            lab.bulk_transfer(8)
            demo.read_alerts(4)
            before = {alert.state for _, alert in demo.alerts}
            demo.say(f"after the bulk copy: {sorted(before) or 'no alert'} (never likely or confirmed)")
            demo.say(f"live-migrating {VM_ID} to the other hypervisor ...")
            migration = lab.migrate() if lab_mode == "qemu" else lab.migrate(copy_s=8)
            took = migration.end - migration.start
            demo.say(f"migrated {migration.source} -> {migration.destination} in {took:.1f} s, "
                     f"downtime {migration.downtime_ms:.0f} ms")  # fmt: skip
            if not demo.wait_for_state("confirmed", 60):
                demo.say(f"no confirmed alert within 60 s; logs in {folder}")
                return 1
            if before & {"likely", "confirmed"}:
                demo.say("the bulk copy was taken for a migration: see the alerts above")
                return 1
            print(f"\nThe fleet page: {url}/   ({VM_ID}'s chart: {url}/#{VM_ID})   JSON: {url}/status", flush=True)
            if sys.stdin.isatty() or hold_s:
                print("The pipeline keeps running" + (f" for {hold_s:.0f} s" if hold_s else ": Ctrl-C ends the demo"))
                with contextlib.suppress(KeyboardInterrupt):
                    demo.read_alerts(hold_s or 10 * 365 * 86400)
        return 0
    except LabError as error:
        print(f"migwatch demo: the lab failed: {error}", file=sys.stderr)
        return 1
    finally:
        demo.consumer.close()
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(names.prefix)])
        admin.close()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="the migwatch demo: a VM live-migrated under watch")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--port", type=int, default=6066, help="the worker's web port (on 127.0.0.1)")
    parser.add_argument("--hold", type=float, default=0.0, help="seconds to keep it up (0: until Ctrl-C)")
    qemu = shutil.which("qemu-system-x86_64") is not None
    parser.add_argument("--lab", choices=["qemu", "emulated"], default="qemu" if qemu else "emulated",
                        help="a real QEMU guest (the default where QEMU is installed) or an emulated host")  # fmt: skip
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up on SIGTERM as on Ctrl-C
    try:
        sys.exit(run(args.bootstrap, args.port, args.hold, args.lab))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
