"""The product's image, built here from deploy/Dockerfile with podman (deploy/local/image), run as the chart runs
it: uid 10001, read-only root filesystem with only the chart's writable mounts, every capability dropped.

- The probe's two ICMP paths: NET_RAW alone (raw sockets), or no capability and the ping_group_range sysctl
  (unprivileged sockets); with neither it says how to allow one. Each container sits in a network namespace the
  test made, beside a test host it pings.
- The chart itself: its rendered objects run as pods by `podman kube play` (tests/kube_play.py says what is
  adapted and why) against the local Kafka: the hook pushes the targets, the probe pod pings an emulated VM,
  the worker pod confirms the VM's emulated migration.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaAdminClient

from migwatch.contract.codec import decode
from migwatch.contract.records import Alert
from migwatch.contract.topics import TopicNames
from migwatch_dev import container_image
from migwatch_dev.lab.chrony import chrony_server
from migwatch_dev.lab.emulated_lab import BASE_DELAY_MS, start_copy, switch
from migwatch_dev.lab.link_emulator import EmulatedLink, emulated_link
from tests import kube_play
from tests.conftest import free_port_pair
from tests.processes import http_get, wait_for
from tests.stream_workers import read_all

UID = 10001  # the image's user, as the chart's securityContext sets it
# The ICMP paths: (user, podman options) and the socket kind the probe must log.
PATHS = {
    "unprivileged sockets by the sysctl": (
        UID, ["--cap-drop", "ALL", "--sysctl", "net.ipv4.ping_group_range=0 2147483647"], "unprivileged sockets"
    ),
    "raw sockets by NET_RAW alone": (UID, ["--cap-drop", "ALL", "--cap-add", "NET_RAW"], "raw sockets"),
    # The chart's `probes.icmp: raw` (Kubernetes gives added capabilities to uid 0 only).
    "raw sockets as the chart's raw mode": (0, ["--cap-drop", "ALL", "--cap-add", "NET_RAW"], "raw sockets"),
}  # fmt: skip


@pytest.fixture(scope="session")
def image() -> str:
    """The image of this checkout: podman's layer cache makes a rebuild of unchanged sources quick."""
    took, size = container_image.build(), container_image.size_mb(container_image.IMAGE)
    print(f"\nimage {container_image.IMAGE} built in {took:.0f} s, {size:.0f} MB")
    return container_image.IMAGE


@pytest.fixture
def monitored() -> Iterator[EmulatedLink]:
    """A monitor namespace (the probe container's network) and a test host behind it."""
    with emulated_link(1.0) as made:
        yield made


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return container_image.podman(*args)


def writable(folder: Path, uid: int) -> str:
    """A host folder for one of the chart's writable mounts, owned as an emptyDir with fsGroup would be."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, uid, UID)
    return str(folder)


def probe_config(folder: Path, address: str) -> Path:
    """A probe config with one target and no reachable broker: the probe keeps probing, samples wait."""
    config = folder / "config"
    config.mkdir()
    (config / "migwatch.toml").write_text(
        '[kafka]\nbootstrap = "127.0.0.1:9"\n[probe]\nname = "probe-c"\ntargets_from = "config"\n'
        'ping_timeout_s = 0.5\nmetrics_bind = "127.0.0.1"\nmetrics_port = 9108\n[logging]\nlevel = "info"\n'
        f'[[targets]]\nid = "vm-1"\naddress = "{address}"\nping_interval_s = 0.2\nntp = false\n'
    )
    return config


def metrics_in(namespace: str) -> dict[str, float]:
    """The probe's unlabelled metrics, read from inside the namespace it serves them in."""
    code = (
        "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9108/metrics',timeout=3).read().decode())"
    )
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, "python3", "-c", code], check=False, capture_output=True, text=True
    )
    if done.returncode != 0:
        return {}
    return {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in done.stdout.splitlines())
        if name.startswith("migwatch_probe_") and "{" not in name
    }


def run_probe(image: str, folder: Path, link: EmulatedLink, user: int, options: list[str]) -> str:
    """Starts `migwatch probe` in the link's monitor namespace as the chart would; returns the container's name."""
    name = f"mw-probe-{uuid.uuid4().hex[:8]}"
    config = probe_config(folder, link.host_ip)
    podman(
        "run", "-d", "--name", name, "--user", f"{user}:{UID}", "--read-only", "--read-only-tmpfs=false",
        "--security-opt", "no-new-privileges", "--network", f"ns:/run/netns/{link.monitor}", *options,
        "-v", f"{config}:/etc/migwatch:ro", "-v", f"{writable(folder / 'spill', user)}:/var/lib/migwatch/spill",
        image, "probe", "--config", "/etc/migwatch/migwatch.toml",
    )  # fmt: skip
    return name


@pytest.mark.parametrize("path", PATHS)
def test_the_probe_pings_by_either_icmp_path(image: str, monitored: EmulatedLink, tmp_path: Path, path: str) -> None:
    user, options, kind = PATHS[path]
    name = run_probe(image, tmp_path, monitored, user, options)
    try:

        def answered() -> bool:
            seen = metrics_in(monitored.monitor)
            return seen.get("migwatch_probe_probes_total", 0) - seen.get("migwatch_probe_unanswered_total", 0) >= 10

        wait_for(answered, 60, lambda: f"10 answered pings: {metrics_in(monitored.monitor)}\n{logs(name)}")
        said = logs(name)
        assert f"ICMPv4: {kind}" in said, said
        # Samples wait for the unreachable broker: in memory first, the spill folder is the pod's writable one.
        assert metrics_in(monitored.monitor)["migwatch_probe_samples_buffered"] > 0
        inspected = json.loads(podman("inspect", name).stdout)[0]
        assert inspected["State"]["Running"] and inspected["HostConfig"]["ReadonlyRootfs"]
    finally:
        podman("rm", "-f", "-t", "5", name)


def test_without_net_raw_or_the_sysctl_the_probe_says_how_to_allow_icmp(
    image: str, monitored: EmulatedLink, tmp_path: Path
) -> None:
    name = run_probe(image, tmp_path, monitored, UID, ["--cap-drop", "ALL"])
    try:
        wait_for(lambda: "ping_group_range" in logs(name), 30, lambda: logs(name))
        said = logs(name)
        assert "sysctl -w net.ipv4.ping_group_range" in said.replace('"', "") and "CAP_NET_RAW" in said, said
    finally:
        podman("rm", "-f", "-t", "5", name)


def logs(name: str) -> str:
    done = subprocess.run(
        ["podman", "logs", name], check=False, env=container_image.env(), capture_output=True, text=True, timeout=30
    )
    return done.stdout + done.stderr


def kube(verb: str, objects: list[dict[str, Any]], folder: Path) -> None:
    """`podman kube play|down` of these objects (written to a file named for them)."""
    path = folder / f"{objects[-1]['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    container_image.podman("kube", verb, *(["--replace"] if verb == "play" else []), str(path), timeout=300)


def kube_up(stack: ExitStack, objects: list[dict[str, Any]], folder: Path) -> None:
    """`podman kube play` of these objects, brought down when ``stack`` closes. A play that fails is brought
    down at once and its own error raised: the down of a pod it never made must not hide why (the error of
    a podman left waiting on a stale lock names the fix)."""
    try:
        kube("play", objects, folder)
    except container_image.ImageError:
        with suppress(container_image.ImageError):
            kube("down", objects, folder)
        raise
    stack.callback(kube, "down", objects, folder)


def state_of(container: str) -> str:
    return podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container).stdout.strip()


@pytest.mark.kafka
def test_a_kube_play_that_fails_is_brought_down_and_says_why(tmp_path: Path) -> None:
    """A pod whose image is not here (and may not be pulled): the play's own error, and no pod left behind."""
    pod = f"mw-absent-{uuid.uuid4().hex[:8]}"
    objects = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod}, "spec": {"containers": [
        {"name": "c", "image": f"localhost/{pod}:none", "imagePullPolicy": "Never"}]}}]  # fmt: skip
    with ExitStack() as stack, pytest.raises(container_image.ImageError) as raised:
        kube_up(stack, objects, tmp_path)
    assert str(raised.value).startswith("podman kube play"), raised.value
    assert f"localhost/{pod}:none" in str(raised.value), raised.value
    left = subprocess.run(["podman", "pod", "exists", pod], check=False, env=container_image.env())
    assert left.returncode == 1, f"pod {pod} left behind by a failed play"


def test_the_rendered_chart_runs_as_pods_probes_publish_and_workers_confirm_a_migration(
    image: str, kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path: Path
) -> None:
    """The chart's own objects (tests/kube_play.py says what is adapted) against the local Kafka: the hook
    pushes the config's targets, the probe pod (the chart's raw ICMP mode: pods on the host's network cannot
    have the sysctl) pings an emulated VM, the worker pod (nothing added) confirms its emulated migration."""
    prefix, web, metrics = f"kube-{uuid.uuid4().hex[:6]}.", free_port_pair(), free_port_pair()
    names = TopicNames(prefix)
    with ExitStack() as stack:
        host = stack.enter_context(emulated_link(BASE_DELAY_MS, own_monitor=True))
        clock = stack.enter_context(chrony_server(host.host, host.host_ip, tmp_path / "chrony"))
        repository, _, tag = image.rpartition(":")
        objects = kube_play.render({
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            "kafka": {"bootstrap": kafka_bootstrap, "topicPrefix": prefix, "partitions": 2, "replicationFactor": 1},
            "probes": {"sites": [{"name": "dc1", "replicas": 1}], "icmp": "raw", "metricsPort": metrics},
            "worker": {"replicas": 1, "webPort": web, "sessionTimeoutS": 6},
            "networkPolicy": {"enabled": False}, "podDisruptionBudget": {"enabled": False},
            "config": "[probe]\nping_timeout_s = 0.5\n[[targets]]\nid = \"vm-kube\"\n"
                      f"address = \"{host.host_ip}\"\nsite = \"dc1\"\nping_interval_s = 0.2\nntp_interval_s = 1.0\n",
        }, tmp_path)  # fmt: skip
        release, hooks = kube_play.for_podman(objects)
        stack.callback(lambda: kafka_admin.delete_topics(
            [t for t in kafka_admin.list_topics() if t.startswith(prefix)]))  # fmt: skip
        kube_up(stack, release, tmp_path)
        worker = f"http://127.0.0.1:{web}"
        wait_for(lambda: get(f"{worker}/readyz").startswith("ready"), 120,
                 lambda: f"the worker pod ready: {logs('mw-worker-pod-0-worker')[-3000:]}")  # fmt: skip
        kube_up(stack, hooks, tmp_path)  # the post-install hook, once the release's topics exist
        push = "mw-targets-push-targets-push"
        wait_for(lambda: state_of(push).startswith("exited"), 120, lambda: f"the hook: {logs(push)}")
        assert state_of(push) == "exited 0", logs(push)

        probe = f"http://127.0.0.1:{metrics}"
        wait_for(lambda: get(f"{probe}/readyz").startswith("probing 1 targets"), 60,
                 lambda: f"the probe pod probing: {logs('mw-probe-dc1-pod-0-probe')[-3000:]}")  # fmt: skip
        assert get(f"{probe}/healthz") == get(f"{worker}/healthz") == "ok\n"

        def settled() -> bool:
            status = get(f"{worker}/status")
            targets = json.loads(status)["targets"] if status else []
            return any(t["rtt_baseline_ms"] is not None and t["clock_offset_ms"] is not None
                       and abs(t["clock_offset_ms"]) < 1.0 for t in targets)  # fmt: skip

        wait_for(settled, 120, lambda: f"a baseline and a settled clock: {get(f'{worker}/status')}")
        time.sleep(8)  # some quiet windows at the settled offset
        start_copy(host)
        time.sleep(10)
        switch(host, clock)

        def confirmed() -> list[Alert]:
            alerts = [decode(Alert, m.value) for m in read_all(kafka_bootstrap, names.alerts, 2)]
            return [a for a in alerts if a.migwatch.state == "confirmed" and a.migwatch.target == "vm-kube"]

        wait_for(lambda: bool(confirmed()), 60, lambda: f"a confirmed alert: {get(f'{worker}/status')}")
        (alert,) = confirmed()
        assert alert.migwatch.evidence.time_lag_ms is not None and alert.migwatch.evidence.time_lag_ms < -20
        assert alert.observer.name == "mw-worker-pod-0"  # the pod's name, from the chart's fieldRef
        pods = {c: podman("inspect", "--format", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}", c).stdout.split()
                for c in ("mw-worker-pod-0-worker", "mw-probe-dc1-pod-0-probe")}  # fmt: skip
        assert pods == {"mw-worker-pod-0-worker": ["10001:10001", "true"],
                        "mw-probe-dc1-pod-0-probe": ["0:10001", "true"]}, pods  # fmt: skip


def get(url: str) -> str:
    """A page's body as text, or "" while nothing answers."""
    return (http_get(url) or b"").decode()
