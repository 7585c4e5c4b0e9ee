"""The project's own local Apache Kafka (deploy/local/kafka): a real broker's whole life cycle."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from migwatch_dev.local_kafka import LocalKafka, LocalKafkaError, _cluster_id
from tests.conftest import free_port_pair

pytestmark = pytest.mark.kafka
SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "local" / "kafka"


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=300, check=False)


def test_broker_life_cycle_keeps_data_across_restarts(spare_broker: LocalKafka) -> None:
    pid, seconds = spare_broker.start()
    assert seconds > 0 and spare_broker.ready() and spare_broker.pid() == pid
    admin = KafkaAdminClient(bootstrap_servers=spare_broker.bootstrap)
    admin.create_topics([NewTopic("kept", 1, 1)])
    admin.close()
    assert spare_broker.start() == (pid, 0.0)  # already running: reused, not started twice
    assert spare_broker.stop() is True and spare_broker.pid() is None and not spare_broker.ready()
    assert spare_broker.stop() is False
    spare_broker.start()
    admin = KafkaAdminClient(bootstrap_servers=spare_broker.bootstrap)
    assert "kept" in admin.list_topics()
    admin.close()


def test_a_port_taken_by_another_program_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port_pair()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(LocalKafkaError, match=rf"127.0.0.1:{port} is already in use by another program"):
            LocalKafka(port=port, root=tmp_path).start()


def test_script_status_stop_and_topics(kafka_bootstrap: str, tmp_path: Path) -> None:
    port = int(kafka_bootstrap.rpartition(":")[2])
    status = _script("status", "--port", str(port))
    if LocalKafka(port=port).pid() is None:
        pytest.skip("the tests use a broker that deploy/local/kafka did not start")
    assert status.returncode == 0 and status.stdout.startswith("running: pid") and ", ready," in status.stdout
    absent = str(free_port_pair())
    assert _script("status", "--port", absent).returncode == 3
    assert _script("stop", "--port", absent).stdout == f"not running (port {absent})\n"
    prefix = f"script-{uuid.uuid4().hex[:6]}."  # unique: the broker keeps topics across test runs
    first = _script("topics", "--port", str(port), "--topic-prefix", prefix, "--partitions", "2")
    again = _script("topics", "--port", str(port), "--topic-prefix", prefix, "--partitions", "2")
    assert first.stdout.count(": created") == 9 and again.stdout.count(": exists") == 9  # silences, hosts, status
    clash = _script("topics", "--port", str(port), "--topic-prefix", prefix, "--partitions", "3")
    assert clash.returncode == 1 and f"{prefix}ping has 2 partitions, wanted 3" in clash.stderr
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.delete_topics([name for name in admin.list_topics() if name.startswith(prefix)])
    admin.close()


def test_fetch_reuses_the_cache() -> None:
    broker = LocalKafka()
    broker.fetch()
    assert broker.fetch() == 0.0
    result = subprocess.run(
        [sys.executable, "-m", "migwatch_dev.local_kafka", "fetch"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.endswith("(cached)\n")


def test_cluster_ids_never_look_like_an_option() -> None:
    # One random id in 64 starts with "-"; 2,000 draws meet one with certainty but for 1e-13.
    ids = [_cluster_id() for _ in range(2000)]
    assert all(len(cluster_id) == 22 and not cluster_id.startswith("-") for cluster_id in ids)
