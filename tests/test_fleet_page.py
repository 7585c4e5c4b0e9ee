"""Issue #22: one fleet page for the whole fleet, whichever worker serves it, checked in headless Chromium.

A real QEMU migration of the lab corpus (the VM and its two hypervisors) among 40 quiet VMs goes through
Kafka to two stream workers; each worker's page lists every target (the status topic), sorted by risk, finds
one by its name, and draws the lab VM's chart as the paper's figures do: a clock-time axis, RTT on a log
scale with unanswered pings apart, the clock offset below, the episodes and alerts in their state's colour,
and the hypervisors' RTT beside the VM's. Screenshots are kept (MIGWATCH_ARTIFACTS, default
build/test-artifacts) and compared for structure, not pixels.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from kafka import KafkaAdminClient

from migwatch.contract.config import WorkerSettings
from migwatch.contract.records import ClockSample, PingSample, TargetStatus
from migwatch.contract.topics import TopicNames
from migwatch.contract.trace import iter_lines
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch.streams import views
from migwatch.streams.fleet import FleetView
from migwatch.streams.partitions import Partitions, status_chunk
from migwatch.streams.tables import MemoryTables
from tests.processes import wait_for
from tests.stream_workers import StreamWorker, produce, worker_env

CORPUS = Path(__file__).parents[1] / "deploy/dev/corpus/capped"
PARTITIONS = 8
QUIET = [f"vm-{i:02d}" for i in range(40)]
ARTIFACTS = Path(os.environ.get("MIGWATCH_ARTIFACTS", Path(__file__).parents[1] / "build/test-artifacts"))


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    pytest.skip("no Chromium (Debian package chromium; deploy/setup installs it)")


def browse(url: str, *extra: str, budget_ms: int = 8000) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on ``url``: ``--dump-dom`` prints the page as its scripts left it."""
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--virtual-time-budget={budget_ms}",
         "--window-size=1300,1400", *extra, url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ no broker


def _status(target: str, state: str = "none", likelihood: float = 0.0, **fields: Any) -> TargetStatus:
    return TargetStatus(target=target, address="192.0.2.1", kind="vm", state=state, likelihood=likelihood, **fields)


def test_the_fleet_is_sorted_by_risk_searched_and_paged() -> None:
    statuses = {f"vm-{i:05d}": _status(f"vm-{i:05d}", site="fra" if i % 2 else "ams") for i in range(10_000)}
    statuses["vm-07777"] = _status("vm-07777", "confirmed", 0.97, labels={"team": "payments"})
    statuses["vm-00042"] = _status("vm-00042", "likely", 0.8)
    statuses["vm-00043"] = _status("vm-00043", "likely", 0.85, site="fra")
    statuses["hv-1"] = TargetStatus(target="hv-1", address="192.0.2.2", kind="host", state="suspected")
    settings, partitions, view = WorkerSettings(), Partitions(MemoryTables()), FleetView()

    def ask(**params: str) -> dict[str, Any]:
        body, code = views.fleet(settings, partitions, view, statuses, params)
        assert code == 200, body
        return body

    first = ask()
    assert [r["target"] for r in first["rows"][:3]] == ["vm-07777", "vm-00043", "vm-00042"]
    assert first["counts"] == {"confirmed": 1, "likely": 2, "suspected": 0, "none": 9_997}
    assert first["kinds"] == {"vm": 10_000, "host": 1} and first["matched"] == 10_000
    assert len(first["rows"]) == 50 and first["sites"] == ["ams", "fra"]
    assert [r["target"] for r in ask(kind="host")["rows"]] == ["hv-1"]
    assert [r["target"] for r in ask(q="payments")["rows"]] == ["vm-07777"]  # by a label
    assert [r["target"] for r in ask(q="VM-0999")["rows"][:2]] == ["vm-09990", "vm-09991"]
    last = ask(page="199", per_page="50")
    assert [r["target"] for r in last["rows"]] == [f"vm-{i:05d}" for i in range(9_950, 10_000)]
    assert ask(state="likely", site="fra")["matched"] == 1  # vm-00043
    for params, named in (({"state": "gone"}, "state"), ({"page": "x"}, "page"), ({"per_page": "0"}, "per_page"),
                          ({"kind": "pod"}, "kind")):  # fmt: skip
        body, code = views.fleet(settings, partitions, view, statuses, params)
        assert code == 400 and body["error"].startswith(named + ":"), body


def test_a_status_is_told_when_it_changes_and_every_status_every_s() -> None:
    partitions = Partitions(MemoryTables(), observer="w-1", url="http://127.0.0.1:7000")
    assert status_chunk("vm-1") != status_chunk("vm-2")

    def pings(target: str, seconds: range, rtt: float | None = 0.4) -> list[PingSample]:
        return [PingSample(target=target, address="192.0.2.1", probe="p", seq=t, ts=float(t), rtt_ms=rtt)
                for t in seconds]  # fmt: skip

    def told(now: float) -> list[TargetStatus]:
        chunks = partitions.status_reports(0, every_s=30.0, now=now, budget=100)
        assert all(s.partition == c.partition == 0 and status_chunk(s.target) == c.chunk
                   for c in chunks for s in c.statuses)  # fmt: skip
        return [status for chunk in chunks for status in chunk.statuses]

    partitions.update(0, sorted(pings("vm-1", range(60)) + pings("vm-2", range(60)), key=lambda s: s.ts))
    first = told(1000.0)
    assert sorted(s.target for s in first) == ["vm-1", "vm-2"]
    assert {(s.worker, s.url, s.partition, s.state) for s in first} == {("w-1", "http://127.0.0.1:7000", 0, "none")}
    partitions.update(0, pings("vm-1", range(60, 70)) + pings("vm-2", range(60, 70)))
    assert told(1010.0) == []  # nothing new, and not yet due
    partitions.update(0, pings("vm-2", range(70, 90), rtt=None))  # vm-2 stops answering: its state rises
    assert [(s.target, s.state != "none") for s in told(1020.0)] == [("vm-2", True)]
    partitions.update(0, pings("vm-1", range(90, 95)))
    assert [s.target for s in told(1031.0)] == ["vm-1"]  # due again; vm-2 was sent 11 s ago
    # A budget: what changed goes first, what is only due waits for the next tick.
    partitions.update(0, pings("vm-1", range(95, 120), rtt=None))
    chunks = partitions.status_reports(0, every_s=30.0, now=1055.0, budget=1)
    assert [s.target for c in chunks for s in c.statuses] == ["vm-1"]  # vm-2 (due since 1050) waits
    assert partitions.status_reports(0, every_s=30.0, now=1055.0, budget=5, changed_only=True) == []
    assert [s.target for c in partitions.status_reports(0, 30.0, 1056.0, 5) for s in c.statuses] == ["vm-2"]


# ------------------------------------------------------------------------------------------ two workers


def _lab_samples(shift: float) -> list[PingSample | ClockSample]:
    """The capped corpus (four QEMU migrations of lab-vm between hv-1 and hv-2) ending now, and 40 quiet VMs
    pinged over the same time."""
    lab = [msgspec.structs.replace(s, ts=s.ts + shift) for s in iter_lines(CORPUS / "trace-1000ms.jsonl.gz")]
    start, end = int(min(s.ts for s in lab)), int(max(s.ts for s in lab))
    quiet: list[PingSample | ClockSample] = []
    for i, target in enumerate(QUIET):
        address = f"10.0.9.{i + 1}"
        for n, t in enumerate(range(start, end)):
            quiet.append(
                PingSample(target=target, address=address, probe="p", seq=n, ts=t + 0.1, rtt_ms=0.3 + 0.01 * (n % 7))
            )
            if n % 10 == 0:
                quiet.append(
                    ClockSample(target=target, address=address, probe="p", ts=t + 0.5, offset_ms=0.2, delay_ms=0.4)
                )
    return sorted([*lab, *quiet], key=lambda s: s.ts)


@pytest.fixture(scope="module")
def fleet(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[StreamWorker]]:
    folder = tmp_path_factory.mktemp("fleet")
    names = TopicNames(f"fleet-{uuid.uuid4().hex[:6]}.")
    ensure_topics(kafka_admin, names.prefix, PARTITIONS)
    end = max(s.ts for s in iter_lines(CORPUS / "trace-1000ms.jsonl.gz"))
    samples = _lab_samples(time.time() - 5 - end)  # recent: chart windows are kept by the wall clock
    env = worker_env(kafka_bootstrap, names.prefix, PARTITIONS, folder, f"fleet-{uuid.uuid4().hex[:6]}")
    config = folder / "lab.toml"
    config.write_text((CORPUS / "config-1000ms.toml").read_text())  # the lab's targets: VM and hypervisors
    env["CONFIG"] = str(config)
    settings = {"chart_window_s": "10", "batch_within_s": "1.0", "checkpoint_s": "60"}
    workers = [StreamWorker(env, name, folder, **settings) for name in ("fleet-a", "fleet-b")]
    try:
        wait_for(lambda: all(w.partitions(names.ping) for w in workers), 90, "both workers own partitions")
        produce(kafka_bootstrap, names, samples)
        everyone = {*QUIET, "lab-vm", "hv-1", "hv-2"}

        def listed() -> bool:
            """Every target on both pages, lab-vm's row telling the alert its worker raised last (a status
            goes out within a second of its change, then through Kafka)."""
            latest = {w.status().get("lab-vm", {}).get("last_alert", {}).get("id") for w in workers} - {None}
            rows = [row for w in workers for row in _fleet(w, q="lab-vm")["rows"]]
            told = {(row["last_alert"] or {}).get("id") for row in rows}
            return (
                len(rows) == 2
                and told == latest
                and all(_targets(w, "vm") | _targets(w, "host") == everyone for w in workers)
            )

        wait_for(lambda: sum(sum(w.counted().values()) for w in workers) >= len(samples), 180, "every sample counted")
        wait_for(listed, 60, lambda: "every target on both pages:\n" + "\n".join(w.log_tail() for w in workers))
        yield workers
    finally:
        for worker in workers:
            worker.stop()
        kafka_admin.delete_topics([t for t in kafka_admin.list_topics() if t.startswith(names.prefix)])


def _fleet(worker: StreamWorker, **params: str) -> dict[str, Any]:
    query = "&".join(f"{k}={v}" for k, v in {"per_page": "500", **params}.items())
    raw = worker.get(f"/fleet?{query}")
    return json.loads(raw) if raw else {"rows": [], "counts": {}}


def _targets(worker: StreamWorker, kind: str) -> set[str]:
    return {row["target"] for row in _fleet(worker, kind=kind)["rows"]}


def test_every_worker_serves_the_whole_fleet_and_every_chart(fleet: list[StreamWorker]) -> None:
    owners = {name: worker for worker in fleet for name in worker.status()}
    assert {w.get("/status") is not None for w in fleet} == {True}
    assert len({id(w) for w in owners.values()}) == 2, "each worker watches some of the 43 targets"
    for worker in fleet:
        page = _fleet(worker)
        assert page["kinds"] == {"vm": 41, "host": 2}
        assert page["rows"][0]["target"] == "lab-vm" and page["rows"][0]["last_alert"]["state"] == "confirmed"
        # A chart is served whichever worker is asked: the owner's own, or asked of the owner.
        for target in ("lab-vm", "hv-1", "hv-2", "vm-00"):
            chart = json.loads(worker.get(f"/targets/{target}/chart") or b"{}")
            assert chart.get("worker") == owners[target].name, (target, chart)
            assert len(chart["points"]) >= 60  # ~15 min of 10 s windows
    vm = json.loads(fleet[0].get("/targets/lab-vm/chart") or b"{}")
    marks = [p for p in vm["points"] if p["alert"]]
    assert {p["alert"] for p in marks} >= {"suspected", "confirmed"}
    assert {p["state"] for p in vm["points"]} >= {"none", "confirmed"}
    assert fleet[0].get("/targets/nobody/chart") is None  # 404: no worker told of it


def test_the_page_in_a_browser(fleet: list[StreamWorker]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    worker = fleet[1]
    dom = browse(f"{worker.url}/#target=lab-vm", "--dump-dom").stdout
    assert '<p id="error" role="alert"></p>' in dom, dom[-3000:]
    rows = re.findall(r'<tr class="target row-(\w+)[^"]*" data-target="([^"]+)"', dom)
    assert rows[0] == ("confirmed", "lab-vm") and len(rows) == 41  # the VMs, riskiest first, hypervisors apart
    counts = dict(re.findall(r'data-state="(\w+)"[^>]*>\w+ (\d+)<', dom))
    assert sum(map(int, counts.values())) == 41 and int(counts["confirmed"]) >= 1, counts
    assert "VMs (41)" in dom and "hypervisors (2)" in dom
    # The chart as in the paper: clock times, a log RTT axis in decades, lost pings apart, the offset below.
    assert len(re.findall(r'class="tick-time">\d\d:\d\d<', dom)) >= 3
    assert {"0.1", "1", "10"} <= set(re.findall(r'class="tick-rtt">([\d.]+)<', dom))
    assert "lost</text>" in dom and 'class="series-unanswered"' in dom and "<rect" in dom
    for series in ("series-rtt_mean_ms", "series-rtt_max_ms", "series-offset_ms", "series-host"):
        assert f'class="{series}"' in dom, series
    assert len(re.findall(r'class="series-host"', dom)) == 2  # hv-1's and hv-2's RTT beside the VM's
    assert re.search(r'class="episode episode-confirmed"', dom) and re.search(
        r'class="alert-mark alert-confirmed"', dom
    )
    assert "vm-live-migration confirmed" in dom
    first_render = int(re.search(r'data-first-render-ms="(\d+)"', dom).group(1))
    assert first_render > 0
    # Found by name in one step: the address holds the search.
    found = browse(f"{worker.url}/#q=lab-", "--dump-dom").stdout
    assert re.findall(r'data-target="([^"]+)"', found) == ["lab-vm"]
    for name, url in (
        ("fleet", f"{worker.url}/#target=lab-vm"),
        ("hypervisors", f"{worker.url}/#kind=host&target=hv-1"),
    ):
        shot = ARTIFACTS / f"fleet-page-{name}.png"
        browse(url, f"--screenshot={shot}")
        from matplotlib.image import imread

        pixels = imread(shot)
        assert pixels.shape[:2] == (1400, 1300)
        red = (pixels[..., 0] > 0.6) & (pixels[..., 1] < 0.25) & (pixels[..., 2] < 0.3)
        assert red.sum() > 50, name  # confirmed rows' state and the unanswered pings are drawn in red
