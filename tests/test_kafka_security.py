"""Issue #7: every Kafka client speaks SASL_SSL with SCRAM-SHA-512 and TLS (CA, client certificate),
against a real local Apache Kafka started with a SASL_SSL listener and SCRAM users; keys are made here.

A client with the wrong password, or without the client certificate the listener requires, is refused
with an error that says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from migwatch.contract.codec import encode
from migwatch.contract.config import KafkaSettings, load
from migwatch.contract.records import PingSample
from migwatch.contract.topics import TopicNames
from migwatch.kafka_io import clients
from migwatch.kafka_io.topic_admin import ensure_topics
from migwatch_dev.local_kafka import LocalKafka, SaslSslListener
from tests.conftest import free_port_pair
from tests.processes import wait_for
from tests.stream_workers import StreamWorker

pytestmark = pytest.mark.kafka
USER, PASSWORD = "migwatch-probe", "s3cret-Pa55word"


def openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)


def issue(folder: Path, name: str, subject: str, san: str | None) -> None:
    """A key and a certificate signed by the test CA in ``folder``."""
    openssl(folder, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={subject}")  # fmt: skip
    extensions = folder / f"{name}.ext"
    extensions.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", extensions.name)  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    openssl(folder, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=migwatch test CA")  # fmt: skip
    issue(folder, "broker", "127.0.0.1", "IP:127.0.0.1")
    issue(folder, "client", USER, None)
    (folder / "broker-keystore.pem").write_text(
        (folder / "broker.key").read_text() + (folder / "broker.pem").read_text()
    )
    return folder


@pytest.fixture(scope="module")
def secure_broker(pki: Path) -> Iterator[str]:
    """A broker of its own (fresh data: SCRAM users are made when the storage is formatted)."""
    port, secure_port = free_port_pair(), free_port_pair()
    broker = LocalKafka(port=port, secure=SaslSslListener(
        port=secure_port, keystore=pki / "broker-keystore.pem", users={USER: PASSWORD}, client_ca=pki / "ca.pem",
    ))  # fmt: skip
    broker.start(fresh=True)
    yield f"127.0.0.1:{secure_port}"
    broker.stop()


def secure_env(bootstrap: str, pki: Path, password: str = PASSWORD, *, certificate: bool = True) -> dict[str, str]:
    env = {
        "MIGWATCH_KAFKA_BOOTSTRAP": bootstrap, "MIGWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "MIGWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "MIGWATCH_KAFKA_SASL_USERNAME": USER,
        "MIGWATCH_KAFKA_SASL_PASSWORD": password, "MIGWATCH_KAFKA_SSL_CAFILE": str(pki / "ca.pem"),
        "MIGWATCH_KAFKA_CONNECT_TIMEOUT_S": "15",
    }  # fmt: skip
    if certificate:
        env |= {
            "MIGWATCH_KAFKA_SSL_CERTFILE": str(pki / "client.pem"),
            "MIGWATCH_KAFKA_SSL_KEYFILE": str(pki / "client.key"),
        }
    return env


def settings(tmp_path: Path, env: dict[str, str]) -> KafkaSettings:
    config = tmp_path / "empty.toml"
    config.write_text("")
    return load(config, environ=env).kafka


TAIL = ("alerts", "tail", "--from-beginning", "--count", "1", "--idle", "5")


def migwatch(tmp_path: Path, env: dict[str, str], *verb: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "c.toml"
    config.write_text('[kafka]\ntopic_prefix = "sec-x."\n')
    return subprocess.run(
        [sys.executable, "-m", "migwatch.cli", *verb, "--config", str(config)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_kafka_python_clients_work_over_sasl_ssl(secure_broker: str, pki: Path, tmp_path: Path) -> None:
    kafka = settings(tmp_path, secure_env(secure_broker, pki))
    names = TopicNames(f"sec-{uuid.uuid4().hex[:6]}.")
    admin = clients.admin(kafka)
    ensure_topics(admin, names.prefix, 1)
    admin.close()
    producer = clients.producer(kafka)
    producer.send(names.alerts, key=b"vm-1", value=b'{"hello": 1}').get(timeout=30)
    producer.close()
    consumer = clients.consumer(kafka, names.alerts, auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    assert [m.value for m in consumer] == [b'{"hello": 1}']
    consumer.close()


@pytest.mark.parametrize("verb", [TAIL, ("worker",), ("targets", "list")], ids=["alerts-tail", "worker", "targets"])
def test_a_wrong_password_is_refused_with_a_clear_error(
    secure_broker: str, pki: Path, tmp_path: Path, verb: tuple[str, ...]
) -> None:
    started = time.monotonic()
    result = migwatch(tmp_path, secure_env(secure_broker, pki, "not-the-password"), *verb)
    assert result.returncode == 1, result
    assert "authentication failed" in result.stderr.lower() and USER in result.stderr, result.stderr
    assert PASSWORD not in result.stderr and "not-the-password" not in result.stderr
    assert time.monotonic() - started < 60


def test_a_client_without_the_required_certificate_is_refused(secure_broker: str, pki: Path, tmp_path: Path) -> None:
    result = migwatch(tmp_path, secure_env(secure_broker, pki, certificate=False), *TAIL)
    assert result.returncode == 1, result
    # The reason, not just the protocol's name (which every message of a SASL_SSL client carries).
    assert "the TLS handshake failed (check ssl_cafile, ssl_certfile, ssl_keyfile)" in result.stderr, result.stderr


def test_the_stream_worker_runs_over_sasl_ssl(secure_broker: str, pki: Path, tmp_path: Path) -> None:
    """Faust's aiokafka clients get the same settings: the worker consumes samples and shows the target."""
    env = secure_env(secure_broker, pki)
    names = TopicNames(f"secw-{uuid.uuid4().hex[:6]}.")
    kafka = settings(tmp_path, env)
    admin = clients.admin(kafka)
    ensure_topics(admin, names.prefix, 1)
    admin.close()
    config = tmp_path / "worker.toml"
    config.write_text("[kafka]\n")
    worker = StreamWorker({**os.environ, **env, "CONFIG": str(config), "MIGWATCH_KAFKA_TOPIC_PREFIX": names.prefix,
                           "MIGWATCH_KAFKA_PARTITIONS": "1", "MIGWATCH_WORKER_APP_ID": f"secw-{uuid.uuid4().hex[:6]}"},
                          "worker-sasl", tmp_path)  # fmt: skip
    try:
        producer = clients.producer(kafka)
        now = time.time()
        for seq in range(20):
            sample = PingSample(target="vm-sec", address="192.0.2.10", probe="p", ts=now - 20 + seq, seq=seq,
                                rtt_ms=1.0, ttl=64)  # fmt: skip
            producer.send(names.ping, key=b"vm-sec", value=encode(sample))
        producer.flush(30)
        producer.close()
        wait_for(
            lambda: "vm-sec" in worker.status(), 90, lambda: f"the worker's status of vm-sec:\n{worker.log_tail()}"
        )
        assert json.loads(worker.get("/status") or b"{}")["targets"][0]["target"] == "vm-sec"
    finally:
        worker.stop()
