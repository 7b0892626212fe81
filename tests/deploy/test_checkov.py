"""checkov over the deployment code, blocking: a failed check fails the test and is listed.

checkov runs from its own virtualenv (scripts/install-tf-tools), offline: ``--skip-download``
(no Prisma Cloud API), ``--download-external-modules false`` (registry modules are not
fetched, so checkov scans the resources written here and the arguments of each module call,
not the resources inside terraform-aws-modules; docs/operations.md says which those are).
A skip is a ``#checkov:skip=CKV_...:reason`` comment beside its resource; the reasons are
held to say something.

Each folder of TARGETS is scanned with options of its own: the chart is rendered with the
``helm`` scripts/install-helm caches (put first on checkov's PATH), from the values every
install gives (required-values.yaml) and an image pinned by digest (checkov-values.yaml).
A skip is a ``checkov.io/skipN`` annotation on its object, or, for the whole chart, in the
chart's options below with its reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.terraform_config import ROOT
from tests.deploy.test_terraform import TOOLS, require_tool

CHECKOV = TOOLS / "checkov" / "bin" / "checkov"

# (framework, folder relative to the repository, checkov options): one checkov run each.
TARGETS: list[tuple[str, str, list[str]]] = [
    ("terraform", "infra/terraform", ["--download-external-modules", "false"]),
    (
        "helm",
        "helm/dedup",
        [
            "--var-file", "tests/deploy/required-values.yaml",
            "--var-file", "tests/deploy/checkov-values.yaml",
            # Skipped for the whole chart, each for its reason:
            # CKV_K8S_21 (the default namespace): the objects go to the release's namespace
            #   (helm install -n); checkov renders without one, so it sees "default".
            # CKV_K8S_15 (pull policy Always): images are pinned by digest or by an immutable
            #   tag (ECR's IMMUTABLE), so IfNotPresent runs the same bytes, and a registry
            #   outage does not stop pods from starting.
            # CKV_K8S_35 (secrets as files): the database URL is the one secret, read by
            #   dedup's settings from DEDUP_ADJUDICATION__DATABASE_URL through secretKeyRef;
            #   the settings have no file form of it yet (docs/operations.md says so).
            "--skip-check", "CKV_K8S_21,CKV_K8S_15,CKV_K8S_35",
        ],
    ),
]  # fmt: skip

SKIP_COMMENT = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?$", re.MULTILINE)


def run_checkov(framework: str, folder: Path, options: list[str]) -> dict[str, Any]:
    result = subprocess.run(
        [
            str(require_tool(CHECKOV)),
            "--directory",
            str(folder),
            "--framework",
            framework,
            "--output",
            "json",
            "--skip-download",
            "--quiet",
            *options,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        cwd=ROOT,
        # The cached tools first: checkov's helm framework renders a chart with `helm`
        # (scripts/install-helm builds it into the same folder).
        env={**os.environ, "PATH": f"{TOOLS / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    # 0: all passed; 1: some check failed (the report says which); anything else: checkov broke.
    assert result.returncode in (0, 1), (
        f"checkov exited {result.returncode}: {result.stderr[-3000:]}"
    )
    report = json.loads(result.stdout)
    # One framework gives one report; checkov gives a list when it ran several.
    reports = report if isinstance(report, list) else [report]
    assert len(reports) == 1, [r.get("check_type") for r in reports]
    scanned: dict[str, Any] = reports[0]
    return scanned


@pytest.mark.parametrize(("framework", "folder", "options"), TARGETS)
def test_checkov_passes(framework: str, folder: str, options: list[str]) -> None:
    report = run_checkov(framework, ROOT / folder, options)
    summary = report["summary"]
    assert summary["resource_count"] > 0, f"checkov scanned nothing in {folder}"
    assert summary["parsing_errors"] == 0, report["results"]["parsing_errors"]
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']}"
        f" ({c['file_path']}:{c['file_line_range'][0]})"
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed:\n" + "\n".join(failed)


@pytest.mark.parametrize(("framework", "folder", "options"), TARGETS)
def test_every_skip_says_why(framework: str, folder: str, options: list[str]) -> None:
    skips = []
    for file in sorted((ROOT / folder).rglob("*")):
        if file.is_file() and file.suffix in {".tf", ".yaml", ".yml", ".tpl"}:
            text = file.read_text(encoding="utf-8")
            skips += [(file, check, reason) for check, reason in SKIP_COMMENT.findall(text)]
    unexplained = [
        f"{file.relative_to(ROOT)}: {check}"
        for file, check, reason in skips
        if len(reason.split()) < 5
    ]
    assert not unexplained, f"skips without a reason of a few words: {unexplained}"


def test_checkov_finds_a_planted_weakness(tmp_path: Path) -> None:
    """The run can fail: a bucket without its public access block and encryption is reported."""
    (tmp_path / "main.tf").write_text(
        'resource "aws_s3_bucket" "open" {\n  bucket = "dedup-checkov-probe"\n}\n', encoding="utf-8"
    )
    report = run_checkov("terraform", tmp_path, [])
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert "CKV2_AWS_6" in failed  # no public access block
