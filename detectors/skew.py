"""Clock skew of a VM in ppm, and a change of it: the VM now runs on another physical clock.

A VM's clock ticks at its host's rate (and its NTP daemon's corrections); the offset series seen from the
probe therefore drifts at a skew that characterises the host (Kohno et al., 2005, remote physical device
fingerprinting from clock skew). ``ClockSkew`` fits the skew robustly (Theil-Sen: the median of pairwise
slopes) over the two halves of its recent offsets; when the halves disagree by more than
``skew_change_ppm`` and four standard errors, the skew changed.

    >>> from migwatch.contract.records import ClockSample
    >>> skew = ClockSkew()
    >>> def clock(t, offset):
    ...     return ClockSample(target="vm", address="192.0.2.1", probe="p", ts=float(t), offset_ms=offset, delay_ms=0.2)
    >>> for i in range(6):                       # 2 ppm: 0.06 ms more every 30 s
    ...     skew.update(clock(30 * i, 0.06 * i))
    >>> round(skew.skew_ppm, 1)
    2.0
    >>> for i in range(6, 12):                   # on another host: -18 ppm
    ...     skew.update(clock(30 * i, 0.3 - 0.54 * (i - 5)))
    >>> round(skew.change_ppm, 1), skew.changed_ts, skew.detected_ts
    (-20.0, 180.0, 330.0)
"""

from __future__ import annotations

import statistics
from itertools import combinations

import msgspec

from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings
from migwatch.contract.records import ClockSample
from migwatch.detectors.baseline import MAD_TO_SIGMA


def theil_sen(times: list[float], values: list[float]) -> tuple[float, float]:
    """Slope (value units per time unit) by the median of pairwise slopes, and its standard error."""
    slopes = [(values[j] - values[i]) / (times[j] - times[i]) for i, j in combinations(range(len(times)), 2)
              if times[j] != times[i]]  # fmt: skip
    if not slopes:
        return 0.0, float("inf")
    slope = statistics.median(slopes)
    intercept = statistics.median(v - slope * t for t, v in zip(times, values, strict=True))
    residuals = [abs(v - slope * t - intercept) for t, v in zip(times, values, strict=True)]
    noise = MAD_TO_SIGMA * statistics.median(residuals)
    span = max(times) - min(times)
    # Standard error of a least-squares slope over evenly spread points: sigma * sqrt(12 / n) / span.
    return slope, noise * (12 / len(times)) ** 0.5 / span if span else float("inf")


class ClockSkew(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Per-target skew of the NTP offset series; ``update(sample)`` consumes one ClockSample."""

    times: list[float] = []
    offsets: list[float] = []
    skew_ppm: float | None = None  # over the recent offsets
    change_ppm: float | None = None  # the last change (new minus old skew)
    changed_ts: float | None = None  # the first sample of the new skew
    detected_ts: float | None = None  # when the change was seen (up to skew_points samples later)

    def update(self, sample: ClockSample, settings: DetectorSettings = DEFAULTS) -> None:
        if sample.error is not None or sample.offset_ms is None:
            return
        if self.times and sample.ts - self.times[-1] < settings.skew_min_interval_s:
            # Polled faster, the halves would span seconds, where a guest NTP daemon's slewing looks like
            # another oscillator: the fit keeps its time base whatever the NTP interval.
            return
        self.times.append(sample.ts)
        self.offsets.append(sample.offset_ms)
        half = settings.skew_points
        del self.times[: -2 * half], self.offsets[: -2 * half]
        if len(self.times) < half:
            return
        # ms per s is 1000 ppm
        slope, _ = theil_sen(self.times[-half:], self.offsets[-half:])
        self.skew_ppm = 1000 * slope
        if len(self.times) < 2 * half:
            return
        old, old_error = theil_sen(self.times[:half], self.offsets[:half])
        new, new_error = theil_sen(self.times[half:], self.offsets[half:])
        change = 1000 * (new - old)
        if abs(change) > max(settings.skew_change_ppm, 4000 * (old_error**2 + new_error**2) ** 0.5):
            self.change_ppm, self.changed_ts, self.detected_ts = change, self.times[half], sample.ts
            del self.times[:half], self.offsets[:half]  # the new skew is the reference from here on

    def reset(self) -> None:
        """The offsets jumped to a new level (a lag, a step of the VM's clock): start a new series."""
        self.times, self.offsets = [], []
