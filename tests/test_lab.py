"""The migration lab (issue #6): scenarios are checked up front, the emulated lab plays each episode's
pattern on the wire and in real NTP answers, the product's own recorder writes the trace, and the lab
leaves nothing behind, also when it is interrupted. The real QEMU migration runs in test_pipeline.py."""

from __future__ import annotations

import gzip
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

import pytest

from migwatch.contract.labels import read_labels
from migwatch.kafka_io.partitioning import Partitioner
from migwatch_dev.lab.cli import CORPUS
from migwatch_dev.lab.emulated_lab import EmulatedLab
from migwatch_dev.lab.errors import LabError
from migwatch_dev.lab.qemu_lab import Migration, QemuLab
from migwatch_dev.lab.scenario import Step, load, parse, play, scenario_names
from migwatch_dev.lab.targets import VM_ID
from tests.processes import wait_for

SCENARIO = {"v": 1, "steps": [
    {"do": "wait", "s": 12},
    {"do": "migrate", "copy_s": 4, "outage_s": 1.0, "lag_ms": -300},
    {"do": "wait", "s": 10},
    {"do": "bulk-transfer", "seconds": 4},
    {"do": "wait", "s": 4},
    {"do": "loss-burst", "seconds": 3, "probability": 1.0},
    {"do": "ttl-change", "seconds": 3, "hops": 2},
    {"do": "wait", "s": 2},
    {"do": "pause", "seconds": 2},
    {"do": "wait", "s": 10},
    {"do": "clock-step", "step_s": 0.5},
    {"do": "wait", "s": 4},
]}  # fmt: skip


def lab_namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.startswith(("mwl-", "mw-ehost-"))}


def lab_run(tmp_path: Path, scenario: dict[str, Any], *extra: str) -> subprocess.Popen[str]:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(scenario))
    return subprocess.Popen(
        [sys.executable, "-m", "migwatch.cli", "lab", "run", "--mode", "emulated", "--scenario", str(path),
         "--out", str(tmp_path / "run"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def read_trace(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt") as lines:
        return [json.loads(line) for line in lines]


def test_every_built_in_scenario_is_valid_for_its_lab() -> None:
    assert {"ci", "fast", "shaped", "capped", "benign", "emulated", "relocated", "same-site", "fleet"} <= set(
        scenario_names()
    )
    emulated = {"emulated"} | {name for name, mode in CORPUS.items() if mode == "emulated"}
    for name in scenario_names():
        load(name, EmulatedLab if name in emulated else QemuLab)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"do": "migrate", "copy_s": "4"}, "steps[0].copy_s: must be float, got '4'"),
        ({"do": "shape", "mbit": 10}, "steps[0].do: 'shape': not an episode of this lab"),
        ({"do": "pause"}, "steps[0]: pause needs seconds"),
        ({"do": "wait", "s": -1}, "steps[0].s: must be >= 0, got -1"),
        ({"do": "loss-burst", "seconds": 1, "probability": float("nan")}, "steps[0].probability: must be float"),
        ({"do": "repeat", "times": 0, "steps": []}, "steps[0].times: must be an integer from 1 to 1000, got 0"),
        ({"do": "repeat", "times": 2, "steps": [{"do": "ttl-change", "seconds": 1, "hops": 1.5}]},
         "steps[0].steps[0].hops: must be int, got 1.5"),
    ],
)  # fmt: skip
def test_a_bad_step_is_refused_naming_its_place(step: dict[str, Any], message: str) -> None:
    with pytest.raises(LabError) as raised:
        parse({"v": 1, "steps": [step]}, EmulatedLab, source="s.json")
    assert str(raised.value).startswith(f"s.json: {message}")


def test_a_fleet_names_its_vms_and_each_episode_s_vm() -> None:
    """A fleet's VMs share the first one's partition (a stream worker sees them together); an episode names
    one of them, and a lab of one VM (the emulated) refuses a fleet."""
    fleet = parse({"v": 1, "vms": 3, "steps": [{"do": "pause", "seconds": 1, "vm": "lab-vm-15"}]}, QemuLab, source="f")
    assert fleet.vms == ("lab-vm", "lab-vm-7", "lab-vm-15") and fleet.steps[0].settings["vm"] == "lab-vm-15"
    assert len({Partitioner(8).of(vm.encode()) for vm in fleet.vms}) == 1
    for document, message in [
        ({"v": 1, "vms": 2, "steps": [{"do": "reboot", "vm": "lab-vm-15"}]},
         "f: steps[0].vm: not a VM of this scenario's fleet (lab-vm, lab-vm-7), got 'lab-vm-15'"),
        ({"v": 1, "vms": 0, "steps": []}, "f: vms: must be an integer from 1 to 8, got 0"),
        ({"v": 1, "vm": 2, "steps": []}, "f: vm: not a key of a scenario (it has: v, vms, steps)"),
        ({"v": 1, "steps": [{"do": "pause", "seconds": 1, "vm": 7}]}, "f: steps[0].vm: must be str, got 7"),
    ]:  # fmt: skip
        with pytest.raises(LabError, match=re.escape(message)):
            parse(document, QemuLab, source="f")
    with pytest.raises(LabError, match="f: vms: this lab has one VM, got 3"):
        parse({"v": 1, "vms": 3, "steps": []}, EmulatedLab, source="f")


class _CrashingLab:
    """A lab whose guest does not come back after its move: what QEMU 7.2's TCG did now and then (README, "The
    corpus"), which cannot be brought about on demand; the real QemuLab reports it the same way."""

    def __init__(self) -> None:
        self.rebooted: list[str] = []

    def migrate(self, vm: str = VM_ID) -> Migration:
        return Migration(start=100.0, end=130.0, downtime_ms=800.0, total_ms=30_000.0, source="hv-1",
                         destination="hv-2", crash_log="console-3.sock.log")  # fmt: skip

    def reboot(self, vm: str = VM_ID) -> tuple[float, float]:
        self.rebooted.append(vm)
        return 260.0, 275.0


def test_a_guest_lost_after_its_move_keeps_the_move_and_is_rebooted_and_labelled(tmp_path: Path) -> None:
    lab, lines = _CrashingLab(), []
    labels = play(lab, [Step("migrate", {"vm": "lab-vm-7"})], tmp_path / "labels.json", report=lines.append)
    assert lab.rebooted == ["lab-vm-7"]
    assert [(m.target, m.start, m.end) for m in labels.migrations] == [("lab-vm-7", 100.0, 130.0)]
    assert [(b.target, b.kind, b.start, b.settings) for b in labels.benign] == [
        ("lab-vm-7", "reboot", 260.0, {"after_crash": True})
    ]
    assert read_labels(tmp_path / "labels.json") == labels  # written, as after every episode
    assert any("did not come back" in line and "console-3.sock.log" in line for line in lines)


def test_a_bad_scenario_fails_before_anything_is_set_up(tmp_path: Path) -> None:
    before = lab_namespaces()
    run = lab_run(tmp_path, {"v": 1, "steps": [{"do": "migrate", "dirty_mb_s": 8}]}, "--record", "1")
    out, _ = run.communicate(timeout=60)
    assert run.returncode == 2, out
    assert "steps[0].dirty_mb_s: not a setting of migrate in this lab" in out
    assert not (tmp_path / "run").exists() and lab_namespaces() == before


def test_the_emulated_lab_plays_each_episode_and_the_probes_record_it(tmp_path: Path) -> None:
    before = lab_namespaces()
    run = lab_run(tmp_path, SCENARIO, "--record", "0.1", "--ntp-interval", "0.5")
    out, _ = run.communicate(timeout=180)
    assert run.returncode == 0, out
    assert lab_namespaces() <= before, "the lab left namespaces behind"
    labels = json.loads((tmp_path / "run" / "labels.json").read_text())
    read_labels(tmp_path / "run" / "labels.json")  # written through the contract's validated Labels
    (migration,) = labels["migrations"]
    assert migration["target"] == VM_ID and migration["end"] - migration["start"] >= 5.0
    assert migration["source"] != migration["destination"]
    episodes = {episode["kind"]: episode for episode in labels["benign"]}
    assert set(episodes) == {"bulk-transfer", "loss-burst", "ttl-change", "pause", "clock-step"}
    samples = read_trace(tmp_path / "run" / "trace-100ms.jsonl.gz")
    pings = [s for s in samples if s["type"] == "ping"]
    clocks = [s for s in samples if s["type"] == "ntp" and s["offset_ms"] is not None]

    def during(episode: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [s for s in rows if episode["start"] + 0.3 <= s["ts"] <= episode["end"] - 0.3]

    quiet = [s["rtt_ms"] for s in pings if s["ts"] < migration["start"] and s["rtt_ms"] is not None]
    copy = {"start": migration["start"], "end": migration["end"] - 1.0}
    assert median(s["rtt_ms"] for s in during(copy, pings)) > 3 * median(quiet)
    assert median(s["rtt_ms"] for s in during(episodes["bulk-transfer"], pings)) > 3 * median(quiet)
    outage = {"start": migration["end"] - 1.0, "end": migration["end"]}
    assert all(s["rtt_ms"] is None for s in during(outage, pings))
    assert all(s["rtt_ms"] is None for s in during(episodes["loss-burst"], pings))
    ttls = {s["ttl"] for s in during(episodes["ttl-change"], pings)}
    assert ttls == {min(s["ttl"] for s in pings if s["ttl"] is not None)}, ttls
    assert max(s["ttl"] for s in pings if s["ttl"] is not None) - ttls.pop() == 2
    # Replies queue during the pause and all come when it ends: late, or past the probe's 1 s timeout.
    pause_end = episodes["pause"]["end"]
    paused = during(episodes["pause"], pings)
    assert paused and all(s["rtt_ms"] is None for s in paused if s["ts"] < pause_end - 1.1)
    late = [s for s in paused if s["ts"] > pause_end - 0.8]
    assert late and all(s["rtt_ms"] == pytest.approx((pause_end - s["ts"]) * 1000, abs=150) for s in late)

    def offset(start: float, end: float) -> float:
        """chronyd follows a step within about 6 s, with a short overshoot (NOTES-lab)."""
        return median(s["offset_ms"] for s in clocks if start <= s["ts"] <= end)

    moved = offset(migration["end"] + 6, migration["end"] + 10)
    assert moved - offset(migration["start"] - 4, migration["start"]) == pytest.approx(-300, abs=60)
    assert offset(pause_end + 6, pause_end + 10) - moved == pytest.approx(-2000, abs=200)


def test_an_interrupted_run_cleans_up_and_keeps_what_it_saw(tmp_path: Path) -> None:
    before = lab_namespaces()
    scenario = {"v": 1, "steps": [{"do": "wait", "s": 2}, {"do": "clock-step", "step_s": 1}, {"do": "wait", "s": 120}]}
    run = lab_run(tmp_path, scenario, "--record", "0.5")
    labels = tmp_path / "run" / "labels.json"
    wait_for(lambda: labels.exists() and json.loads(labels.read_text())["benign"], 60, "the clock step's label")
    assert lab_namespaces() - before, "the lab's namespaces exist while it runs"
    started = time.monotonic()
    run.send_signal(signal.SIGINT)
    out, _ = run.communicate(timeout=60)
    assert run.returncode == 130, out
    assert time.monotonic() - started < 30
    assert lab_namespaces() <= before, "the lab left namespaces behind"
    assert json.loads(labels.read_text())["benign"][0]["kind"] == "clock-step"
    assert any(s["type"] == "ping" for s in read_trace(tmp_path / "run" / "trace-500ms.jsonl.gz"))
