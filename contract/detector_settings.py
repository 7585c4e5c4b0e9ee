"""Every threshold of the detectors, by name, with defaults that work untuned at a 1 s ping interval and a
30 s NTP interval.

The settings are immutable and come with each call to a per-target detector, so that all targets share one
settings object and their JSON state holds data only. They are part of the config (``[detectors]``).

    >>> DEFAULTS.window_s, DEFAULTS.lag_min_ms
    (5.0, 2.0)
    >>> DetectorSettings(window_s=0)
    Traceback (most recent call last):
    ...
    migwatch.contract.fields.FieldError: window_s: must be > 0, got 0
"""

from __future__ import annotations

from typing import Literal

import msgspec

from migwatch.contract.fields import FieldError


class DetectorSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Detector thresholds. RTT figures are milliseconds, times are seconds of event time."""

    # --- RTT baseline (robust, per target)
    baseline_warmup: int = 20  # answered pings before the baseline is trusted
    baseline_rate: float = 0.05  # step of the streaming median, in units of the current spread
    rtt_floor_ms: float = 0.05  # smallest RTT spread assumed: sub-ms LAN noise is not a signal
    rtt_relative_floor: float = 0.1  # ... nor is a change under 10 % of the baseline
    # --- ping heuristic (the paper's): event-time tumbling windows
    window_s: float = 5.0
    window_min_pings: int = 3  # answered pings a window needs before its mean is judged
    mean_k: float = 4.0  # window mean raised: above baseline + mean_k spreads
    outlier_k: float = 8.0  # a high outlier: above baseline + outlier_k spreads
    pattern_outliers: int = 2  # outliers in one window that make a pattern on their own
    episode_gap_s: float = 30.0  # quiet time after which a pattern episode has ended
    baseline_freeze_s: float = 300.0  # the baseline does not learn from an episode younger than this
    # --- reply TTL
    ttl_confirm: int = 2  # replies with the new TTL before a change counts
    # --- NTP time lag
    lag_history: int = 8  # good offsets kept as the reference level
    lag_warmup: int = 3  # offsets needed before steps are judged
    lag_min_ms: float = 2.0  # smallest step that counts, however quiet the series
    lag_noise_k: float = 6.0  # a step must exceed lag_noise_k spreads of the recent offsets
    lag_delay_k: float = 0.5  # ... plus lag_delay_k x the sample's round-trip delay (offset error <= delay/2)
    lag_delay_max_factor: float = 3.0  # samples with delay > factor x usual delay (+1 ms) are not trusted
    slew_max_ms_s: float = 83.4  # the fastest an NTP daemon slews a clock (chrony's maxslewrate, 83,333 ppm)
    # --- relocation: where a moved VM settled (its lowest RTT before and after the move)
    floor_windows: int = 12  # quiet windows whose lowest RTT is kept as the level before a move
    settle_windows: int = 3  # steady windows after a confirmed move that make its new level
    relocation_min_ms: float = 1.0  # a shift of the lowest RTT from this on is a relocation (~100 km of fibre)
    # --- clock skew
    skew_points: int = 6  # offsets per half of the series whose skews are compared (3 min at 30 s)
    skew_min_interval_s: float = 20.0  # offsets closer than this to the last one kept are not used for skew
    skew_change_ppm: float = 5.0  # smallest change of skew that counts
    skew_settle_s: float = 1800.0  # after a lag the guest's NTP slews back: no skew is judged meanwhile
    # --- common-mode rejection: the probe's own clock stepping moves every target at once
    common_wait_s: float = 30.0  # a lag waits this long for other targets' steps before it counts
    common_min_targets: int = 3  # fleets with fewer NTP targets cannot tell, and do not wait
    common_fraction: float = 0.5  # share of NTP targets stepping alike that makes a step common-mode
    common_tolerance: float = 0.25  # steps alike: within this share of each other (or 2 ms)
    # --- fusion
    clear_after_s: float = 120.0  # quiet event time after which an alerted target is cleared
    renew_after_s: float = 10.0  # a lag this long after the one that confirmed an episode is another move
    host_window_s: float = 30.0  # a hypervisor pattern this close to the VM's corroborates it
    # --- look-alikes (detectors/lookalike.py): what a clock lag was, from the stop the pings saw
    clock_step_margin_ms: float = 10.0  # a lag longer than any stop the pings allow by this: the guest's clock
    pause_min_s: float = 0.5  # a stop the pings show, beyond their spacing, from which a lag may be a pause
    copy_min_s: float = 1.0  # the mean RTT raised this long up to a stop: a memory copy came first (a migration)
    copy_rise_ms: float = 2.0  # ... by this much at least (a busy LAN: tenths of a ms; the lab fleet's hosts: 1)
    reboot_min_s: float = 8.0  # an outage from which a lag not about as long is a fresh clock (a reboot)
    # A VM that answered no ping and no NTP query for this long while the probe kept asking has vanished
    # (vm-silent): longer than a reboot's usual outage, far longer than a live migration's.
    silent_after_s: float = 120.0
    # The likelihood of an alert is its state's floor plus what corroborates it, up to the state's cap
    # (detectors/fusion.py, LIKELIHOOD): each sign in force adds its bonus.
    bonus_pattern: float = 0.05  # the ping pattern
    bonus_loss: float = 0.03  # unanswered pings
    bonus_moved: float = 0.02  # a new reply TTL or clock skew
    bonus_source_host: float = 0.1  # a watched hypervisor showed the migration stream at the same time
    bonus_learner: float = 0.05  # x the window scorer's score (0-1)
    # --- learners (see learners.py)
    # The anomaly scorer of ping windows, one per target group: river's HalfSpaceTrees (issue #20: it tells the lab's
    # migrations from its look-alikes better than the Gaussian, AUC 0.69 against 0.55), or "gaussian".
    learner: Literal["gaussian", "hst"] = "hst"
    learner_warmup: int = 50  # windows learned before the scorer's scores are used
    feedback_min: int = 5  # analysts' verdicts before the feedback classifier calibrates likelihoods
    feedback_likely_p: float = 0.9  # P(migration) from feedback that makes a suspected episode likely
    # Alerts of a target group (one partition's targets in a stream worker) whose evidence waits for an
    # analyst's verdict: bounds the group's state (its table row in the worker).
    remembered_alerts: int = 1_000

    def __post_init__(self) -> None:
        for field in msgspec.structs.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int | float) and not value > 0:
                raise FieldError(f"{field.name}: must be > 0, got {value!r}")
        for name in ("common_fraction", "feedback_likely_p"):
            if getattr(self, name) > 1:
                raise FieldError(f"{name}: must be <= 1, got {getattr(self, name)!r}")


DEFAULTS = DetectorSettings()

# Settings of a whole target group (its common-mode check, its learners, its memory): no one target's.
GROUP_SETTINGS = frozenset({
    "common_wait_s", "common_min_targets", "common_fraction", "common_tolerance", "learner", "learner_warmup",
    "feedback_min", "feedback_likely_p", "remembered_alerts",
})  # fmt: skip


def with_overrides(settings: DetectorSettings, overrides: dict[str, float | int | str]) -> DetectorSettings:
    """``settings`` with one target's own values for some of them (a Target's ``detectors``), validated
    like the rest; a FieldError names ``detectors.<setting>``.

        >>> with_overrides(DEFAULTS, {"lag_min_ms": 5}).lag_min_ms
        5.0
        >>> with_overrides(DEFAULTS, {"common_wait_s": 5})
        Traceback (most recent call last):
        ...
        migwatch.contract.fields.FieldError: detectors.common_wait_s: a setting of the whole target group, ...
    """
    known = {field.name for field in msgspec.structs.fields(DetectorSettings)}
    for name in overrides:
        if name not in known:
            own = ", ".join(sorted(known - GROUP_SETTINGS))
            raise FieldError(f"detectors: not a detector setting (known: {own}), got {name!r}")
        if name in GROUP_SETTINGS:
            raise FieldError(f"detectors.{name}: a setting of the whole target group, not of one target")
    try:
        return msgspec.convert({**msgspec.structs.asdict(settings), **overrides}, DetectorSettings)
    except msgspec.ValidationError as error:
        # A range check says "lag_min_ms: must be > 0, got -5.0"; msgspec's type check says
        # "Expected `float`, got `str` - at `$.lag_min_ms`": either way, name the setting and its value.
        message, _, where = str(error).partition(" - at `$.")
        if not where:
            raise FieldError(f"detectors.{message}") from None
        name = where.rstrip("`")
        wanted = message.removeprefix("Expected ").split(",")[0]
        raise FieldError(f"detectors.{name}: must be {wanted}, got {overrides.get(name)!r}") from None
