"""The README's first command ends in `python -m migwatch.demo`: it must show a confirmed alert for the
migrating VM, none above suspected for the bulk copy, and clean up its topics."""

from __future__ import annotations

import subprocess
import sys

import pytest
from kafka import KafkaAdminClient

from tests.conftest import free_port_pair

pytestmark = pytest.mark.kafka


def test_the_demo_shows_the_migration_confirmed(kafka_bootstrap: str, kafka_admin: KafkaAdminClient) -> None:
    before = set(kafka_admin.list_topics())
    result = subprocess.run(
        [sys.executable, "-m", "migwatch.demo", "--bootstrap", kafka_bootstrap, "--port", str(free_port_pair())],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = [line.split()[2:4] for line in result.stdout.splitlines() if line.startswith("== alert")]
    assert ["confirmed", "web-01"] in alerts, result.stdout
    assert {state for state, vm in alerts if vm == "db-01"} <= {"suspected", "cleared"}, result.stdout
    assert "The fleet page: http://127.0.0.1:" in result.stdout
    assert not {t for t in kafka_admin.list_topics() if t.startswith("demo-")} - before
