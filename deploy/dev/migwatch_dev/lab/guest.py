"""The lab's guest: Debian's kernel, busybox and chronyd in an initramfs, built once into a cache.

Nothing is installed on the host: the kernel package is fetched with ``apt-get download`` and unpacked
with ``dpkg-deb -x``; the guest's NTP server is the host's own chronyd copied with the libraries ``ldd``
names (Debian's busybox has no ntpd applet). The guest's ``/init`` brings up virtio-net with the address
given on the kernel command line (``migwatch.ip=``), starts chronyd as a free-running stratum-1 server and
then runs a shell on the serial console, through which the lab drives load inside the VM.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from migwatch_dev.lab.errors import LabError

# The guest's NIC is QEMU's emulated e1000, not virtio-net: with traffic flowing during a long (tens of
# seconds) TCG migration, virtio-net's receive ring came out corrupted on the destination ("input.0:id 124
# is not a head!") and the VM fell silent about 20 s later; e1000 carries none of that ring state.
NIC_DEVICE = "e1000"
MODULES = ("e1000",)  # in load order (Debian builds them as modules, not into the kernel)

_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/shm /run/chrony /var/lib/chrony /tmp
mount -t tmpfs shm /dev/shm
for module in {modules}; do insmod /modules/$module.ko; done
ip=$(sed -n 's/.*migwatch.ip=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
gateway=$(sed -n 's/.*migwatch.gw=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
ip link set lo up
ip addr add "$ip" dev eth0
ip link set eth0 up
ip route add default via "$gateway"
chronyd -x -u root -f /etc/chrony.conf
echo MIGWATCH-GUEST-READY
# The lab's control channel: a shell on the serial console, re-spawned if it ever exits.
while true; do setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1'; done
"""

# A server of its own clock (the VM's clock is what the probes compare): never steps or slews it (-x).
_CHRONY_CONF = (
    "local stratum 1\nallow all\ncmdport 0\npidfile /run/chrony/chronyd.pid\ndriftfile /var/lib/chrony/drift\n"
)


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "migwatch" / "lab"


def _run(*command: str, cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    except FileNotFoundError as error:
        raise LabError(f"{command[0]} is not installed (deploy/setup installs the lab's Debian packages)") from error
    if result.returncode != 0:
        raise LabError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return result.stdout


def _refreshing(*command: str, cwd: Path | None = None) -> str:
    """``command``, once more after ``apt-get update`` if it fails (a fresh machine may have no package lists)."""
    try:
        return _run(*command, cwd=cwd)
    except LabError:
        _run("apt-get", "update", "-qq")
        return _run(*command, cwd=cwd)


def kernel_package() -> str:
    """The image package Debian's ``linux-image-amd64`` currently points at."""
    depends = _refreshing("apt-cache", "depends", "linux-image-amd64")
    match = re.search(r"Depends: (linux-image-[0-9][^\s]*)", depends)
    if match is None:
        raise LabError(f"apt-cache names no kernel image behind linux-image-amd64: {depends.strip()[:200]!r}")
    return match.group(1)


def _libraries(binary: str) -> list[Path]:
    """The shared objects ``binary`` loads, as ``ldd`` resolves them on this host."""
    return [Path(path) for path in re.findall(r"(/\S+) \(0x", _run("ldd", binary))]


def _pack_newc(root: Path, out: Path) -> None:
    """An initramfs is a gzip'd "newc" cpio archive; busybox's cpio writes it (Debian has no cpio by default)."""
    names = sorted(str(path.relative_to(root)) for path in root.rglob("*"))
    archive = subprocess.run(
        ["busybox", "cpio", "-o", "-H", "newc"], input="\n".join(names).encode(), cwd=root,
        capture_output=True, check=False, timeout=300,
    )  # fmt: skip
    if archive.returncode != 0:
        raise LabError(f"busybox cpio failed: {archive.stderr.decode(errors='replace')[-500:]}")
    with gzip.open(out, "wb", compresslevel=6) as packed:
        packed.write(archive.stdout)


def build(cache: Path | None = None) -> GuestImage:
    """The guest's kernel and initramfs, built on first use (about 10 s and a 70 MB download)."""
    package = kernel_package()
    # A new init script or module list is a new image: the folder is named for them too.
    recipe = hashlib.sha256(f"{_INIT}{_CHRONY_CONF}{MODULES}".encode()).hexdigest()[:8]
    folder = (cache or cache_root()) / f"{package}-{recipe}"
    image = GuestImage(folder / "vmlinuz", folder / "initrd.gz")
    if image.kernel.exists() and image.initrd.exists():
        return image
    for tool in ("busybox", "chronyd"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is not installed (Debian packages busybox-static, chrony; deploy/setup)")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch_name:
        scratch = Path(scratch_name)
        _refreshing("apt-get", "download", package, cwd=scratch)
        (deb,) = scratch.glob("*.deb")
        unpacked = scratch / "kernel"
        _run("dpkg-deb", "-x", str(deb), str(unpacked))
        (vmlinuz,) = (unpacked / "boot").glob("vmlinuz-*")
        root = scratch / "root"
        for sub in ("bin", "usr/sbin", "etc", "proc", "sys", "dev", "modules"):
            (root / sub).mkdir(parents=True)
        shutil.copy2(shutil.which("busybox") or "", root / "bin" / "busybox")
        for module in MODULES:
            (found,) = unpacked.glob(f"lib/modules/*/kernel/**/{module}.ko")
            shutil.copy2(found, root / "modules" / found.name)
        chronyd = shutil.which("chronyd") or ""
        shutil.copy2(chronyd, root / "usr" / "sbin" / "chronyd")
        for library in _libraries(chronyd):
            target = root / library.relative_to("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(library.resolve(), target)
        (root / "etc" / "chrony.conf").write_text(_CHRONY_CONF)
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
        (root / "etc" / "group").write_text("root:x:0:\n")
        init = root / "init"
        init.write_text(_INIT.format(modules=" ".join(MODULES)))
        init.chmod(0o755)
        _pack_newc(root, scratch / "initrd.gz")
        shutil.move(scratch / "initrd.gz", image.initrd)
        shutil.move(vmlinuz, image.kernel)  # last: its presence marks a complete build
    return image
