"""The command line: every contract verb is listed, and verbs that later issues bring say so plainly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CONTRACT_VERBS = ["probe", "worker", "watch", "record", "replay", "eval", "plot"]


def _migwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migwatch.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_help_lists_every_contract_verb() -> None:
    result = _migwatch("--help")
    assert result.returncode == 0
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ") and line.split()}
    assert set(CONTRACT_VERBS) <= listed


@pytest.mark.parametrize("verb", ["worker", "watch"])
def test_worker_and_watch_name_a_bad_worker_setting(tmp_path: Path, verb: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[worker]\nbatch_size = 0\n")
    result = _migwatch(verb, "--config", str(path))
    assert result.returncode == 2
    assert result.stderr == f"migwatch: error: {path}: worker.batch_size: must be between 1 and 1000000, got 0\n"


def test_watch_refuses_a_bad_duration(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("")
    result = _migwatch("watch", "--config", str(path), "--duration", "-1")
    assert result.returncode == 2
    assert result.stderr == "migwatch: error: --duration: must be > 0 s and at most 30 days, got -1.0\n"


def test_usage_errors_exit_with_2() -> None:
    assert _migwatch("probe").returncode == 2  # --config missing
    assert _migwatch("no-such-verb").returncode == 2
