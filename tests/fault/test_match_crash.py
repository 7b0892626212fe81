"""A match run that crashes, then runs again, leaves the candidates and the gallery that an
uninterrupted run leaves: crashes injected after the search's rows are written and after the
candidates are merged, for the batch that seeds the gallery and for the one searched against it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from dedup.crash_points import CRASH_AT_ENV
from dedup.errors import InjectedCrash
from dedup.gallery.reader import open_gallery
from dedup.settings import Settings
from tests.night_support import FIRST, SECOND, candidates, match

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.mark.parametrize("batch_id", [FIRST, SECOND])
@pytest.mark.parametrize("point", ["match.after_results", "match.after_candidates"])
def test_a_crash_then_a_rerun_leaves_what_an_uninterrupted_run_leaves(
    match_lake: Settings, tmp_path: Path, point: str, batch_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = match_lake.model_copy(
        update={"lake": str(tmp_path / "clean-lake"), "gallery": str(tmp_path / "clean-gallery")}
    )
    shutil.copytree(match_lake.lake, clean.lake)
    for name in (FIRST, SECOND):
        match(clean, name, ray=False)

    for name in (FIRST, SECOND):
        if name == batch_id:
            monkeypatch.setenv(CRASH_AT_ENV, point)
            with pytest.raises(InjectedCrash):
                match(match_lake, name, ray=False)
            monkeypatch.delenv(CRASH_AT_ENV)
        match(match_lake, name, ray=False)

    def without_times(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "matched_at"} for r in rows]

    assert without_times(candidates(match_lake)) == without_times(candidates(clean)) != []
    ours, theirs = open_gallery(Path(match_lake.gallery)), open_gallery(Path(clean.gallery))
    assert ours.ids_table()["enrollment_id"].to_pylist() == (
        theirs.ids_table()["enrollment_id"].to_pylist()
    )
    # The first batch builds version 1, the second (all of it) is added as version 2.
    assert ours.manifest.version == theirs.manifest.version == 2
