"""The probe scheduler and ``migwatch record``: drift-free schedules, spread targets, every sample kept."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import msgspec
import pytest

from migwatch.contract.config import ProbeSettings
from migwatch.contract.records import ClockSample, PingSample, Sample, Target
from migwatch.contract.trace import read_trace
from migwatch.probes.own_clock import OwnClock
from migwatch.probes.scheduler import Scheduler
from tests.ntp_responder import NtpResponder


def _run(targets: list[Target], duration_s: float, settings: ProbeSettings) -> tuple[list[Sample], Scheduler]:
    samples: list[Sample] = []

    async def main() -> Scheduler:
        scheduler = Scheduler(settings, samples.append)
        scheduler.set_targets(targets)
        try:
            await scheduler.run(duration_s)
        finally:
            scheduler.close()
        return scheduler

    return samples, asyncio.run(main())


def test_each_target_on_its_own_interval_with_no_gap_in_seq() -> None:
    responder = NtpResponder(offset_ms=-25.0)
    try:
        settings = ProbeSettings(name="probe-t", ntp_port=responder.port, ntp_timeout_s=0.5, ping_timeout_s=0.5)
        targets = [
            Target(id="fast", address="127.0.0.1", ping_interval_s=0.05, ntp_interval_s=0.5),
            Target(id="slow", address="::1", ping_interval_s=0.5, ntp=False),
            Target(id="gone", address="no-such-host.invalid", ping_interval_s=0.5, ntp=False),
        ]
        samples, scheduler = _run(targets, 3.0, settings)
    finally:
        responder.close()
    pings: dict[str, list[PingSample]] = defaultdict(list)
    for sample in samples:
        if isinstance(sample, PingSample):
            pings[sample.target].append(sample)
    assert 55 <= len(pings["fast"]) <= 61 and 5 <= len(pings["slow"]) <= 7
    for target, series in pings.items():
        assert sorted(s.seq for s in series) == list(range(len(series))), target
        assert {s.probe for s in series} == {"probe-t"}
    assert all(s.rtt_ms is not None and s.ttl == 64 for s in pings["fast"] + pings["slow"])
    assert all(s.rtt_ms is None for s in pings["gone"])  # a name that does not resolve: unanswered
    # Drift-free: the n-th ping of a target is sent n intervals after its first, not later and later.
    fast = sorted(pings["fast"], key=lambda s: s.seq)
    assert abs((fast[-1].ts - fast[0].ts) - 0.05 * (len(fast) - 1)) < 0.05
    clocks = [s for s in samples if isinstance(s, ClockSample)]
    assert 5 <= len(clocks) <= 7 and all(c.target == "fast" for c in clocks)
    assert all(c.error is None and abs(c.offset_ms + 25.0) < 2 for c in clocks)
    assert scheduler.lateness_quantiles()["p99"] < 100 and scheduler.skipped == 0


def test_targets_spread_over_the_interval_and_can_change_while_running() -> None:
    targets = [Target(id=f"t{i}", address=f"127.2.0.{i + 1}", ntp=False) for i in range(200)]
    fired: list[tuple[str, float]] = []
    changed_at = 0.0

    async def main() -> None:
        nonlocal changed_at
        scheduler = Scheduler(ProbeSettings(), lambda sample: fired.append((sample.target, time.monotonic())))
        scheduler.set_targets(targets[:100])
        runner = asyncio.create_task(scheduler.run())
        await asyncio.sleep(1.5)
        scheduler.set_targets(targets[50:])  # 50 leave, 100 come
        changed_at = time.monotonic()
        await asyncio.sleep(2.0)
        scheduler.stop()
        await runner
        scheduler.close()

    asyncio.run(main())
    first_second = sorted(at for _, at in fired[:100])
    assert first_second[-1] - first_second[0] > 0.5  # not all at once
    # Loopback answers at once: 0.2 s after the change no ping of a removed target is still out, and in the
    # 1.8 s after that every remaining or new target (1 s interval) has fired.
    seen_after = {target for target, at in fired if at > changed_at + 0.2}
    assert seen_after == {f"t{i}" for i in range(50, 200)}


def test_record_writes_a_trace(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[probe]\nname = "rec"\n[[targets]]\nid = "lo"\naddress = "127.0.0.1"\nping_interval_s = 0.2\nntp = false\n'
        '[[targets]]\nid = "elsewhere"\naddress = "127.0.0.9"\nsite = "dc9"\n'
    )
    out = tmp_path / "t.jsonl.gz"
    result = subprocess.run(
        [sys.executable, "-m", "migwatch.cli", "record", "--config", str(config), "--out", str(out), "--duration", "2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    samples = list(read_trace(out))
    assert {s.target for s in samples} == {"lo"}  # only this probe's site
    assert 9 <= len(samples) <= 11 and "lateness p50" in result.stderr


def test_ntp_samples_carry_the_steps_of_the_probes_own_clock() -> None:
    """Issue #20: the probe's wall clock stepping shows against its raw monotonic clock; each ClockSample says
    how far it stepped since the previous query of that target. (The machine's clock cannot be stepped in
    a test: the scheduler's view of it is, 1.2 s in, by +50 ms.)"""
    responder = NtpResponder(offset_ms=-25.0)
    began = time.monotonic()
    try:
        settings = ProbeSettings(name="probe-t", ntp_port=responder.port, ntp_timeout_s=0.5, ping_timeout_s=0.5)
        samples: list[Sample] = []

        async def main() -> None:
            scheduler = Scheduler(settings, samples.append)
            scheduler.own_clock = OwnClock(wall=lambda: time.time() + (0.05 if time.monotonic() - began > 1.2 else 0.0))
            scheduler.set_targets([Target(id="vm", address="127.0.0.1", ping_interval_s=0.1, ntp_interval_s=0.5)])
            try:
                await scheduler.run(3.0)
            finally:
                scheduler.close()

        asyncio.run(main())
    finally:
        responder.close()
    steps = [s.probe_step_ms for s in samples if isinstance(s, ClockSample)]
    assert steps[0] is msgspec.UNSET and 5 <= len(steps) <= 7
    assert sorted(steps[1:]) == [0.0] * (len(steps) - 2) + [pytest.approx(50.0, abs=0.5)]


def test_the_health_checks_say_stuck_and_not_yet_probing() -> None:
    """/healthz and /readyz of a probe (probes/metrics.py): not ready without targets or before its first
    probe; not healthy when the scheduler's loop has not turned for STUCK_AFTER_S. (Served over HTTP by a real
    probe in tests/test_pipeline.py.)"""
    from migwatch.probes.metrics import STUCK_AFTER_S, health

    scheduler = Scheduler(ProbeSettings(), lambda sample: None)
    try:
        assert health(scheduler, "/healthz") == (200, "ok\n")
        assert health(scheduler, "/readyz") == (503, "not probing yet: 0 targets, 0 probes fired\n")
        scheduler.set_targets([Target(id="vm-1", address="127.0.0.1", ntp=False)])
        assert health(scheduler, "/readyz")[0] == 503  # targets, nothing fired yet
        scheduler.fired = 1
        assert health(scheduler, "/readyz") == (200, "probing 1 targets\n")
        scheduler.alive_at -= STUCK_AFTER_S + 1
        status, said = health(scheduler, "/healthz")
        assert status == 503 and said.startswith("stuck: the scheduler has not run for 3")
        assert health(scheduler, "/other")[0] == 404
    finally:
        scheduler.close()
