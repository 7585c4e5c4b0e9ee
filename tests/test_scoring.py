"""CONTRACT section 4 as revised 2026-12-02: which labelled episode an alert belongs to."""

from __future__ import annotations

from migwatch.contract.labels import BenignLabel, Labels, MigrationLabel
from migwatch.detectors.evaluate import score, table

LABELS = Labels(
    migrations=[
        MigrationLabel(target="vm", start=100.0, end=110.0),
        MigrationLabel(target="vm", start=400.0, end=430.0),
    ],
    benign=[
        BenignLabel(target="vm", start=150.0, end=152.0, kind="pause"),
        BenignLabel(target="other", start=100.0, end=120.0, kind="bulk-transfer"),
    ],
)


def test_an_alert_on_a_benign_episode_soon_after_a_migration_is_a_false_alarm() -> None:
    # 160 s is within 120 s of the first migration's end, but the pause began later: the alert is the pause's.
    result = score([("vm", "confirmed", 112.0), ("vm", "confirmed", 160.0)], LABELS)
    assert (result["detected"], result["alerts"], result["false_alarms"], result["benign_alerted"]) == (1, 2, 1, 1)
    assert result["per_benign"][0] == {"target": "vm", "start": 150.0, "end": 152.0, "kind": "pause",
                                       "states": ["confirmed"], "named": "migration"}  # fmt: skip
    assert result["per_benign"][1]["states"] == []


def test_an_alert_belongs_from_two_seconds_before_its_episode_starts() -> None:
    early = score([("vm", "likely", 398.5)], LABELS)["per_migration"][1]
    assert early["delay_s"] == -31.5 and early["state"] == "likely"
    # 2.5 s before the second migration: the first migration's, and too late for it.
    result = score([("vm", "likely", 397.5)], LABELS)
    assert (result["detected"], result["false_alarms"]) == (0, 1)


def test_suspected_alerts_are_listed_but_never_counted() -> None:
    result = score([("other", "suspected", 105.0), ("nobody", "confirmed", 5.0)], LABELS)
    assert result["per_benign"][1]["states"] == ["suspected"]
    assert (result["alerts"], result["false_alarms"], result["benign_alerted"], result["precision"]) == (1, 1, 0, 0.0)
    assert "bulk-transfer  none              suspected" in table(result)


def test_lookalike_alerts_are_never_counted_and_name_their_episodes() -> None:
    """Issue #20: a look-alike's alert (state suspected, its own action) names the episode it belongs to; a
    migration named a pause is a miss the confusion matrix shows."""
    alerts = [("vm", "suspected", 104.0, "vm-paused"), ("vm", "suspected", 153.0, "vm-paused"),
              ("vm", "confirmed", 431.0, "vm-live-migration"), ("vm", "confirmed", 447.0, "vm-relocated")]  # fmt: skip
    result = score(alerts, LABELS)
    assert (result["detected"], result["alerts"], result["false_alarms"], result["benign_alerted"]) == (1, 2, 0, 0)
    assert [row["named"] for row in result["per_migration"]] == ["vm-paused", "migration"]
    assert result["confusion"] == {"bulk-transfer": {"none": 1}, "migration": {"migration": 1, "vm-paused": 1},
                                   "pause": {"vm-paused": 1}}  # fmt: skip
