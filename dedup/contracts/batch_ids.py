"""Batch ids: every job of a night is keyed by one, and it names the batch's work folders."""

from __future__ import annotations

import re

from dedup.errors import ManifestError

BATCH_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_batch_id(batch_id: str) -> str:
    """A batch id names folders and keys rows, so it is held to a safe alphabet.

    >>> check_batch_id("2026-12-01")
    '2026-12-01'
    """
    if not BATCH_ID.fullmatch(batch_id) or batch_id in (".", ".."):
        raise ManifestError(
            f"batch id {batch_id!r} must be 1 to 64 of A-Z a-z 0-9 _ . - (it names folders)"
        )
    return batch_id
