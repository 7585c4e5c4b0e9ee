"""NTP time-lag detection: the VM's clock falls behind when it is paused for the switch.

A VM stopped for the stop-and-copy phase resumes with its clock where it stopped: its NTP offset against
the probe steps down by about the outage, then its own NTP daemon slews it back slowly. ``TimeLag`` keeps
the recent good offsets as a reference level and flags a step down that exceeds the larger of
``lag_min_ms`` and ``lag_noise_k`` spreads of the recent offsets, plus ``lag_delay_k`` x the sample's
round-trip delay (an NTP offset is only known to within half the delay, on top of the reference's own noise:
a neighbour's answer queued behind a migration's copy, 9.9 ms of delay, was 4.9 ms off).

Not a lag: failed queries (``error`` set), samples whose delay is far above both the usual and the path's
round trip as the pings see it now (a queued reply; a VM moved farther away answers later for good, and
its pings say so), steps up, and steps towards zero while the pings are quiet (the VM's own NTP correcting a
clock that ran ahead; during a ping episode such a step is the pause of a VM whose clock ran ahead). Nor a step
of the probe's own clock: a probe that watches it says in each sample how far it stepped since its last
query of the target (``probe_step_ms``), and that is added back. For samples without it a step is first
*pending*; the caller resolves it (:meth:`TimeLag.resolve`) once it knows whether every target stepped
alike, which means the probe's own clock moved (see :mod:`migwatch.detectors.target_group`); one the probe
vouched for (``pending_vouched``) is resolved at once.

    >>> from migwatch.contract.records import ClockSample
    >>> lag = TimeLag()
    >>> def clock(t, offset):
    ...     return ClockSample(target="vm", address="192.0.2.1", probe="p", ts=float(t), offset_ms=offset, delay_ms=0.2)
    >>> for t, offset in enumerate([0.01, -0.02, 0.0, 0.03, -0.01]):
    ...     _ = lag.update(clock(30 * t, offset))
    >>> lag.update(clock(150, -25.0))             # the VM was paused for 25 ms: a pending step
    False
    >>> lag.pending_ts, round(lag.pending_step_ms, 2)
    (150.0, -25.0)
    >>> lag.resolve(common_mode=False)
    >>> lag.lag_ts, round(lag.lag_ms, 2)
    (150.0, -25.0)
    >>> lag.update(clock(180, -12.0))             # converging back: a step towards zero, not a new lag
    True
    >>> lag.pending_ts is None
    True
"""

from __future__ import annotations

import math
import statistics

import msgspec

from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings
from migwatch.contract.records import ClockSample
from migwatch.detectors.baseline import MAD_TO_SIGMA


class TimeLag(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Per-target NTP offset series; ``update(sample)`` consumes one ClockSample."""

    offsets: list[float] = []  # recent good offsets: the reference level
    delays: list[float] = []
    pending_ts: float | None = None  # a step seen, waiting for the common-mode verdict
    pending_offset_ms: float | None = None
    pending_step_ms: float | None = None
    lag_ts: float | None = None  # the last lag that counted
    lag_ms: float | None = None
    common_mode_ts: float | None = None  # the last step rejected as the probe's own clock moving
    offset_ms: float | None = None  # the last good offset
    good_ts: float | None = None  # when it was measured
    rebased: int = 0  # how often the reference level was dropped for a new one
    probe_shift_ms: float = 0.0  # the probe's own clock steps so far, added back to every offset
    pending_vouched: bool = False  # the pending step's sample came from a probe that watches its clock
    jump_ts: float | None = None  # the last move up or towards zero faster than any NTP daemon slews: a step
    jump_ms: float | None = None
    pending_loose_ms: float = 0.0  # half the pending step's delay when its answer was slow, else 0
    loose_ms: float = 0.0  # the level was set from a slow answer: known to within this (half its delay)

    def ready(self, settings: DetectorSettings = DEFAULTS) -> bool:
        return len(self.offsets) >= settings.lag_warmup

    def update(
        self,
        sample: ClockSample,
        settings: DetectorSettings = DEFAULTS,
        path_rtt_ms: float | None = None,
        path_settled: bool = True,
    ) -> bool:
        """Consume one sample; True when it was taken as a good offset of the current level.

        ``path_rtt_ms`` is the round trip the target's pings show now, when known; ``path_settled`` False
        while they show an episode. A slow answer that the path explains may show a lag, but sets the level
        only once the path has settled: a reply queued behind a memory copy is off by up to half its delay.
        """
        if sample.probe_step_ms is not msgspec.UNSET:
            self.probe_shift_ms += sample.probe_step_ms
        offset, delay = sample.offset_ms, sample.delay_ms
        if sample.error is not None or offset is None or delay is None:
            return False
        offset += self.probe_shift_ms
        trusted = True
        if self.delays and delay > settings.lag_delay_max_factor * statistics.median(self.delays) + 1.0:
            if path_rtt_ms is None or delay > settings.lag_delay_max_factor * path_rtt_ms + 1.0:
                return False  # a queued reply: its offset is not to be trusted
            trusted = path_settled
        if trusted:
            self.offset_ms = offset
        if not self.ready(settings):
            if trusted:
                self._remember(sample.ts, offset, delay, settings)
            return trusted
        reference = statistics.median(self.offsets)
        step = offset - reference
        # The level came from a slow answer (a guest just booting, a reply queued behind a copy): the first
        # trusted answer within its uncertainty sets it, rather than showing a lag of that much.
        loose = self.loose_ms
        if trusted:
            self.loose_ms = 0.0
        towards_zero = abs(offset) < abs(reference) - abs(step) / 2
        # Towards zero is the VM's NTP correcting a clock that ran ahead, unless the pings show an episode
        # now: then it is the pause of a VM whose clock ran ahead (it lags, and so comes nearer the probe's).
        if -step > self.threshold(delay, settings) + loose and (not towards_zero or not path_settled):
            if self.pending_ts is None:
                self.pending_ts, self.pending_offset_ms, self.pending_step_ms = sample.ts, offset, step
                self.pending_loose_ms = 0.0 if trusted else delay / 2
                self.pending_vouched = sample.probe_step_ms is not msgspec.UNSET
                self.offset_ms = offset
            return False  # the reference keeps its level until the step is resolved
        if not trusted:
            return False
        if (step >= 0 or towards_zero or loose) and abs(step) > self.threshold(delay, settings):
            # Up, or towards zero (the VM's NTP correcting): re-base on a clear move. Faster than a daemon
            # slews since the last good answer, it was a step of the guest's clock.
            since = sample.ts - self.good_ts if self.good_ts is not None else math.inf
            if abs(step) > settings.slew_max_ms_s * since + self.threshold(delay, settings) + loose:
                self.jump_ts, self.jump_ms = sample.ts, step
            self._move_reference(offset)
        self._remember(sample.ts, offset, delay, settings)
        return True

    def threshold(self, delay_ms: float, settings: DetectorSettings = DEFAULTS) -> float:
        """The smallest step down that counts, for a sample with this round-trip delay."""
        median = statistics.median(self.offsets)
        noise = MAD_TO_SIGMA * statistics.median(abs(x - median) for x in self.offsets)
        return max(settings.lag_min_ms, settings.lag_noise_k * noise) + settings.lag_delay_k * delay_ms

    def resolve(self, *, common_mode: bool) -> None:
        """Settle the pending step: a lag, or (``common_mode``) the probe's own clock moving."""
        if self.pending_ts is None:
            return
        if common_mode:
            self.common_mode_ts = self.pending_ts
        else:
            self.lag_ts, self.lag_ms = self.pending_ts, self.pending_step_ms
        # Either way the offsets have a new level from here on.
        assert self.pending_offset_ms is not None
        self._move_reference(self.pending_offset_ms)
        self.good_ts, self.loose_ms = self.pending_ts, self.pending_loose_ms
        self.pending_ts = self.pending_offset_ms = self.pending_step_ms = None
        self.pending_vouched, self.pending_loose_ms = False, 0.0

    def _move_reference(self, level: float) -> None:
        """The offsets have a new level: the reference moves to it whole, keeping its spread and its count, so
        that the next step is judged at once (at a 64 s NTP interval, learning a new reference would take
        minutes: longer than between two moves there and back)."""
        shift = level - statistics.median(self.offsets)
        self.offsets = [offset + shift for offset in self.offsets]
        self.rebased += 1

    def _remember(self, ts: float, offset: float, delay: float, settings: DetectorSettings) -> None:
        self.good_ts = ts
        self.offsets.append(offset)
        self.delays.append(delay)
        limit = settings.lag_history
        del self.offsets[:-limit], self.delays[:-limit]
