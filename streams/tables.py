"""Where a stream worker's state is durable: the :class:`Tables` protocol and its two implementations.

:class:`FaustTables` on Faust's changelog-backed tables (the worker), :class:`MemoryTables` on dicts
(``migwatch watch``, tests). :class:`~migwatch.streams.partitions.Partitions` writes through either.
"""

from __future__ import annotations

from collections import deque
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from migwatch.streams.charts import ChartWindow


class Tables(Protocol):
    """Where the worker's state is durable: Faust tables in the worker, dicts in tests and replays."""

    def load_target(self, target: str) -> bytes | None: ...

    def save_target(self, target: str, state: bytes) -> None: ...

    def load_group(self, partition: int) -> bytes | None: ...

    def save_group(self, partition: int, state: bytes) -> None: ...

    def save_window(self, target: str, window: ChartWindow) -> None: ...

    def history(self, target: str, before: float, count: int) -> list[ChartWindow]:
        """Up to ``count`` closed chart windows of a target that start before ``before`` (a window start of the
        target: its open window's), oldest first."""
        ...


@dataclass
class MemoryTables:
    """Tables as plain dicts; each target keeps its last ``keep`` chart windows."""

    keep: int = 120
    targets: dict[str, bytes] = field(default_factory=dict)
    fleets: dict[int, bytes] = field(default_factory=dict)
    windows: dict[str, deque[ChartWindow]] = field(default_factory=dict)

    def load_target(self, target: str) -> bytes | None:
        return self.targets.get(target)

    def save_target(self, target: str, state: bytes) -> None:
        self.targets[target] = state

    def load_group(self, partition: int) -> bytes | None:
        return self.fleets.get(partition)

    def save_group(self, partition: int, state: bytes) -> None:
        self.fleets[partition] = state

    def save_window(self, target: str, window: ChartWindow) -> None:
        kept = self.windows.get(target)
        if kept is None:
            kept = self.windows[target] = deque(maxlen=self.keep)
        kept.append(window)

    def history(self, target: str, before: float, count: int) -> list[ChartWindow]:
        return [window for window in self.windows.get(target, ()) if window.start < before][-count:]


class FaustTables:
    """The worker's :class:`~migwatch.streams.partitions.Tables` on Faust tables (changelog-backed).

    Chart windows live in a ring of ``slots`` rows per target (key ``target/slot``), each overwritten one
    lap later. A Faust windowed table would keep every live window's key in memory for its expiry (at
    10,000 targets, 30 s windows and 1 h of history: 1.2 million keys), so the worker's memory would
    grow for the whole first hour; the ring holds nothing in memory. Plain dicts stand in for the tables:

    >>> tables = FaustTables({}, {}, {}, width_s=30.0, slots=4)
    >>> for start in range(0, 240, 30):  # two laps: the second overwrites the first
    ...     tables.save_window("vm-1", ChartWindow(start=float(start)))
    >>> [window.start for window in tables.history("vm-1", before=240.0, count=10)]
    [120.0, 150.0, 180.0, 210.0]
    >>> [window.start for window in tables.history("vm-1", before=300.0, count=4)]  # 240 and 270 never came
    [180.0, 210.0]
    """

    def __init__(
        self,
        detectors: MutableMapping[str, bytes],
        fleets: MutableMapping[str, bytes],
        charts: MutableMapping[str, bytes],
        *,
        width_s: float,
        slots: int,
    ) -> None:
        self.detectors, self.fleets, self.charts = detectors, fleets, charts
        self.width_s, self.slots = width_s, slots

    def load_target(self, target: str) -> bytes | None:
        return self.detectors.get(target)

    def save_target(self, target: str, state: bytes) -> None:
        self.detectors[target] = state

    def load_group(self, partition: int) -> bytes | None:
        return self.fleets.get(f"partition-{partition}")

    def save_group(self, partition: int, state: bytes) -> None:
        self.fleets[f"partition-{partition}"] = state

    def _slot(self, target: str, start: float) -> str:
        # The slot is the key's last part and has no "/": two targets never share a key.
        return f"{target}/{round(start / self.width_s) % self.slots}"

    def save_window(self, target: str, window: ChartWindow) -> None:
        self.charts[self._slot(target, window.start)] = msgspec.json.encode(window)

    def history(self, target: str, before: float, count: int) -> list[ChartWindow]:
        found = []
        for i in range(min(count, self.slots), 0, -1):
            start = before - i * self.width_s  # ``before`` is a window start of the target's (its phase)
            raw = self.charts.get(self._slot(target, start))
            if raw is not None:
                window = msgspec.json.decode(raw, type=ChartWindow)
                if abs(window.start - start) < self.width_s / 1000:  # not a window of an earlier lap
                    found.append(window)
        return found
