"""A minimal synchronous QMP client: one command at a time over QEMU's monitor socket, events skipped."""

from __future__ import annotations

import json
from typing import Any

from migwatch_dev.lab.errors import LabError
from migwatch_dev.lab.unix_socket import connect


class Qmp:
    """Connects (retrying while QEMU starts), negotiates capabilities, then runs ``execute``."""

    def __init__(self, path: str, timeout_s: float = 30.0) -> None:
        self._sock = connect(path, "QEMU's monitor socket", timeout_s)
        self._sock.settimeout(timeout_s)
        self._file = self._sock.makefile("rwb")
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise LabError("QEMU closed its monitor socket")
        message: dict[str, Any] = json.loads(line)
        return message

    def execute(self, command: str, **arguments: Any) -> Any:
        """Run ``command``; its ``return`` value, or a LabError with QEMU's error description."""
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._file.write(json.dumps(request).encode() + b"\n")
        self._file.flush()
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise LabError(f"QMP {command} {arguments}: {reply['error'].get('desc', reply['error'])}")

    def close(self) -> None:
        self._file.close()
        self._sock.close()
