"""A VM that vanished: no ping and no NTP query answered for ``silent_after_s`` while the probe kept asking.

A stolen VM may simply disappear from its address (moved where its network does not follow, stopped, cut
off): a live migration's outage lasts milliseconds to seconds, a reboot's well under two minutes. One
``vm-silent`` alert when the silence reaches ``silent_after_s``, one ``cleared`` when the VM answers again.
Only samples say that time passed (event time): a probe that stopped probing raises nothing here.

>>> from migwatch.contract.records import PingSample
>>> vm = Vanished()
>>> def ping(t, rtt):
...     return PingSample(target="web-01", address="192.0.2.10", probe="p", seq=t, ts=float(t), rtt_ms=rtt)
>>> said = [(t, vm.update(ping(t, 0.4 if t <= 30 or t >= 200 else None), 120.0)) for t in range(0, 210, 10)]
>>> [(t, what) for t, what in said if what]
[(150, 'silent'), (200, 'answers')]
"""

from __future__ import annotations

from typing import Literal

import msgspec

from migwatch.contract.records import ClockSample, PingSample


class Vanished(msgspec.Struct, kw_only=True, omit_defaults=True):
    """When the target last answered, and whether its silence was told."""

    answered_ts: float | None = None  # the last answered ping or NTP query (or the first sample, to start from)
    told: bool = False  # the vm-silent alert of this silence went out

    def update(self, sample: PingSample | ClockSample, silent_after_s: float) -> Literal["silent", "answers"] | None:
        """``silent`` when the silence just reached ``silent_after_s``, ``answers`` when a told one ended."""
        answered = sample.rtt_ms is not None if isinstance(sample, PingSample) else sample.error is None
        ts = sample.ts
        if answered or self.answered_ts is None:
            # Only an answer after this silence's last one: a stream worker may get one topic's samples late.
            if self.answered_ts is None or ts > self.answered_ts:
                self.answered_ts = ts
            if answered and self.told:
                self.told = False
                return "answers"
            return None
        if not self.told and ts - self.answered_ts >= silent_after_s:
            self.told = True
            return "silent"
        return None
