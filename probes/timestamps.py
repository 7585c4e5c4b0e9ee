"""Kernel receive timestamps (``SO_TIMESTAMPNS``): when a packet really arrived, not when Python got to it.

Both probers measure round trips of a fraction of a millisecond; an event loop that is a few milliseconds
late would otherwise add its lateness to every figure.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterable

SO_TIMESTAMPNS = 35  # Linux; also the control message type of the timestamp (SCM_TIMESTAMPNS)
SO_RCVBUFFORCE = 33  # root may exceed net.core.rmem_max
_TIMESPEC = struct.Struct("@qq")
# Thousands of replies can arrive between two turns of the event loop (a raw ICMP socket also sees every
# echo request on loopback): a small receive buffer would drop them.
RECEIVE_BUFFER = 8 << 20


def enable(sock: socket.socket) -> None:
    """Ask for kernel timestamps and a large receive buffer; make the socket non-blocking."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setblocking(False)


def received_at(ancillary: Iterable[tuple[int, int, bytes]]) -> float:
    """The kernel's receive time (UNIX seconds) from recvmsg's ancillary data; now, if it gave none."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = _TIMESPEC.unpack(data[: _TIMESPEC.size])
            return seconds + nanoseconds / 1e9
    return time.time()
