"""Real live migrations: QEMU (TCG) guests on two hypervisor namespaces joined by a switch namespace.

    monitor (this namespace) ── lm/ls ── switch ── br0 ─┬─ p1/u1 ── hv-1: br0 + tap0..  ── QEMU (VMs)
       10.217.N.1                 routes, iptables       └─ p2/u2 ── hv-2: br0 + tap0..  ── QEMU (-incoming)

The VMs and both hypervisors sit on one bridged LAN, 10.218.N.0/24 (the first VM .10, the others .21, .22 ..,
hv-1 .11, hv-2 .12, switch .1); every VM boots on hv-1 and has a tap of its own on both hypervisors, so a
fleet's VMs share their host's uplink as VMs do. The monitor reaches the LAN through the switch, which routes,
so loss and TTL changes are iptables rules
in the switch's FORWARD chains. The migration stream runs from one hypervisor's uplink to the other's, the
same links that carry the VM's replies: that is what makes the RTT rise during the memory copy (the paper's
pattern). Shaping (tbf) applies to both directions of both uplinks. The monitor end is this process's own
namespace, so that a probe can reach both the VM and a Kafka broker on loopback; the only route added is
the LAN's, over the lab's own veth, which goes with the switch namespace.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import time
import typing
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import icmplib

from migwatch_dev.lab.console import Console
from migwatch_dev.lab.errors import LabError
from migwatch_dev.lab.guest import NIC_DEVICE, GuestImage, build
from migwatch_dev.lab.netns import in_ns, sh
from migwatch_dev.lab.processes import stop
from migwatch_dev.lab.qmp import Qmp
from migwatch_dev.lab.targets import VM_ID, fleet_ids

GUEST_MEMORY_MB = 512
_MIGRATION_PORT = 4444
_BULK_PORT = 5001


@dataclass
class QemuProcess:
    process: subprocess.Popen[bytes]
    qmp: Qmp
    console: Console
    host: int  # 1 or 2
    index: int  # the VM's place in the fleet: its tap, MAC and address


@dataclass
class Migration:
    start: float  # the migrate command
    end: float  # the destination reports running
    downtime_ms: float  # QEMU's downtime plus the gap between the source's completed and the destination running
    total_ms: float
    source: str
    destination: str
    crash_log: str = ""  # the guest's console log when it did not come back after the move


@dataclass
class QemuLab:
    """Set up by :func:`qemu_lab`; every method blocks until its episode is over and returns its times.
    An episode of one VM names it (``vm``, one of ``vm_ids``; the first by default)."""

    EPISODES: typing.ClassVar = ("migrate", "pause", "bulk_transfer", "cpu_load", "clock_step", "loss_burst",
                                 "ttl_change", "shape", "reboot")  # fmt: skip

    tag: str
    net: int
    folder: Path
    image: GuestImage
    vm_ids: tuple[str, ...] = (VM_ID,)
    vms: dict[str, QemuProcess] = field(default_factory=dict)
    _count: int = 0
    _switch_rules: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"mwl-sw-{self.tag}"

    def hypervisor(self, host: int) -> str:
        return f"mwl-h{host}-{self.tag}"

    def hypervisor_id(self, host: int) -> str:
        return f"hv-{host}"

    def vm_ip(self, vm: str = VM_ID) -> str:
        index = self.vm_ids.index(vm)
        return f"10.218.{self.net}.{10 if index == 0 else 20 + index}"

    @property
    def addresses(self) -> dict[str, str]:
        """What the probes watch: the VMs and both hypervisors."""
        return {**{vm: self.vm_ip(vm) for vm in self.vm_ids},
                **{self.hypervisor_id(host): self.hypervisor_ip(host) for host in (1, 2)}}  # fmt: skip

    def hypervisor_ip(self, host: int) -> str:
        return f"10.218.{self.net}.{10 + host}"

    @property
    def monitor_ip(self) -> str:
        return f"10.217.{self.net}.1"

    # -- the guests --------------------------------------------------------------------------------------

    def _start_qemu(self, vm: str, host: int, incoming: bool) -> QemuProcess:
        self._count += 1
        index = self.vm_ids.index(vm)
        qmp_path, console_path = self.folder / f"qmp-{self._count}.sock", self.folder / f"console-{self._count}.sock"
        # Kernel warnings (loglevel 4) reach the console, and its log file, for a post-mortem of the guest.
        append = f"console=ttyS0 loglevel=4 migwatch.ip={self.vm_ip(vm)}/24 migwatch.gw=10.218.{self.net}.1"
        # The same machine on both sides (QEMU requires it); only -incoming differs.
        command = [
            "ip", "netns", "exec", self.hypervisor(host),
            "qemu-system-x86_64", "-accel", "tcg", "-cpu", "qemu64", "-m", str(GUEST_MEMORY_MB),
            "-nodefaults", "-no-user-config", "-display", "none",
            "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd), "-append", append,
            "-netdev", f"tap,id=n0,ifname=tap{index},script=no,downscript=no",
            "-device", f"{NIC_DEVICE},netdev=n0,mac=52:54:00:6d:77:{index + 1:02x},romfile=",
            "-chardev", f"socket,id=con,path={console_path},server=on,wait=off,logfile={console_path}.log",
            "-serial", "chardev:con",
            "-qmp", f"unix:{qmp_path},server=on,wait=off",
        ]  # fmt: skip
        if incoming:
            command += ["-incoming", f"tcp:{self.hypervisor_ip(host)}:{_MIGRATION_PORT + index}"]
        log = open(self.folder / f"qemu-{self._count}.log", "wb")  # noqa: SIM115 - the child holds it
        try:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        except FileNotFoundError as error:
            raise LabError("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)") from error
        finally:
            log.close()
        try:
            return QemuProcess(process, Qmp(str(qmp_path)), Console(str(console_path)), host, index)
        except LabError as error:
            stop(process, 5)
            log_text = (self.folder / f"qemu-{self._count}.log").read_text()[-500:]
            raise LabError(f"QEMU did not start: {error}; its log: {log_text}") from None

    def boot(self, vm: str = VM_ID, timeout_s: float = 120.0) -> None:
        guest = self.vms[vm] = self._start_qemu(vm, 1, incoming=False)
        guest.console.wait_for("MIGWATCH-GUEST-READY", timeout_s)
        guest.console.sync()
        guest.console.run("stty -echo")

    def guest(self, command: str, vm: str = VM_ID, timeout_s: float = 30.0) -> str:
        return self.vms[vm].console.run(command, timeout_s)

    def _stop_qemu(self, vm: QemuProcess) -> None:
        with contextlib.suppress(LabError, OSError):
            vm.qmp.execute("quit")
        vm.qmp.close()
        vm.console.close()
        stop(vm.process, 10)

    # -- episodes ----------------------------------------------------------------------------------------

    def migrate(
        self, *, vm: str = VM_ID, max_bandwidth_mb_s: float = 0.0, dirty_mb_s: float = 0.0,
        auto_converge: bool = False, timeout_s: float = 600.0,
    ) -> Migration:  # fmt: skip
        """Live-migrate ``vm`` to the other hypervisor; ``max_bandwidth_mb_s`` 0 leaves QEMU's default."""
        source = self.vms[vm]
        destination = self._start_qemu(vm, 3 - source.host, incoming=True)
        if dirty_mb_s > 0:
            self.guest(
                # busybox head takes no "8M": dd counts the MiB. The same MiB are rewritten every second.
                f"dd if=/dev/urandom of=/dev/shm/src bs=1M count={max(1, round(dirty_mb_s))} 2>/dev/null;"
                " (while true; do dd if=/dev/shm/src of=/dev/shm/dirty bs=1M conv=notrunc 2>/dev/null; sleep 1; done)"
                " >/dev/null 2>&1 & echo $! > /tmp/dirty.pid",
                vm,
                timeout_s=120,
            )
        if max_bandwidth_mb_s > 0:
            source.qmp.execute("migrate-set-parameters", **{"max-bandwidth": int(max_bandwidth_mb_s * 1e6)})
        source.qmp.execute(
            "migrate-set-capabilities", capabilities=[{"capability": "auto-converge", "state": auto_converge}]
        )
        start = time.time()
        port = _MIGRATION_PORT + destination.index
        source.qmp.execute("migrate", uri=f"tcp:{self.hypervisor_ip(destination.host)}:{port}")
        deadline = time.monotonic() + timeout_s
        while True:
            state = source.qmp.execute("query-migrate")
            if state.get("status") == "completed":
                completed = time.time()
                break
            if state.get("status") in ("failed", "cancelled"):
                self._stop_qemu(destination)
                raise LabError(f"migration {state.get('status')}: {state.get('error-desc', state)}")
            if time.monotonic() > deadline:
                source.qmp.execute("migrate_cancel")
                self._stop_qemu(destination)
                raise LabError(f"migration did not complete within {timeout_s:.0f} s: {state}")
            time.sleep(0.01)
        # QEMU's downtime figure ends before the destination runs (NOTES-lab): the destination's
        # "running" is the migration's end.
        while destination.qmp.execute("query-status").get("status") != "running":
            if time.monotonic() > deadline:
                raise LabError("the destination QEMU did not start running after the migration")
            time.sleep(0.01)
        end = time.time()
        self._stop_qemu(source)
        self.vms[vm] = destination
        try:
            destination.console.sync()
            alive = self._answers(vm)
        except LabError:
            alive = False
        # Else the move happened but the guest did not survive it (QEMU 7.2's TCG was seen to corrupt a guest's
        # memory in long migrations, or to leave its shell answering and its NIC dead: README, "The corpus").
        # The caller boots a fresh one.
        crash_log = "" if alive else f"{self.folder}/console-{self._count}.sock.log"
        if dirty_mb_s > 0 and not crash_log:
            self.guest("kill $(cat /tmp/dirty.pid); rm -f /dev/shm/src /dev/shm/dirty", vm)
        return Migration(
            start=start, end=end, downtime_ms=float(state.get("downtime", 0)) + (end - completed) * 1000,
            total_ms=float(state.get("total-time", (end - start) * 1000)),
            source=self.hypervisor_id(source.host), destination=self.hypervisor_id(destination.host),
            crash_log=crash_log,
        )  # fmt: skip

    def _answers(self, vm: str, within_s: float = 15.0) -> bool:
        """Whether ``vm`` answers a ping from the monitor (this namespace) within ``within_s``."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if icmplib.ping(self.vm_ip(vm), count=1, timeout=1, privileged=True).is_alive:
                return True
        return False

    def reboot(self, vm: str = VM_ID) -> tuple[float, float]:
        """A fresh guest on hv-1: its clock starts again from the host's (whole seconds), its RTT baseline too.

        QEMU 7.2's TCG migration was seen to corrupt guest memory now and then on a second capped migration
        (a guest kernel oops in the slab allocator some seconds after the switch); a fresh guest per
        migration keeps such runs going."""
        start = time.time()
        self._stop_qemu(self.vms.pop(vm))
        self.boot(vm)
        return start, time.time()

    def pause(self, seconds: float, vm: str = VM_ID) -> tuple[float, float]:
        """QMP stop, then cont: the VM's clock lags by the pause; its replies queue (none lost)."""
        start = time.time()
        self.vms[vm].qmp.execute("stop")
        time.sleep(seconds)
        self.vms[vm].qmp.execute("cont")
        return start, time.time()

    def bulk_transfer(self, seconds: float, vm: str = VM_ID) -> tuple[float, float]:
        """A TCP stream into the VM from the other hypervisor, through the switch and the VM's uplink."""
        self.guest(f"nc -l -p {_BULK_PORT} > /dev/null 2>&1 &", vm)
        sender = self.hypervisor(3 - self.vms[vm].host)
        code = (
            "import socket,time\n"
            f"s=socket.create_connection(('{self.vm_ip(vm)}',{_BULK_PORT}),10)\n"
            f"end=time.monotonic()+{seconds}\nblock=bytes(65536)\n"
            "while time.monotonic()<end: s.sendall(block)\n"
            "s.close()\n"
        )
        start = time.time()
        in_ns(sender, "python3", "-c", code)
        end = time.time()
        self.guest("kill $(pidof nc) 2>/dev/null; true", vm)
        return start, end

    def cpu_load(self, seconds: float, vm: str = VM_ID) -> tuple[float, float]:
        start = time.time()
        self.guest(f"timeout {seconds} sh -c 'while true; do :; done'", vm, timeout_s=seconds + 60)
        return start, time.time()

    def clock_step(self, step_s: float, vm: str = VM_ID) -> tuple[float, float]:
        """A legitimate correction of the VM's clock by about ``step_s`` (whole seconds, as busybox date sets)."""
        start = time.time()
        self.guest(f"date -s @$(( $(date +%s) + {round(step_s)} )) >/dev/null", vm)
        return start, time.time()

    def _switch_rule(self, table: str, rule: tuple[str, ...], seconds: float) -> tuple[float, float]:
        in_ns(self.switch, "iptables", "-t", table, "-I", *rule)
        self._switch_rules.append((table, *rule))
        start = time.time()
        try:
            time.sleep(seconds)
        finally:
            in_ns(self.switch, "iptables", "-t", table, "-D", *rule)
            self._switch_rules.remove((table, *rule))
        return start, time.time()

    def loss_burst(self, seconds: float, probability: float, vm: str = VM_ID) -> tuple[float, float]:
        """The VM's replies dropped at random for ``seconds`` (link trouble, not a migration)."""
        rule = ("FORWARD", "-s", self.vm_ip(vm), "-p", "icmp", "--icmp-type", "echo-reply",
                "-m", "statistic", "--mode", "random", "--probability", f"{probability}", "-j", "DROP")  # fmt: skip
        return self._switch_rule("filter", rule, seconds)

    def ttl_change(self, seconds: float, hops: int, vm: str = VM_ID) -> tuple[float, float]:
        """The VM's replies arrive ``hops`` hops further away (as from another subnet)."""
        rule = ("FORWARD", "-s", self.vm_ip(vm), "-j", "TTL", "--ttl-dec", str(hops))
        return self._switch_rule("mangle", rule, seconds)

    def shape(self, mbit: float) -> None:
        """tbf at ``mbit`` on both directions of both uplinks; 0 removes the shaping."""
        for namespace, device in self._uplinks():
            in_ns(namespace, "tc", "qdisc", "del", "dev", device, "root", check=False)
            if mbit > 0:
                # burst 256kb: a smaller bucket stalls TCP (NOTES-lab); this kernel has no netem.
                in_ns(namespace, "tc", "qdisc", "add", "dev", device, "root", "tbf", "rate", f"{mbit}mbit",
                      "burst", "256kb", "latency", "50ms")  # fmt: skip

    def _uplinks(self) -> list[tuple[str, str]]:
        return [(self.hypervisor(1), f"u1{self.tag}"), (self.hypervisor(2), f"u2{self.tag}"),
                (self.switch, f"p1{self.tag}"), (self.switch, f"p2{self.tag}")]  # fmt: skip

    def close(self) -> None:
        while self.vms:
            self._stop_qemu(self.vms.popitem()[1])


def _set_up(lab: QemuLab) -> None:
    net, tag, switch = lab.net, lab.tag, lab.switch
    for namespace in (switch, lab.hypervisor(1), lab.hypervisor(2)):
        sh("ip", "netns", "add", namespace)
        in_ns(namespace, "ip", "link", "set", "lo", "up")
    in_ns(switch, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    sh("ip", "link", "add", f"lm{tag}", "type", "veth", "peer", "name", f"ls{tag}", "netns", switch)
    sh("ip", "addr", "add", f"{lab.monitor_ip}/30", "dev", f"lm{tag}")
    sh("ip", "link", "set", f"lm{tag}", "up")
    in_ns(switch, "ip", "addr", "add", f"10.217.{net}.2/30", "dev", f"ls{tag}")
    in_ns(switch, "ip", "link", "set", f"ls{tag}", "up")
    sh("ip", "route", "add", f"10.218.{net}.0/24", "via", f"10.217.{net}.2", "dev", f"lm{tag}")
    in_ns(switch, "ip", "link", "add", "br0", "type", "bridge")
    in_ns(switch, "ip", "addr", "add", f"10.218.{net}.1/24", "dev", "br0")
    in_ns(switch, "ip", "link", "set", "br0", "up")
    for host in (1, 2):
        hypervisor = lab.hypervisor(host)
        in_ns(switch, "ip", "link", "add", f"p{host}{tag}", "type", "veth", "peer", "name", f"u{host}{tag}",
              "netns", hypervisor)  # fmt: skip
        in_ns(switch, "ip", "link", "set", f"p{host}{tag}", "master", "br0", "up")
        in_ns(hypervisor, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(hypervisor, "ip", "link", "set", f"u{host}{tag}", "master", "br0", "up")
        for index in range(len(lab.vm_ids)):
            in_ns(hypervisor, "ip", "tuntap", "add", "dev", f"tap{index}", "mode", "tap")
            in_ns(hypervisor, "ip", "link", "set", f"tap{index}", "master", "br0", "up")
        in_ns(hypervisor, "ip", "addr", "add", f"{lab.hypervisor_ip(host)}/24", "dev", "br0")
        in_ns(hypervisor, "ip", "link", "set", "br0", "up")
        in_ns(hypervisor, "ip", "route", "add", "default", "via", f"10.218.{net}.1")


@contextlib.contextmanager
def qemu_lab(folder: Path, vms: int = 1):  # type: ignore[no-untyped-def]
    """The topology with ``vms`` guests (:func:`fleet_ids`) booted on hv-1; everything (QEMU, namespaces,
    route) goes on exit."""
    image = build()
    tag = uuid.uuid4().hex[:6]
    lab = QemuLab(tag=tag, net=random.Random(tag).randrange(256), folder=folder, image=image, vm_ids=fleet_ids(vms))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _set_up(lab)
        for vm in lab.vm_ids:
            lab.boot(vm)
        yield lab
    finally:
        lab.close()
        # Deleting the namespaces takes their devices, qdiscs and iptables rules; the monitor's veth and
        # route go with its peer in the switch namespace.
        for namespace in (lab.switch, lab.hypervisor(1), lab.hypervisor(2)):
            sh("ip", "netns", "del", namespace, check=False)
        sh("ip", "link", "del", f"lm{tag}", check=False)
