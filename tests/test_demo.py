"""The README's first command ends in `python -m migwatch_dev.demo`: a QEMU guest of the lab, watched by a real
probe and worker through the local Kafka, is live-migrated; the demo must show the confirmed alert, nothing
above suspected for the bulk copy before it, the page address, and leave no topic or namespace behind."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from kafka import KafkaAdminClient

from tests.conftest import free_port_pair
from tests.test_lab import lab_namespaces

pytestmark = pytest.mark.kafka


def test_the_demo_shows_a_real_live_migration_confirmed(kafka_bootstrap: str, kafka_admin: KafkaAdminClient) -> None:
    before, namespaces = set(kafka_admin.list_topics()), lab_namespaces()
    result = subprocess.run(
        [sys.executable, "-m", "migwatch_dev.demo", "--bootstrap", kafka_bootstrap, "--port", str(free_port_pair()),
         "--lab", "qemu"],
        capture_output=True, text=True, timeout=400, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    lines = result.stdout.splitlines()
    migrating = next(i for i, line in enumerate(lines) if "live-migrating lab-vm" in line)
    assert re.search(r"migrated hv-1 -> hv-2 in [0-9.]+ s", result.stdout), out
    states_before = {m[1] for line in lines[:migrating] if (m := re.search(r"alert (\w+) +lab-vm", line))}
    assert states_before <= {"suspected", "cleared"}, out
    confirmed = next(line for line in lines[migrating:] if re.search(r"alert confirmed +lab-vm", line))
    lag = re.search(r'"time_lag_ms": (-[0-9.]+)', confirmed)
    assert lag is not None, confirmed  # the VM's clock fell behind: what confirms a migration
    assert "The fleet page: http://127.0.0.1:" in result.stdout
    assert not {t for t in kafka_admin.list_topics() if t.startswith("demo-")} - before
    assert lab_namespaces() <= namespaces
