"""Issue #21: planned migrations. A move inside a declared window is expected with low severity; the same
move outside it, or one that relocates the VM, keeps its full severity."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from migwatch.contract.config import ConfigError, load
from migwatch.contract.labels import read_labels
from migwatch.contract.records import Alert, Target
from migwatch.contract.silences import Silence
from migwatch.detectors.target_group import Directory, TargetGroup
from migwatch.replay import replay
from migwatch_dev.synthetic import START_TS, Episode, generate

TARGETS = [
    Target(id="vm-1", address="10.0.0.0", site="fra-1", labels={"tier": "web"}),
    Target(id="vm-2", address="10.0.0.1"),
]
MOVES = [
    Episode("migration", "vm-1", 300, copy_s=20, downtime_s=0.5),  # inside the window
    Episode("migration", "vm-1", 1500, copy_s=20, downtime_s=0.5),  # after it
    Episode("migration", "vm-2", 300, copy_s=20, downtime_s=0.5, relocate_ms=15),  # inside, but far away
]
WINDOW = Silence(id="patch-night", start=START_TS + 200, end=START_TS + 900, labels={"tier": "web"}, reason="kernel")


def _alerts(silences: list[Silence]) -> list[Alert]:
    samples, _ = generate(MOVES, ["vm-1", "vm-2"], 2000, ntp_interval_s=10.0)
    group = TargetGroup(directory=Directory.of(TARGETS, silences))
    return [alert for sample in samples for alert in group.update(sample)]


def test_a_move_in_a_window_is_expected_with_low_severity_and_the_same_move_outside_keeps_its_own() -> None:
    plain = {(a.migwatch.target, a.migwatch.state, round(a.migwatch.detected_ts)): a for a in _alerts([])}
    judged = _alerts([WINDOW, Silence(id="vm-2-window", start=START_TS + 200, end=START_TS + 900, targets=["vm-2"])])
    assert {(a.migwatch.target, a.migwatch.state, round(a.migwatch.detected_ts)) for a in judged} == set(plain)
    for alert in judged:
        detail, before = (
            alert.migwatch,
            plain[(alert.migwatch.target, alert.migwatch.state, round(alert.migwatch.detected_ts))],
        )
        if detail.state == "cleared":
            assert detail.outcome is before.migwatch.outcome
        elif detail.target == "vm-1" and detail.detected_ts < START_TS + 900:
            assert (detail.outcome, detail.window, alert.event.severity) == ("expected", "patch-night", 1)
            assert alert.event.type == ["change"]
        elif detail.target == "vm-1":
            assert (detail.outcome, alert.event.severity) == ("unexpected", before.event.severity)
    relocated = next(a for a in judged if a.event.action == "vm-relocated")
    assert relocated.migwatch.target == "vm-2" and relocated.migwatch.outcome == "unexpected"
    assert relocated.migwatch.window == "vm-2-window" and relocated.event.severity == 4
    assert {a.migwatch.outcome for a in plain.values() if a.migwatch.state != "cleared"} == {"unexpected"}


def test_windows_in_the_config_are_validated_and_named(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[silences]]\nid = "w"\nstart = 100.0\nend = 50.0\nsites = ["fra-1"]\n')
    with pytest.raises(ConfigError, match=r"c.toml: silences\[0\].end: must be after start \(100.0\), got 50.0"):
        load(config)
    config.write_text('[[silences]]\nid = "w"\nstart = 100.0\nend = 5000.0\nsites = ["fra-1"]\nto_hosts = ["hv-2"]\n')
    assert load(config).silences[0].to_hosts == ["hv-2"]


LAB_RUN = Path(__file__).resolve().parents[1] / "deploy" / "dev" / "corpus" / "same-site"


def test_a_lab_migration_in_a_window_is_expected_and_the_same_moves_outside_it_are_not() -> None:
    """On the emulated lab's recorded same-site run: a window around the second of its four migrations."""
    labels = read_labels(LAB_RUN / "labels.json")
    config = load(LAB_RUN / "config-1000ms.toml")
    planned = labels.migrations[1]
    window = Silence(id="move-2", start=planned.start - 60, end=planned.end + 60, targets=[planned.target])
    directory = Directory.of(config.targets, [window])
    alerts = [a for a in replay(LAB_RUN / "trace-1000ms.jsonl.gz", config.detectors, quiet=True, directory=directory)]
    confirmed = [a for a in alerts if a.migwatch.state == "confirmed"]
    assert len(confirmed) == len(labels.migrations) == 4
    assert [(a.migwatch.outcome, a.event.severity) for a in confirmed] == [
        ("unexpected", 4), ("expected", 1), ("unexpected", 4), ("unexpected", 4)
    ]  # fmt: skip
    assert confirmed[1].migwatch.window == "move-2" and window.start <= confirmed[1].migwatch.detected_ts <= window.end


def test_bad_windows_and_planned_moves_are_refused_naming_the_field(tmp_path: Path) -> None:
    """Checked before anything is sent: no broker is needed to be told what is wrong."""
    config = tmp_path / "c.toml"
    config.write_text("[kafka]\n")
    moves = tmp_path / "moves.jsonl"
    moves.write_text('{"target": "web-01", "to": "hv-2", "window": {"start": 100, "end": 200}}\n'
                     '{"target": "web-02", "window": {"start": "2026-12-08T22:00:00", "end": 200}}\n')  # fmt: skip
    cases = [
        (["add", "--id", "w", "--target", "web-01"], "--end/--duration: give exactly one, got None and None"),
        (["add", "--id", "w", "--duration", "60", "--label", "tier"], "--label: must be KEY=VALUE, got 'tier'"),
        (["add", "--id", "w", "--end", "50", "--start", "100", "--site", "fra-1"], "end: must be after start"),
        (["import", str(moves)], f"{moves}:2: window.start: must name its time zone (Z or +hh:mm)"),
    ]
    for args, message in cases:
        result = subprocess.run([sys.executable, "-m", "migwatch.cli", "silences", *args, "--config", str(config)],
                                capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
