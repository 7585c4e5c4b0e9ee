"""The whole pipeline against test hosts: `migwatch probe` pings and queries two hosts behind emulated links
(their NTP servers real chronyd), publishes to the real broker, `migwatch worker` raises the alerts, and
`migwatch alerts ship` indexes them into a real OpenSearch, where a SOC's detection query finds the migration.

On one host a migration is emulated as the paper describes it (raised delay with outliers during the memory
copy, replies lost in the stop-and-copy, then the VM's clock behind by 150 ms); on the other a bulk copy
(raised delay and outliers only). The first must end `confirmed`; the second must not go past `suspected`.
Every metric the Grafana dashboard (deploy/grafana) queries must be served by the probe or the worker.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from migwatch.contract.codec import decode
from migwatch.contract.records import Alert
from migwatch.contract.topics import TopicNames
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch_dev.lab.chrony import chrony_server
from migwatch_dev.lab.emulated_lab import BASE_DELAY_MS, end_copy, start_copy, switch
from migwatch_dev.lab.link_emulator import EmulatedLink, emulated_link
from migwatch_dev.local_opensearch import LocalOpenSearch
from tests.conftest import free_port_pair
from tests.processes import wait_for
from tests.stream_workers import StreamWorker, probe_process, read_all, worker_env

pytestmark = pytest.mark.kafka
DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "migwatch-dashboard.json"
PARTITIONS = 2


def dashboard_metrics() -> set[str]:
    """The metric names the Grafana dashboard's queries use."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return {name for expr in exprs for name in re.findall(r"\bmigwatch_[a-z0-9_]+", expr)}


def alerts(bootstrap: str, names: TopicNames) -> list[Alert]:
    return [decode(Alert, m.value) for m in read_all(bootstrap, names.alerts, PARTITIONS)]


def wait_for_confirmed(bootstrap: str, names: TopicNames, target: str) -> None:
    def confirmed() -> bool:
        return any(a.migwatch.target == target and a.migwatch.state == "confirmed" for a in alerts(bootstrap, names))

    wait_for(confirmed, 60, lambda: f"a confirmed alert for {target}: {[a.migwatch for a in alerts(bootstrap, names)]}")


@pytest.fixture
def two_hosts(tmp_path: Path) -> Iterator[tuple[EmulatedLink, EmulatedLink]]:
    with ExitStack() as stack:
        hosts = tuple(stack.enter_context(emulated_link(BASE_DELAY_MS, own_monitor=True)) for _ in range(2))
        yield hosts  # type: ignore[misc]


def test_an_emulated_migration_is_confirmed_and_a_bulk_copy_is_not(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, two_hosts: tuple[EmulatedLink, EmulatedLink],
    opensearch: LocalOpenSearch, tmp_path: Path,
) -> None:  # fmt: skip
    moving, copying = two_hosts
    names = TopicNames(f"pipeline-{uuid.uuid4().hex[:6]}.")
    ensure_topics(kafka_admin, names.prefix, PARTITIONS)
    env = worker_env(kafka_bootstrap, names.prefix, PARTITIONS, tmp_path, f"pipeline-{uuid.uuid4().hex[:6]}")
    env["MIGWATCH_LOGGING_FORMAT"] = "ecs"  # the worker's own logs as ECS JSON lines, for the SIEM
    probe_config = tmp_path / "probe.toml"
    probe_metrics = free_port_pair()
    probe_config.write_text(
        f'[probe]\nname = "probe-e2e"\nping_timeout_s = 0.5\nmetrics_port = {probe_metrics}\n'
        f'spill_dir = "{tmp_path / "spill"}"\n'
        + "".join(
            f'[[targets]]\nid = "{vm}"\naddress = "{host.host_ip}"\nping_interval_s = 0.2\n'
            "ntp = true\nntp_interval_s = 1.0\n"
            for vm, host in (("vm-moving", moving), ("vm-copying", copying))
        )
    )
    with ExitStack() as stack:
        clocks = [
            stack.enter_context(chrony_server(host.host, host.host_ip, tmp_path / f"chrony-{i}"))
            for i, host in enumerate(two_hosts)
        ]
        worker = StreamWorker(env, "worker-e2e", tmp_path)
        stack.callback(worker.stop)
        probe = stack.enter_context(probe_process(probe_config, env, tmp_path / "probe.log"))

        def settled() -> bool:
            status = worker.status()
            return len(status) == 2 and all(
                s["rtt_baseline_ms"] is not None and s["clock_offset_ms"] is not None
                and abs(s["clock_offset_ms"]) < 1.0
                for s in status.values()
            )  # fmt: skip

        wait_for(settled, 120, lambda: f"baselines and settled clocks: {worker.status()}\n{worker.log_tail()}")
        time.sleep(10)  # some more quiet windows and NTP answers at the settled offset

        for host in two_hosts:  # memory copy on one path, a bulk copy on the other
            start_copy(host)
        time.sleep(12)
        end_copy(copying)
        switched = switch(moving, clocks[0])  # stop-and-copy, then the VM runs on, its clock behind

        wait_for_confirmed(kafka_bootstrap, names, "vm-moving")
        print(f"confirmed {time.time() - switched:.1f} s after the switch")
        time.sleep(5)
        raised = alerts(kafka_bootstrap, names)
        copy_states = {a.migwatch.state for a in raised if a.migwatch.target == "vm-copying"}
        # Seen as a pattern (the early warning), never as a migration.
        assert "suspected" in copy_states and copy_states <= {"suspected", "cleared"}, [a.migwatch for a in raised]
        moving_alert = next(a for a in raised if a.migwatch.state == "confirmed")
        evidence = moving_alert.migwatch.evidence
        assert evidence.time_lag_ms is not None and evidence.time_lag_ms < -20
        assert probe.poll() is None and worker.alive()
        # Every metric the Grafana dashboard queries is served by the probe or the worker.
        with urllib.request.urlopen(f"http://127.0.0.1:{probe_metrics}/metrics", timeout=10) as response:
            served = response.read().decode() + (worker.get("/metrics") or b"").decode()
        exported = {line.split("{")[0].split()[0] for line in served.splitlines() if line and line[0] != "#"}
        assert dashboard_metrics() <= exported, dashboard_metrics() - exported
        # The health checks the chart's liveness and readiness probes ask.
        for path, said in (("/healthz", "ok"), ("/readyz", "probing 2 targets")):
            with urllib.request.urlopen(f"http://127.0.0.1:{probe_metrics}{path}", timeout=10) as response:
                assert response.status == 200 and response.read().decode().strip() == said
        assert (worker.get("/healthz") or b"").strip() == b"ok"
        assert (worker.get("/readyz") or b"").startswith(b"ready: partitions [0, 1]")
    found_by_the_soc(opensearch, env, raised, moving_alert)
    logged = [json.loads(line) for line in worker.log_path.read_text().splitlines() if line.startswith("{")]
    assert len(logged) > 10 and all(entry["log.level"] and entry["ecs.version"] for entry in logged)
    kafka_admin.delete_topics([t for t in kafka_admin.list_topics() if t.startswith(names.prefix)])


def found_by_the_soc(node: LocalOpenSearch, env: dict[str, str], raised: list[Alert], confirmed: Alert) -> None:
    """The worker's alerts shipped into OpenSearch: the detection query finds the confirmed migration, with
    its types (a range on @timestamp, a term on host.name and host.ip)."""
    index = f"migwatch-alerts-{uuid.uuid4().hex[:6]}"
    shipped = subprocess.run(
        [sys.executable, "-m", "migwatch.cli", "alerts", "ship", "--config", env["CONFIG"], "--to", node.url,
         "--index", index, "--count", str(len(raised)), "--group", f"soc-{index}"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert shipped.returncode == 0, shipped.stderr
    detection = {"bool": {"filter": [
        {"query_string": {"query": "event.action:vm-live-migration AND migwatch.state:confirmed"}},
        {"range": {"@timestamp": {"gte": "now-10m"}}},
        {"term": {"host.name": "vm-moving"}},
        {"term": {"host.ip": confirmed.migwatch.address}},
    ]}}  # fmt: skip
    hits = [hit["_source"] for hit in node.search(index, {"query": detection})["hits"]["hits"]]
    assert [hit["event"]["id"] for hit in hits] == [confirmed.event.id]
    assert hits[0]["message"].startswith("vm vm-moving: live migration confirmed, clock ")
    assert hits[0]["event"]["created"] >= hits[0]["@timestamp"][:19]
