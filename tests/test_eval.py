"""`migwatch replay` and `migwatch eval` (CONTRACT sections 4 and 5) on a generated labelled trace."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from migwatch.contract.codec import decode
from migwatch.contract.labels import write_labels
from migwatch.contract.records import Alert
from migwatch.contract.trace import TraceWriter
from migwatch_dev.lab import cli as lab_cli
from migwatch_dev.synthetic import Episode, generate

MIGRATIONS = [
    Episode("migration", "vm-00", 400, copy_s=20, downtime_s=0.5),
    Episode("migration", "vm-01", 500, copy_s=50, downtime_s=0.5),  # shaped, paper-like
    Episode("migration", "vm-02", 600, copy_s=1, downtime_s=0.02, lag_ms=25),  # quick and idle
    Episode("migration", "vm-03", 700, copy_s=30, downtime_s=0.002, lag_ms=4),  # capped: no lost ping, 4 ms lag
    Episode("migration", "vm-04", 800, copy_s=12, downtime_s=1.5),
    Episode("migration", "vm-00", 1300, copy_s=15, downtime_s=0.8),  # back again
]
BENIGN = [
    Episode("bulk-transfer", "vm-05", 400, copy_s=60, rtt_add_ms=6),
    Episode("bulk-transfer", "vm-06", 800, copy_s=20),
    Episode("loss-burst", "vm-07", 500, downtime_s=3),
    Episode("clock-correction", "vm-08", 600, lag_ms=40),
    Episode("ttl-change", "vm-09", 700),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("corpus")
    samples, labels = generate(MIGRATIONS + BENIGN, [f"vm-{i:02d}" for i in range(12)], duration_s=1800)
    with TraceWriter(folder / "trace.jsonl.gz") as writer:
        writer.write_all(samples)
    write_labels(folder / "labels.json", labels)
    return folder / "trace.jsonl.gz", folder / "labels.json"


def _migwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migwatch.cli", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_eval_json_scores_the_generated_corpus(corpus: tuple[Path, Path]) -> None:
    trace, labels = corpus
    result = _migwatch("eval", "--trace", str(trace), "--labels", str(labels), "--json")
    assert result.returncode == 0, result.stderr
    score = json.loads(result.stdout)
    contract_keys = {"migrations", "detected", "recall", "alerts", "false_alarms", "precision", "early", "delay_s",
                     "per_migration", "suspected_only"}  # fmt: skip
    assert contract_keys <= set(score) and set(score["delay_s"]) == {"median", "p95", "max"}
    assert set(score["per_migration"][0]) == {"target", "start", "end", "detected_ts", "delay_s", "state", "named"}
    assert (score["migrations"], score["recall"], score["false_alarms"], score["benign_alerted"]) == (6, 1.0, 0, 0)
    # The quality target: >= 80 % of migrations with >= 10 s of memory copy flagged before they end.
    long_copies = [m for m, e in zip(score["per_migration"], MIGRATIONS, strict=True) if e.copy_s >= 10]
    assert sum(m["delay_s"] < 0 for m in long_copies) >= 0.8 * len(long_copies)
    assert all(m["delay_s"] <= 120 for m in score["per_migration"])
    assert "replay:" in result.stderr and "done in" in result.stderr  # progress is shown


def test_the_scores_are_those_of_the_detectors_as_recorded(corpus: tuple[Path, Path]) -> None:
    """The figures of ``migwatch eval`` on this synthetic corpus and of ``migwatch lab score`` on the lab corpus,
    each whole, as recorded: tests/data/synthetic-eval.json and deploy/dev/corpus/results.json. A detector change
    that means to change them rewrites both (``migwatch lab score --out deploy/dev/corpus``; the synthetic one
    from this test's command) and says why."""
    trace, labels = corpus
    result = _migwatch("eval", "--trace", str(trace), "--labels", str(labels), "--json")
    assert json.loads(result.stdout) == json.loads((Path(__file__).parent / "data" / "synthetic-eval.json").read_text())
    lab_corpus = Path(__file__).resolve().parents[1] / "deploy" / "dev" / "corpus"
    recorded = json.loads((lab_corpus / "results.json").read_text())
    assert {run: lab_cli.score(lab_corpus / run) for run in recorded} == recorded


def test_eval_table_and_replay_alerts(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    trace, labels = corpus
    table = _migwatch("eval", "--trace", str(trace), "--labels", str(labels))
    assert table.returncode == 0 and table.stdout.startswith("migrations     6\ndetected       6  (recall 1.000")
    out = tmp_path / "alerts.jsonl"
    replay = _migwatch("replay", "--trace", str(trace), "--out", str(out))
    assert replay.returncode == 0, replay.stderr
    alerts = [decode(Alert, line) for line in out.read_bytes().splitlines()]
    assert {a.migwatch.target for a in alerts if a.migwatch.state == "confirmed"} == {e.target for e in MIGRATIONS}
    again = tmp_path / "again.jsonl"
    _migwatch("replay", "--trace", str(trace), "--out", str(again))
    assert again.read_bytes() == out.read_bytes()  # event time only: a replay is the same to the byte


def test_replay_takes_detector_settings_from_a_config(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    trace, _ = corpus
    config = tmp_path / "c.toml"
    config.write_text("[detectors]\nclear_after_s = 100000.0\n")  # nothing clears within the trace
    out = tmp_path / "alerts.jsonl"
    assert _migwatch("replay", "--trace", str(trace), "--out", str(out), "--config", str(config)).returncode == 0
    states = [decode(Alert, line).migwatch.state for line in out.read_bytes().splitlines()]
    assert "confirmed" in states and "cleared" not in states


def test_eval_and_replay_take_the_targets_of_a_config_with_their_own_settings(
    corpus: tuple[Path, Path], tmp_path: Path
) -> None:
    """Issue #21: the targets reach the detectors in replay and eval: site and labels on their alerts, and a
    target's own detector settings (here one that asks vm-03's 4 ms lag to be at least 50 ms)."""
    trace, labels = corpus
    config = tmp_path / "c.toml"
    config.write_text(
        '[[targets]]\nid = "vm-03"\naddress = "10.0.0.3"\nsite = "fra-1"\nlabels = {tenant = "acme"}\n'
        "detectors = {lag_min_ms = 50.0}\n"
    )
    out = tmp_path / "alerts.jsonl"
    assert _migwatch("replay", "--trace", str(trace), "--out", str(out), "--config", str(config)).returncode == 0
    alerts = [decode(Alert, line) for line in out.read_bytes().splitlines()]
    mine = [a for a in alerts if a.migwatch.target == "vm-03"]
    assert mine and all(a.migwatch.site == "fra-1" and a.labels == {"tenant": "acme"} for a in mine)
    assert "confirmed" not in {a.migwatch.state for a in mine}
    assert all(a.migwatch.site is msgspec.UNSET for a in alerts if a.migwatch.target != "vm-03")
    scored = _migwatch("eval", "--trace", str(trace), "--labels", str(labels), "--config", str(config), "--json")
    row = next(m for m in json.loads(scored.stdout)["per_migration"] if m["target"] == "vm-03")
    assert row["state"] != "confirmed"
    bad = tmp_path / "bad.toml"
    bad.write_text('[[targets]]\nid = "vm-03"\naddress = "10.0.0.3"\ndetectors = {common_wait_s = 1.0}\n')
    refused = _migwatch("eval", "--trace", str(trace), "--labels", str(labels), "--config", str(bad))
    assert refused.returncode == 2
    assert f"{bad}: targets[0].detectors.common_wait_s: a setting of the whole target group" in refused.stderr


def test_eval_reports_bad_input_with_exit_code_2(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    trace, _ = corpus
    bad = tmp_path / "labels.json"
    bad.write_text('{"v":1,"migrations":[{"target":"vm-00","start":10,"end":5}]}')
    result = _migwatch("eval", "--trace", str(trace), "--labels", str(bad))
    assert result.returncode == 2
    assert result.stderr == f"migwatch: error: {bad}: migrations[0].end: must be >= start (10.0), got 5.0\n"
    missing = _migwatch("replay", "--trace", str(tmp_path / "absent.jsonl"), "--out", str(tmp_path / "a.jsonl"))
    assert missing.returncode == 2 and "absent.jsonl: cannot open: No such file or directory" in missing.stderr


def test_plot_draws_a_png_of_one_target(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    trace, labels = corpus
    out = tmp_path / "vm-00.png"
    result = _migwatch("plot", "--trace", str(trace), "--target", "vm-00", "--out", str(out), "--labels", str(labels))
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"{out}: 1800 pings and 60 NTP answers of vm-00\n"
    png = out.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1100, 640)
    absent = _migwatch("plot", "--trace", str(trace), "--target", "nope", "--out", str(tmp_path / "n.png"))
    assert absent.returncode == 2 and absent.stderr == "migwatch: error: target: the trace has no samples of 'nope'\n"


def test_plot_has_the_fleet_pages_look(tmp_path: Path) -> None:
    """Issue #22: clock times, RTT on a log scale with no value for lost pings (their own strip), the offset
    below, the hypervisors' RTT beside the VM's, labelled migrations shaded and each alert marked."""
    from migwatch.plot import figure_of

    lab = Path(__file__).parents[1] / "deploy/dev/corpus/capped"
    trace, labels, alerts = lab / "trace-1000ms.jsonl.gz", lab / "labels.json", tmp_path / "alerts.jsonl"
    replayed = _migwatch(
        "replay", "--trace", str(trace), "--out", str(alerts), "--config", str(lab / "config-1000ms.toml")
    )
    assert replayed.returncode == 0, replayed.stderr
    raised = [json.loads(line) for line in alerts.read_text().splitlines()]
    own = [a for a in raised if a["migwatch"]["target"] == "lab-vm"]
    figure, pings, clocks = figure_of(trace, "lab-vm", labels=labels, alerts=alerts)
    figure.canvas.draw()
    rtt, strip, offset = figure.axes
    assert rtt.get_yscale() == "log" and rtt.get_ylabel() == "RTT (ms, log)"
    ticks = [t.get_text() for t in rtt.get_yticklabels() if t.get_text()]
    assert ticks and all(float(t) > 0 for t in ticks), ticks  # decades, and no "-10^0" for lost pings
    times = [t.get_text() for t in offset.get_xticklabels() if t.get_text()]
    assert len(times) >= 3 and all(re.fullmatch(r"\d\d:\d\d:\d\d", t) for t in times), times
    assert strip.get_ylabel() == "lost" and offset.get_ylabel() == "offset (ms)"
    lost = sum(len(c.get_segments()) for c in strip.collections)
    assert lost == pings - len(rtt.lines[2].get_xdata()) > 0  # every unanswered ping in the strip
    names = [line.get_label() for line in rtt.lines]
    assert names[:3] == ["RTT of hypervisor hv-1", "RTT of hypervisor hv-2", "RTT of lab-vm"]  # from the labels
    dashed = [line for line in rtt.lines if line.get_linestyle() == "--" and len(line.get_xdata())]
    assert len(dashed) == len(own) >= 4  # one line per alert of lab-vm
    assert len(rtt.patches) >= 4  # the labelled migrations shaded
    assert (pings, clocks) == (821, 109)
