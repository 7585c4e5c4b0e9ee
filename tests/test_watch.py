"""`migwatch watch`: the probes and the detectors in one process without Kafka, against a test host behind
the link emulator whose NTP server is a real chronyd. An emulated migration prints a confirmed alert as a
JSON line on stdout (and in --out); the fleet page's JSON and the metrics are served as by the worker; its own
logs are ECS JSON lines on stderr (``[logging] format = "ecs"``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from migwatch.contract.codec import decode
from migwatch.contract.records import Alert
from migwatch_dev.lab.chrony import chrony_server
from migwatch_dev.lab.emulated_lab import BASE_DELAY_MS, start_copy, switch
from migwatch_dev.lab.link_emulator import EmulatedLink, emulated_link
from migwatch_dev.lab.processes import stop
from tests.conftest import free_port_pair
from tests.processes import http_get, wait_for


@pytest.fixture
def host() -> Iterator[EmulatedLink]:
    with emulated_link(BASE_DELAY_MS, own_monitor=True) as made:
        yield made


def test_watch_prints_a_confirmed_migration(host: EmulatedLink, tmp_path: Path) -> None:
    port = free_port_pair()
    config = tmp_path / "watch.toml"
    config.write_text(
        f'[probe]\nping_timeout_s = 0.5\nmetrics_port = 0\n[worker]\nname = "watcher"\nweb_port = {port}\n'
        '[logging]\nformat = "ecs"\nlevel = "warning"\n'
        f'[[targets]]\nid = "vm-1"\naddress = "{host.host_ip}"\nping_interval_s = 0.2\nntp_interval_s = 1.0\n'
    )
    out = tmp_path / "alerts.jsonl"
    with chrony_server(host.host, host.host_ip, tmp_path / "chrony") as clock:
        stdout, stderr = open(tmp_path / "stdout", "wb"), open(tmp_path / "stderr", "wb")  # noqa: SIM115
        watch = subprocess.Popen(
            [sys.executable, "-m", "migwatch.cli", "watch", "--config", str(config), "--out", str(out)],
            stdout=stdout, stderr=stderr,
        )  # fmt: skip
        try:

            def status() -> dict:
                body = http_get(f"http://127.0.0.1:{port}/status")
                return {t["target"]: t for t in json.loads(body)["targets"]} if body else {}

            def settled() -> bool:
                vm = status().get("vm-1")
                return bool(vm and vm["rtt_baseline_ms"] is not None and vm["clock_offset_ms"] is not None
                            and abs(vm["clock_offset_ms"]) < 1.0)  # fmt: skip

            wait_for(settled, 90, lambda: f"a baseline and a settled clock: {status()}")
            time.sleep(8)
            start_copy(host)
            time.sleep(12)
            switch(host, clock)

            def printed() -> list[Alert]:
                lines = (tmp_path / "stdout").read_bytes().splitlines()
                return [decode(Alert, line) for line in lines if line.strip()]

            wait_for(lambda: any(a.migwatch.state == "confirmed" for a in printed()), 60, "a confirmed alert")
            states = [a.migwatch.state for a in printed()]
            assert states[: states.index("confirmed") + 1] in (
                ["suspected", "likely", "confirmed"], ["likely", "confirmed"], ["suspected", "confirmed"],
            ), states  # fmt: skip
            assert {a.observer.name for a in printed()} == {"watcher"}
            assert status()["vm-1"]["state"] == "confirmed"
            metrics = http_get(f"http://127.0.0.1:{port}/metrics").decode()  # type: ignore[union-attr]
            assert 'migwatch_worker_alerts_total{state="confirmed"} 1.0' in metrics
            assert "migwatch_probe_lateness_seconds_bucket" in metrics
            chart = json.loads(http_get(f"http://127.0.0.1:{port}/targets/vm-1/chart"))  # type: ignore[arg-type]
            assert any(point["unanswered"] for point in chart["points"])
            assert chart["status"]["state"] == "confirmed" and {p["state"] for p in chart["points"]} >= {"confirmed"}
            fleet = json.loads(http_get(f"http://127.0.0.1:{port}/fleet"))  # type: ignore[arg-type]
            assert fleet["rows"][0]["target"] == "vm-1" and fleet["counts"]["confirmed"] == 1, fleet
        finally:
            assert stop(watch) == 0, (tmp_path / "stderr").read_text()
            stdout.close()
            stderr.close()
    assert out.read_bytes() == (tmp_path / "stdout").read_bytes()  # --out has every line too
    logged = [json.loads(line) for line in (tmp_path / "stderr").read_text().splitlines() if line.startswith("{")]
    last = logged[-1]
    assert last["message"] == f"watch watcher: {len(printed())} alerts", logged
    assert last["log.level"] == "warning" and last["ecs.version"] and "@timestamp" in last
    assert all(a.event.created is not msgspec.UNSET for a in printed())
