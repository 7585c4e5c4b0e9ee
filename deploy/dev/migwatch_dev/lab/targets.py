"""The lab's targets as a migwatch config, so that the product's own probes (``record``, ``probe``,
``watch``) watch the lab: the VMs, with NTP, and the hypervisors they move between, ping only.

A fleet's VMs all hash to the partition of the first (at the default 8 partitions), so that a stream
worker sees them together, as its common-mode check does in a real fleet's partition:

    >>> fleet_ids(3)
    ('lab-vm', 'lab-vm-7', 'lab-vm-15')
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from migwatch.contract.config import KafkaSettings
from migwatch.kafka_io.partitioning import Partitioner

VM_ID = "lab-vm"


def fleet_ids(count: int) -> tuple[str, ...]:
    """``count`` VM ids: ``lab-vm`` and the first ``lab-vm-<n>`` (n >= 2) of its partition."""
    partitions = Partitioner(KafkaSettings().partitions)
    ids, n = [VM_ID], 2
    while len(ids) < count:
        if partitions.of(f"lab-vm-{n}".encode()) == partitions.of(VM_ID.encode()):
            ids.append(f"lab-vm-{n}")
        n += 1
    return tuple(ids)


def write_config(
    path: Path, addresses: dict[str, str], *, ping_interval_s: float, ntp_interval_s: float,
    bootstrap: str = "127.0.0.1:9092", topic_prefix: str = "migwatch.", vms: Collection[str] = (VM_ID,),
) -> Path:  # fmt: skip
    """``addresses`` maps target ids to IPs; ``vms`` are the VMs, every other id a hypervisor."""
    hosts = sorted(name for name in addresses if name not in vms)
    lines = [
        "# Written by the migwatch lab: the lab's VM and hypervisors.",
        f'[kafka]\nbootstrap = "{bootstrap}"\ntopic_prefix = "{topic_prefix}"\n',
        # Records at several rates run side by side: each its own metrics port would clash, so none.
        '[probe]\nname = "lab-probe"\nmetrics_port = 0\n',
    ]
    for name, address in sorted(addresses.items()):
        vm = name in vms
        lines.append(
            f'[[targets]]\nid = "{name}"\naddress = "{address}"\nkind = "{"vm" if vm else "host"}"\n'
            + (f"hosts = {hosts!r}\n".replace("'", '"') if vm else "")
            + f"ping_interval_s = {ping_interval_s}\nntp = {'true' if vm else 'false'}\n"
            + f"ntp_interval_s = {ntp_interval_s}\n"
        )
    path.write_text("\n".join(lines))
    return path
