"""Issue #21: a VM moved to a farther site, and back, and away again; each move its own episode."""

from __future__ import annotations

from pathlib import Path

import pytest

from migwatch.contract.config import load
from migwatch.contract.labels import read_labels
from migwatch.contract.records import Alert, RelocationEvidence
from migwatch.detectors.target_group import TargetGroup
from migwatch.replay import replay
from migwatch_dev.synthetic import START_TS, Episode, generate

AWAY_BACK_AWAY = [
    Episode("migration", "vm-1", 600, copy_s=10, downtime_s=0.3, relocate_ms=15),
    Episode("migration", "vm-1", 1200, copy_s=10, downtime_s=0.3, relocate_ms=-15),
    Episode("migration", "vm-1", 1800, copy_s=10, downtime_s=0.3, relocate_ms=15),
]


def _alerts(episodes: list[Episode], targets: list[str], ntp_interval_s: float) -> list[Alert]:
    samples, _ = generate(episodes, targets, 2600, ntp_interval_s=ntp_interval_s)
    group = TargetGroup()
    return [alert for sample in samples for alert in group.update(sample)]


def test_each_move_far_away_and_back_is_confirmed_with_its_own_lag_and_relocation() -> None:
    alerts = _alerts(AWAY_BACK_AWAY, ["vm-1"], 10.0)
    confirmed = [a for a in alerts if a.migwatch.state == "confirmed" and a.event.action == "vm-live-migration"]
    relocated = [a for a in alerts if a.event.action == "vm-relocated"]
    cleared = [a for a in alerts if a.migwatch.state == "cleared"]
    # One confirmation per move, each within two NTP intervals of its switch.
    delays = [a.migwatch.detected_ts - START_TS - e.end for a, e in zip(confirmed, AWAY_BACK_AWAY, strict=True)]
    assert all(0 <= delay <= 20 for delay in delays), delays
    # Each lag against the offset before its own move: the downtime's 300 ms, never two summed.
    assert all(-320 < (a.migwatch.evidence.time_lag_ms or 0) < -270 for a in confirmed)
    shifts = [a.migwatch.relocation.shift_ms for a in relocated]  # type: ignore[union-attr]
    assert [round(shift) for shift in shifts] == [15, -15, 15]
    assert [round(a.migwatch.relocation.distance_km_max, -2) for a in relocated] == [1500, -1500, 1500]  # type: ignore[union-attr]
    assert all(a.event.severity == 4 and a.migwatch.state == "confirmed" for a in relocated)
    assert len(cleared) == 3  # every episode ended before the next move


def test_a_fast_move_far_away_is_confirmed_and_a_longer_route_alone_is_not() -> None:
    episodes = [
        Episode("migration", "vm-1", 600, copy_s=1, downtime_s=0.03, lag_ms=20, relocate_ms=15),
        Episode("path-change", "vm-2", 600, copy_s=60, rtt_add_ms=15),
    ]
    alerts = _alerts(episodes, ["vm-1", "vm-2"], 30.0)
    states = {(a.migwatch.target, a.migwatch.state, a.event.action) for a in alerts}
    assert ("vm-1", "confirmed", "vm-live-migration") in states and ("vm-1", "confirmed", "vm-relocated") in states
    assert {state for target, state, _ in states if target == "vm-2"} <= {"suspected", "cleared"}


def test_a_move_behind_another_router_is_a_relocation_at_the_same_round_trip() -> None:
    moved = Episode("migration", "vm-1", 600, copy_s=20, downtime_s=0.5)
    alerts = _alerts([moved, Episode("ttl-change", "vm-1", moved.end)], ["vm-1"], 10.0)
    where = next(a.migwatch.relocation for a in alerts if a.event.action == "vm-relocated")
    assert isinstance(where, RelocationEvidence)
    assert (where.ttl_before, where.ttl_after) == (64, 63) and abs(where.shift_ms) < 0.5


def test_a_move_within_the_site_is_confirmed_without_a_relocation() -> None:
    alerts = _alerts([Episode("migration", "vm-1", 600, copy_s=20, downtime_s=0.5)], ["vm-1"], 10.0)
    assert any(a.migwatch.state == "confirmed" for a in alerts)
    assert not any(a.event.action == "vm-relocated" or a.migwatch.relocation for a in alerts)


CORPUS = Path(__file__).resolve().parents[1] / "deploy" / "dev" / "corpus"


@pytest.mark.parametrize("pings", ["1000ms", "100ms"])
def test_the_labs_moves_far_away_and_back_are_each_confirmed_and_located(pings: str) -> None:
    """The emulated lab's recorded run (deploy/dev/corpus/relocated): two moves 15 ms away and two back, and
    two 60 s reroutes of +15 ms."""
    run = CORPUS / "relocated"
    labels, config = read_labels(run / "labels.json"), load(run / f"config-{pings}.toml")
    alerts = list(replay(run / f"trace-{pings}.jsonl.gz", config.detectors, quiet=True))
    for move in labels.migrations:
        mine = [a for a in alerts if move.start - 2 <= a.migwatch.detected_ts <= move.end + 120]
        assert any(a.migwatch.state == "confirmed" for a in mine), (move, mine)
        where = next(a.migwatch.relocation for a in mine if a.event.action == "vm-relocated")
        assert isinstance(where, RelocationEvidence)
        assert abs(abs(where.shift_ms) - 15.0) < 3.0 and abs(where.distance_km_max) > 1200
    for reroute in labels.benign:
        during = [a for a in alerts if reroute.start - 2 <= a.migwatch.detected_ts <= reroute.end + 120]
        assert {a.migwatch.state for a in during} <= {"suspected", "cleared"}, during


def test_at_a_64_s_ntp_interval_a_move_back_two_minutes_later_has_its_own_lag() -> None:
    """After a lag the offsets' reference moves to the new level whole (its spread and count kept), so the
    next answer can show the next lag: learning a new reference would take three answers, 192 s here."""
    there_and_back = [
        Episode("migration", "vm-1", 600, copy_s=10, downtime_s=0.4),
        Episode("migration", "vm-1", 730, copy_s=10, downtime_s=0.6),
    ]
    alerts = _alerts(there_and_back, ["vm-1"], 64.0)
    lags = [a.migwatch.evidence.time_lag_ms for a in alerts if a.migwatch.state == "confirmed"]
    assert len(lags) == 2 and -450 < (lags[0] or 0) < -350 and -650 < (lags[1] or 0) < -450, lags
