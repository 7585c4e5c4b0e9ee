"""The guest's serial console as the lab's control channel: run a shell command, get its output.

Each command line is followed by one more, ``echo M$((n))M``: the terminal echoes the typed text with the arithmetic
unexpanded, so only the shell's output matches ``M<n>M``, which marks the end of that command's output.
"""

from __future__ import annotations

import time

from migwatch_dev.lab.errors import LabError
from migwatch_dev.lab.unix_socket import connect


class Console:
    def __init__(self, path: str, timeout_s: float = 30.0) -> None:
        self._sock = connect(path, "the guest console", timeout_s)
        self._buffer = b""
        self._count = 0

    def wait_for(self, text: str, timeout_s: float) -> str:
        """Read until ``text`` appears; everything read up to it (the rest stays buffered)."""
        wanted = text.encode()
        deadline = time.monotonic() + timeout_s
        while wanted not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                tail = self._buffer[-300:].decode(errors="replace")
                raise LabError(f"the guest did not print {text!r} within {timeout_s:.0f} s; last output: {tail!r}")
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise LabError("the guest console closed")
            self._buffer += chunk
        before, _, self._buffer = self._buffer.partition(wanted)
        return before.decode(errors="replace")

    def sync(self, timeout_s: float = 120.0) -> None:
        """Wait until the guest's shell answers, asking again every 5 s: input typed while a guest was
        still settling (just booted, just migrated under load) was seen to go unanswered."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._count += 1
            self._sock.sendall(f"echo M$(({self._count}))M\n".encode())
            try:
                self.wait_for(f"M{self._count}M", min(5.0, max(0.1, deadline - time.monotonic())))
                return
            except LabError:
                if time.monotonic() > deadline:
                    raise LabError(f"the guest's shell did not answer within {timeout_s:.0f} s") from None

    def run(self, command: str, timeout_s: float = 30.0) -> str:
        self._count += 1
        self._sock.sendall(f"{command}\necho M$(({self._count}))M\n".encode())
        return self.wait_for(f"M{self._count}M", timeout_s)

    def close(self) -> None:
        self._sock.close()
