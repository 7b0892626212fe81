"""What the rendered objects must say: the GPU group, the night's CronJob, the review
service's probes, resources, security and network policy, the settings and the wiring
between them (Spark's driver, the Ray address)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from dedup.settings import load_settings
from tests.deploy.chart_support import (
    KUBE_VERSION,
    NAMESPACE,
    SCENARIOS,
    pod_specs,
    rendered,
    template,
    with_required,
)


def ray_group(name: str, scenario: str = "defaults") -> dict[str, Any]:
    spec = rendered(scenario).one("RayCluster")["spec"]
    groups: dict[str, dict[str, Any]] = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    return groups[name]


def test_the_gpu_group_asks_for_gpus_tolerates_their_taint_and_scales_from_zero() -> None:
    cluster = rendered("defaults").one("RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    gpu = ray_group("gpu")
    assert gpu["minReplicas"] == 0 and gpu["replicas"] == 0 and gpu["maxReplicas"] >= 1
    [container] = gpu["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu[
        "template"
    ]["spec"]["tolerations"]
    cpu = ray_group("cpu")
    assert cpu["minReplicas"] == 0
    assert "nvidia.com/gpu" not in cpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_without_gpus_there_is_no_gpu_group() -> None:
    groups = rendered("no-gpu").one("RayCluster")["spec"]["workerGroupSpecs"]
    assert [group["groupName"] for group in groups] == ["cpu"]
    assert "nvidia.com/gpu" not in rendered("no-gpu").text


def test_the_night_runs_one_at_a_time_within_its_deadlines() -> None:
    cron = rendered("defaults").one("CronJob", "-nightly")["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert cron["startingDeadlineSeconds"] > 0 and cron["timeZone"]
    assert cron["successfulJobsHistoryLimit"] >= 1 and cron["failedJobsHistoryLimit"] >= 1
    job = cron["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] > 0 and job["backoffLimit"] <= 1
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    [start] = pod["initContainers"]
    [nightly] = pod["containers"]
    script = nightly["command"][-2]
    assert script.startswith("exec dedup nightly --config /etc/dedup/settings.yaml")
    assert '--batch-id "$(cat /night/batch-id)" --manifest "$(cat /night/manifest)"' in script
    env = {e["name"]: e.get("value") for e in start["env"]}
    assert env["DEDUP_NIGHT_TIME_ZONE"] == cron["timeZone"]
    assert env["DEDUP_INTAKE_ROOT"].startswith("s3://")


def test_every_container_has_resources_and_the_hardened_security_context() -> None:
    for scenario in SCENARIOS:
        for where, pod in pod_specs(rendered(scenario).docs):
            assert pod["securityContext"]["runAsNonRoot"] is True, where
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert pod["automountServiceAccountToken"] is ("CronJob" in where), where
            tmp = {v["name"]: v for v in pod["volumes"]}.get("tmp", {})
            assert "emptyDir" in tmp, f"{where}: no emptyDir for /tmp"
            for container in pod.get("initContainers", []) + pod["containers"]:
                name = f"{where} {container['name']}"
                assert container["resources"]["requests"] and container["resources"]["limits"]
                context = container["securityContext"]
                assert context["readOnlyRootFilesystem"] is True, name
                assert context["allowPrivilegeEscalation"] is False, name
                assert context["capabilities"]["drop"] == ["ALL"], name
                mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
                assert "/tmp" in mounts, name
                assert container.get("imagePullPolicy") == "IfNotPresent", name


def test_the_review_service_is_probed_on_healthz_and_does_not_migrate() -> None:
    deployment = rendered("defaults").one("Deployment", "-review")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    assert container["args"][:2] == ["serve", "--no-migrate"]
    migrate = rendered("defaults").one("Job", "-migrate")
    assert migrate["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert migrate["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    every_deployment = [d for d in rendered("defaults").docs if d["kind"] == "Deployment"]
    assert every_deployment == [deployment]


def test_the_database_url_comes_from_the_named_secret_to_those_that_need_it() -> None:
    for where, pod in pod_specs(rendered("defaults").docs):
        for container in pod["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            if "RayCluster" in where:  # the Ray nodes never reach the review database
                assert "DEDUP_ADJUDICATION__DATABASE_URL" not in env, where
                continue
            url = env["DEDUP_ADJUDICATION__DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            assert url == {"name": "dedup-database", "key": "database-url"}, where
    assert not rendered("defaults").of_kind("Secret")


def test_the_network_policy_admits_only_the_ingress_and_prometheus_namespaces() -> None:
    policy = rendered("defaults").one("NetworkPolicy", "-review")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    [ingress] = policy["ingress"]
    namespaces = [p["namespaceSelector"]["matchLabels"] for p in ingress["from"]]
    assert namespaces == [{"kubernetes.io/metadata.name": "ingress-nginx"},
                          {"kubernetes.io/metadata.name": "monitoring"}]  # fmt: skip
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    postgres, store, dns = policy["egress"]
    assert postgres == {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
                        "ports": [{"port": 5432, "protocol": "TCP"}]}  # fmt: skip
    assert [t["ipBlock"]["cidr"] for t in store["to"]] == ["52.218.0.0/17", "3.5.0.0/18"]
    assert store["ports"] == [{"port": 443, "protocol": "TCP"}]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}


def test_the_migration_hook_reaches_only_the_database_and_dns() -> None:
    chart = rendered("defaults")
    policy = chart.one("NetworkPolicy", "-migrate")
    annotations = policy["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    job = chart.one("Job", "-migrate")
    # created before the Job it admits (helm runs hooks by ascending weight)
    assert int(annotations["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["ingress"] == []
    selected = spec["podSelector"]["matchLabels"]
    assert selected.items() <= job["spec"]["template"]["metadata"]["labels"].items()
    postgres, dns = spec["egress"]
    assert postgres == {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
                        "ports": [{"port": 5432, "protocol": "TCP"}]}  # fmt: skip
    assert {p["port"] for p in dns["ports"]} == {53}


def test_the_ingress_serves_https_only() -> None:
    ingress = rendered("ingress").one("Ingress")["spec"]
    assert ingress["tls"] == [{"hosts": ["review.registry.example"], "secretName": "review-tls"}]
    assert not rendered("defaults").of_kind("Ingress")


def test_autoscaling_and_disruption_budget_keep_the_service_up() -> None:
    hpa = rendered("defaults").one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["minReplicas"] >= 2
    assert "replicas" not in rendered("defaults").one("Deployment")["spec"]  # the HPA's
    assert rendered("defaults").one("PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_the_spark_driver_may_manage_pods_in_its_namespace_only() -> None:
    docs = rendered("defaults")
    role = docs.one("Role")
    assert role["rules"] == [{"apiGroups": [""],
                              "resources": ["pods", "services", "configmaps",
                                            "persistentvolumeclaims"],
                              "verbs": ["create", "get", "list", "watch", "delete",
                                        "deletecollection"]}]  # fmt: skip
    assert not docs.of_kind("ClusterRole") and not docs.of_kind("ClusterRoleBinding")
    [subject] = docs.one("RoleBinding")["subjects"]
    assert subject == {"kind": "ServiceAccount", "name": "dedup-nightly", "namespace": NAMESPACE}
    cron = docs.one("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert cron["serviceAccountName"] == "dedup-nightly"
    driver = docs.one("Service", "-spark-driver")["spec"]
    assert driver["clusterIP"] == "None"
    assert driver["selector"]["app.kubernetes.io/component"] == "nightly"


def settings_text(text: str) -> str:
    """The settings.yaml of a rendering."""
    for doc in yaml.safe_load_all(text):
        if doc and doc["kind"] == "ConfigMap" and doc["metadata"]["name"].endswith("-settings"):
            data: str = doc["data"]["settings.yaml"]
            return data
    raise AssertionError("no settings ConfigMap")


def test_the_settings_are_what_dedup_reads_and_wire_spark_and_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "settings.yaml"
    file.write_text(settings_text(rendered("defaults").text), encoding="utf-8")
    for name in [name for name in os.environ if name.startswith("DEDUP_")]:
        monkeypatch.delenv(name)
    settings = load_settings(file)  # dedup's own validation (an unknown key is refused)
    assert settings.spark.master == "k8s://https://kubernetes.default.svc"
    conf = settings.spark.extra_conf
    assert conf["spark.kubernetes.namespace"] == NAMESPACE
    assert conf["spark.kubernetes.container.image"] == "registry.example/dedup:0.1.0"
    assert conf["spark.kubernetes.authenticate.driver.serviceAccountName"] == "dedup-nightly"
    assert conf["spark.driver.host"] == f"dedup-spark-driver.{NAMESPACE}.svc"
    assert conf["spark.executor.instances"] == "2"
    assert conf["spark.kubernetes.executor.podTemplateFile"] == "/etc/dedup/executor-pod.yaml"
    assert settings.embed.ray_address == f"ray://dedup-ray-head-svc.{NAMESPACE}.svc:10001"
    assert settings.metrics.pushgateway and settings.manifest.allow_uris is True
    assert settings.adjudication.host == "0.0.0.0" and settings.adjudication.port == 8000
    assert settings.lake == "s3://registry-lake/dedup"


def test_given_settings_win_over_the_chart_s(tmp_path: Path) -> None:
    given = {
        "spark": {"extra_conf": {"spark.executor.instances": "9"}},
        "embed": {"ray_address": "ray://elsewhere:10001"},
    }
    text = template(with_required({"settings": given}), tmp_path)
    settings = yaml.safe_load(settings_text(text))
    assert settings["spark"]["extra_conf"]["spark.executor.instances"] == "9"
    assert settings["spark"]["extra_conf"]["spark.kubernetes.namespace"] == NAMESPACE
    assert settings["embed"]["ray_address"] == "ray://elsewhere:10001"


def test_the_executor_pod_template_is_a_hardened_pod() -> None:
    data = rendered("defaults").one("ConfigMap", "-settings")["data"]
    pod = yaml.safe_load(data["executor-pod.yaml"])
    kubernetes_validate.validate(pod, KUBE_VERSION, strict=True)
    [container] = pod["spec"]["containers"]
    assert container["name"] == "executor"
    assert container["command"][-1] == "/etc/dedup/spark-executor.sh"
    assert "spark-executor.sh" in data
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_service_accounts_are_separate_and_carry_their_roles(tmp_path: Path) -> None:
    names = {a["metadata"]["name"] for a in rendered("defaults").of_kind("ServiceAccount")}
    assert names == {"dedup-review", "dedup-nightly", "dedup-ray", "dedup-migrate"}
    arn = "arn:aws:iam::111122223333:role/dedup-nightly"
    irsa = {"eks.amazonaws.com/role-arn": arn}
    values = with_required({"serviceAccounts": {"nightly": {"annotations": irsa}}})
    docs = [doc for doc in yaml.safe_load_all(template(values, tmp_path)) if doc]
    accounts = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceAccount"}
    assert accounts["dedup-nightly"]["metadata"]["annotations"] == irsa
    assert "annotations" not in accounts["dedup-review"]["metadata"]
    assert all(account["automountServiceAccountToken"] is False for account in accounts.values())


def test_every_pod_that_opens_the_gallery_has_a_volume_for_its_cache() -> None:
    docs = rendered("defaults").docs
    cache = yaml.safe_load(settings_text(rendered("defaults").text))["gallery_cache"]
    openers = [(w, p) for w, p in pod_specs(docs) if "head" not in w and "migrate" not in w]
    assert len(openers) == 4  # the review service, the night, the CPU and the GPU workers
    for where, pod in openers:
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        assert "emptyDir" in volumes["gallery-cache"], where
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["gallery-cache"] == cache, where
