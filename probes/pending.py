"""Requests waiting for their answer, shared by the probers: a callback each, and one expiry heap swept a
few times a second instead of a task or timer per request (ten thousand a second stay cheap)."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Result = TypeVar("Result")


class Pending(Generic[Key, Result]):
    """``add`` a request; ``answer`` it when its reply comes, or its ``expired`` result goes to its callback."""

    SWEEP_S = 0.05  # an unanswered request is reported at most this late

    def __init__(self) -> None:
        self._waiting: dict[Key, tuple[float, Callable[[Result], None], Result, int]] = {}
        self._expiries: list[tuple[float, int, Key]] = []  # (deadline, order, key)
        self._order = 0
        self._sweeping: asyncio.TimerHandle | None = None

    def __contains__(self, key: Key) -> bool:
        return key in self._waiting

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, key: Key, sent: float, done: Callable[[Result], None], timeout: float, expired: Result) -> None:
        """Wait for ``key``'s answer; after ``timeout`` s, ``done(expired)``."""
        self._order += 1
        self._waiting[key] = (sent, done, expired, self._order)
        heapq.heappush(self._expiries, (time.monotonic() + timeout, self._order, key))
        if self._sweeping is None:
            self._sweeping = asyncio.get_running_loop().call_later(self.SWEEP_S, self._sweep)

    def sent_at(self, key: Key) -> float | None:
        """When the request ``key`` waiting now was sent, or None if none waits."""
        waiting = self._waiting.get(key)
        return None if waiting is None else waiting[0]

    def answer(self, key: Key) -> tuple[float, Callable[[Result], None]] | None:
        """The send time and callback of the request ``key`` (no longer waiting), or None if none waits."""
        waiting = self._waiting.pop(key, None)
        return None if waiting is None else (waiting[0], waiting[1])

    def _sweep(self) -> None:
        now = time.monotonic()
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, order, key = heapq.heappop(expiries)
            waiting = self._waiting.get(key)
            # Only the request this entry was made for: the key may be waiting again, for a later one.
            if waiting is not None and waiting[3] == order:
                del self._waiting[key]
                waiting[1](waiting[2])
        self._sweeping = asyncio.get_running_loop().call_later(self.SWEEP_S, self._sweep) if expiries else None

    def close(self) -> None:
        if self._sweeping is not None:
            self._sweeping.cancel()
            self._sweeping = None
