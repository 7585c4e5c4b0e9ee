"""The Helm chart's rendered objects, run as pods by `podman kube play` (no cluster here).

podman 4.3 takes Pods, Deployments and ConfigMaps as Kubernetes writes them, with their securityContext
(user, dropped and added capabilities, read-only root filesystem, no privilege escalation), volumes and env.
What it cannot take is adapted, and only that:

- the worker's StatefulSet becomes a Deployment of the same pod template (kube play has no StatefulSet); its
  volume claim template becomes an emptyDir of the same name;
- the targets-push Job (a Helm hook) becomes a Pod of its template, played after the workers, as Helm
  runs hooks after the release's objects (the Job's retries stand for Kubernetes' backoff);
- every pod gets the host's network (a cluster's pod network reaches Kafka; here the broker listens on
  loopback), so containerPorts go (podman refuses port mappings on the host network), the probes' named
  ports become numbers, and the web servers bind 127.0.0.1 instead of every address;
- Services, the ServiceAccount, NetworkPolicies and PodDisruptionBudgets are left out (no cluster to apply
  them), as is the `helm test` Pod (it reaches the workers by their Service's DNS name).

podman runs no liveness or readiness probes without systemd timers: the test asks /healthz and /readyz itself.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "migwatch"


def render(values: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """`helm template` of the chart with these values (its schema checks them)."""
    helm = shutil.which("helm")
    assert helm is not None, "helm is not installed (deploy/setup builds it from Go modules)"
    values_file = folder / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    done = subprocess.run(
        [helm, "template", "mw", str(CHART), "-f", str(values_file)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [obj for obj in yaml.safe_load_all(done.stdout) if obj]


def _on_host_network(spec: dict[str, Any]) -> dict[str, Any]:
    spec["hostNetwork"] = True
    for container in spec["containers"]:
        ports = {port["name"]: port["containerPort"] for port in container.pop("ports", [])}
        for check in ("livenessProbe", "readinessProbe"):
            if check in container:
                get = container[check]["httpGet"]
                get["port"] = ports.get(get["port"], get["port"])
        for variable in container.get("env", []):
            if variable["name"].endswith("_BIND"):
                variable["value"] = "127.0.0.1"
    return spec


def for_podman(objects: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the release's objects, the hook pods) as kube play takes them; each list carries the ConfigMaps."""
    release: list[dict[str, Any]] = []
    hooks: list[dict[str, Any]] = []
    config_maps = [obj for obj in objects if obj["kind"] == "ConfigMap"]
    for obj in objects:
        kind, spec = obj["kind"], obj.get("spec", {})
        if kind == "Deployment":
            _on_host_network(spec["template"]["spec"])
            release.append(obj)
        elif kind == "StatefulSet":
            template = spec["template"]
            template["spec"]["volumes"] += [
                {"name": claim["metadata"]["name"], "emptyDir": {}} for claim in spec["volumeClaimTemplates"]
            ]
            _on_host_network(template["spec"])
            release.append({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": obj["metadata"],
                "spec": {"replicas": spec["replicas"], "selector": spec["selector"], "template": template},
            })  # fmt: skip
        elif kind == "Job":
            pod_spec = _on_host_network(spec["template"]["spec"])
            pod_spec["restartPolicy"] = "Never"
            hooks.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": obj["metadata"]["name"]},
                          "spec": pod_spec})  # fmt: skip
    return config_maps + release, config_maps + hooks
