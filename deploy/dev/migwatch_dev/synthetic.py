"""Synthetic labelled traces: the paper's patterns and the benign look-alikes, generated reproducibly.

For tests and benchmarks of the detectors where a lab run would be too slow. Each target pings with
sub-millisecond LAN noise and answers NTP with tens of microseconds of offset noise; episodes are laid on
top:

- ``migration``: ``copy_s`` of raised RTT with high outliers at the start (memory copy), ``downtime_s`` of
  unanswered pings (stop-and-copy), then the VM's clock lags by the downtime and slews back slowly;
- ``bulk-transfer``: raised RTT and outliers, no lost ping, no lag (the paper's SCP control);
- ``loss-burst``: a few unanswered pings alone;
- ``clock-correction``: the VM's own NTP steps its clock back towards the probe;
- ``pause``: ``downtime_s`` of unanswered pings, then the clock lags by the downtime (no copy before);
- ``clock-step``: the guest's clock is set back by ``lag_ms`` (default 1 s), every ping answered;
- ``ttl-change``: replies cross one more router from then on;
- ``path-change``: the route to the VM grows longer for ``copy_s`` (RTT and NTP delay up by ``rtt_add_ms``,
  evenly), with no move.

A migration with ``relocate_ms`` moves the VM to a site that many milliseconds of RTT farther away (or,
negative, nearer): from its switch on, pings and NTP answers take that much longer.

    >>> samples, labels = generate([Episode("migration", "vm-1", 300.0, copy_s=20.0, downtime_s=0.5)],
    ...                            targets=["vm-1", "vm-2"], duration_s=600.0)
    >>> migration = labels.migrations[0]
    >>> len(labels.migrations), migration.end - migration.start
    (1, 20.5)
    >>> all(a.ts <= b.ts for a, b in zip(samples, samples[1:]))
    True
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from migwatch.contract.labels import BenignLabel, Labels, MigrationLabel
from migwatch.contract.records import ClockSample, PingSample

EpisodeKind = Literal[
    "migration", "bulk-transfer", "loss-burst", "clock-correction", "ttl-change", "path-change", "pause", "clock-step"
]
START_TS = 1_764_180_000.0


@dataclass(frozen=True)
class Episode:
    kind: EpisodeKind
    target: str
    start: float  # seconds after the trace starts
    copy_s: float = 20.0  # migration: memory copy; bulk-transfer: its length
    downtime_s: float = 0.5  # migration: stop-and-copy; loss-burst: its length
    rtt_add_ms: float = 2.5  # raised RTT while copying
    lag_ms: float | None = None  # migration: the clock lag (default: the downtime); correction: its size
    relocate_ms: float = 0.0  # migration: RTT the new site adds from the switch on

    @property
    def end(self) -> float:
        length = {"migration": self.copy_s + self.downtime_s, "bulk-transfer": self.copy_s, "path-change": self.copy_s}
        return self.start + length.get(self.kind, self.downtime_s if self.kind in ("loss-burst", "pause") else 1.0)


def _path_ms(episodes: Sequence[Episode], t: float) -> float:
    """What the path adds to a round trip at ``t``: the sites the VM was moved to, a longer route for a while."""
    added = 0.0
    for episode in episodes:
        if episode.kind == "migration" and t >= episode.end:
            added += episode.relocate_ms
        elif episode.kind == "path-change" and episode.start <= t < episode.end:
            added += episode.rtt_add_ms
    return added


def _pings(
    target: str, address: str, episodes: Sequence[Episode], *, duration_s: float, interval_s: float, rng: random.Random
) -> Iterator[PingSample]:
    base = rng.uniform(0.2, 0.6)
    seq = 0
    ttl = 64
    t = rng.uniform(0, interval_s)
    while t < duration_s:
        rtt: float | None = max(0.01, rng.gauss(base, 0.02))
        if rng.random() < 0.002:
            rtt = base * rng.uniform(2, 4)  # a stray slow reply, as real networks have
        for episode in episodes:
            offset = t - episode.start
            if episode.kind in ("migration", "bulk-transfer") and 0 <= offset < episode.copy_s:
                outlier = offset < 3.0 and rng.random() < 0.7
                rtt = rng.uniform(15, 60) if outlier else base + rng.uniform(0.5, 1.5) * episode.rtt_add_ms
            elif 0 <= offset - (episode.copy_s if episode.kind == "migration" else 0) < episode.downtime_s and (
                episode.kind in ("migration", "loss-burst", "pause")
            ):
                rtt = None
            elif episode.kind == "ttl-change" and offset >= 0:
                ttl = 63
        if rtt is not None:
            rtt += _path_ms(episodes, t)
        yield PingSample(
            target=target, address=address, probe="synthetic", seq=seq, ts=START_TS + t,
            rtt_ms=None if rtt is None else round(rtt, 4), ttl=None if rtt is None else ttl,
        )  # fmt: skip
        seq += 1
        t += interval_s


def _clocks(
    target: str, address: str, episodes: Sequence[Episode], *, duration_s: float, interval_s: float, rng: random.Random
) -> Iterator[ClockSample]:
    level = rng.uniform(-0.5, 0.5)
    t = rng.uniform(0, interval_s)
    while t < duration_s:
        offset = level + rng.gauss(0, 0.03)
        for episode in episodes:
            since = t - episode.end
            if episode.kind in ("migration", "pause") and since >= 0:
                lag = episode.lag_ms if episode.lag_ms is not None else 1000 * episode.downtime_s
                offset -= lag * math.exp(-since / 600)  # the guest's NTP slews back over minutes
            elif episode.kind == "clock-step" and t >= episode.start:
                offset -= episode.lag_ms if episode.lag_ms is not None else 1000.0
            elif episode.kind == "clock-correction":
                step = episode.lag_ms if episode.lag_ms is not None else 40.0
                # Ahead by `step` until its NTP daemon steps the clock back towards the probe.
                offset += step if t < episode.start else 0.0
        yield ClockSample(
            target=target, address=address, probe="synthetic", ts=START_TS + t, offset_ms=round(offset, 4),
            delay_ms=round(abs(rng.gauss(0.5, 0.05)) + _path_ms(episodes, t), 4), stratum=3, leap=0,
        )  # fmt: skip
        t += interval_s


def generate(
    episodes: Sequence[Episode],
    targets: Sequence[str],
    duration_s: float,
    *,
    ping_interval_s: float = 1.0,
    ntp_interval_s: float = 30.0,
    seed: int = 0,
) -> tuple[list[PingSample | ClockSample], Labels]:
    """Samples of all targets in ``ts`` order, and the labels of the episodes."""
    rng = random.Random(seed)
    streams: list[Iterator[PingSample | ClockSample]] = []
    for index, target in enumerate(targets):
        mine = [episode for episode in episodes if episode.target == target]
        address = f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"
        streams.append(
            _pings(
                target,
                address,
                mine,
                duration_s=duration_s,
                interval_s=ping_interval_s,
                rng=random.Random(rng.random()),
            )
        )
        streams.append(
            _clocks(
                target, address, mine, duration_s=duration_s, interval_s=ntp_interval_s, rng=random.Random(rng.random())
            )
        )
    samples = list(heapq.merge(*streams, key=lambda sample: sample.ts))
    labels = Labels(
        migrations=[
            MigrationLabel(
                target=e.target, start=START_TS + e.start, end=START_TS + e.end, downtime_ms=1000 * e.downtime_s
            )
            for e in episodes
            if e.kind == "migration"
        ],
        benign=[
            BenignLabel(target=e.target, start=START_TS + e.start, end=START_TS + e.end, kind=e.kind)
            for e in episodes
            if e.kind != "migration"
        ],
    )
    return samples, labels
