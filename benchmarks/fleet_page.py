"""The fleet page at 10,000 and 100,000 targets (issue #22's benchmark).

    python benchmarks/fleet_page.py [--targets 10000,100000] [--refreshes 20]

Needs the local Kafka (deploy/local/kafka start) and Chromium. For each fleet size, in one run:
1. in process: FleetView's first answer (it sorts the fleet by risk: what a refresh costs while statuses
   change) and a refresh of a page (sorted order kept), the bytes of one refresh (/fleet JSON, 50 rows) and of
   one target's status;
2. for real: the statuses of that many synthetic targets (VMs, 5 % hypervisors, a few at risk) on a status topic
   in the chunks the workers send, one `migwatch worker` following it; /fleet over HTTP (first page, and a
   search by name); then the page in headless Chromium driven over the DevTools protocol: time to first
   render (the page's own performance.now() when its first table is drawn, from navigation start) and the
   time from typing a VM's name into the search box to its row alone on the page.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from kafka import KafkaAdminClient, KafkaProducer

from migwatch.contract.codec import encode
from migwatch.contract.config import WorkerSettings
from migwatch.contract.records import LastAlert, StatusChunk, TargetStatus
from migwatch.contract.topics import TopicNames
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch.streams import views
from migwatch.streams.fleet import FleetView
from migwatch.streams.partitions import Partitions, status_chunk
from migwatch.streams.tables import MemoryTables

sys.path.insert(0, str(Path(__file__).parent))
from stream_worker import PARTITIONS, Worker

SITES = ("fra", "ams", "dub", "par")


def synthetic(count: int, seed: int = 7) -> list[TargetStatus]:
    """``count`` targets: 5 % hypervisors; 0.5 % suspected, 0.2 % likely and 0.05 % confirmed VMs."""
    rng, now = random.Random(seed), time.time()
    statuses = []
    for i in range(count):
        host = i % 20 == 0
        roll = rng.random()
        state = (
            "confirmed" if roll < 0.0005 else "likely" if roll < 0.0025 else "suspected" if roll < 0.0075 else "none"
        )
        likelihood = {"none": 0.0, "suspected": 0.4, "likely": 0.8, "confirmed": 0.95}[state]
        alert = None if state == "none" else LastAlert(id=uuid.uuid4().hex, state=state, action="vm-live-migration",
                                                       detected_ts=now - 30, likelihood=likelihood)  # fmt: skip
        statuses.append(TargetStatus(
            target=f"hv-{i:06d}" if host else f"vm-{i:06d}", address=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            kind="host" if host else "vm", site=SITES[i % 4], labels={"team": f"t{i % 37}"},
            allowed_hosts=[] if host else [f"hv-{(i // 20) * 20:06d}"], state=state, likelihood=likelihood,
            last_rtt_ms=round(0.3 + rng.random() * 0.2, 3), rtt_baseline_ms=0.4, rtt_floor_ms=0.3,
            clock_offset_ms=round(rng.gauss(0, 0.5), 3), last_alert=alert, partition=i % PARTITIONS,
            worker="bench", url="", ts=now,
        ))  # fmt: skip
    return statuses


def in_process(statuses: list[TargetStatus], refreshes: int) -> dict[str, Any]:
    table = {status.target: status for status in statuses}
    settings, partitions, view = WorkerSettings(), Partitions(MemoryTables()), FleetView()
    started = time.perf_counter()
    body, _ = views.fleet(settings, partitions, view, table, {})
    first_ms = (time.perf_counter() - started) * 1000
    timings = []
    for page in range(refreshes):
        started = time.perf_counter()
        body, _ = views.fleet(settings, partitions, view, table, {"page": str(page)})
        timings.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    views.fleet(settings, partitions, view, table, {"q": statuses[len(statuses) // 2].target})
    search_ms = (time.perf_counter() - started) * 1000
    return {
        "first_answer_ms": round(first_ms, 1),
        "refresh_ms_median": round(statistics.median(timings), 1),
        "search_ms": round(search_ms, 1),
        "refresh_bytes": len(json.dumps(body)),
        "status_bytes_per_target": round(statistics.mean(len(encode(s)) for s in statuses[:1000])),
    }


def chunks_of(statuses: list[TargetStatus]) -> list[StatusChunk]:
    """The status messages the workers would send for these targets (per partition, STATUS_CHUNKS each)."""
    grouped: dict[tuple[int, int], list[TargetStatus]] = {}
    for status in statuses:
        grouped.setdefault((status.partition, status_chunk(status.target)), []).append(status)
    return [StatusChunk(partition=p, chunk=c, statuses=members) for (p, c), members in sorted(grouped.items())]


def publish(bootstrap: str, topic: str, chunks: list[StatusChunk]) -> float:
    started = time.perf_counter()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, max_request_size=4 * 2**20)
    for chunk in chunks:
        producer.send(topic, key=chunk.key.encode(), value=encode(chunk))
    producer.flush()
    producer.close()
    return time.perf_counter() - started


def http(url: str) -> tuple[float, int, dict[str, Any]]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        raw = response.read()
    return (time.perf_counter() - started) * 1000, len(raw), json.loads(raw)


async def in_chromium(page_url: str, search_for: str, folder: Path) -> dict[str, float]:
    """Time to first render and to a search's single row, in headless Chromium over the DevTools protocol."""
    port = random.randrange(40_000, 50_000)
    browser = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--remote-debugging-port={port}",
         "--remote-debugging-address=127.0.0.1", f"--user-data-dir={folder / 'chromium'}", "--window-size=1300,1400",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            socket_url = await _page_socket(session, port)
            async with session.ws_connect(socket_url, max_msg_size=0) as ws:
                ids = iter(range(1, 10**6))

                async def call(method: str, **params: Any) -> dict[str, Any]:
                    number = next(ids)
                    await ws.send_json({"id": number, "method": method, "params": params})
                    while True:
                        message = await ws.receive_json(timeout=60)
                        if message.get("id") == number:
                            return message.get("result", {})

                async def until(expression: str, timeout_s: float = 60.0) -> float:
                    deadline = time.perf_counter() + timeout_s
                    while time.perf_counter() < deadline:
                        result = await call("Runtime.evaluate", expression=expression, returnByValue=True)
                        if result.get("result", {}).get("value"):
                            return time.perf_counter()
                        await asyncio.sleep(0.01)
                    raise TimeoutError(expression)

                started = time.perf_counter()
                await call("Page.navigate", url=page_url)
                shown = await until("document.body && document.body.dataset.firstRenderMs")
                result = await call("Runtime.evaluate", expression="document.body.dataset.firstRenderMs",
                                    returnByValue=True)  # fmt: skip
                first_render_ms = float(result["result"]["value"])
                typed = time.perf_counter()
                await call("Runtime.evaluate", expression=(
                    f"const box = document.getElementById('search'); box.value = {json.dumps(search_for)};"
                    "box.dispatchEvent(new Event('input'));"))  # fmt: skip
                found = await until(
                    "(() => { const rows = document.querySelectorAll('#fleet tbody tr');"
                    f" return rows.length === 1 && rows[0].dataset.target === {json.dumps(search_for)}; }})()"
                )
        return {"first_render_ms": first_render_ms, "navigate_to_rows_ms": round((shown - started) * 1000),
                "search_to_row_ms": round((found - typed) * 1000)}  # fmt: skip
    finally:
        browser.terminate()
        browser.wait(30)


async def _page_socket(session: aiohttp.ClientSession, port: int) -> str:
    for _ in range(200):
        try:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                pages = [p for p in await response.json() if p.get("type") == "page"]
                if pages:
                    return str(pages[0]["webSocketDebuggerUrl"])
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("Chromium's DevTools endpoint did not answer")


def real(bootstrap: str, statuses: list[TargetStatus], folder: Path) -> dict[str, Any]:
    names = TopicNames(f"fleetbench-{uuid.uuid4().hex[:6]}.")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    ensure_topics(admin, names.prefix, PARTITIONS)
    chunks = chunks_of(statuses)
    publish_s = publish(bootstrap, names.status, chunks)
    worker = Worker(bootstrap, names.prefix, folder, f"fleetbench-{uuid.uuid4().hex[:6]}", "fleet-bench")
    try:
        base = f"http://127.0.0.1:{worker.port}"
        deadline = time.monotonic() + 300
        while True:
            try:
                _, _, body = http(f"{base}/fleet")
                if sum(body["kinds"].values()) >= len(statuses):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or worker.process.poll() is not None:
                lines = [line for line in worker.log.read_text().splitlines() if "follower" in line or "ERROR" in line]
                raise RuntimeError("the worker did not list the fleet:\n" + "\n".join(lines[-20:]))
            time.sleep(0.5)
        pages = [http(f"{base}/fleet?page={i}") for i in range(10)]
        target = statuses[len(statuses) // 2 + 1].target
        search = [http(f"{base}/fleet?q={target}") for _ in range(5)]
        browser = asyncio.run(in_chromium(base + "/", target, folder))
        return {
            "status_messages": len(chunks),
            "status_message_kb_max": round(max(len(encode(c)) for c in chunks) / 1024, 1),
            "publish_statuses_s": round(publish_s, 1),
            "http_fleet_ms_median": round(statistics.median(p[0] for p in pages), 1),
            "http_fleet_bytes": pages[0][1],
            "http_search_ms_median": round(statistics.median(s[0] for s in search), 1),
            "page_html_bytes": len(urllib.request.urlopen(base + "/", timeout=30).read()),
            "worker_rss_mb": round(worker.rss_mb()),
            **browser,
        }
    finally:
        worker.stop()
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(names.prefix)])
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--targets", default="10000,100000")
    parser.add_argument("--refreshes", type=int, default=20)
    args = parser.parse_args()
    for count in (int(n) for n in args.targets.split(",")):
        statuses = synthetic(count)
        print(f"{count:,} targets, in process: {json.dumps(in_process(statuses, args.refreshes))}", flush=True)
        with tempfile.TemporaryDirectory(prefix="fleet-bench-") as folder:
            print(f"{count:,} targets, worker + Chromium: {json.dumps(real(args.bootstrap, statuses, Path(folder)))}",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
