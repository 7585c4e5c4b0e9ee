"""The probe's own clock: steps of its wall clock, seen against the raw monotonic clock.

An NTP offset is the target's clock against the probe's: when the probe's wall clock steps (its own NTP
daemon, an operator), every target's offset steps the other way at once, like a fleet of migrations. The
probe can see that itself: ``CLOCK_MONOTONIC_RAW`` runs at the crystal's rate whatever is done to the wall
clock, so a jump of wall minus raw between two looks is a step. The scheduler looks before every probe it
fires (two clock reads), and each ClockSample carries ``probe_step_ms``: how far the wall clock stepped
since the previous query of that target, which the time lag adds back (:mod:`migwatch.detectors.timelag`).

Slewing (at most 500 ppm, the kernel's limit) and the crystal's own error are not steps: a change within
``TOLERANCE_MS`` plus ``SLEW_PPM`` of the time between two looks is left alone.

    >>> wall, raw = [1000.0], [5.0]
    >>> clock = OwnClock(wall=lambda: wall[0], raw=lambda: raw[0])
    >>> clock.look()
    0.0
    >>> wall[0], raw[0] = 1001.0, 6.0          # a second later: no step
    >>> clock.look()
    0.0
    >>> wall[0], raw[0] = 1001.55, 6.5         # half a second later the wall clock is 50 ms ahead
    >>> round(clock.look(), 3)
    50.0
"""

from __future__ import annotations

import time
from collections.abc import Callable

TOLERANCE_MS = 0.5
SLEW_PPM = 600.0


def _raw() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC_RAW)


class OwnClock:
    """``look()`` returns every step of the wall clock seen since this object was made, in milliseconds."""

    def __init__(self, wall: Callable[[], float] = time.time, raw: Callable[[], float] = _raw) -> None:
        self._wall, self._raw = wall, raw
        self._last: tuple[float, float] | None = None  # (raw, wall - raw) of the last look
        self.steps_ms = 0.0

    def look(self) -> float:
        raw = self._raw()
        gap = self._wall() - raw
        if self._last is not None:
            last_raw, last_gap = self._last
            moved_ms = (gap - last_gap) * 1000.0
            if abs(moved_ms) > TOLERANCE_MS + SLEW_PPM * 1e-6 * (raw - last_raw) * 1000.0:
                self.steps_ms += moved_ms
        self._last = (raw, gap)
        return self.steps_ms
