"""Compares the window anomaly scorers on a synthetic labelled corpus (issue #4: HalfSpaceTrees is documented
to do badly on anomalies packed in windows; compare it with a Gaussian scorer).

    python benchmarks/learners.py [--targets 40] [--seconds 3600]

Every closed 5 s ping window of every target is scored online (score, then learn) by each scorer, as the
detectors do. Windows inside a migration's memory copy or stop-and-copy, or a bulk copy, are the anomalies.
Prints ROC AUC, the mean score of anomalous and normal windows, and microseconds per window.
"""

from __future__ import annotations

import argparse
import random
import time

from river import metrics

from migwatch.contract.records import PingSample
from migwatch.detectors.learners import WindowScorer, squash
from migwatch.detectors.ping import PingHeuristic
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=3600.0)
    args = parser.parse_args()
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
