"""The Terraform for AWS (infra/terraform), checked offline.

``terraform init`` and ``validate`` need the registry and the providers, which the tests
cannot download; what they can hold without them is in ``terraform_checks``: each check
passes on the tree and fails on a copy with one planted mistake. Formatting is hclfmt's
(the formatter ``terraform fmt`` is built on, from scripts/install-tf-tools), plus the two
rewrites terraform adds to it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import terraform_checks as checks
from tests.deploy.terraform_config import TERRAFORM, TerraformDir, load_interfaces, unquote

TOOLS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dedup" / "tools"
HCLFMT = TOOLS / "bin" / "hclfmt"


def require_tool(path: Path) -> Path:
    """The tool at ``path``; missing, a failure on CI (where scripts/setup installs it) and
    a skip elsewhere, naming the script that installs it."""
    if not path.exists():
        message = f"{path} is missing: run scripts/install-tf-tools"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def interfaces() -> dict[str, Any]:
    return load_interfaces()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of infra/terraform to plant a mistake in."""
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform*"))
    return copy


def edit(file: Path, old: str, new: str) -> None:
    text = file.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {file}"
    file.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_every_file_is_formatted() -> None:
    hclfmt = require_tool(HCLFMT)
    files = sorted(TERRAFORM.rglob("*.tf"))
    assert files
    unformatted = []
    for file in files:
        result = subprocess.run(
            [hclfmt, file], capture_output=True, text=True, check=False, timeout=60
        )
        assert result.returncode == 0, f"{file}: {result.stderr}"
        if result.stdout != file.read_text(encoding="utf-8"):
            unformatted.append(str(file.relative_to(TERRAFORM)))
    assert not unformatted, (
        f"not formatted (terraform fmt -recursive infra/terraform): {unformatted}"
    )


def test_hclfmt_finds_an_unformatted_file(tree: Path) -> None:
    hclfmt = require_tool(HCLFMT)
    file = tree / "modules" / "registry" / "main.tf"
    edit(file, "  name                 = ", "  name = ")
    result = subprocess.run([hclfmt, file], capture_output=True, text=True, check=True)
    assert result.stdout != file.read_text(encoding="utf-8")


def test_nothing_terraform_fmt_would_rewrite() -> None:
    assert checks.fmt_rewrites(TERRAFORM) == []


def test_fmt_rewrites_are_found(tree: Path) -> None:
    edit(tree / "modules" / "registry" / "variables.tf", "type        = string", 'type = "string"')
    edit(
        tree / "modules" / "registry" / "main.tf",
        "repository = each.value.name",
        'repository = "${each.value.name}"',
    )
    problems = checks.fmt_rewrites(tree)
    assert any("quoted type" in p for p in problems)
    assert any("interpolation-only" in p for p in problems)


def test_module_calls_match_their_modules(interfaces: dict[str, Any]) -> None:
    assert checks.module_calls(TERRAFORM, interfaces) == []


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        # An input the local module does not declare, and one it needs left out.
        (
            "envs/staging/main.tf",
            "  multi_az              = false",
            "  multiaz = false",
            "'multiaz'",
        ),
        (
            "envs/production/main.tf",
            "  client_security_group_id = module.eks.node_security_group_id\n",
            "",
            "client_security_group_id",
        ),
        # eks v20's spelling of v21's input.
        (
            "modules/eks/main.tf",
            "  kubernetes_version = var.kubernetes_version",
            "  cluster_version = var.kubernetes_version",
            "'cluster_version'",
        ),
        # A registry module pinned loosely, or to a version with no recorded interface.
        (
            "modules/network/main.tf",
            'version = "6.6.0"',
            'version = "~> 6.6"',
            "not one exact version",
        ),
        ("modules/network/main.tf", 'version = "6.6.0"', 'version = "6.5.0"', "no interface"),
        # A node group attribute the object type lacks (Terraform would drop it silently).
        (
            "modules/eks/main.tf",
            "      taints         = { gpu = local.gpu_taint }",
            "      taint          = { gpu = local.gpu_taint }",
            "'taint'",
        ),
    ],
)
def test_module_call_mistakes_are_found(
    tree: Path, interfaces: dict[str, Any], file: str, old: str, new: str, expected: str
) -> None:
    edit(tree / file, old, new)
    problems = checks.module_calls(tree, interfaces)
    assert any(expected in p for p in problems), problems


def test_references_exist(interfaces: dict[str, Any]) -> None:
    assert checks.references(TERRAFORM, interfaces) == []


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        (
            "envs/staging/main.tf",
            "module.eks.node_security_group_id",
            "module.eks.node_sg_id",
            "module.eks.node_sg_id",
        ),
        (
            "modules/eks/outputs.tf",
            "module.eks.oidc_provider_arn",
            "module.eks.cluster_oidc_provider_arn",
            "cluster_oidc_provider_arn",
        ),
        (
            "modules/lake/main.tf",
            "var.noncurrent_version_days",
            "var.noncurrent_days",
            "var.noncurrent_days",
        ),
    ],
)
def test_reference_mistakes_are_found(
    tree: Path, interfaces: dict[str, Any], file: str, old: str, new: str, expected: str
) -> None:
    edit(tree / file, old, new)
    assert any(expected in p for p in checks.references(tree, interfaces))


def test_variables_and_outputs_are_declared_fully() -> None:
    assert checks.declarations(TERRAFORM) == []


def test_a_variable_without_a_description_is_found(tree: Path) -> None:
    edit(
        tree / "modules" / "registry" / "variables.tf",
        '  description = "Prefix of the repository names (<name>/dedup-cpu, <name>/dedup-gpu)."\n',
        "",
    )
    assert checks.declarations(tree) == ["modules/registry: variable name has no description"]


def test_envs_pin_terraform_and_providers(interfaces: dict[str, Any]) -> None:
    assert checks.version_pins(TERRAFORM, interfaces) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('version = "6.28.0"', 'version = "~> 6.0"', "provider aws is not pinned"),
        # Below what the EKS module asks for (>= 6.28).
        ('version = "6.28.0"', 'version = "6.27.0"', "does not meet"),
        ('  backend "s3" {}\n', "", "no S3 backend"),
    ],
)
def test_pin_mistakes_are_found(
    tree: Path, interfaces: dict[str, Any], old: str, new: str, expected: str
) -> None:
    edit(tree / "envs" / "production" / "versions.tf", old, new)
    assert any(expected in p for p in checks.version_pins(tree, interfaces))


def test_iam_policies_allow_no_wildcards() -> None:
    assert checks.iam_wildcards(TERRAFORM) == []


def test_a_wildcard_action_is_found(tree: Path) -> None:
    edit(
        tree / "modules" / "identity" / "main.tf",
        'actions   = ["s3:GetObject"]',
        'actions   = ["s3:*"]',
    )
    assert any("allows action 's3:*'" in p for p in checks.iam_wildcards(tree))


def module_arguments(env: str, name: str) -> dict[str, Any]:
    return {
        key: unquote(value)
        for key, value in TerraformDir.read(TERRAFORM / "envs" / env).calls[name].arguments.items()
    }


def test_production_keeps_its_data() -> None:
    """What a copy-paste from staging must not bring into production."""
    database = module_arguments("production", "database")
    assert database["deletion_protection"] is True
    assert database["multi_az"] is True
    assert database["backup_retention_days"] >= 30
    assert module_arguments("production", "lake")["force_destroy"] is False


def test_envs_compose_the_same_modules() -> None:
    staging, production = (
        TerraformDir.read(TERRAFORM / "envs" / env) for env in ("staging", "production")
    )
    assert {n: c.source for n, c in staging.calls.items()} == {
        n: c.source for n, c in production.calls.items()
    }
    assert staging.outputs.keys() == production.outputs.keys()
    # One set of pins and one provider setup: a provider bumped in staging is bumped in
    # production by the same change.
    for name in ("versions.tf", "providers.tf"):
        assert staging.texts[staging.path / name] == production.texts[production.path / name]


def test_gpu_group_scales_from_zero_with_its_taint_and_label() -> None:
    """The GPU node group's taint, the autoscaler's node-template tags and the device
    plugin's node selector all name the same label and taint."""
    eks = TerraformDir.read(TERRAFORM / "modules" / "eks")
    main = eks.texts[TERRAFORM / "modules" / "eks" / "main.tf"]
    gpu = eks.calls["eks"].arguments["eks_managed_node_groups"]["gpu"]
    assert unquote(gpu["ami_type"]) == "AL2023_x86_64_NVIDIA"
    assert gpu["min_size"] == 0
    assert 'key    = "nvidia.com/gpu"' in main and 'effect = "NO_SCHEDULE"' in main
    assert "k8s.io/cluster-autoscaler/node-template/taint/" in main
    assert "k8s.io/cluster-autoscaler/node-template/label/" in main
    addons = TerraformDir.read(TERRAFORM / "modules" / "cluster-addons")
    plugin = next(b for t, n, b in addons.resources("resource") if n == "nvidia_device_plugin")
    assert "nodeSelector = var.gpu_node_labels" in addons.code()
    assert unquote(plugin["chart"]) == "nvidia-device-plugin"


def test_helm_releases_are_pinned() -> None:
    addons = TerraformDir.read(TERRAFORM / "modules" / "cluster-addons")
    releases = [(n, b) for t, n, b in addons.resources("resource") if t == "helm_release"]
    assert len(releases) == 3
    for name, release in releases:
        version = str(unquote(release["version"]))
        if version.startswith("${var."):
            version = str(unquote(addons.variables[version[len("${var.") : -1]]["default"]))
        assert checks.EXACT_VERSION.match(version), f"helm_release {name}: version {version!r}"


def test_every_module_folder_is_read() -> None:
    """Seven modules and two envs: a folder the checks did not find would pass unread."""
    found = {str(p.relative_to(TERRAFORM)) for p in checks.read_tree(TERRAFORM)}
    assert found == {
        "envs/production", "envs/staging", "modules/cluster-addons", "modules/database",
        "modules/eks", "modules/identity", "modules/lake", "modules/network", "modules/registry",
    }  # fmt: skip
