"""Compares the window anomaly scorers on a synthetic labelled corpus (issue #4: HalfSpaceTrees is documented
to do badly on anomalies packed in windows; compare it with a Gaussian scorer), and on the lab corpus.

    python benchmarks/learners.py [--targets 40] [--seconds 3600] [--lab deploy/dev/corpus] [--detectors]

Every closed 5 s ping window of every target is scored online (score, then learn) by each scorer, as the
detectors do. Windows inside a migration's memory copy or stop-and-copy, or a bulk copy, are the anomalies.
Prints ROC AUC, the mean score of anomalous and normal windows, and microseconds per window.

With ``--lab`` (issue #20) the VMs' windows of every recorded run at 1 s pings are scored in turn by one
scorer: ROC AUC of migration windows against quiet ones (is a migration an anomaly?) and against the windows of
the labelled look-alikes (bulk copies, load, pauses, clock steps, reboots, route changes: does the score tell
them apart?), and the cost per window at 10,000 VMs (2,000 windows a second at 1 s pings).

With ``--detectors`` the whole detectors run over the same synthetic samples (2,000 targets, 100 s of 1 s
pings) once with each scorer, in this process: microseconds a sample, and the ratio of the two.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from river import metrics

from migwatch.contract.detector_settings import DetectorSettings
from migwatch.contract.labels import read_labels
from migwatch.contract.records import PingSample
from migwatch.contract.trace import read_trace
from migwatch.detectors.learners import WindowScorer, squash
from migwatch.detectors.ping import PingHeuristic
from migwatch.detectors.target_group import TargetGroup
from migwatch_dev.lab.targets import VM_ID
from migwatch_dev.synthetic import START_TS, Episode, generate


def _windows(targets: int, seconds: float) -> list[tuple[dict[str, float], bool]]:
    rng = random.Random(7)
    names = [f"vm-{i:03d}" for i in range(targets)]
    episodes = []
    for name in names:
        for start in range(600, int(seconds) - 300, 900):
            kind = rng.choice(["migration", "bulk-transfer", "none"])
            if kind != "none":
                episodes.append(Episode(kind, name, start + rng.uniform(0, 200), copy_s=rng.uniform(10, 60)))
    samples, _ = generate(episodes, names, seconds)
    spans = {}
    for episode in episodes:
        spans.setdefault(episode.target, []).append((START_TS + episode.start, START_TS + episode.end + 5))
    heuristics = {name: PingHeuristic() for name in names}
    windows = []
    for sample in samples:
        if not isinstance(sample, PingSample):
            continue
        heuristic = heuristics[sample.target]
        start = heuristic.window_start
        features = heuristic.update(sample)
        if features is not None and start is not None:
            anomalous = any(low <= start <= high for low, high in spans.get(sample.target, ()))
            windows.append((squash(features), anomalous))
    return windows


def _lab_windows(corpus: Path) -> list[tuple[dict[str, float], str]]:
    """The VMs' windows of every run's 1 s trace, each labelled migration, benign or quiet."""
    windows: list[tuple[dict[str, float], str]] = []
    for labels_file in sorted(corpus.glob("*/labels.json")):
        labels = read_labels(labels_file)
        spans = [(m.target, m.start, m.end + 5, "migration") for m in labels.migrations]
        spans += [(b.target, b.start, b.end + 5, "benign") for b in labels.benign]
        heuristics: dict[str, PingHeuristic] = {}
        for sample in read_trace(labels_file.parent / "trace-1000ms.jsonl.gz"):
            if not isinstance(sample, PingSample) or sample.target != VM_ID:
                continue
            heuristic = heuristics.setdefault(sample.target, PingHeuristic())
            start = heuristic.window_start
            features = heuristic.update(sample)
            if features is not None and start is not None:
                kind = next((k for t, low, high, k in spans if t == sample.target and low <= start <= high), "quiet")
                windows.append((squash(features), kind))
    return windows


def _lab(corpus: Path) -> None:
    windows = _lab_windows(corpus)
    counts = {kind: sum(1 for _, k in windows if k == kind) for kind in ("migration", "benign", "quiet")}
    print(f"lab corpus, 1 s pings: {len(windows):,} windows ({', '.join(f'{n} {k}' for k, n in counts.items())})")
    for kind in ("gaussian", "hst"):
        scorer = WindowScorer(kind, warmup=20)  # type: ignore[arg-type]
        scores: list[tuple[float, str]] = []
        started = time.perf_counter()
        for features, label in windows:
            scores.append((scorer.score_and_learn(features), label))
        elapsed = time.perf_counter() - started
        per_window = elapsed / len(windows)
        aucs = []
        for other in ("quiet", "benign"):
            auc = metrics.ROCAUC()
            for score, label in scores[scorer.warmup :]:
                if label in ("migration", other):
                    auc.update(label == "migration", score)
            aucs.append(f"migration vs {other} {auc.get():.3f}")
        print(f"{kind:9s} ROC AUC {', '.join(aucs)}   {1e6 * per_window:6.1f} us/window = "
              f"{2000 * per_window:.2f} cores at 10,000 VMs")  # fmt: skip


def _detectors() -> None:
    names = [f"vm-{i:04d}" for i in range(2000)]
    samples, _ = generate([], names, 100.0)
    per_sample = {}
    for kind in ("gaussian", "hst"):
        group = TargetGroup(DetectorSettings(learner=kind))  # type: ignore[arg-type]
        started = time.perf_counter()
        for sample in samples:
            group.update(sample)
        per_sample[kind] = (time.perf_counter() - started) / len(samples)
        print(f"detectors with {kind:9s} {len(samples):,} samples  {1e6 * per_sample[kind]:5.2f} us a sample")
    print(f"hst / gaussian: {per_sample['hst'] / per_sample['gaussian']:.2f}x the time a sample")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--lab", type=Path, metavar="DIR", help="score the lab corpus in DIR instead")
    parser.add_argument("--detectors", action="store_true", help="time the whole detectors with each scorer")
    args = parser.parse_args()
    if args.lab is not None:
        _lab(args.lab)
        return
    if args.detectors:
        _detectors()
        return
    windows = _windows(args.targets, args.seconds)
    anomalies = sum(label for _, label in windows)
    print(f"{len(windows):,} windows, {anomalies:,} anomalous ({anomalies / len(windows):.1%})")
    for kind in ("gaussian", "hst"):
        scorer = WindowScorer(kind)  # type: ignore[arg-type]
        auc = metrics.ROCAUC()
        scored: dict[bool, list[float]] = {True: [], False: []}
        started = time.perf_counter()
        for features, label in windows:
            score = scorer.score_and_learn(features)
            if scorer.count > scorer.warmup:
                auc.update(label, score)
                scored[label].append(score)
        elapsed = time.perf_counter() - started
        mean = {label: sum(values) / max(len(values), 1) for label, values in scored.items()}
        print(f"{kind:9s} ROC AUC {auc.get():.3f}   mean score anomalous {mean[True]:.3f}, normal {mean[False]:.3f}"
              f"   {1e6 * elapsed / len(windows):6.1f} us/window")  # fmt: skip


if __name__ == "__main__":
    main()
