"""A released migration is never edited: a schema change is a new revision.

Every file under the review database's ``migrations/versions/`` is pinned by its sha256 in
``released_migrations.json``, beside this test. A database migrated by a released revision
never runs it again, so an edit to one would leave existing databases on a schema the code
no longer describes. (That the migrations produce the declared tables is held by
``tests/integration/test_review_migrations.py``.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dedup.adjudication.database import MIGRATIONS
from dedup.atomic_files import sha256_file

VERSIONS = MIGRATIONS / "versions"
MANIFEST = Path(__file__).with_name("released_migrations.json")


def broken_promises(versions: Path, pinned: dict[str, str]) -> list[str]:
    """What differs between the revisions in ``versions`` and their pinned hashes."""
    found = {path.name: sha256_file(path) for path in sorted(versions.glob("*.py"))}
    problems = [
        f"{name} was edited after its release: put it back as it was released and write "
        "the schema change as a new revision (a new file under migrations/versions/)"
        for name, digest in sorted(pinned.items())
        if name in found and found[name] != digest
    ]
    problems += [
        f"{name} was released and is gone: a released migration stays, a schema change is a "
        "new revision"
        for name in sorted(set(pinned) - set(found))
    ]
    problems += [
        f"{name} is a new revision: pin it in {MANIFEST.name} with its sha256 "
        f"({found[name]}) as it is released; from then on it is never edited"
        for name in sorted(set(found) - set(pinned))
    ]
    return problems


def test_released_migrations_are_never_edited() -> None:
    pinned = json.loads(MANIFEST.read_text(encoding="utf-8"))
    assert "0001_initial.py" in pinned
    assert broken_promises(VERSIONS, pinned) == []


def test_the_check_names_an_edited_a_removed_and_an_unpinned_revision(tmp_path: Path) -> None:
    pinned = json.loads(MANIFEST.read_text(encoding="utf-8"))
    copy = tmp_path / "versions"
    shutil.copytree(VERSIONS, copy)
    assert broken_promises(copy, pinned) == []
    with (copy / "0001_initial.py").open("a", encoding="utf-8") as edited:
        edited.write("# a column added in place\n")
    (copy / "0002_more.py").write_text("revision = '0002'\n", encoding="utf-8")
    found = broken_promises(copy, {**pinned, "0000_gone.py": "0" * 64})
    assert len(found) == 3
    assert found[0].startswith("0001_initial.py was edited") and "new revision" in found[0]
    assert found[1].startswith("0000_gone.py was released and is gone")
    assert found[2].startswith("0002_more.py is a new revision: pin it")
