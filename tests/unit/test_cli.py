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


@pytest.mark.parametrize("name", ["[/]", "[night]", "[bold red]x[/]", "\\[", "a" * 150])
def test_an_error_prints_the_user_s_text_as_it_is_on_one_line(tmp_path: Path, name: str) -> None:
    """Paths and ids reach the console: no markup is read in them, no line is wrapped."""
    folder = tmp_path / name
    folder.mkdir(parents=True)
    manifest = folder / "manifest.csv"
    result = runner.invoke(
        app, ["stage", "--batch-id", "b1", "--manifest", str(manifest), "--lake", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1
    assert result.output.startswith("error: ") and str(manifest) in result.output


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
