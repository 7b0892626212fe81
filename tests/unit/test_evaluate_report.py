"""``dedup evaluate`` from the command line on a generated set: the files, their fields, a
short console, hostile labels shown as text, and every way the inputs can be wrong refused
with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dedup.evaluation.synthetic_groups import write_labelled_set
from pipelines.cli import app

runner = CliRunner()
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("labelled")
    write_labelled_set(folder, subjects=400, seed=1)
    labels = pq.read_table(folder / "labels.parquet")
    groups = [HOSTILE if g == "C" else g for g in labels["group"].to_pylist()]
    labels = labels.set_column(labels.column_names.index("group"), "group", [groups])
    pq.write_table(labels, folder / "labels.parquet")
    return folder


def run(folder: Path, out: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--templates",
            str(folder / "templates.parquet"),
            "--labels",
            str(folder / "labels.parquet"),
            "--out",
            str(out),
            "--gallery-sizes",
            "50,100",
            "--bootstrap",
            "10",
            *extra,
        ],
    )
    return result.exit_code, result.output


def test_evaluate_writes_the_report_and_prints_a_short_summary(
    labelled: Path, tmp_path: Path
) -> None:
    code, output = run(labelled, tmp_path)
    assert code == 0, output
    assert len(output.strip().splitlines()) <= 8
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert [p["fpir"] for p in report["fnir_at_fpir"]] == [0.001, 0.003, 0.01]
    for point in report["fnir_at_fpir"]:
        assert point["fnir_ci"][0] <= point["fnir"] <= point["fnir_ci"][1]
        assert point["fpir_observed"] <= point["fpir"]
    assert set(report["groups"]) == {"group", "age_band"}
    for rows in report["groups"].values():
        for g in rows:
            assert g["fmr_ci"][0] <= (g["fmr"] or 0) <= g["fmr_ci"][1]
    assert set(report["differentials"]["group"]) >= {
        "fmr_max_over_geomean",
        "fnmr_max_over_geomean",
    }
    assert report["group_threshold"]["fpir"] == 0.003
    assert [r["gallery_size"] for r in report["growth"]["rows"]] == [50, 100, 200]
    assert report["seed"] == 0 and report["bootstrap"]["replicates"] == 10
    assert any("fewer than 30 errors" in f for f in report["flags"])  # 200 searches: few


def test_the_page_shows_a_hostile_group_name_as_text(labelled: Path, tmp_path: Path) -> None:
    code, output = run(labelled, tmp_path)
    assert code == 0, output
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert page.count("data:image/png;base64,") == 3


def write(folder: Path, templates: pa.Table, labels: pa.Table) -> None:
    pq.write_table(templates, folder / "templates.parquet")
    pq.write_table(labels, folder / "labels.parquet")


def vectors(rows: list[list[float]]) -> pa.Array:
    return pa.array(rows, pa.list_(pa.float32()))


GOOD_LABELS = pa.table({"enrollment_id": ["a", "b"], "subject_id": ["s", "t"]})


@pytest.mark.parametrize(
    ("templates", "labels", "message"),
    [
        (pa.table({"enrollment_id": ["a", "b"]}), GOOD_LABELS, "no column 'vector'"),
        (
            pa.table({"id": ["a", "b"], "vector": vectors([[1, 0], [0, 1]])}),
            GOOD_LABELS,
            "no column 'enrollment_id'",
        ),
        (
            pa.table({"enrollment_id": ["a", "a"], "vector": vectors([[1, 0], [0, 1]])}),
            GOOD_LABELS,
            "appears more than once",
        ),
        (
            pa.table({"enrollment_id": ["a", "c"], "vector": vectors([[1, 0], [0, 1]])}),
            GOOD_LABELS,
            "are not in",
        ),
        (
            pa.table({"enrollment_id": ["a", "b"], "vector": vectors([[1, float("nan")], [0, 1]])}),
            GOOD_LABELS,
            "NaN or infinite",
        ),
        (
            pa.table({"enrollment_id": ["a", "b"], "vector": vectors([[1, 0], [0, 1, 0]])}),
            GOOD_LABELS,
            "mixed dimensions",
        ),
        (
            pa.table({"enrollment_id": ["a", "b"], "vector": vectors([[0, 0], [0, 1]])}),
            GOOD_LABELS,
            "all zeros",
        ),
        (
            pa.table({"enrollment_id": ["a", "b"], "vector": vectors([[1, 0], [0, 1]])}),
            pa.table({"enrollment_id": ["a", "b"]}),
            "no column 'subject_id'",
        ),
    ],
)
def test_bad_inputs_are_one_clear_line(
    tmp_path: Path, templates: pa.Table, labels: pa.Table, message: str
) -> None:
    write(tmp_path, templates, labels)
    code, output = run(tmp_path, tmp_path / "out")
    assert code == 2, output
    assert message in output
    assert not (tmp_path / "out" / "report.json").exists()


def test_arbitrary_bytes_are_refused_as_not_parquet(tmp_path: Path) -> None:
    (tmp_path / "templates.parquet").write_bytes(np.random.default_rng(0).bytes(4096))
    pq.write_table(GOOD_LABELS, tmp_path / "labels.parquet")
    code, output = run(tmp_path, tmp_path / "out")
    assert code == 2, output
    assert "not a readable Parquet file" in output
