"""How long a VM could have stood still, as its pings bound it: the longest gap between two of its replies.

A stopped VM answers nothing; a ping that reaches it while it is stopped is answered late (queued) or not at
all. So the time between two consecutive replies' arrivals bounds any stop in between from above, and what
it exceeds the usual spacing of the replies by is the stop the pings *show*. The look-alike kinds
(:mod:`~migwatch.detectors.lookalike`) compare a clock lag with these two figures: a lag longer than any stop
the pings allow is the guest's own clock stepping; a lag as long as a stop the pings show, with no memory
copy before it, is a pause.

``Outage`` keeps the longest gap since :meth:`mark` (the last good NTP answer: the lag's reference):

    >>> from migwatch.contract.records import PingSample
    >>> outage = Outage()
    >>> def ping(t, rtt):
    ...     return PingSample(target="vm", address="192.0.2.1", probe="p", seq=int(t), ts=t, rtt_ms=rtt)
    >>> for t in range(10):                       # 1 Hz, answered in 0.5 ms
    ...     _ = outage.update(ping(float(t), 0.5))
    >>> outage.mark()
    >>> [outage.update(ping(t, rtt)) for t, rtt in [(10.0, None), (11.0, 630.0)]]   # stopped for about 2 s
    [None, 2.6295]
    >>> for t in (12.0, 13.0):
    ...     _ = outage.update(ping(t, 0.5))
    >>> round(outage.longest_s, 3), round(outage.shown_s(), 3), outage.stop_ts, round(outage.allowed_s(13.5), 3)
    (2.63, 1.63, 9.0005, 2.63)
"""

from __future__ import annotations

import math
import statistics

import msgspec

from migwatch.contract.records import PingSample

_GAPS = 5  # gaps kept for the usual spacing: a stop or a late reply's wake is one of them, not their median


class Outage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Per-target reply gaps; ``update(sample)`` consumes one PingSample."""

    reply_ts: float | None = None  # when the last reply arrived (the ping's ts plus its round trip)
    lost: int = 0  # unanswered pings since that reply
    gaps: list[float] = []  # the last gaps between replies with no ping lost between them
    longest_s: float = 0.0  # the longest gap since the mark
    stop_ts: float | None = None  # where it began: the reply before it

    def update(self, sample: PingSample) -> float | None:
        """The gap this reply closes, in seconds (None for an unanswered ping or the first reply)."""
        if sample.rtt_ms is None:
            self.lost += 1
            return None
        arrived = sample.ts + sample.rtt_ms / 1000.0
        last = self.reply_ts
        gap = None
        if last is not None and arrived > last:
            gap = arrived - last
            if not self.lost:  # the usual spacing: the median of the last gaps with no ping lost in them
                self.gaps.append(gap)
                del self.gaps[:-_GAPS]
            if gap > self.longest_s:
                self.longest_s, self.stop_ts = gap, last
        self.reply_ts, self.lost = arrived, 0
        return gap

    def mark(self) -> None:
        """Start over: the gaps from here on are the ones a later clock lag is judged against."""
        self.longest_s, self.stop_ts = 0.0, None

    def allowed_s(self, now: float) -> float:
        """The longest stop the pings allow between the mark and ``now``: their longest gap, or the time since
        their last reply if longer (infinite without any: a target nobody pings bounds nothing)."""
        if self.reply_ts is None:
            return math.inf
        return max(self.longest_s, now - self.reply_ts)

    def shown_s(self) -> float:
        """The stop the pings show since the mark: the longest gap beyond the usual spacing."""
        spacing = statistics.median(self.gaps) if self.gaps else 0.0
        return max(0.0, self.longest_s - spacing)
