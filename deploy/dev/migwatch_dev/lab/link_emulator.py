"""A user-space link emulator for test hosts: delay and jitter that the test changes while it runs.

This kernel has no netem, so two TUN devices, one moved into each namespace, are bridged by a thread of
the test process that holds every packet for ``delay_ms`` (plus uniform ``jitter_ms``) before passing it
on. Loss and TTL changes stay with iptables.

    with emulated_link() as link:      # monitor <-> host, 5 ms each way by default
        link.emulator.delay_ms = 20.0  # takes effect for the next packet
"""

from __future__ import annotations

import fcntl
import heapq
import os
import random
import select
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from migwatch_dev.lab.netns import sh

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class LinkEmulator:
    """Moves packets between two TUN file descriptors, each after its delay. Runs until ``stop()``."""

    def __init__(self, left: int, right: int, delay_ms: float = 5.0, jitter_ms: float = 0.0) -> None:
        self.delay_ms = delay_ms
        self.jitter_ms = jitter_ms
        self.forwarded = 0
        # A paused VM: nothing passes before this monotonic time; what comes meanwhile queues (none lost).
        self.held_until = 0.0
        self._peer = {left: right, right: left}
        self._queue: list[tuple[float, int, int, bytes]] = []  # (due, order, out fd, packet)
        self._order = 0
        self._random = random.Random(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="link-emulator", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fds = list(self._peer)
        while not self._stop.is_set():
            now = time.monotonic()
            while self._queue and self._queue[0][0] <= now:
                _, _, out, packet = heapq.heappop(self._queue)
                os.write(out, packet)
                self.forwarded += 1
            wait = min(0.05, max(0.0, self._queue[0][0] - now)) if self._queue else 0.05
            readable, _, _ = select.select(fds, [], [], wait)
            for fd in readable:
                while True:
                    try:
                        packet = os.read(fd, 65536)
                    except BlockingIOError:
                        break
                    delay = self.delay_ms + self._random.uniform(-self.jitter_ms, self.jitter_ms)
                    self._order += 1
                    due = max(time.monotonic() + max(0.0, delay) / 1000, self.held_until)
                    heapq.heappush(self._queue, (due, self._order, self._peer[fd], packet))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class EmulatedLink:
    monitor: str  # "" when the monitor end is this process's own namespace
    host: str
    monitor_ip: str
    host_ip: str
    emulator: LinkEmulator


@contextmanager
def emulated_link(
    delay_ms: float = 5.0, jitter_ms: float = 0.0, *, own_monitor: bool = False
) -> Iterator[EmulatedLink]:
    """A monitor and a host namespace joined only through the emulator.

    With ``own_monitor`` the monitor end is the test's own namespace, so that a probe that must also reach
    the local Kafka on loopback can probe the host; the only route it adds is the host's /32 over the TUN
    device, which goes when the device does.
    """
    tag = uuid.uuid4().hex[:6]
    net = int(tag[:2], 16)
    monitor, host = ("" if own_monitor else f"mw-emon-{tag}"), f"mw-ehost-{tag}"
    monitor_ip, host_ip = f"10.214.{net}.1", f"10.214.{net}.2"
    left_name, right_name = f"tm{tag}", f"th{tag}"
    namespaces = [namespace for namespace in (monitor, host) if namespace]
    fds: list[int] = []
    emulator = None
    try:
        for namespace in namespaces:
            sh("ip", "netns", "add", namespace)
            sh("ip", "-n", namespace, "link", "set", "lo", "up")
        fds = [_open_tun(left_name), _open_tun(right_name)]
        for name, namespace, local, remote in (
            (left_name, monitor, monitor_ip, host_ip),
            (right_name, host, host_ip, monitor_ip),
        ):
            # The device moves into the namespace; the emulator's file descriptor stays attached to it.
            where = ["-n", namespace] if namespace else []
            if namespace:
                sh("ip", "link", "set", name, "netns", namespace)
            sh("ip", *where, "addr", "add", local, "peer", f"{remote}/32", "dev", name)
            sh("ip", *where, "link", "set", name, "up")
        emulator = LinkEmulator(fds[0], fds[1], delay_ms, jitter_ms)
        yield EmulatedLink(monitor, host, monitor_ip, host_ip, emulator)
    finally:
        if emulator is not None:
            emulator.stop()
        for fd in fds:
            os.close(fd)
        for namespace in namespaces:
            sh("ip", "netns", "del", namespace, check=False)
