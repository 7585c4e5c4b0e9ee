"""Connecting to a unix socket that QEMU is about to open (its monitor, the guest's console)."""

from __future__ import annotations

import socket
import time

from migwatch_dev.lab.errors import LabError


def connect(path: str, what: str, timeout_s: float) -> socket.socket:
    """A stream socket connected to ``path``, retried while QEMU starts; LabError naming ``what`` if it never opens."""
    deadline = time.monotonic() + timeout_s
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError) as error:
            sock.close()
            if time.monotonic() > deadline:
                raise LabError(f"{what} {path} did not open within {timeout_s:.0f} s") from error
            time.sleep(0.05)
