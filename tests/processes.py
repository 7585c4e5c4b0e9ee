"""Waiting on what a test started (ending processes is the lab's ``stop``, shared with it)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str | Callable[[], str]) -> None:
    """Poll ``condition`` twice a second until it holds; fail naming ``what`` after ``timeout_s``.

    A callable ``what`` is called at the failure, so what it shows (a log's tail, a status) is as of then.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what() if callable(what) else what}")
        time.sleep(0.5)
