from __future__ import annotations

from pathlib import Path

from dedup.contracts.reasons import REASON_DESCRIPTIONS, RejectReason, reasons_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs" / "manifest.md"

REQUIRED_BY_THE_ISSUE = {
    "invalid_row",
    "duplicate_in_batch",
    "already_enrolled",
    "consent_missing",
    "photo_missing",
    "photo_outside_batch",
    "undecodable_image",
    "image_too_large",
    "no_face",
    "several_faces",
    "face_too_small",
    "quality_below_threshold",
}


def test_every_required_reason_exists_and_is_described() -> None:
    assert {r.value for r in RejectReason} >= REQUIRED_BY_THE_ISSUE
    assert set(REASON_DESCRIPTIONS) == set(RejectReason)


def test_documentation_holds_the_generated_table() -> None:
    assert reasons_markdown() in DOCS.read_text(encoding="utf-8")
