"""The paper's ping heuristic: raised mean RTT, high outliers at the start, unanswered pings at the switch.

Fiebig et al. (CLOSER 2013, section 5) name three signs of a live migration in a VM's ping round-trip
times: a higher average RTT while memory is copied, very high outliers mainly at the start, and unanswered
pings while the VM is stopped and switched. A bulk copy over the same link shows the first two only.

``PingHeuristic`` judges each event-time window (``window_s``, aligned to the epoch) against a robust
baseline that does not learn from an ongoing episode, and keeps the episode's evidence for the fusion:

    >>> from migwatch.contract.records import PingSample
    >>> ping = PingHeuristic()
    >>> def sample(t, rtt):
    ...     return PingSample(target="vm", address="192.0.2.1", probe="p", seq=t, ts=float(t), rtt_ms=rtt)
    >>> for t in range(60):                       # a quiet minute: ~0.3 ms
    ...     _ = ping.update(sample(t, 0.3 + (t % 3) * 0.01))
    >>> ping.phase(60.0) is None
    True
    >>> for t in range(60, 70):                   # memory copy: RTT up, outliers
    ...     _ = ping.update(sample(t, 45.0 if t == 60 else 2.5))
    >>> ping.phase(70.0), ping.pattern_first_ts
    ('memory-copy', 60.0)
    >>> for t in range(70, 72):                   # stop-and-copy: no replies
    ...     _ = ping.update(sample(t, None))
    >>> ping.phase(72.0), ping.unanswered, ping.max_run
    ('stop-and-copy', 2, 2)
    >>> ping.update(sample(72, 0.4))              # the VM answers again, on its new host
    >>> ping.phase(72.0)
    'switched'
"""

from __future__ import annotations

import math

import msgspec

from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings
from migwatch.contract.records import PingSample
from migwatch.detectors.baseline import RobustBaseline


class PingHeuristic(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Per-target state of the ping heuristic. ``update(sample)`` consumes one PingSample."""

    baseline: RobustBaseline = msgspec.field(default_factory=RobustBaseline)
    # The current window.
    window_start: float | None = None
    w_answered: int = 0
    w_sum: float = 0.0
    w_max: float = 0.0
    w_outliers: int = 0
    w_unanswered: int = 0
    # The episode: from the first pattern until episode_gap_s of quiet.
    pattern_first_ts: float | None = None
    pattern_last_ts: float | None = None
    # The first and latest window (trimmed) mean of a run of them up by copy_rise_ms or more: a copy's load,
    # not stray outliers.
    raised_first_ts: float | None = None
    raised_last_ts: float | None = None
    mean_ms: float | None = None  # highest raised window mean of the episode
    max_ms: float | None = None  # highest RTT of the episode
    outliers: int = 0
    unanswered: int = 0  # unanswered pings of the episode (or since the last reply, outside one)
    run: int = 0  # consecutive unanswered pings now
    max_run: int = 0
    loss_last_ts: float | None = None
    run_copying: bool = False  # a memory copy was going on as the latest run of unanswered pings began
    resumed_ts: float | None = None  # first reply after unanswered pings: the VM runs again
    last_rtt_ms: float | None = None
    recent_ms: list[float] = []  # the last few answered pings: the path's round trip now

    def in_episode(self, ts: float, settings: DetectorSettings = DEFAULTS) -> bool:
        last = self.pattern_last_ts
        return last is not None and ts - last <= settings.episode_gap_s

    def update(self, sample: PingSample, settings: DetectorSettings = DEFAULTS) -> dict[str, float] | None:
        """Consume one sample; when it closes a window, return that window's raw features (for the learners)."""
        ts, rtt = sample.ts, sample.rtt_ms
        start = self.window_start
        closed = None
        if start is None or not start <= ts < start + settings.window_s:
            closed = self._window_features(settings)
            self.window_start = math.floor(ts / settings.window_s) * settings.window_s
            self.w_answered, self.w_sum, self.w_max, self.w_outliers, self.w_unanswered = 0, 0.0, 0.0, 0, 0
        last = self.pattern_last_ts
        episode = last is not None and ts - last <= settings.episode_gap_s
        if last is not None and not episode:
            self._end_episode()
        if rtt is None:
            self.w_unanswered += 1
            self._unanswered(ts, settings)
            return closed
        if self.run:
            self.resumed_ts = ts
            self.run = 0
        self.last_rtt_ms = rtt
        recent = self.recent_ms
        recent.append(rtt)
        if len(recent) > 3:
            del recent[0]
        baseline = self.baseline
        median = baseline.median
        if median is None:
            baseline.update(rtt, settings)
            return closed
        spread = baseline.spread(settings)
        outlier = rtt > median + settings.outlier_k * spread
        self.w_answered += 1
        self.w_sum += rtt
        self.w_max = rtt if rtt > self.w_max else self.w_max
        self.w_outliers += outlier
        # The mean leaves out the window's slowest reply: one stray slow reply must not raise it (outliers
        # are counted on their own).
        answered = self.w_answered - 1
        mean = (self.w_sum - self.w_max) / answered if answered else rtt
        raised = answered >= settings.window_min_pings and mean > median + settings.mean_k * spread
        # What a copy does to the path: the window's (trimmed) mean up by copy_rise_ms and a spread, lasting.
        if answered >= settings.window_min_pings and mean - median >= max(settings.copy_rise_ms, spread):
            last = self.raised_last_ts
            if last is None or ts - last > 2 * settings.window_s:
                self.raised_first_ts = ts
            self.raised_last_ts = ts
        if raised or self.w_outliers >= settings.pattern_outliers:
            self._pattern(ts, rtt, mean if raised else None, outlier)
            episode = True
        elif episode:
            self.outliers += outlier
            self.max_ms = max(self.max_ms or 0.0, rtt)
        # The baseline learns neither outliers nor an episode (it would learn the anomaly), unless the
        # "episode" lasts so long that it is the new normal.
        first = self.pattern_first_ts
        lasting = first is not None and ts - first > settings.baseline_freeze_s
        if lasting or not (outlier or episode):
            baseline.update(rtt, settings)
        return closed

    def _window_features(self, settings: DetectorSettings) -> dict[str, float] | None:
        """The window's rise over the baseline, in spreads, and its outliers and unanswered pings."""
        median = self.baseline.median
        if median is None or not (self.w_answered or self.w_unanswered):
            return None
        spread = self.baseline.spread(settings)
        trimmed = self.w_answered - 1
        mean = (self.w_sum - self.w_max) / trimmed if trimmed else self.w_max or median
        return {
            "raise": (mean - median) / spread,
            "peak": ((self.w_max or median) - median) / spread,
            "outliers": float(self.w_outliers),
            "lost": float(self.w_unanswered),
        }

    def _pattern(self, ts: float, rtt: float, mean: float | None, outlier: bool) -> None:
        if self.pattern_first_ts is None:
            # The window's earlier outliers belong to the episode too: they are its start.
            self.pattern_first_ts = self.window_start if self.w_outliers else ts
            self.outliers = self.w_outliers
            self.unanswered = 0
            self.max_run = 0
        else:
            self.outliers += outlier
        self.pattern_last_ts = ts
        self.max_ms = max(self.max_ms or 0.0, rtt)
        if mean is not None:
            self.mean_ms = max(self.mean_ms or 0.0, mean)

    def _unanswered(self, ts: float, settings: DetectorSettings) -> None:
        if not self.run:
            self.run_copying = self.copying(ts, settings)
            if not self.in_episode(ts, settings):
                self.unanswered = 0
                self.max_run = 0
        self.run += 1
        self.unanswered += 1
        self.max_run = max(self.max_run, self.run)
        self.loss_last_ts = ts

    def path_rtt_ms(self) -> float | None:
        """The round trip of the path now: the median of the last three answered pings."""
        recent = self.recent_ms
        return sorted(recent)[len(recent) // 2] if recent else None

    def relearn(self, level_ms: float) -> None:
        """The target settled at a new RTT level (it moved): that is its normal now, and the episode is over."""
        self.baseline = RobustBaseline(median=level_ms)
        self._end_episode()
        self.unanswered = self.run = self.max_run = 0

    def _end_episode(self) -> None:
        self.pattern_first_ts = self.pattern_last_ts = None
        self.mean_ms = self.max_ms = None
        self.outliers = 0
        self.resumed_ts = None

    def copying(self, ts: float, settings: DetectorSettings = DEFAULTS) -> bool:
        """A memory copy is going on at ``ts``: the mean RTT was first raised ``copy_min_s`` or more before and
        still is (within two windows). A live migration's stop follows its copy at once; a pause's late replies
        raise it only as it ends, load that ended a while ago is no copy, nor are a few stray outliers."""
        seen, last = self.raised_first_ts, self.raised_last_ts
        return (
            seen is not None and last is not None and seen <= ts - settings.copy_min_s
            and ts - last <= 2 * settings.window_s
        )  # fmt: skip

    def phase(self, ts: float, settings: DetectorSettings = DEFAULTS) -> str | None:
        """The migration phase the pings point at now, or None when they show nothing."""
        if self.run:
            return "stop-and-copy"
        if self.resumed_ts is not None and self.in_episode(ts, settings):
            return "switched"
        if self.in_episode(ts, settings):
            return "memory-copy"
        return None
