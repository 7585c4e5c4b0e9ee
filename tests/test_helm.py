"""The Helm chart deploy/helm/migwatch: `helm lint` passes, `helm template` renders, every object validates
against the Kubernetes schemas (kubernetes-validate, strict), and every MIGWATCH_* variable it sets is a
setting migwatch knows (so the chart cannot drift from the config)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from migwatch.contract.codec import convert
from migwatch.contract.config import Config, apply_environment

CHART = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "migwatch"
OPERATOR_KINDS = {"ServiceMonitor": "monitoring.coreos.com/v1", "KafkaTopic": "kafka.strimzi.io/v1beta2"}


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    helm = shutil.which("helm")
    if helm is None:
        pytest.skip("helm is not installed (deploy/setup builds it from Go modules)")
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)


def _render(*sets: str) -> list[dict[str, Any]]:
    result = _helm("template", "mw", str(CHART), *(arg for s in sets for arg in ("--set", s)))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_helm_lint_passes() -> None:
    result = _helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rendered_object_is_valid() -> None:
    objects = _render(
        "serviceMonitor.enabled=true", "strimzi.enabled=true", "probes.sites[0].name=dc1",
        "probes.sites[0].replicas=2", "probes.sites[1].name=dc2", "probes.sites[1].replicas=1",
    )  # fmt: skip
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds.count("Deployment") == 2  # a probe Deployment per site
    assert kinds.count("KafkaTopic") == 9 and kinds.count("PodDisruptionBudget") == 2  # the 6 of the contract, ours
    assert {"StatefulSet", "Service", "ConfigMap", "NetworkPolicy", "ServiceMonitor"} <= set(kinds)
    for obj in objects:
        if obj["kind"] in OPERATOR_KINDS:  # CRDs: not in the Kubernetes schemas
            assert obj["apiVersion"] == OPERATOR_KINDS[obj["kind"]] and obj["spec"]
            continue
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    topics = {obj["spec"]["topicName"]: obj["spec"]["config"]["cleanup.policy"] for obj in objects
              if obj["kind"] == "KafkaTopic"}  # fmt: skip
    assert topics["migwatch.targets"] == "compact" and topics["migwatch.ping"] == "delete"
    assert topics["migwatch.silences"] == topics["migwatch.hosts"] == topics["migwatch.status"] == "compact"
    # One replication factor for every topic: Strimzi's and the ones the workers create (changelogs too).
    assert {obj["spec"]["replicas"] for obj in objects if obj["kind"] == "KafkaTopic"} == {3}
    for spec in _pod_specs(objects).values():
        for container in spec["containers"]:
            env = {v["name"]: v.get("value") for v in container.get("env", [])}
            assert env.get("MIGWATCH_KAFKA_REPLICATION_FACTOR", "3") == "3", container["name"]
    workers = [c for s in _pod_specs(objects).values() for c in s["containers"] if c["name"] == "worker"]
    assert {v["value"] for v in workers[0]["env"] if v["name"] == "MIGWATCH_KAFKA_REPLICATION_FACTOR"} == {"3"}


def test_pods_run_as_non_root_with_no_capability_and_probes_get_unprivileged_icmp() -> None:
    specs = _pod_specs(_render())
    for name, spec in specs.items():
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] and context["runAsUser"] == 10001, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert context["allowPrivilegeEscalation"] is False, name
    sysctls = specs["mw-probe-dc1"]["securityContext"]["sysctls"]
    assert sysctls == [{"name": "net.ipv4.ping_group_range", "value": "0 2147483647"}]


def test_raw_icmp_probes_get_net_raw_alone_and_no_sysctl() -> None:
    objects = _render("probes.icmp=raw")
    specs = _pod_specs(objects)
    probe = specs["mw-probe-dc1"]
    (context,) = (container["securityContext"] for container in probe["containers"])
    # uid 0 because Kubernetes sets no ambient capabilities: a non-root process would not hold NET_RAW.
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW"]} and context["runAsUser"] == 0
    assert context["readOnlyRootFilesystem"] and context["allowPrivilegeEscalation"] is False
    assert "sysctls" not in probe["securityContext"]
    for name, spec in specs.items():  # the workers and the hook are as before: non-root, nothing added
        if name != "mw-probe-dc1":
            assert all(c["securityContext"]["capabilities"] == {"drop": ["ALL"]} for c in spec["containers"]), name
    for obj in objects:
        if obj["kind"] == "Deployment":
            kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


SECURE = ("kafka.securityProtocol=SASL_SSL", "kafka.sasl.username=migwatch", "kafka.sasl.passwordSecret=kafka-pw",
          "kafka.tls.secret=kafka-tls", "kafka.tls.certKey=tls.crt", "kafka.tls.keyKey=tls.key")  # fmt: skip


def test_kafka_credentials_come_from_secrets_as_files() -> None:
    """SASL_SSL with a client certificate: each file a setting names is mounted from the Secret's key."""
    pods = [obj for obj in _render(*SECURE) if obj["kind"] in ("Deployment", "StatefulSet")]
    assert len(pods) == 2
    for obj in pods:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
        spec = obj["spec"]["template"]["spec"]
        assert spec["securityContext"]["fsGroup"] == 10001  # the Secret files' group can read them
        secrets = {v["name"]: v["secret"] for v in spec["volumes"] if "secret" in v}
        (container,) = spec["containers"]
        mounts = {m["mountPath"]: secrets[m["name"]] for m in container["volumeMounts"] if m["name"] in secrets}
        env = {v["name"]: v["value"] for v in container["env"] if "value" in v}
        assert env["MIGWATCH_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and "MIGWATCH_KAFKA_SASL_PASSWORD" not in env
        files = {
            name: path for name, path in env.items() if name.endswith(("_FILE", "_CAFILE", "_CERTFILE", "_KEYFILE"))
        }
        assert len(files) == 4
        for path in files.values():
            folder, _, name = path.rpartition("/")
            assert any(item["path"] == name for item in mounts[folder]["items"]), path
        assert {mounts[p.rpartition("/")[0]]["secretName"] for p in files.values()} == {"kafka-pw", "kafka-tls"}


def test_a_sasl_protocol_without_its_secret_does_not_render() -> None:
    result = _helm("template", "mw", str(CHART), "--set", "kafka.securityProtocol=SASL_SSL",
                   "--set", "kafka.sasl.username=migwatch")  # fmt: skip
    assert result.returncode != 0 and "kafka.sasl.passwordSecret is required" in result.stderr


@pytest.mark.parametrize("sets", [(), SECURE], ids=["plaintext", "sasl-ssl"])
def test_every_variable_the_chart_sets_is_a_migwatch_setting(sets: tuple[str, ...], tmp_path: Path) -> None:
    environ = {}
    for obj in _render(*sets):
        if obj["kind"] in ("Deployment", "StatefulSet"):
            for container in obj["spec"]["template"]["spec"]["containers"]:
                for variable in container["env"]:
                    environ[variable["name"]] = variable.get("value", "from-the-pod")
    assert len(environ) > 10
    for name, value in environ.items():  # the mounted files, here: settings check that they are readable
        if value.startswith("/etc/migwatch/kafka-"):
            environ[name] = str(tmp_path / value.rpartition("/")[2])
            Path(environ[name]).write_text("x")
    document: dict[str, Any] = {}
    apply_environment(document, environ)  # raises ConfigError on a setting migwatch does not know
    for section in document.values():  # values from the pod (names) are fine as strings
        for key, value in list(section.items()):
            if value == "from-the-pod":
                section[key] = "pod-0"
    convert(Config, document)  # and every value is valid


def _pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod spec the chart renders, by object name: Deployments, the StatefulSet, the Job, the test Pod."""
    specs = {}
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            specs[obj["metadata"]["name"]] = obj["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            specs[obj["metadata"]["name"]] = obj["spec"]
    return specs


def test_every_pod_has_a_tokenless_service_account_and_the_runtime_default_seccomp_profile() -> None:
    objects = _render()
    [account] = [obj for obj in objects if obj["kind"] == "ServiceAccount"]
    assert account["automountServiceAccountToken"] is False
    specs = _pod_specs(objects)
    assert set(specs) == {"mw-probe-dc1", "mw-worker", "mw-targets-push", "mw-test-workers"}
    for name, spec in specs.items():
        assert (
            spec["serviceAccountName"] == account["metadata"]["name"] and spec["automountServiceAccountToken"] is False
        )
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name


def test_the_image_tag_defaults_to_the_charts_app_version() -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    images = {c["image"] for spec in _pod_specs(_render()).values() for c in spec["containers"]}
    assert images == {f"migwatch:{app_version}"}
    images = {c["image"] for spec in _pod_specs(_render("image.tag=1.2.3")).values() for c in spec["containers"]}
    assert images == {"migwatch:1.2.3"}


def test_a_config_change_rolls_the_pods_and_nothing_else_does() -> None:
    def checksums(*sets: str) -> set[str]:
        return {obj["spec"]["template"]["metadata"]["annotations"]["checksum/config"] for obj in _render(*sets)
                if obj["kind"] in ("Deployment", "StatefulSet", "Job")}  # fmt: skip

    plain = checksums()
    assert len(plain) == 1
    assert checksums("worker.replicas=3") == plain
    changed = checksums('config=[[targets]]\nid = "web-01"\naddress = "192.0.2.10"\n')
    assert len(changed) == 1 and changed != plain


def test_scheduling_knobs_reach_their_pods() -> None:
    specs = _pod_specs(_render(
        "worker.nodeSelector.disk=ssd", "probes.tolerations[0].key=edge", "probes.tolerations[0].operator=Exists",
        "probes.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
        ".matchExpressions[0].key=zone",
        "probes.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
        ".matchExpressions[0].operator=Exists",
    ))  # fmt: skip
    assert specs["mw-worker"]["nodeSelector"] == {"disk": "ssd"} and "tolerations" not in specs["mw-worker"]
    assert specs["mw-probe-dc1"]["tolerations"] == [{"key": "edge", "operator": "Exists"}]
    assert "nodeAffinity" in specs["mw-probe-dc1"]["affinity"] and "nodeSelector" not in specs["mw-probe-dc1"]


def test_targets_reach_the_topic_by_a_hook_job_or_the_probes_read_the_config() -> None:
    def probe_env(objects: list[dict[str, Any]]) -> dict[str, str]:
        [probe] = [obj for obj in objects if obj["kind"] == "Deployment"]
        return {v["name"]: v.get("value", "") for v in probe["spec"]["template"]["spec"]["containers"][0]["env"]}

    topic = _render()
    [job] = [obj for obj in topic if obj["kind"] == "Job"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "targets", "push", "--config", "/etc/migwatch/migwatch.toml"]  # fmt: skip
    assert probe_env(topic)["MIGWATCH_PROBE_TARGETS_FROM"] == "topic"
    config = _render("probes.targetsFrom=config")
    assert not [obj for obj in config if obj["kind"] == "Job"]
    assert probe_env(config)["MIGWATCH_PROBE_TARGETS_FROM"] == "config"


def test_health_checks_and_a_spill_volume_larger_than_the_spill_limit() -> None:
    objects = _render("probes.spillLimitMb=2048")
    specs = _pod_specs(objects)
    probe, worker = specs["mw-probe-dc1"], specs["mw-worker"]
    for spec, port in ((probe, "metrics"), (worker, "web")):
        container = spec["containers"][0]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    [spill] = [volume for volume in probe["volumes"] if volume["name"] == "spill"]
    assert spill["emptyDir"]["sizeLimit"] == "2576Mi"  # 2048 MiB of spill file and a quarter more
    env = {v["name"]: v.get("value") for v in probe["containers"][0]["env"]}
    assert env["MIGWATCH_PROBE_SPILL_LIMIT_MB"] == "2048"
    # The helm test pod's script is Python that compiles, asking each worker's /healthz and /readyz.
    script = specs["mw-test-workers"]["containers"][0]["args"][0]
    compile(script, "workers-answer", "exec")
    assert "mw-worker-1.mw-worker:6066" not in script and "range(2)" in script


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("kafka.partitions=0", "at '/kafka/partitions': minimum: got 0, want 1"),
        ("probes.targetsFrom=file", "at '/probes/targetsFrom': value must be one of 'topic', 'config'"),
        ("worker.replica=3", "at '/worker': additional properties 'replica' not allowed"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
        ("kafka.bootstrap=broker-1", "at '/kafka/bootstrap'"),
    ],
)
def test_the_values_schema_refuses_what_would_not_run(value: str, said: str) -> None:
    result = _helm("template", "mw", str(CHART), "--set", value)
    assert result.returncode != 0 and said in result.stderr, result.stderr


def test_the_notes_name_the_next_commands(tmp_path: Path) -> None:
    """NOTES.txt as `helm install` prints it (rendered through a copy of the chart: `helm template` does not
    print notes, and `helm install --dry-run` needs a cluster)."""
    chart = tmp_path / "migwatch"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes.tpl").write_text('{{- define "test.notes" -}}\n' + notes + "\n{{- end }}\n")
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ include "test.notes" . | quote }}\n'
    )
    result = _helm("template", "mw", str(chart), "--show-only", "templates/notes.yaml", "--namespace", "mon")
    assert result.returncode == 0, result.stderr
    text = yaml.safe_load(result.stdout)["data"]["notes"]
    for line in ("helm test mw -n mon", "migwatch targets push --config targets.toml",
                 "migwatch alerts tail --config kafka.toml", "kubectl -n mon port-forward svc/mw-fleet 6066",
                 "probe Deployment mw-probe-dc1 (2 replicas) for site dc1"):  # fmt: skip
        assert line in text, text


def test_one_fleet_address_and_workers_that_reach_each_other() -> None:
    """Issue #22: a Service over every worker serves the fleet page; each worker names its pod's stable address,
    where the others ask for its targets' charts, and the network policy lets them."""
    objects = _render()
    services = {obj["metadata"]["name"]: obj["spec"] for obj in objects if obj["kind"] == "Service"}
    assert services["mw-fleet"]["selector"] == services["mw-worker"]["selector"]
    assert "clusterIP" not in services["mw-fleet"] and services["mw-worker"]["clusterIP"] == "None"
    [worker] = [obj for obj in objects if obj["kind"] == "StatefulSet"]
    env = [v["name"] for v in worker["spec"]["template"]["spec"]["containers"][0]["env"]]
    url = next(v["value"] for v in worker["spec"]["template"]["spec"]["containers"][0]["env"]
               if v["name"] == "MIGWATCH_WORKER_WEB_URL")  # fmt: skip
    assert url == "http://$(MIGWATCH_WORKER_NAME).mw-worker:6066"
    assert env.index("MIGWATCH_WORKER_NAME") < env.index("MIGWATCH_WORKER_WEB_URL")  # defined first: expanded
    [policy] = [obj for obj in objects if obj["kind"] == "NetworkPolicy"]
    sources = [rule.get("podSelector", {}).get("matchLabels", {}) for rule in policy["spec"]["ingress"][0]["from"]]
    assert {"app.kubernetes.io/instance": "mw", "app.kubernetes.io/component": "worker"} in sources
