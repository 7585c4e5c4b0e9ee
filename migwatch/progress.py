"""Progress lines on stderr for long work (a replay of millions of samples, say)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts work and says how far it got, at most every ``every_s`` seconds and once at the end."""

    def __init__(self, what: str, every_s: float = 2.0, stream: TextIO = sys.stderr) -> None:
        self.what = what
        self.every_s = every_s
        self.stream = stream
        self.count = 0
        self.started = self.last = time.monotonic()

    def add(self, count: int = 1, detail: str = "") -> None:
        self.count += count
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._say(detail)

    def done(self, detail: str = "") -> None:
        self._say(detail, final=True)

    def _say(self, detail: str, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.count / elapsed
        words = f"{self.what}: {self.count:,} samples, {rate:,.0f}/s"
        if detail:
            words += f", {detail}"
        if final:
            words += f", done in {elapsed:.1f} s"
        print(words, file=self.stream, flush=True)
