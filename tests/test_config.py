"""Configuration: TOML + MIGWATCH_* overrides, every error one clear line, exit code 2 from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from migwatch.contract.config import ConfigError, load, parse

# The minimal config of CONTRACT section 5, which every verb must accept.
MINIMAL = """
[kafka]
bootstrap = "127.0.0.1:9092"

[[targets]]
id = "web-01"
address = "192.0.2.10"
kind = "vm"
ping_interval_s = 1.0
ntp = true
ntp_interval_s = 30.0
"""


def test_minimal_contract_config() -> None:
    config = parse(MINIMAL, source="c.toml", environ={})
    assert config.kafka.servers == ["127.0.0.1:9092"]
    assert [(t.id, t.address, t.kind, t.site, t.hosts) for t in config.targets] == [
        ("web-01", "192.0.2.10", "vm", "default", [])
    ]


def test_environment_overrides_the_file() -> None:
    environ = {
        "MIGWATCH_KAFKA_BOOTSTRAP": "10.0.0.1:9092, 10.0.0.2:9093",
        "MIGWATCH_KAFKA_PARTITIONS": "3",
        "MIGWATCH_KAFKA_TOPIC_PREFIX": "lab.",
        "MIGWATCH_SOMETHING_ELSE": "not ours: ignored",
    }
    config = parse(MINIMAL, source="c.toml", environ=environ)
    assert config.kafka.servers == ["10.0.0.1:9092", "10.0.0.2:9093"]
    assert (config.kafka.partitions, config.kafka.topic_prefix) == (3, "lab.")


TARGET = '[[targets]]\nid = "a"\naddress = "192.0.2.1"\n'


def test_detector_settings_from_file_and_environment() -> None:
    config = parse("[detectors]\nwindow_s = 10.0\nlearner = 'hst'\n", source="c.toml", environ={})
    assert (config.detectors.window_s, config.detectors.learner, config.detectors.mean_k) == (10.0, "hst", 4.0)
    config = parse("", source="c.toml", environ={"MIGWATCH_DETECTORS_CLEAR_AFTER_S": "300"})
    assert config.detectors.clear_after_s == 300.0


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("[kafka]\nbootstrap_servers = 'x:1'\n", {}, "c.toml: kafka.bootstrap_servers: unknown key"),
        ("[kafak]\n", {}, "c.toml: kafak: unknown key"),
        (TARGET + "pingg_interval_s = 2\n", {}, "c.toml: targets[0].pingg_interval_s: unknown key"),
        (TARGET + TARGET, {}, "c.toml: targets[1].id: duplicate target id, also targets[0], got 'a'"),
        (TARGET.replace("192.0.2.1", "300.1.1.1"), {}, "c.toml: targets[0].address: must be an IPv4/IPv6 address"),
        (TARGET.replace("192.0.2.1", "bad host"), {}, "c.toml: targets[0].address: must be an IPv4/IPv6 address"),
        (TARGET + "ping_interval_s = 0\n", {}, "c.toml: targets[0].ping_interval_s: must be >= 0.01, got 0.0"),
        (TARGET + "ping_interval_s = -1\n", {}, "c.toml: targets[0].ping_interval_s: must be >= 0.01, got -1.0"),
        (TARGET + "ntp_interval_s = 0\n", {}, "c.toml: targets[0].ntp_interval_s: must be >= 0.01, got 0.0"),
        (TARGET + "ping_timeout_s = 90\n", {}, "c.toml: targets[0].ping_timeout_s: must be <= 60, got 90.0"),
        (TARGET + "ping_interval_s = 'fast'\n", {}, 'c.toml: targets[0].ping_interval_s: expected float, got "fast"'),
        (TARGET + "kind = 'container'\n", {}, "c.toml: targets[0].kind: invalid enum value 'container'"),
        ('[[targets]]\nid = "a"\n', {}, "c.toml: targets[0].address: required field is missing"),
        ("[kafka]\nbootstrap = 'localhost'\n", {}, "c.toml: kafka.bootstrap: must be host:port"),
        ("[kafka]\npartitions = 0\n", {}, "c.toml: kafka.partitions: must be between 1 and 10000, got 0"),
        (
            "[worker]\nchart_window_s = 60\nchart_history_s = 30\n",
            {},
            "c.toml: worker.chart_history_s: must be >= chart_window_s (60.0), got 30.0",
        ),
        ("[detectors]\nwindow = 5\n", {}, "c.toml: detectors.window: unknown key"),
        ("[detectors]\nmean_k = -1.0\n", {}, "c.toml: detectors.mean_k: must be > 0, got -1.0"),
        ("[detectors]\nlearner = 'svm'\n", {}, "c.toml: detectors.learner: invalid enum value 'svm'"),
        ("targets = [", {}, "c.toml: invalid TOML:"),
        ("", {"MIGWATCH_KAFKA_PARTITIONS": "many"}, 'MIGWATCH_KAFKA_PARTITIONS: expected int, got "many"'),
        ("", {"MIGWATCH_KAFKA_PARTITIONS": "0"}, "MIGWATCH_KAFKA_PARTITIONS: kafka.partitions: must be between"),
        ("", {"MIGWATCH_KAFKA_BOOTSTRAPS": "x:1"}, "MIGWATCH_KAFKA_BOOTSTRAPS: unknown setting kafka.bootstraps"),
        ("[kafka]\nsecurity_protocol = 'TLS'\n", {}, "c.toml: kafka.security_protocol: invalid enum value 'TLS'"),
        ("[kafka]\nsasl_mechanism = 'GSSAPI'\n", {}, "c.toml: kafka.sasl_mechanism: invalid enum value 'GSSAPI'"),
        (
            "[kafka]\nsecurity_protocol = 'SASL_SSL'\n",
            {},
            "c.toml: kafka.sasl_username: required with security_protocol (SASL_SSL), got ''",
        ),
        (
            "[kafka]\nsecurity_protocol = 'SASL_SSL'\nsasl_username = 'u'\n",
            {},
            "c.toml: kafka.sasl_password: give the password or sasl_password_file (one of them)",
        ),
        (
            "[kafka]\nssl_cafile = '/no/ca.pem'\n",
            {},
            "c.toml: kafka.ssl_cafile: no readable file there, got '/no/ca.pem'",
        ),
        (
            "",
            {"MIGWATCH_KAFKA_SASL_PASSWORD_FILE": "/no/pw"},
            "MIGWATCH_KAFKA_SASL_PASSWORD_FILE: kafka.sasl_password_file: no readable file there, got '/no/pw'",
        ),
    ],
)
def test_each_error_is_one_line_naming_source_key_and_value(text: str, environ: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text, source="c.toml", environ=environ)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent.toml: cannot read: No such file or directory$"):
        load(tmp_path / "absent.toml", environ={})
    with pytest.raises(ConfigError, match=r": cannot read: Is a directory$"):
        load(tmp_path, environ={})
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match=r"binary.toml: cannot read: 'utf-8' codec can't decode"):
        load(binary, environ={})


def _migwatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migwatch.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def test_cli_reports_a_bad_config_on_one_line_with_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(TARGET + TARGET)
    for verb in ("config", "probe", "worker", "watch"):
        result = _migwatch(verb, "--config", str(path))
        assert result.returncode == 2, (verb, result.stderr)
        assert (
            result.stderr == f"migwatch: error: {path}: targets[1].id: duplicate target id, also targets[0], got 'a'\n"
        )
    result = _migwatch("config", "--config", str(tmp_path / "absent.toml"))
    assert (result.returncode, result.stderr.count("\n")) == (2, 1)


def test_cli_config_prints_the_settings_in_effect(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL)
    result = _migwatch("config", "--config", str(path), env={"MIGWATCH_KAFKA_PARTITIONS": "5"})
    assert result.returncode == 0, result.stderr
    assert '"partitions": 5' in result.stdout and '"id": "web-01"' in result.stdout
    assert result.stderr.endswith("OK, 1 targets\n")


def test_cli_config_never_prints_the_sasl_password(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL)
    env = {"MIGWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "MIGWATCH_KAFKA_SASL_USERNAME": "probe",
           "MIGWATCH_KAFKA_SASL_PASSWORD": "hunter2-secret"}  # fmt: skip
    result = _migwatch("config", "--config", str(path), env=env)
    assert result.returncode == 0, result.stderr
    assert "hunter2-secret" not in result.stdout + result.stderr and '"sasl_username": "probe"' in result.stdout
