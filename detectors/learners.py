"""Online learners beside the rules: an anomaly score of each ping window, and a classifier that learns from
analysts' feedback.

**Window scores.** Each closed ping window of a target becomes four features against the target's own
baseline: how far the window's (trimmed) mean and its peak rose, in spreads, its outliers and its unanswered
pings, each squashed into [0, 1) (``x / (x + k)``), as Half-Space Trees expect. One scorer serves the whole
fleet, so per-target state stays small. Two scorers are offered: ``hst`` (the default since issue #20: river's
``HalfSpaceTrees``) and ``gaussian`` (a running mean and variance per feature, scored by the largest one-sided
deviation); ``benchmarks/learners.py`` compares them, on synthetic windows and on the lab corpus. The score is
evidence (``learner_score``) and adds to the likelihood; on its own it cannot tell a migration from a bulk
copy or a pause (on the lab corpus, ROC AUC 0.69 for migration against look-alike windows), so it never raises
the state or names a look-alike.

**Feedback.** A river ``LogisticRegression`` learns, from Feedback records, which alerts analysts called a
migration and which benign, over the features of each alert. Once it has ``feedback_min`` verdicts it
calibrates the likelihood of new alerts, and a probability of at least ``feedback_likely_p`` makes a
suspected episode ``likely``.

Both keep explicit JSON state (``state()`` / ``from_state``), never pickle:

    >>> scorer = WindowScorer()
    >>> quiet = {"raise": 0.05, "peak": 0.1, "outliers": 0.0, "lost": 0.0}
    >>> for _ in range(300):                      # Half-Space Trees score from their first full window (250)
    ...     _ = scorer.score_and_learn(quiet)
    >>> scorer.score_and_learn({"raise": 0.9, "peak": 0.95, "outliers": 0.8, "lost": 0.0}) > 0.95
    True
    >>> scorer.score_and_learn(quiet) < 0.1
    True
    >>> WindowScorer.from_state(scorer.state()).state() == scorer.state()
    True
"""

from __future__ import annotations

import math
from typing import Any, Literal

from river import anomaly, linear_model, optim

from migwatch.contract.records import Evidence

FEATURES = ("raise", "peak", "outliers", "lost")
# x / (x + k): k is the raw value that maps to 0.5.
_SQUASH = {"raise": 4.0, "peak": 8.0, "outliers": 2.0, "lost": 1.0}


def squash(raw: dict[str, float]) -> dict[str, float]:
    """Non-negative raw features into [0, 1)."""
    return {name: max(0.0, raw[name]) / (max(0.0, raw[name]) + _SQUASH[name]) for name in FEATURES}


def alert_features(evidence: Evidence) -> dict[str, float]:
    """What the feedback classifier sees of an alert: its evidence, each figure squashed into [0, 1)."""
    baseline = max(evidence.rtt_baseline_ms or 0.0, 0.05)
    rise = max(0.0, (evidence.rtt_mean_ms or baseline) / baseline - 1)
    peak = max(0.0, (evidence.rtt_max_ms or baseline) / baseline - 1)
    outliers, lost = evidence.outliers or 0, evidence.unanswered or 0
    lag = abs(evidence.time_lag_ms or 0.0)
    return {
        "rise": rise / (rise + 4),
        "peak": peak / (peak + 20),
        "outliers": outliers / (outliers + 2),
        "lost": lost / (lost + 1),
        "lag": lag / (lag + 10),
        "ttl": 1.0 if evidence.ttl_change else 0.0,
        "score": evidence.learner_score or 0.0,
    }


class WindowScorer:
    """Anomaly score in [0, 1] of a window's features; learns every window it scores."""

    def __init__(self, kind: Literal["gaussian", "hst"] = "hst", warmup: int = 50) -> None:
        self.kind = kind
        self.warmup = warmup
        self.count = 0
        # gaussian: exponentially weighted mean and variance per feature (half-life of about 700 windows)
        self.mean = dict.fromkeys(FEATURES, 0.0)
        self.var = dict.fromkeys(FEATURES, 0.0)
        self.hst = anomaly.HalfSpaceTrees(n_trees=10, height=6, window_size=250, seed=42) if kind == "hst" else None

    def score_and_learn(self, features: dict[str, float]) -> float:
        score = self._score(features) if self.count >= self.warmup else 0.0
        self._learn(features)
        return score

    def _score(self, x: dict[str, float]) -> float:
        if self.hst is not None:
            return float(self.hst.score_one(x))
        # The largest one-sided z over the features; only rises count (a quieter window is no anomaly).
        z = max((x[name] - self.mean[name]) / math.sqrt(self.var[name] + 1e-4) for name in FEATURES)
        return 0.0 if z <= 0 else 1.0 - math.exp(-z * z / 18.0)  # ~0.4 at 3 sigma, ~0.9 at 6

    def _learn(self, x: dict[str, float]) -> None:
        self.count += 1
        if self.hst is not None:
            self.hst.learn_one(x)
            return
        alpha = max(1.0 / self.count, 0.001)
        for name in FEATURES:
            delta = x[name] - self.mean[name]
            self.mean[name] += alpha * delta
            self.var[name] = (1 - alpha) * (self.var[name] + alpha * delta * delta)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"kind": self.kind, "warmup": self.warmup, "count": self.count}
        if self.hst is None:
            state |= {"mean": self.mean, "var": self.var}
        elif self.hst.trees:
            # The trees are built from the seed, so their shape needs no saving: only the node masses.
            state["hst"] = {
                "counter": self.hst.counter,
                "first_window": self.hst._first_window,
                "masses": [[[node.l_mass, node.r_mass] for node in nodes] for nodes in self.hst._tree_nodes],
            }
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WindowScorer:
        scorer = cls(state["kind"], state["warmup"])
        scorer.count = state["count"]
        if scorer.hst is None:
            scorer.mean, scorer.var = dict(state["mean"]), dict(state["var"])
        elif "hst" in state:
            saved = state["hst"]
            scorer.hst.learn_one(dict.fromkeys(FEATURES, 0.0))  # builds the same trees from the seed
            for nodes, masses in zip(scorer.hst._tree_nodes, saved["masses"], strict=True):
                for node, (left, right) in zip(nodes, masses, strict=True):
                    node.l_mass, node.r_mass = left, right
            scorer.hst.counter, scorer.hst._first_window = saved["counter"], saved["first_window"]
        return scorer


class FeedbackClassifier:
    """P(migration) of an alert's features, learned online from analysts' verdicts."""

    def __init__(self, learning_rate: float = 2.0, intercept_rate: float = 0.1) -> None:
        # Fast enough that five verdicts on a recurring pattern move its probability to about 0.1 or 0.9.
        self.learning_rate, self.intercept_rate = learning_rate, intercept_rate
        self.model = linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate), intercept_lr=intercept_rate)
        self.verdicts = 0

    def learn(self, features: dict[str, float], migration: bool) -> None:
        self.model.learn_one(features, migration)
        self.verdicts += 1

    def probability(self, features: dict[str, float]) -> float:
        return float(self.model.predict_proba_one(features).get(True, 0.0))

    def state(self) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "intercept_rate": self.intercept_rate,
            "verdicts": self.verdicts,
            "weights": dict(self.model.weights),
            "intercept": self.model.intercept,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FeedbackClassifier:
        classifier = cls(state["learning_rate"], state["intercept_rate"])
        classifier.verdicts = state["verdicts"]
        classifier.model._weights.update(state["weights"])
        classifier.model.intercept = state["intercept"]
        return classifier
