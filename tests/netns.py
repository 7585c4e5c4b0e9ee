"""Test hosts in network namespaces: a monitor and a host joined by a veth pair, nothing else.

Both ends live in namespaces the test creates, with no route anywhere else, so whatever the test sends
cannot leave the machine. Commands run inside a namespace with ``ip netns exec``; loss and TTL changes are
iptables rules in the host's namespace (this kernel has no netem).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from migwatch_dev.lab.netns import sh


@dataclass(frozen=True)
class Link:
    monitor: str  # namespace names
    host: str
    monitor_ip: str
    host_ip: str
    monitor_ip6: str
    host_ip6: str

    def in_monitor(self, *command: str) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.monitor, *command)

    def in_host(self, *command: str) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.host, *command)

    def python_in_monitor(self, code: str) -> object:
        """Run Python inside the monitor's namespace; its last stdout line is JSON, returned decoded."""
        result = subprocess.run(
            ["ip", "netns", "exec", self.monitor, sys.executable, "-c", code],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise AssertionError(f"python in {self.monitor} failed:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])


@contextmanager
def link() -> Iterator[Link]:
    if sh("ip", "netns", "list", check=False).returncode != 0:
        pytest.skip("network namespaces are not available here")
    tag = uuid.uuid4().hex[:6]
    net = int(tag[:2], 16)
    names = Link(
        monitor=f"mw-mon-{tag}", host=f"mw-host-{tag}",
        monitor_ip=f"10.213.{net}.1", host_ip=f"10.213.{net}.2",
        monitor_ip6=f"fd00:213:{net:x}::1", host_ip6=f"fd00:213:{net:x}::2",
    )  # fmt: skip
    try:
        for namespace in (names.monitor, names.host):
            sh("ip", "netns", "add", namespace)
            sh("ip", "-n", namespace, "link", "set", "lo", "up")
            # No duplicate address detection: its tentative link-local address would block IPv6 for seconds.
            for scope in ("all", "default"):
                sh("ip", "netns", "exec", namespace, "sysctl", "-qw", f"net.ipv6.conf.{scope}.accept_dad=0")
        sh("ip", "link", "add", f"vm{tag}", "netns", names.monitor, "type", "veth", "peer", "name", f"vh{tag}",
           "netns", names.host)  # fmt: skip
        for namespace, device, ip, ip6 in (
            (names.monitor, f"vm{tag}", names.monitor_ip, names.monitor_ip6),
            (names.host, f"vh{tag}", names.host_ip, names.host_ip6),
        ):
            sh("ip", "-n", namespace, "addr", "add", f"{ip}/30", "dev", device)
            sh("ip", "-n", namespace, "addr", "add", f"{ip6}/64", "dev", device, "nodad")
            sh("ip", "-n", namespace, "link", "set", device, "up")
        yield names
    finally:
        for namespace in (names.monitor, names.host):
            sh("ip", "netns", "del", namespace, check=False)
