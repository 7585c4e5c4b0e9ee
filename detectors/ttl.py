"""Reply-TTL change: the VM's replies cross another number of routers, as after a move to another subnet.

The TTL (IPv6 hop limit) of echo replies is steady for a VM that stays put. A different value on
``ttl_confirm`` consecutive replies is a change; a single odd reply is not.

    >>> from migwatch.contract.records import PingSample
    >>> ttl = TtlChange()
    >>> def reply(t, value):
    ...     return PingSample(target="vm", address="192.0.2.1", probe="p", seq=t, ts=float(t), rtt_ms=0.3, ttl=value)
    >>> for t, value in enumerate([64, 64, 64, 61, 64, 62, 62]):
    ...     ttl.update(reply(t, value))
    >>> ttl.usual, ttl.change, ttl.changed_ts
    (62, -2, 5.0)
"""

from __future__ import annotations

import msgspec

from migwatch.contract.detector_settings import DEFAULTS, DetectorSettings
from migwatch.contract.records import PingSample


class TtlChange(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Per-target reply TTL; ``update(sample)`` consumes one PingSample (unanswered ones are ignored)."""

    usual: int | None = None
    candidate: int | None = None
    candidate_ts: float | None = None
    seen: int = 0
    change: int | None = None  # new minus old TTL of the last change
    changed_ts: float | None = None

    def update(self, sample: PingSample, settings: DetectorSettings = DEFAULTS) -> None:
        ttl = sample.ttl
        if ttl is None or sample.rtt_ms is None:
            return
        if self.usual is None:
            self.usual = ttl
            return
        if ttl == self.usual:
            self.candidate, self.candidate_ts, self.seen = None, None, 0
            return
        if ttl == self.candidate:
            self.seen += 1
        else:
            self.candidate, self.candidate_ts, self.seen = ttl, sample.ts, 1
        if self.seen >= settings.ttl_confirm:
            self.change, self.changed_ts = ttl - self.usual, self.candidate_ts
            self.usual, self.candidate, self.candidate_ts, self.seen = ttl, None, None, 0
