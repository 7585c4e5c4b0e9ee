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


@pytest.mark.parametrize(
    ("args", "issue"),
    [
        (["replay", "--trace", "t.jsonl", "--out", "a.jsonl"], "issue #4"),
        (["eval", "--trace", "t.jsonl", "--labels", "l.json", "--json"], "issue #4"),
        (["plot", "--trace", "t.jsonl", "--target", "vm", "--out", "p.png"], "issue #4"),
    ],
)
def test_verbs_still_to_come_say_so_and_fail(args: list[str], issue: str) -> None:
    result = _migwatch(*args)
    assert result.returncode == 1
    assert result.stderr == f"migwatch {args[0]}: not available yet; it comes with {issue} (detectors)\n"


def test_verbs_with_a_config_check_it_before_saying_they_are_not_there_yet(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[targets]]\nid = "a"\naddress = "192.0.2.1"\n')
    result = _migwatch("probe", "--config", str(path))
    assert result.returncode == 1 and "not available yet; it comes with issue #3" in result.stderr


def test_usage_errors_exit_with_2() -> None:
    assert _migwatch("probe").returncode == 2  # --config missing
    assert _migwatch("no-such-verb").returncode == 2
