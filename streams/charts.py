"""One target's RTT, unanswered pings and clock offset summarised per chart window (the paper's detailed chart).

>>> from migwatch.contract.records import PingSample
>>> window = ChartWindow(start=0.0)
>>> for seq, rtt in enumerate([0.4, 0.6, None, 2.0]):
...     window.add(PingSample(target="vm", address="192.0.2.1", probe="p", seq=seq, ts=float(seq), rtt_ms=rtt))
>>> window.answered, window.unanswered, window.rtt_mean_ms, window.rtt_max_ms
(3, 1, 1.0, 2.0)

Each target's windows begin at a point of their own within the width (its phase), so that the windows of
thousands of targets pinged together do not all close, each a table write, in the same second:

>>> phase = phase_of("vm-1", 30.0)
>>> window = ChartWindow.containing(1000.0, 30.0, phase)
>>> window.start <= 1000.0 < window.start + 30.0, round((window.start - phase) / 30.0, 9).is_integer()
(True, True)
"""

from __future__ import annotations

import math
import zlib

import msgspec

from migwatch.contract.records import STATUS_STATES as STATES
from migwatch.contract.records import Alert, ClockSample, PingSample


class ChartWindow(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What one target's samples in ``[start, start + width)`` of event time add up to."""

    start: float
    answered: int = 0
    unanswered: int = 0
    rtt_sum_ms: float = 0.0
    rtt_max_ms: float | None = None
    offset_ms: float | None = None  # the window's last NTP offset
    level: int = 0  # the target's highest alert level (0 none .. 3 confirmed) while the window was open
    alert: str | None = None  # the state of the last alert raised in the window, and its event.action
    action: str | None = None

    @classmethod
    def containing(cls, ts: float, width_s: float, phase_s: float = 0.0) -> ChartWindow:
        return cls(start=math.floor((ts - phase_s) / width_s) * width_s + phase_s)

    def add(self, sample: PingSample | ClockSample) -> None:
        if isinstance(sample, ClockSample):
            if sample.offset_ms is not None:
                self.offset_ms = sample.offset_ms
            return
        rtt = sample.rtt_ms
        if rtt is None:
            self.unanswered += 1
            return
        self.answered += 1
        self.rtt_sum_ms += rtt
        if self.rtt_max_ms is None or rtt > self.rtt_max_ms:
            self.rtt_max_ms = rtt

    def mark(self, level: int, raised: list[Alert]) -> None:
        """What the target's detector was at after a sample of the window: its level, the alerts it raised."""
        self.level = max(self.level, level)
        if raised:
            self.alert, self.action = raised[-1].migwatch.state, raised[-1].event.action

    @property
    def rtt_mean_ms(self) -> float | None:
        return round(self.rtt_sum_ms / self.answered, 3) if self.answered else None

    def point(self) -> dict[str, float | int | str | None]:
        """The window as one point of the chart's JSON."""
        return {
            "ts": self.start,
            "rtt_mean_ms": self.rtt_mean_ms,
            "rtt_max_ms": self.rtt_max_ms,
            "unanswered": self.unanswered,
            "offset_ms": self.offset_ms,
            "state": STATES[self.level],
            "alert": self.alert,
            "action": self.action,
        }


def phase_of(target: str, width_s: float) -> float:
    """Where within ``width_s`` the chart windows of ``target`` begin: a point of its own (crc32 of its id).
    Aligned windows made a stream worker write 10,000 targets' rows in one batch every 30 s (~0.5 ms each in
    Faust): a stall of seconds for the alerts of that batch."""
    return zlib.crc32(target.encode()) / 2**32 * width_s
