"""The online learners: window anomaly scores as evidence, and analysts' feedback calibrating alerts."""

from __future__ import annotations

import json

import pytest

from migwatch.contract.detector_settings import DetectorSettings
from migwatch.contract.records import Alert, Feedback
from migwatch.detectors.learners import FeedbackClassifier, WindowScorer
from migwatch.detectors.target_group import TargetGroup
from migwatch_dev.synthetic import Episode, generate

TARGETS = [f"vm-{i}" for i in range(6)]


def _alerts(fleet: TargetGroup, samples: list, verdict: str | None = None) -> list[Alert]:
    """Run the samples; with ``verdict``, an analyst answers every suspected alert with it at once."""
    raised = []
    for sample in samples:
        for alert in fleet.update(sample):
            raised.append(alert)
            if verdict is not None and alert.migwatch.state == "suspected":
                feedback = Feedback(alert_id=alert.event.id, target=alert.migwatch.target, label=verdict,  # type: ignore[arg-type]
                                    ts=alert.migwatch.detected_ts, by="analyst-7")  # fmt: skip
                assert fleet.learn(feedback)
    return raised


def _recurring_bulk_copies(count: int) -> list:
    episodes = [Episode("bulk-transfer", "vm-1", 300 + 400 * i, copy_s=40, rtt_add_ms=5) for i in range(count)]
    return generate(episodes, TARGETS, 300 + 400 * count)[0]


def test_benign_feedback_on_a_recurring_pattern_lowers_its_likelihood_next_time() -> None:
    samples = _recurring_bulk_copies(8)
    taught = [a.migwatch for a in _alerts(TargetGroup(), samples, verdict="benign") if a.migwatch.state == "suspected"]
    untaught = [a.migwatch for a in _alerts(TargetGroup(), samples) if a.migwatch.state == "suspected"]
    assert len(taught) == len(untaught) == 8
    # Until feedback_min verdicts the classifier is not used: the same likelihood either way.
    assert taught[0].likelihood == untaught[0].likelihood
    assert taught[-1].likelihood < untaught[-1].likelihood - 0.1
    assert taught[-1].likelihood < taught[0].likelihood


def test_migration_feedback_teaches_a_pattern_to_be_likely() -> None:
    samples = _recurring_bulk_copies(10)
    taught = [a.migwatch.state for a in _alerts(TargetGroup(), samples, verdict="migration")]
    assert taught[:2] == ["suspected", "cleared"] and "likely" in taught[-3:]
    assert "likely" not in [a.migwatch.state for a in _alerts(TargetGroup(), samples)]  # without feedback: never


def test_feedback_on_an_unknown_alert_is_reported() -> None:
    feedback = Feedback(alert_id="never-raised", target="vm-1", label="benign", ts=1.0, by="analyst-7")
    assert TargetGroup().learn(feedback) is False


@pytest.mark.parametrize("learner", ["gaussian", "hst"])
def test_window_scores_are_evidence_of_a_migration(learner: str) -> None:
    episodes = [Episode("migration", "vm-2", 900, copy_s=40, downtime_s=1.0)]
    samples, _ = generate(episodes, TARGETS, 1400)
    alerts = {a.migwatch.state: a.migwatch for a in _alerts(TargetGroup(DetectorSettings(learner=learner)), samples)}
    score = alerts["likely"].evidence.learner_score
    assert score is not None and score > 0.5


@pytest.mark.parametrize("learner", ["gaussian", "hst"])
def test_learner_state_is_json_and_carries_on_the_same(learner: str) -> None:
    samples, _ = generate([Episode("migration", "vm-2", 900, copy_s=40)], TARGETS, 1400)
    fleet = TargetGroup(DetectorSettings(learner=learner))
    half = len(samples) // 2
    _alerts(fleet, samples[:half], verdict="benign")
    state = json.loads(fleet.snapshot())
    assert state["scorer"]["kind"] == learner and state["classifier"]["verdicts"] >= 0
    restored = TargetGroup.restore(fleet.snapshot(), DetectorSettings(learner=learner))
    assert _alerts(restored, samples[half:]) == _alerts(fleet, samples[half:])
    assert WindowScorer.from_state(fleet.scorer.state()).state() == fleet.scorer.state()
    assert FeedbackClassifier.from_state(fleet.classifier.state()).state() == fleet.classifier.state()
