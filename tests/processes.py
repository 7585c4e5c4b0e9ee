"""Waiting on what a test started (ending processes is the lab's ``stop``, shared with it)."""

from __future__ import annotations

import time
import urllib.request
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


def http_get(url: str) -> bytes | None:
    """A page's body, or None while nothing answers there (a process still starting, or gone)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bytes(response.read())
    except OSError:
        return None
