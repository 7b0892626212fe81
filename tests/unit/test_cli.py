from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dedup.contracts.reasons import RejectReason, reasons_markdown
from pipelines.cli import app

runner = CliRunner()


def test_reasons_lists_every_code_in_check_order() -> None:
    result = runner.invoke(app, ["reasons", "--markdown"])
    assert result.exit_code == 0
    assert reasons_markdown() in result.output
    positions = [result.output.index(f"`{r.value}`") for r in RejectReason]
    assert positions == sorted(positions)


def test_config_prints_the_effective_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEDUP_SPARK__MASTER", "spark://cluster:7077")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0
    assert json.loads(result.output)["spark"]["master"] == "spark://cluster:7077"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-id", "../evil", "--manifest", "m.csv"], "batch id"),
        (["--batch-id", "b1", "--manifest", "absent.csv"], "does not exist"),
    ],
)
def test_stage_refuses_bad_arguments_before_starting_spark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["stage", *args, "--lake", str(tmp_path / "lake")])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "lake").exists()


def test_bad_settings_file_is_a_one_line_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("spark:\n  shuffle_partitions: -1\n", encoding="utf-8")
    result = runner.invoke(app, ["config", "--config", str(config)])
    assert result.exit_code == 2
    assert "spark.shuffle_partitions" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-id", "bad id!"], "batch id"),
        (["--batch-id", "b1", "--threshold", "0.9", "--target-fpir", "0.01"], "not both"),
        (["--batch-id", "b1"], "dedup stage"),
    ],
)
def test_match_refuses_bad_arguments_and_unstaged_batches(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["match", *args, "--lake", str(tmp_path / "lake")])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "lake" / "candidates").exists()
