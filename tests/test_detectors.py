"""Detectors on synthetic sample sequences: each phase of a migration, each benign look-alike, state that
survives JSON, and no input that crashes them."""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings
from migwatch.contract.fields import FieldError
from migwatch.contract.records import Alert, ClockSample, PingSample, Target
from migwatch.detectors.ping import PingHeuristic
from migwatch.detectors.target import TargetDetector
from migwatch.detectors.target_group import Directory, TargetGroup
from migwatch.detectors.timelag import TimeLag
from migwatch.detectors.ttl import TtlChange
from migwatch_dev.synthetic import Episode, generate

T0 = 1_764_180_000.0


def ping(t: float, rtt: float | None, target: str = "vm", ttl: int | None = 64) -> PingSample:
    return PingSample(
        target=target, address="192.0.2.1", probe="p", seq=int(t), ts=T0 + t, rtt_ms=rtt, ttl=ttl if rtt else None
    )


def clock(
    t: float, offset: float | None, target: str = "vm", delay: float = 0.2, error: str | None = None
) -> ClockSample:
    return ClockSample(
        target=target, address="192.0.2.1", probe="p", ts=T0 + t, offset_ms=offset,
        delay_ms=None if error else delay, error=error,  # type: ignore[arg-type]
    )  # fmt: skip


def quiet_pings(start: int, stop: int, target: str = "vm", rng: random.Random | None = None) -> list[PingSample]:
    rng = rng or random.Random(start)
    return [ping(t, round(rng.gauss(0.3, 0.01), 4), target) for t in range(start, stop)]


# ----------------------------------------------------------------------------------------- ping heuristic


def test_a_quiet_link_with_stray_slow_replies_shows_no_pattern() -> None:
    heuristic = PingHeuristic()
    samples = quiet_pings(0, 600)
    for t in (100, 250, 251, 400):  # stray slow replies, not two in one window
        samples[t] = ping(t, 1.2)
    for sample in samples[:251] + samples[252:]:
        heuristic.update(sample)
    assert heuristic.pattern_first_ts is None and heuristic.phase(T0 + 600) is None


def test_memory_copy_raises_the_pattern_and_does_not_poison_the_baseline() -> None:
    heuristic = PingHeuristic()
    for sample in quiet_pings(0, 120):
        heuristic.update(sample)
    before = heuristic.baseline.median
    for t in range(120, 180):  # a minute of raised RTT with outliers at the start
        heuristic.update(ping(t, 40.0 if t < 122 else 2.8))
    assert heuristic.phase(T0 + 180) == "memory-copy"
    assert heuristic.pattern_first_ts == T0 + 120 and heuristic.outliers >= 2
    assert heuristic.mean_ms is not None and heuristic.mean_ms > 2.5
    assert heuristic.baseline.median == before  # nothing learned from the episode


def test_unanswered_pings_then_replies_are_stop_and_copy_then_switched() -> None:
    heuristic = PingHeuristic()
    for sample in [*quiet_pings(0, 60), *(ping(t, 3.0) for t in range(60, 80))]:
        heuristic.update(sample)
    heuristic.update(ping(80, None))
    heuristic.update(ping(81, None))
    assert (heuristic.phase(T0 + 81), heuristic.run, heuristic.unanswered) == ("stop-and-copy", 2, 2)
    heuristic.update(ping(82, 0.31))
    assert heuristic.phase(T0 + 82) == "switched" and heuristic.max_run == 2


def test_a_lasting_new_level_is_learned_after_the_freeze() -> None:
    heuristic = PingHeuristic()
    for sample in quiet_pings(0, 60):
        heuristic.update(sample)
    for t in range(60, 60 + int(DEFAULTS.baseline_freeze_s) + 900):  # the path got slower for good
        heuristic.update(ping(t, 0.9))
    assert heuristic.baseline.median is not None and heuristic.baseline.median > 0.8


def test_reply_ttl_change_needs_consecutive_replies() -> None:
    ttl = TtlChange()
    for t, value in enumerate([64, 64, 63, 64, 64, 63, 63, 63]):
        ttl.update(ping(t, 0.3, ttl=value))
    assert (ttl.usual, ttl.change, ttl.changed_ts) == (63, -1, T0 + 5)
    ttl.update(ping(9, None))  # unanswered pings carry no TTL
    assert ttl.usual == 63


# ------------------------------------------------------------------------------------------------- time lag


def _settled_lag(noise: float = 0.03, offset: float = 0.2, count: int = 6, seed: int = 1) -> tuple[TimeLag, int]:
    rng = random.Random(seed)
    lag = TimeLag()
    for i in range(count):
        lag.update(clock(30 * i, offset + rng.gauss(0, noise)))
    return lag, 30 * count


@pytest.mark.parametrize("step", [-5.0, -25.0, -500.0])
def test_a_step_down_is_a_lag_down_to_5_ms_on_a_quiet_lan(step: float) -> None:
    lag, t = _settled_lag()
    lag.update(clock(t, 0.2 + step))
    assert lag.pending_step_ms == pytest.approx(step, abs=0.2)
    lag.resolve(common_mode=False)
    assert lag.lag_ms == pytest.approx(step, abs=0.2) and lag.lag_ts == T0 + t


def test_noise_and_steps_under_the_threshold_are_not_lags() -> None:
    lag, t = _settled_lag(noise=0.5)  # a noisy path: 0.5 ms spread
    lag.update(clock(t, 0.2 - 2.5))  # 5 spreads: within the noise the series shows
    assert lag.pending_ts is None


@pytest.mark.parametrize(
    ("sample", "why"),
    [
        (clock(999, None, error="timeout"), "a timeout"),
        (clock(999, None, error="unsynchronized"), "a server that lost its sync, or restarted"),
        (clock(999, -40.0, delay=30.0), "a reply queued for 30 ms"),
        (clock(999, +40.0), "a step up"),
    ],
)
def test_what_is_not_a_lag(sample: ClockSample, why: str) -> None:
    lag, _ = _settled_lag()
    lag.update(sample)
    assert lag.pending_ts is None, why


def test_the_vms_own_ntp_stepping_towards_the_probe_is_not_a_lag() -> None:
    lag, t = _settled_lag(offset=45.0)  # the VM runs 45 ms ahead
    lag.update(clock(t, 0.1))  # its NTP daemon steps it back
    assert lag.pending_ts is None
    for i in range(1, 4):
        lag.update(clock(t + 30 * i, 0.1))
    lag.update(clock(t + 150, -20.0))  # and a real lag afterwards still counts
    assert lag.pending_step_ms == pytest.approx(-20.1, abs=0.1)


def test_a_vm_whose_clock_runs_ahead_is_confirmed_when_its_pause_comes_with_a_ping_episode() -> None:
    """Its pause moves the offset towards zero (40 -> 23 ms): with the pings showing the migration's copy it
    is the lag, not the VM's NTP correcting (the demo's guest, clock 40 ms ahead, was never confirmed)."""
    vm = TargetDetector()
    alerts: list[Alert] = []
    for t in range(200):
        alerts += vm.update(ping(t, round(0.3 + 0.01 * (t % 3), 3)))
        if t % 10 == 0:
            alerts += vm.update(clock(t, 40.0 + 0.01 * (t % 3)))
    for t in range(200, 212):  # the memory copy, then the switch
        alerts += vm.update(ping(t, 3.0 + (t % 2)))
    alerts += vm.update(clock(212, 23.0))
    assert [a.migwatch.state for a in alerts] == ["suspected", "confirmed"]
    assert alerts[-1].migwatch.evidence.time_lag_ms == pytest.approx(-17.0, abs=0.1)


def test_a_step_of_the_probes_own_clock_is_common_mode_and_raises_nothing() -> None:
    fleet = TargetGroup()
    alerts: list[Alert] = []
    names = [f"vm-{i}" for i in range(6)]
    for t in range(0, 600, 30):
        for i, name in enumerate(names):
            alerts += fleet.update(clock(t + i, 0.1 if t < 300 else -60.0, target=name))
    assert alerts == []
    assert all(fleet.detectors[name].lag.common_mode_ts is not None for name in names)


def test_one_target_lagging_among_many_is_confirmed_after_the_common_mode_wait() -> None:
    fleet = TargetGroup()
    alerts: list[Alert] = []
    names = [f"vm-{i}" for i in range(6)]
    for t in range(0, 600, 30):
        for i, name in enumerate(names):
            alerts += fleet.update(clock(t + i, -60.0 if name == "vm-2" and t >= 300 else 0.1, target=name))
    assert _states(alerts) == [("vm-2", "confirmed"), ("vm-2", "cleared")]
    assert alerts[0].migwatch.detected_ts >= T0 + 302 + DEFAULTS.common_wait_s
    assert alerts[0].migwatch.first_evidence_ts == T0 + 302


# --------------------------------------------------------------------------------------------------- fusion


def _run(samples: list[PingSample | ClockSample], fleet: TargetGroup | None = None) -> list[Alert]:
    fleet = fleet or TargetGroup()
    return [alert for sample in samples for alert in fleet.update(sample)]


def _states(alerts: list[Alert]) -> list[tuple[str, str]]:
    return [(alert.migwatch.target, alert.migwatch.state) for alert in alerts]


def test_a_migration_rises_once_per_state_and_clears_once() -> None:
    samples, _ = generate([Episode("migration", "vm-1", 300, copy_s=30, downtime_s=1.0)], ["vm-1"], 900)
    alerts = _run(samples)
    assert _states(alerts) == [("vm-1", s) for s in ("suspected", "likely", "confirmed", "cleared")]
    suspected, likely, confirmed, _ = alerts
    assert suspected.migwatch.phase == "memory-copy" and likely.migwatch.phase == "stop-and-copy"
    # The lag is the 1 s outage, less what the guest's NTP slewed back before the next query.
    assert confirmed.migwatch.phase == "switched"
    assert confirmed.migwatch.evidence.time_lag_ms == pytest.approx(-1000, abs=30)
    assert suspected.migwatch.likelihood < likely.migwatch.likelihood < confirmed.migwatch.likelihood
    assert [a.event.severity for a in alerts] == [2, 3, 4, 1]
    assert len({a.event.id for a in alerts}) == 4
    assert {a.migwatch.first_evidence_ts for a in alerts} == {suspected.migwatch.first_evidence_ts}


def test_a_move_back_soon_after_a_confirmed_one_is_an_alert_of_its_own() -> None:
    """Seen in the QEMU lab: VMs moved there and back 40 s apart; the second move hid in the first's episode."""
    episodes = [Episode("migration", "vm-1", 300, copy_s=5), Episode("migration", "vm-1", 346, copy_s=5)]
    samples, labels = generate(episodes, ["vm-1"], 900, ntp_interval_s=5.0)
    alerts = _run(samples)
    confirmed = [a for a in alerts if a.migwatch.state == "confirmed"]
    assert len(confirmed) == 2 and confirmed[0].event.id != confirmed[1].event.id, _states(alerts)
    for alert, migration in zip(confirmed, labels.migrations, strict=True):
        assert migration.start <= alert.migwatch.detected_ts <= migration.end + 30
    assert confirmed[1].migwatch.first_evidence_ts > confirmed[0].migwatch.detected_ts
    assert _states(alerts)[-1] == ("vm-1", "cleared")


def test_a_bulk_copy_may_be_suspected_but_never_likely_or_confirmed() -> None:
    episodes = [Episode("bulk-transfer", "vm-1", 300, copy_s=120, rtt_add_ms=8.0)]
    alerts = _run(generate(episodes, ["vm-1"], 900)[0])
    assert {state for _, state in _states(alerts)} <= {"suspected", "cleared"}
    assert ("vm-1", "suspected") in _states(alerts)


@pytest.mark.parametrize("kind", ["loss-burst", "clock-correction", "ttl-change"])
def test_benign_episodes_alone_stay_below_likely(kind: str) -> None:
    alerts = _run(generate([Episode(kind, "vm-1", 300, downtime_s=4.0)], ["vm-1"], 900)[0])
    assert not {state for _, state in _states(alerts)} & {"likely", "confirmed"}


def test_replays_give_the_same_alerts_with_the_same_ids() -> None:
    samples, _ = generate([Episode("migration", "vm-1", 300, copy_s=30)], ["vm-1", "vm-2"], 900)
    first, second = _run(samples), _run(samples)
    assert [msgspec.json.encode(a) for a in first] == [msgspec.json.encode(a) for a in second]


def test_a_watched_hypervisor_with_the_same_pattern_is_named_as_the_source() -> None:
    episodes = [
        Episode("migration", "vm-1", 300, copy_s=30, downtime_s=1.0),
        Episode("bulk-transfer", "hv-1", 299, copy_s=30),  # the source host's pings show the copy too
    ]
    samples, _ = generate(episodes, ["vm-1", "hv-1", "hv-2"], 700)
    plain = _run(samples)
    fleet = TargetGroup(directory=Directory(_lab_targets()))
    # The host's pattern may show a moment after the VM's first alert: the next rise names it.
    corroborated = {a.migwatch.state: a.migwatch for a in _run(samples, fleet) if a.migwatch.target == "vm-1"}
    alone = {a.migwatch.state: a.migwatch for a in plain if a.migwatch.target == "vm-1"}
    assert corroborated["likely"].evidence.source_host == "hv-1"
    assert alone["likely"].evidence.source_host is msgspec.UNSET
    assert corroborated["likely"].likelihood > alone["likely"].likelihood
    # hv-2 showed nothing, which proves nothing (a destination's pings often do not show the stream).
    assert corroborated["confirmed"].evidence.destination_allowed is msgspec.UNSET
    assert corroborated["confirmed"].site == "dc1" and corroborated["confirmed"].allowed_hosts == ["hv-1", "hv-2"]


def _lab_targets() -> dict[str, Target]:
    targets = [
        Target(id="vm-1", address="10.0.0.0", hosts=["hv-1", "hv-2"], site="dc1", labels={"tenant": "acme"}),
        Target(id="hv-1", address="10.0.0.1", kind="host", site="dc1"),
        Target(id="hv-2", address="10.0.0.2", kind="host", site="dc1"),
    ]
    return {target.id: target for target in targets}


def test_both_hypervisors_showing_the_stream_make_an_allowed_move_and_a_far_one_names_its_direction() -> None:
    copies = [
        Episode("migration", "vm-1", 300, copy_s=30, downtime_s=1.0),
        Episode("bulk-transfer", "hv-1", 299, copy_s=30),  # the stream leaves hv-1 ...
        Episode("bulk-transfer", "hv-2", 300, copy_s=30),  # ... and enters hv-2
        Episode("migration", "vm-1", 900, copy_s=30, downtime_s=1.0),
        Episode("bulk-transfer", "hv-2", 899, copy_s=30),  # and back
        Episode("bulk-transfer", "hv-1", 900, copy_s=30),
    ]
    samples, _ = generate(copies, ["vm-1", "hv-1", "hv-2"], 1400)
    alerts = [a for a in _run(samples, TargetGroup(directory=Directory(_lab_targets()))) if a.migwatch.target == "vm-1"]
    # Equally near hosts, the VM seen on neither before: a move between allowed hosts, direction unknown.
    evidence = [a.migwatch.evidence for a in alerts if a.migwatch.state == "confirmed"]
    assert [(e.source_host, e.destination_allowed, e.hosts_seen) for e in evidence] == [
        (msgspec.UNSET, True, ["hv-1", "hv-2"])
    ] * 2
    assert all(a.labels == {"tenant": "acme"} for a in alerts)
    # hv-2 is 15 ms farther away: the VM's round trip before the move names hv-1 as its source; from then on
    # it is known to be on hv-2, so the move back starts there.
    far = [Episode("path-change", "hv-2", 0, copy_s=1400, rtt_add_ms=15)]
    copies[0] = Episode("migration", "vm-1", 300, copy_s=30, downtime_s=1.0, relocate_ms=15)
    copies[3] = Episode("migration", "vm-1", 900, copy_s=30, downtime_s=1.0, relocate_ms=-15)
    samples, _ = generate(copies + far, ["vm-1", "hv-1", "hv-2"], 1400)
    alerts = [a for a in _run(samples, TargetGroup(directory=Directory(_lab_targets()))) if a.migwatch.target == "vm-1"]
    moves = [
        a.migwatch.evidence for a in alerts if a.event.action == "vm-live-migration" and a.migwatch.state == "confirmed"
    ]
    assert [(e.source_host, e.destination_host, e.destination_allowed) for e in moves] == [
        ("hv-1", "hv-2", True),
        ("hv-2", "hv-1", True),
    ]
    # Moved 40 ms away from hv-1 instead, hv-2 seeing no stream: settled at a round trip that is neither
    # allowed host's.
    copies[0] = Episode("migration", "vm-1", 300, copy_s=30, downtime_s=1.0, relocate_ms=40)
    samples, _ = generate(copies[:2] + far, ["vm-1", "hv-1", "hv-2"], 700)
    alerts = [a for a in _run(samples, TargetGroup(directory=Directory(_lab_targets()))) if a.migwatch.target == "vm-1"]
    relocated = next(a for a in alerts if a.event.action == "vm-relocated").migwatch
    assert (relocated.evidence.source_host, relocated.evidence.destination_allowed) == ("hv-1", False)
    assert relocated.relocation and 39 < relocated.relocation.shift_ms < 41  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------- state and robustness

_rtts = st.none() | st.floats(0.0, 3_600_000.0)
_samples = st.lists(
    st.one_of(
        st.builds(lambda t, rtt, ttl: ping(t, rtt, ttl=ttl), st.floats(0, 5000), _rtts, st.integers(0, 255)),
        st.builds(
            lambda t, offset, delay: clock(t, offset, delay=delay),
            st.floats(0, 5000),
            st.floats(-3_600_000.0, 3_600_000.0),
            st.floats(-100.0, 3_600_000.0),
        ),
        st.builds(lambda t: clock(t, None, error="timeout"), st.floats(0, 5000)),
    ),
    max_size=200,
)


@settings(max_examples=150, deadline=None)
@given(samples=_samples, sort=st.booleans())
def test_no_sequence_crashes_and_state_survives_json(samples: list, sort: bool) -> None:
    if sort:
        samples = sorted(samples, key=lambda s: s.ts)  # in order, with duplicate timestamps; else out of order
    detector = TargetDetector()
    split = len(samples) // 2
    for sample in samples[:split]:
        detector.update(sample)
    state = msgspec.json.encode(detector)
    restored = msgspec.json.decode(state, type=TargetDetector)
    assert msgspec.json.encode(restored) == state
    # The restored state carries on exactly as the original would.
    for sample in samples[split:]:
        assert [msgspec.json.encode(a) for a in restored.update(sample)] == [
            msgspec.json.encode(a) for a in detector.update(sample)
        ]


def test_fleet_snapshot_restores_every_target() -> None:
    samples, _ = generate([Episode("migration", "vm-1", 300, copy_s=30)], ["vm-1", "vm-2", "vm-3"], 900)
    fleet = TargetGroup()
    head = _run(samples[: len(samples) // 2], fleet)
    restored = TargetGroup.restore(fleet.snapshot())
    assert head and _run(samples[len(samples) // 2 :], restored) == _run(samples[len(samples) // 2 :], fleet)


def test_settings_are_validated() -> None:
    with pytest.raises(FieldError, match=r"^mean_k: must be > 0, got -1"):
        DetectorSettings(mean_k=-1)
    assert DetectorSettings(window_s=10).window_s == 10


# ------------------------------------------------------------------------------------------------- clock skew


def _skewed_clocks(ppm_before: float, ppm_after: float, switch_s: float, end_s: float) -> list[ClockSample]:
    rng = random.Random(3)
    samples = []
    for t in range(0, int(end_s), 30):
        drift = ppm_before * min(t, switch_s) + ppm_after * max(0.0, t - switch_s)
        samples.append(clock(t, 0.2 + drift / 1000 + rng.gauss(0, 0.03)))
    return samples


def test_a_steady_skew_is_measured_and_raises_nothing() -> None:
    detector = TargetDetector()
    alerts = [a for sample in _skewed_clocks(3.0, 3.0, 0, 3600) for a in detector.update(sample)]
    assert alerts == [] and detector.skew.change_ppm is None
    assert detector.skew.skew_ppm == pytest.approx(3.0, abs=0.5)


def test_a_change_of_skew_is_evidence_of_another_host() -> None:
    detector = TargetDetector()
    alerts = [a for sample in _skewed_clocks(3.0, -25.0, 1800, 2700) for a in detector.update(sample)]
    assert [a.migwatch.state for a in alerts] == ["suspected", "cleared"]
    evidence = alerts[0].migwatch.evidence
    # Seen as soon as the halves differ clearly, while the newer half still holds old-skew points.
    assert evidence.skew_change_ppm < -10.0
    assert evidence.skew_ppm < -10.0
    assert alerts[0].migwatch.phase == "switched"
