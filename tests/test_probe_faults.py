"""Issue #8, probe faults: half the targets silent and a hundred host names that stop resolving must not
slow the probing of the rest. `migwatch record` runs in a network namespace of the test's own (loopback
targets; iptables drops the echo requests to the silent half; the namespace's /etc/hosts, which `ip netns
exec` mounts over the real one, loses the names mid-run). Its scheduler lateness is compared with a run of
the same size where every target answers. (A probe worker killed mid-run: tests/test_probe_workers.py.)"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from migwatch_dev.lab.netns import sh

TARGETS = 400
SECONDS = 24.0


@pytest.fixture
def namespace() -> Iterator[tuple[str, Path]]:
    name = f"mw-pf-{uuid.uuid4().hex[:6]}"
    hosts = Path("/etc/netns") / name / "hosts"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        yield name, hosts
    finally:
        sh("ip", "netns", "del", name, check=False)
        hosts.unlink(missing_ok=True)
        hosts.parent.rmdir()


def record(namespace: str, folder: Path, targets: list[tuple[str, str]], tag: str) -> tuple[float, list[dict]]:
    """Probe ``targets`` (id, address) for SECONDS inside ``namespace``: (lateness p99 ms, the samples)."""
    config = folder / f"{tag}.toml"
    entries = "".join(
        f'[[targets]]\nid = "{target}"\naddress = "{address}"\nntp = false\n' for target, address in targets
    )
    config.write_text('[probe]\nname = "pf"\nresolve_every_s = 2.0\nping_timeout_s = 0.5\n' + entries)
    trace = folder / f"{tag}.jsonl.gz"
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-m", "migwatch.cli", "record", "--config", str(config),
         "--out", str(trace), "--duration", str(SECONDS)],
        capture_output=True, text=True, timeout=SECONDS + 60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = re.search(r"lateness p50 ([0-9.]+) ms, p99 ([0-9.]+) ms, (\d+) skipped", result.stderr)
    assert found is not None, result.stderr
    assert found[3] == "0", result.stderr
    with gzip.open(trace, "rt") as lines:
        return float(found[2]), [json.loads(line) for line in lines]


def test_silent_targets_and_vanishing_names_do_not_slow_the_rest(namespace: tuple[str, Path], tmp_path: Path) -> None:
    name, hosts = namespace
    answering = [(f"ok-{i}", f"127.5.{i // 200}.{i % 200 + 1}") for i in range(TARGETS // 4)]
    named = [(f"named-{i}", f"host-{i}.lab.test") for i in range(TARGETS // 4)]
    silent = [(f"silent-{i}", f"127.6.{i // 200}.{i % 200 + 1}") for i in range(TARGETS // 2)]
    lines = "127.0.0.1 localhost\n" + "".join(f"127.7.0.{i + 1} host-{i}.lab.test\n" for i in range(len(named)))
    hosts.write_text(lines)
    everyone = [(target, f"127.5.9.{i % 200 + 1}") for i, (target, _) in enumerate(named + silent)]
    baseline_p99, _ = record(name, tmp_path, answering + everyone, "baseline")

    sh("ip", "netns", "exec", name, "iptables", "-A", "OUTPUT", "-d", "127.6.0.0/16", "-p", "icmp", "-j", "DROP")
    # The names stop resolving a third of the way in.
    timer = threading.Timer(SECONDS / 3, lambda: hosts.write_text("127.0.0.1 localhost\n"))
    timer.start()
    try:
        faulty_p99, samples = record(name, tmp_path, answering + named + silent, "faulty")
    finally:
        timer.cancel()
    by_target: dict[str, list[dict]] = defaultdict(list)
    for sample in samples:
        by_target[sample["target"]].append(sample)
    expected = SECONDS - 2  # one ping a second each (the first second of a spread schedule may be short)
    for target, _ in answering:
        pings = by_target[target]
        assert len(pings) >= expected and all(p["rtt_ms"] is not None for p in pings[1:]), target
    for target, _ in silent:
        assert len(by_target[target]) >= expected and all(p["rtt_ms"] is None for p in by_target[target])
    for target, _ in named:
        pings = by_target[target]
        assert len(pings) >= expected, target
        assert any(p["rtt_ms"] is not None for p in pings[:5]) and all(p["rtt_ms"] is None for p in pings[-5:])
    print(f"{TARGETS} targets at 1/s: lateness p99 {baseline_p99:.1f} ms all answering, {faulty_p99:.1f} ms with "
          f"half silent and a quarter's names gone")  # fmt: skip
    assert faulty_p99 <= max(25.0, 3 * baseline_p99)
