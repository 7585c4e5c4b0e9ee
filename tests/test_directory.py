"""Issue #21 through Kafka: the targets topic reaches the worker's detectors whatever the partitioning (site,
labels, allowed hosts, a hypervisor in another partition named as the source), windows on the silences
topic make a planned move expected, and what the worker's hypervisors showed goes out on the hosts topic."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import msgspec
import pytest
from kafka import KafkaAdminClient

from migwatch.contract.codec import decode
from migwatch.contract.config import KafkaSettings
from migwatch.contract.records import Alert, HostView, PingSample, Target
from migwatch.contract.silences import Silence
from migwatch.contract.topics import TopicNames
from migwatch.detectors.target_group import Directory, TargetGroup
from migwatch.kafka_io.compacted import CompactedTopic
from migwatch.kafka_io.compacted_follower import CompactedFollower
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch_dev.synthetic import START_TS, Episode, generate
from tests.processes import wait_for
from tests.stream_workers import StreamWorker, produce, read_all, worker_env
from tests.test_fleet_page import browse
from tests.test_streams import PARTITIONS, partition_of

pytestmark = pytest.mark.kafka


def _apart(prefix: str, other: str) -> str:
    """An id beginning with ``prefix`` whose partition is not ``other``'s."""
    return next(f"{prefix}{i}" for i in range(100) if partition_of(f"{prefix}{i}") != partition_of(other))


VM = "web-a"
SOURCE = _apart("hv-x", VM)
TARGETS = [
    Target(id=VM, address="10.0.0.0", hosts=[SOURCE, "hv-y"], site="fra-1", labels={"tenant": "acme"}),
    Target(id="web-b", address="10.0.0.1", site="fra-1"),
    Target(id=SOURCE, address="10.0.0.2", kind="host", ntp=False),
    Target(id="hv-y", address="10.0.0.3", kind="host", ntp=False),
]


def _toml(target: Target) -> str:
    labels = ", ".join(f'{key} = "{value}"' for key, value in target.labels.items())
    hosts = ", ".join(f'"{host}"' for host in target.hosts)
    return (
        f'[[targets]]\nid = "{target.id}"\naddress = "{target.address}"\nkind = "{target.kind}"\n'
        f'site = "{target.site}"\nhosts = [{hosts}]\nntp = {str(target.ntp).lower()}\nlabels = {{{labels}}}\n'
    )


def _migwatch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "migwatch.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def directed(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[StreamWorker, TopicNames, list[Alert], Silence]]:
    folder = tmp_path_factory.mktemp("directory")
    names = TopicNames(f"dir-{uuid.uuid4().hex[:6]}.")
    ensure_topics(kafka_admin, names.prefix, PARTITIONS)
    env = worker_env(kafka_bootstrap, names.prefix, PARTITIONS, folder, f"dir-{uuid.uuid4().hex[:6]}")
    samples, _ = generate(
        [Episode("migration", VM, 300.0, copy_s=30.0, downtime_s=0.5),
         Episode("bulk-transfer", SOURCE, 299.0, copy_s=30.0),  # the migration stream leaves the source
         Episode("migration", "web-b", 300.0, copy_s=20.0, downtime_s=0.5)],
        targets=[t.id for t in TARGETS], duration_s=700.0,
    )  # fmt: skip
    shift = time.time() - 710.0 - START_TS
    hosts = {t.id for t in TARGETS if t.kind == "host"}
    samples = [  # hypervisors answer pings only (ntp = false)
        msgspec.structs.replace(s, ts=s.ts + shift, **({"kind": "host"} if s.target in hosts else {}))
        if isinstance(s, PingSample) else msgspec.structs.replace(s, ts=s.ts + shift)
        for s in samples
        if isinstance(s, PingSample) or s.target not in hosts
    ]  # fmt: skip
    window = Silence(id="maint-b", start=START_TS + shift + 200, end=START_TS + shift + 3600, targets=["web-b"],
                     reason="patching")  # fmt: skip
    # The targets and the window go on their topics through the CLI, as an operator puts them there.
    targets_file = folder / "targets.toml"
    targets_file.write_text("".join(map(_toml, TARGETS)))
    pushed = _migwatch(env, "targets", "push", "--config", str(targets_file))
    assert pushed.returncode == 0, pushed.stderr
    added = _migwatch(env, "silences", "add", "--config", env["CONFIG"], "--id", window.id, "--target", "web-b",
                      "--start", str(window.start), "--end", str(window.end), "--reason", "patching")  # fmt: skip
    assert added.returncode == 0, added.stderr
    produce(kafka_bootstrap, names, samples)
    # One batch: the whole trace in ts order, as a replay sees it.
    worker = StreamWorker(env, "dir-1", folder, batch_size="100000", batch_within_s="10.0")
    try:
        wait_for(
            lambda: not worker.alive() or sum(worker.counted().values()) >= len(samples), 120, "every sample counted"
        )
        assert worker.alive(), worker.log_tail()
        group = TargetGroup(observer="dir-1", directory=Directory.of(TARGETS, [window]))
        expected = [alert for sample in samples for alert in group.update(sample)]
        yield worker, names, expected, window
    finally:
        worker.stop()
        kafka_admin.delete_topics([t for t in kafka_admin.list_topics() if t.startswith(names.prefix)])


def test_the_targets_topic_reaches_the_detectors_and_a_host_in_another_partition_is_named(
    kafka_bootstrap: str, directed: tuple
) -> None:
    _, names, expected, _ = directed
    live = [decode(Alert, m.value) for m in read_all(kafka_bootstrap, names.alerts, PARTITIONS)]
    mine = [a for a in live if a.migwatch.target == VM]
    assert mine and all(a.migwatch.site == "fra-1" and a.labels == {"tenant": "acme"} for a in mine)
    assert all(a.migwatch.allowed_hosts == [SOURCE, "hv-y"] for a in mine)
    confirmed = next(a for a in mine if a.migwatch.state == "confirmed")
    assert confirmed.migwatch.evidence.source_host == SOURCE and partition_of(SOURCE) != partition_of(VM)

    # The same alerts as a replay of the trace with the same targets and window (the learners' scores, and so
    # likelihoods, differ: the worker keeps one window scorer per partition, a replay one for the fleet).
    def brief(alerts: list[Alert]) -> list[tuple]:
        return sorted((a.migwatch.target, a.migwatch.state, a.event.action, a.migwatch.detected_ts,
                       a.migwatch.outcome, a.migwatch.evidence.source_host) for a in alerts)  # fmt: skip

    assert brief(live) == brief(expected)


def test_the_fleet_page_shows_where_each_vm_was_last_seen_and_the_windows(directed: tuple) -> None:
    worker, *_ = directed
    status = json.loads(worker.get("/status") or b"{}")
    web_a = next(t for t in status["targets"] if t["target"] == VM)
    assert (web_a["site"], web_a["allowed_hosts"], web_a["last_host"]) == ("fra-1", [SOURCE, "hv-y"], "hv-y")
    assert web_a["rtt_floor_ms"] is not None and [s["id"] for s in status["silences"]] == ["maint-b"]
    dom = browse(f"{worker.url}/", "--dump-dom").stdout
    row = re.search(rf'<tr class="target[^"]*" data-target="{VM}">(.*?)</tr>', dom)
    assert row is not None, dom[-2000:]
    assert "<td>fra-1</td><td>hv-y</td>" in row.group(1) and f"<td>{SOURCE}, hv-y</td>" in row.group(1)
    assert '<tr class="silence" data-silence="maint-b"><td>maint-b</td>' in dom and "<td>web-b</td>" in dom


def test_a_window_on_the_silences_topic_makes_the_planned_move_expected(kafka_bootstrap: str, directed: tuple) -> None:
    worker, names, _, window = directed
    live = [decode(Alert, m.value) for m in read_all(kafka_bootstrap, names.alerts, PARTITIONS)]
    planned = [a for a in live if a.migwatch.target == "web-b" and a.migwatch.state != "cleared"]
    assert planned and all(
        (a.migwatch.outcome, a.migwatch.window, a.event.severity) == ("expected", window.id, 1) for a in planned
    )
    assert {a.migwatch.outcome for a in live if a.migwatch.target == VM and a.migwatch.state != "cleared"} == {
        "unexpected"
    }
    listed = _migwatch(worker.env, "silences", "list", "--config", worker.env["CONFIG"])
    assert listed.returncode == 0 and decode(Silence, listed.stdout.strip()) == window
    assert _migwatch(worker.env, "silences", "remove", window.id, "--config", worker.env["CONFIG"]).returncode == 0
    again = _migwatch(worker.env, "silences", "list", "--config", worker.env["CONFIG"])
    assert again.stdout == "" and "0 silences in force" in again.stderr


def test_the_worker_tells_the_other_workers_what_its_hypervisors_showed(kafka_bootstrap: str, directed: tuple) -> None:
    _, names, _, _ = directed
    kafka = KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=names.prefix)
    follower = CompactedFollower(kafka, [CompactedTopic(kafka, names.hosts, HostView, lambda view: view.host)])
    try:
        assert follower.start(wait_s=60)
        latest = follower.tables[names.hosts][SOURCE]  # the copy is over: no pattern now, its lowest RTT
        assert latest.pattern_last_ts is None and latest.floor_ms is not None and latest.floor_ms < 1.0
    finally:
        follower.stop()
    # One report per hypervisor per batch at most (the whole trace was one batch here; test_worker_app.py
    # follows the reports batch by batch).
    told = [decode(HostView, m.value).host for m in read_all(kafka_bootstrap, names.hosts, PARTITIONS)]
    assert sorted(told) == sorted([SOURCE, "hv-y"])
