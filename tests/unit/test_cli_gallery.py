"""The operator's path through `dedup gallery`: synth, build, add, search, erase, verify."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from dedup.contracts.schemas import CANDIDATES
from dedup.gallery.reader import open_gallery
from pipelines.cli import app

runner = CliRunner()


def ok(*args: str) -> str:
    result = runner.invoke(app, ["gallery", *args])
    assert result.exit_code == 0, result.output
    return flat(result.output)


def flat(text: str) -> str:
    """The console wraps long lines; compare on single-spaced text."""
    return " ".join(text.split())


def synth_and_build(
    tmp_path: Path, *, n: int, dim: int, duplicates: int, probes: int, lists: int
) -> tuple[Path, Path]:
    """A synthetic set and a 2-shard gallery of it (IVF``lists``, PQ of dim/4 bytes)."""
    syn, gal = tmp_path / "syn", tmp_path / "gal"
    ok(
        "synth",
        "--n",
        str(n),
        "--dim",
        str(dim),
        "--duplicates",
        str(duplicates),
        "--probes",
        str(probes),
        "--out",
        str(syn),
    )
    ok(
        "build",
        "--templates",
        str(syn / "gallery.parquet"),
        "--out",
        str(gal),
        "--shards",
        "2",
        "--factory",
        f"IVF{lists},PQ{dim // 4}",
        "--model-id",
        "synthetic",
    )
    return syn, gal


def test_operator_path(tmp_path: Path) -> None:
    syn, gal = synth_and_build(tmp_path, n=3000, dim=32, duplicates=60, probes=300, lists=16)
    # the probes that are new people join the gallery; the same batch twice changes nothing
    added = ok(
        "add",
        "--gallery",
        str(gal),
        "--templates",
        str(syn / "probes.parquet"),
        "--batch-id",
        "night-1",
        "--model-id",
        "synthetic",
    )
    assert "3300 live templates" in added
    assert "version 2" in added
    again = ok(
        "add",
        "--gallery",
        str(gal),
        "--templates",
        str(syn / "probes.parquet"),
        "--batch-id",
        "night-1",
        "--model-id",
        "synthetic",
    )
    assert "version 2" in again

    out = tmp_path / "c.parquet"
    printed = ok(
        "search",
        "--gallery",
        str(gal),
        "--probes",
        str(syn / "probes.parquet"),
        "--out",
        str(out),
        "--engine",
        "exact",
        "--k",
        "5",
    )
    assert "engine exact" in printed
    assert "predicted false candidates" in printed
    calibrated = ok(
        "search",
        "--gallery",
        str(gal),
        "--probes",
        str(syn / "probes.parquet"),
        "--out",
        str(tmp_path / "f.parquet"),
        "--target-fpir",
        "0.01",
    )
    assert "(FPIR 0.01 at N = 3299)" in calibrated or "(FPIR 0.01 at N = 3300)" in calibrated
    candidates = pq.read_table(out)
    assert candidates.schema == CANDIDATES
    truth = pq.read_table(syn / "truth.parquet").to_pylist()
    gallery_truth = {(t["probe_id"], t["match_id"]) for t in truth if t["source"] == "gallery"}
    found = {(r["probe_id"], r["candidate_id"]) for r in candidates.to_pylist()}
    assert len(gallery_truth & found) >= 0.95 * len(gallery_truth)

    victim = next(iter(gallery_truth))[1]
    ok("erase", "--gallery", str(gal), "--enrollment-id", victim)
    config = tmp_path / "dedup.yaml"  # PQ8 on 32-d is coarse: re-score a longer shortlist
    config.write_text("search:\n  shortlist: 1000\n  audit_fraction: 0.5\n", encoding="utf-8")
    audited = ok(
        "search",
        "--gallery",
        str(gal),
        "--probes",
        str(syn / "probes.parquet"),
        "--out",
        str(out),
        "--engine",
        "ivfpq",
        "--k",
        "5",
        "--config",
        str(config),
    )
    assert "recall audit" in audited and "genuine band (>= 0.9000)" in audited
    assert "= 1.0000 (floor 0.99)" in audited
    assert victim not in pq.read_table(out)["candidate_id"].to_pylist()
    assert "ok:" in ok("verify", "--gallery", str(gal))


def test_verify_names_a_corrupt_shard(tmp_path: Path) -> None:
    _, gal = synth_and_build(tmp_path, n=2000, dim=16, duplicates=10, probes=50, lists=8)
    [segment] = open_gallery(gal).manifest.segments
    shard = gal / segment.key("shard-00001.faiss")
    os.chmod(shard, 0o644)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = runner.invoke(app, ["gallery", "verify", "--gallery", str(gal)])
    assert result.exit_code == 2
    assert "shard-00001.faiss" in flat(result.output)


def test_unreadable_templates_are_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    result = runner.invoke(
        app, ["gallery", "build", "--templates", str(bad), "--out", str(tmp_path / "g")]
    )
    assert result.exit_code == 2
    assert "not a template file" in flat(result.output)
