"""The lab's targets as a migwatch config, so that the product's own probes (``record``, ``probe``,
``watch``) watch the lab: the VM, with NTP, and the hypervisors it moves between, ping only."""

from __future__ import annotations

from pathlib import Path

VM_ID = "lab-vm"


def write_config(
    path: Path, addresses: dict[str, str], *, ping_interval_s: float, ntp_interval_s: float,
    bootstrap: str = "127.0.0.1:9092", topic_prefix: str = "migwatch.",
) -> Path:  # fmt: skip
    """``addresses`` maps target ids to IPs; ``VM_ID`` is the VM, every other id a hypervisor."""
    hosts = sorted(name for name in addresses if name != VM_ID)
    lines = [
        "# Written by the migwatch lab: the lab's VM and hypervisors.",
        f'[kafka]\nbootstrap = "{bootstrap}"\ntopic_prefix = "{topic_prefix}"\n',
        # Records at several rates run side by side: each its own metrics port would clash, so none.
        '[probe]\nname = "lab-probe"\nmetrics_port = 0\n',
    ]
    for name, address in sorted(addresses.items()):
        vm = name == VM_ID
        lines.append(
            f'[[targets]]\nid = "{name}"\naddress = "{address}"\nkind = "{"vm" if vm else "host"}"\n'
            + (f"hosts = {hosts!r}\n".replace("'", '"') if vm else "")
            + f"ping_interval_s = {ping_interval_s}\nntp = {'true' if vm else 'false'}\n"
            + f"ntp_interval_s = {ntp_interval_s}\n"
        )
    path.write_text("\n".join(lines))
    return path
