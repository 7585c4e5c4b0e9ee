"""The one small interface every prober offers the scheduler (one prober per protocol, as in Prometheus'
blackbox_exporter): send a probe to an IP address, and be called back exactly once with its outcome (the
answer, or a timeout or error result, never an exception)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

Outcome_co = TypeVar("Outcome_co", covariant=True)


class Prober(Protocol[Outcome_co]):
    name: str

    def send(self, address: str, timeout: float, done: Callable[[Outcome_co], None]) -> None: ...

    def close(self) -> None: ...
