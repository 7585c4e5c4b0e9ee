"""A real NTP server for test hosts: chronyd from Debian in a test host's namespace, never touching the host
clock (``-x``), whose time the test sets through a ``refclock SOCK`` it feeds with the offset it wants.

chronyd serves its estimate of true time; the refclock says true time = system time + offset, so the
probe measures the target's clock ``offset_ms`` away from its own (negative: the target is behind).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from migwatch_dev.lab.errors import LabError
from migwatch_dev.lab.processes import stop

_SAMPLE = struct.Struct("@qqdiiii")  # chrony's struct sock_sample: timeval, offset, pulse, leap, pad, magic
_MAGIC = 0x534F434B


class RefclockFeeder:
    """Sends chronyd a sample with ``offset_ms`` four times a second; change ``offset_ms`` at any time."""

    def __init__(self, path: Path, offset_ms: float) -> None:
        self.offset_ms = offset_ms
        self._path = str(path)
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            now = time.time()
            sample = _SAMPLE.pack(int(now), int((now % 1) * 1e6), self.offset_ms / 1000, 0, 0, 0, _MAGIC)
            with contextlib.suppress(OSError):  # chronyd not listening yet
                self._sock.sendto(sample, self._path)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@contextmanager
def chrony_server(namespace: str, address: str, folder: Path, offset_ms: float = 0.0) -> Iterator[RefclockFeeder]:
    """chronyd serving NTP on ``address`` inside ``namespace``, its time set by the returned feeder."""
    if shutil.which("chronyd") is None:
        raise LabError("chronyd is not installed (Debian package chrony; deploy/setup installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    refclock = folder / "refclock.sock"
    config = folder / "chrony.conf"
    config.write_text(
        f"refclock SOCK {refclock} poll 0 dpoll -2 refid TEST\n"
        f"allow all\nbindaddress {address}\ncmdport 0\n"
        f"pidfile {folder}/chronyd.pid\ndriftfile {folder}/drift\n"
    )
    log = open(folder / "chronyd.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        ["ip", "netns", "exec", namespace, "chronyd", "-x", "-d", "-u", "root", "-f", str(config)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    feeder = RefclockFeeder(refclock, offset_ms)
    try:
        yield feeder
    finally:
        feeder.stop()
        stop(server, 10)
        log.close()
