"""The chart through the real tools: ``helm lint --strict`` and ``helm template`` over every
scenario (values.schema.json included), every core object against Kubernetes' own schema
(kubernetes-validate, strict: an unknown field fails), and every custom resource decoded
strictly into the operators' Go types (tests/crd, built by scripts/install-helm)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from dedup.settings import Settings
from tests.deploy.chart_support import (
    CHART,
    KUBE_VERSION,
    MONITORING_API,
    REQUIRED,
    ROOT,
    SCENARIOS,
    RenderError,
    helm,
    merged,
    rendered,
    template,
    tool,
    with_required,
)

CUSTOM_GROUPS = ("ray.io/", "monitoring.coreos.com/")


# helm lint has no --api-versions: the scenarios that need an API are rendered and checked
# by the tests below instead.
LINTED = sorted(name for name, scenario in SCENARIOS.items() if not scenario.api_versions)


@pytest.mark.parametrize("name", LINTED)
def test_helm_lint_strict_passes(name: str, tmp_path: Path) -> None:
    scenario = SCENARIOS[name]
    done = helm(["lint", "--strict", "--kube-version", KUBE_VERSION], scenario.values, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


def refusal(values: dict[str, Any], tmp: Path, api_versions: tuple[str, ...] = ()) -> str:
    with pytest.raises(RenderError) as refused:
        template(values, tmp, api_versions)
    return str(refused.value)


@pytest.mark.parametrize("key", ["serviceMonitor", "pushgatewayMonitor", "prometheusRule"])
def test_asking_for_monitoring_without_the_operator_api_fails_clearly(
    key: str, tmp_path: Path
) -> None:
    values = with_required({"monitoring": {key: {"enabled": True}}})
    message = refusal(values, tmp_path)
    assert f"monitoring.{key}.enabled needs the prometheus-operator API {MONITORING_API}" in message
    assert f"set monitoring.{key}.enabled=false" in message
    template(values, tmp_path, (MONITORING_API,))  # with the API it renders


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"review": {"replicaz": 3}}, "additional properties 'replicaz' not allowed"),
        ({"ray": {"gpuWorkers": {"minReplicas": -1}}}, "minReplicas"),
        ({"nightly": {"intake": {"manifestname": "m.csv"}}}, "'manifestname' not allowed"),
        ({"settings": {"lakes": "s3://x"}}, "'lakes' not allowed"),
        ({"image": {"digest": "latest"}}, "digest"),
    ],
)
def test_a_misspelt_or_bad_value_fails_through_the_schema(
    values: dict[str, Any], expected: str, tmp_path: Path
) -> None:
    message = refusal(with_required(values), tmp_path)
    assert "values don't meet the specifications of the schema" in message
    assert expected in message


def test_a_misspelt_value_fails_helm_lint_too(tmp_path: Path) -> None:
    done = helm(["lint", "--strict"], with_required({"nightly": {"shedule": "x"}}), tmp_path)
    assert done.returncode != 0 and "'shedule' not allowed" in done.stdout + done.stderr


def test_the_schema_knows_the_settings_top_level_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    settings = schema["properties"]["settings"]
    assert settings["additionalProperties"] is False
    assert set(settings["properties"]) == set(Settings.model_fields)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"database": {"existingSecret": ""}}, "database.existingSecret is required"),
        ({"review": {"networkPolicy": {"postgres": {"cidr": ""}}}}, "postgres.cidr is required"),
        ({"review": {"networkPolicy": {"objectStore": {"cidrs": []}}}}, "cidrs is required"),
        ({"review": {"ingress": {"enabled": True}}}, "review.ingress.tlsSecret is required"),
    ],
)
def test_a_missing_required_value_is_named(
    values: dict[str, Any], expected: str, tmp_path: Path
) -> None:
    assert expected in refusal(merged(REQUIRED, values), tmp_path)


def core_docs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if not d["apiVersion"].startswith(CUSTOM_GROUPS)]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_core_object_meets_the_kubernetes_schema_strictly(name: str) -> None:
    docs = core_docs(rendered(name).docs)
    assert len(docs) >= 10
    for doc in docs:
        where = f"{doc['kind']} {doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {where}: {exc.message} at {list(exc.path)}")


DIGEST = "sha256:" + "ab" * 32
# Each switch and optional value on its own, over the required values: what a registry may
# turn off or add must still render objects that Kubernetes and the operators accept.
VARIANTS: dict[str, dict[str, Any]] = {
    "nightly off": {"nightly": {"enabled": False}},
    "ray off": {"ray": {"enabled": False}},
    "cpu workers off": {"ray": {"cpuWorkers": {"enabled": False}}},
    "network policy off": {"review": {"networkPolicy": {"enabled": False}}},
    "fixed replicas": {
        "review": {"autoscaling": {"enabled": False}, "podDisruptionBudget": {"enabled": False}}
    },
    "dashboard off": {"monitoring": {"dashboard": {"enabled": False}, "pushgatewayUrl": ""}},
    "images by digest": {
        "image": {"digest": DIGEST},
        "ray": {"gpuWorkers": {"image": {"repository": "registry.example/dedup-gpu"}}},
    },
    "extra environment": {
        "extraEnv": [{"name": "AWS_REGION", "value": "eu-west-1"}],
        "extraEnvFrom": [{"secretRef": {"name": "proxy-settings"}}],
        "imagePullSecrets": [{"name": "registry-pull"}],
    },
    "accounts made elsewhere": {
        "serviceAccounts": {
            "review": {"create": False, "name": "review"},
            "nightly": {"create": False, "name": "night"},
            "ray": {"create": False},
        }
    },
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_switch_renders_objects_kubernetes_and_the_operators_accept(
    variant: str, tmp_path: Path
) -> None:
    text = template(with_required(VARIANTS[variant]), tmp_path)
    docs = [doc for doc in yaml.safe_load_all(text) if doc]
    for doc in core_docs(docs):
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    done = crd_check(text)
    assert done.returncode == 0, done.stderr


def test_the_values_operations_md_shows_render_valid_objects(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("## Installing on Kubernetes", 1)[1].split("### Values", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    values = yaml.safe_load(example.replace("sha256:...", DIGEST))
    rendering = template(values, tmp_path, (MONITORING_API,))  # it turns monitoring on
    docs = [doc for doc in yaml.safe_load_all(rendering) if doc]
    for doc in core_docs(docs):
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    assert crd_check(rendering).returncode == 0
    assert {"Ingress", "PrometheusRule"} <= {doc["kind"] for doc in docs}


def test_an_image_digest_wins_over_the_tag(tmp_path: Path) -> None:
    text = template(with_required(VARIANTS["images by digest"]), tmp_path)
    assert f"registry.example/dedup@{DIGEST}" in text
    assert "registry.example/dedup-gpu:0.1.0" in text
    assert "registry.example/dedup:" not in text


def test_the_kubernetes_schema_check_rejects_an_unknown_field() -> None:
    deployment = rendered("defaults").one("Deployment", "-review")
    bad = merged(deployment, {"spec": {"template": {"spec": {"containers": [
        {**deployment["spec"]["template"]["spec"]["containers"][0], "livenesProbe": {}}
    ]}}}})  # fmt: skip
    with pytest.raises(kubernetes_validate.ValidationError, match="livenesProbe"):
        kubernetes_validate.validate(bad, KUBE_VERSION, strict=True)


def crd_check(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("crd-check"))], input=text, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_custom_resource_decodes_strictly_into_the_operators_types(name: str) -> None:
    done = crd_check(rendered(name).text)
    assert done.returncode == 0, done.stderr
    custom = [d for d in rendered(name).docs if d["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert f"{len(custom)} custom resources decoded strictly, 0 failed" in done.stdout
    assert len(custom) == (4 if name == "monitoring" else 1)


def test_the_custom_resource_check_names_a_misspelt_field() -> None:
    docs = rendered("defaults").docs
    ray = next(d for d in docs if d["kind"] == "RayCluster")
    bad = merged(ray, {})
    bad["spec"]["workerGroupSpecs"][0]["minReplica"] = 0
    done = crd_check("---\n" + yaml.safe_dump(bad))
    assert done.returncode == 1
    assert 'unknown field "spec.workerGroupSpecs[0].minReplica"' in done.stderr
    assert "RayCluster" in done.stderr and ray["metadata"]["name"] in done.stderr


def test_the_custom_resource_check_refuses_a_kind_it_does_not_know() -> None:
    unknown = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitr",
               "metadata": {"name": "x"}, "spec": {}}  # fmt: skip
    done = crd_check(yaml.safe_dump(unknown))
    assert done.returncode == 1 and "no API type known" in done.stderr
