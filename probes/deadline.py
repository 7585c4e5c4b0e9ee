"""A deadline for an awaited answer: one timer handle, far cheaper than ``asyncio.wait_for`` per probe."""

from __future__ import annotations

import asyncio
from typing import Any


def settle_after(delay_s: float, future: asyncio.Future[Any], result: object) -> asyncio.TimerHandle:
    """In ``delay_s``, give ``future`` this result unless an answer came first. Cancel the handle once answered."""
    return asyncio.get_running_loop().call_later(delay_s, _settle, future, result)


def _settle(future: asyncio.Future[Any], result: object) -> None:
    if not future.done():
        future.set_result(result)
