"""A robust, constant-size baseline of one target's round-trip time.

The exact median and median absolute deviation (MAD) of the first answered pings seed it; after that the
median and MAD are tracked by bounded steps (a stochastic-approximation median, as in FAME): each sample
moves them by at most ``baseline_rate`` spreads, so a burst of outliers cannot drag the baseline along with
it, while a lasting change of level is learned within a few hundred pings.

    >>> baseline = RobustBaseline()
    >>> for rtt in [0.30, 0.32, 0.31, 0.29, 0.30] * 4:
    ...     baseline.update(rtt)
    >>> baseline.ready, round(baseline.median, 2), baseline.spread()
    (True, 0.3, 0.05)
    >>> baseline.update(40.0)  # one huge outlier moves the median by one bounded step only
    >>> round(baseline.median, 4)
    0.3025
"""

from __future__ import annotations

import statistics

import msgspec

from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings

MAD_TO_SIGMA = 1.4826  # MAD x this estimates the standard deviation of normal noise


class RobustBaseline(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Streaming median and spread of a target's RTT; ``update(rtt_ms)`` learns one answered ping.

    Like every per-target state here it holds data only: the settings come with each call, so that a
    hundred thousand targets share one DetectorSettings object and their JSON state stays small.
    """

    warmup: list[float] = []
    median: float | None = None
    mad: float = 0.0

    @property
    def ready(self) -> bool:
        return self.median is not None

    def spread(self, settings: DetectorSettings = DEFAULTS) -> float:
        """The RTT noise scale in ms, never below the configured absolute and relative floors."""
        # Conditional expressions instead of max(): this runs twice for every answered ping.
        spread = MAD_TO_SIGMA * self.mad
        floor = settings.rtt_floor_ms
        relative = settings.rtt_relative_floor * (self.median or 0.0)
        spread = spread if spread > floor else floor
        return spread if spread > relative else relative

    def update(self, rtt_ms: float, settings: DetectorSettings = DEFAULTS) -> None:
        if self.median is None:
            self.warmup.append(rtt_ms)
            if len(self.warmup) >= settings.baseline_warmup:
                self.median = statistics.median(self.warmup)
                self.mad = statistics.median(abs(x - self.median) for x in self.warmup)
                self.warmup = []
            return
        rate = settings.baseline_rate
        median, mad = self.median, self.mad
        step = rate * self.spread(settings)
        if rtt_ms > median:
            median += step
        elif rtt_ms < median:
            median -= step
        # The MAD moves by a share of itself: geometric convergence whatever its scale.
        mad_step = rate * (mad if mad > settings.rtt_floor_ms / 4 else settings.rtt_floor_ms / 4)
        mad += mad_step if abs(rtt_ms - median) > mad else -mad_step
        self.median, self.mad = median, mad if mad > 0.0 else 0.0
