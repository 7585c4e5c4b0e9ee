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
    assert kinds.count("KafkaTopic") == 8 and kinds.count("PodDisruptionBudget") == 2  # the 6 of the contract, ours
    assert {"StatefulSet", "Service", "ConfigMap", "NetworkPolicy", "ServiceMonitor"} <= set(kinds)
    for obj in objects:
        if obj["kind"] in OPERATOR_KINDS:  # CRDs: not in the Kubernetes schemas
            assert obj["apiVersion"] == OPERATOR_KINDS[obj["kind"]] and obj["spec"]
            continue
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    topics = {obj["spec"]["topicName"]: obj["spec"]["config"]["cleanup.policy"] for obj in objects
              if obj["kind"] == "KafkaTopic"}  # fmt: skip
    assert topics["migwatch.targets"] == "compact" and topics["migwatch.ping"] == "delete"
    assert topics["migwatch.silences"] == topics["migwatch.hosts"] == "compact"


def test_pods_run_as_non_root_and_probes_get_only_net_raw() -> None:
    for obj in _render():
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] and context["runAsUser"] == 10001
            assert context["capabilities"]["drop"] == ["ALL"]
            assert context["capabilities"].get("add", []) == (["NET_RAW"] if obj["kind"] == "Deployment" else [])


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
