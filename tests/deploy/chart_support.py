"""The chart as the deploy tests see it: the tools scripts/install-helm builds, the scenarios
the chart is rendered over (defaults, monitoring, no-gpu, ingress), and each scenario rendered
once per process.

A scenario is the values a registry would give on top of the chart's defaults (a minimal
install needs the database Secret and the network policy's address ranges) and the APIs the
cluster serves beyond the core ones (``--api-versions``).
"""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "dedup"
# The Kubernetes version the chart is rendered for and validated against: helm's own default
# (scripts/install-helm sets it as helm's release build does), and kubernetes-validate's
# newest schemas.
KUBE_VERSION = "1.37.0"
MONITORING_API = "monitoring.coreos.com/v1"
RELEASE = "dedup"
NAMESPACE = "registry"


def tools_bin() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dedup" / "tools" / "bin"


def tool(name: str) -> Path:
    """A tool scripts/install-helm builds; a missing one fails the test that needs it."""
    path = tools_bin() / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run scripts/install-helm (it builds helm and crd-check)")
    return path


@dataclass(frozen=True)
class Scenario:
    values: dict[str, Any]
    api_versions: tuple[str, ...] = field(default=())


# What every install gives: the database Secret's name and the network policy's ranges.
REQUIRED: dict[str, Any] = yaml.safe_load(
    (Path(__file__).with_name("required-values.yaml")).read_text(encoding="utf-8")
)
MONITORING_ON: dict[str, Any] = {
    "monitoring": {
        "serviceMonitor": {"enabled": True},
        "pushgatewayMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
    }
}


def merged(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` laid over a copy of ``base``, mappings merged key by key (as helm merges
    values files)."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def with_required(values: dict[str, Any]) -> dict[str, Any]:
    return merged(REQUIRED, values)


SCENARIOS: dict[str, Scenario] = {
    "defaults": Scenario(with_required({})),
    "monitoring": Scenario(with_required(MONITORING_ON), (MONITORING_API,)),
    "no-gpu": Scenario(with_required({"ray": {"gpuWorkers": {"enabled": False}}})),
    "ingress": Scenario(
        with_required(
            {"review": {"ingress": {"enabled": True, "tlsSecret": "review-tls"}}},
        )
    ),
}


def helm(args: list[str], values: dict[str, Any], tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run helm on the chart with these values (written to a file, as a registry would)."""
    values_file = tmp / "values.yaml"
    values_file.write_text(yaml.safe_dump(values), encoding="utf-8")
    return subprocess.run(
        [str(tool("helm")), *args, str(CHART), "--values", str(values_file)],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "HELM_CACHE_HOME": str(tmp / "helm-cache"),
            "HELM_CONFIG_HOME": str(tmp / "helm-config"),
            "HELM_DATA_HOME": str(tmp / "helm-data"),
        },
        check=False,
    )


def template(values: dict[str, Any], tmp: Path, api_versions: tuple[str, ...] = ()) -> str:
    """``helm template``'s output; a failure is raised with helm's message."""
    args = ["template", RELEASE, "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    for api in api_versions:
        args += ["--api-versions", api]
    done = helm(args, values, tmp)
    if done.returncode != 0:
        raise RenderError(done.stderr)
    return done.stdout


class RenderError(Exception):
    """helm refused to render; the message is helm's."""


@dataclass(frozen=True)
class Rendered:
    text: str
    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str, name_suffix: str = "") -> dict[str, Any]:
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"].endswith(name_suffix)]
        assert len(found) == 1, f"{len(found)} {kind} named *{name_suffix}"
        return found[0]


@functools.cache
def rendered(name: str) -> Rendered:
    """The scenario rendered once per process (the tests only read it)."""
    scenario = SCENARIOS[name]
    tmp = Path(tempfile.mkdtemp(prefix=f"dedup-chart-{name}-"))
    text = template(scenario.values, tmp, scenario.api_versions)
    docs = [doc for doc in yaml.safe_load_all(text) if doc]
    return Rendered(text, docs)


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every workload: Deployments, Jobs, CronJobs and Ray groups."""
    found = []
    for doc in docs:
        where = f"{doc['kind']} {doc['metadata']['name']}"
        spec = doc.get("spec", {})
        if doc["kind"] in ("Deployment", "Job"):
            found.append((where, spec["template"]["spec"]))
        elif doc["kind"] == "CronJob":
            found.append((where, spec["jobTemplate"]["spec"]["template"]["spec"]))
        elif doc["kind"] == "RayCluster":
            found.append((f"{where} head", spec["headGroupSpec"]["template"]["spec"]))
            for group in spec["workerGroupSpecs"]:
                found.append((f"{where} {group['groupName']}", group["template"]["spec"]))
    return found
