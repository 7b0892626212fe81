"""The real portraits the demo and the tests may use, fetched once into the local cache.

The project ships no face photos of its own. The only real faces it uses are the seven test
images inside the ``face_recognition==1.3.0`` source distribution on PyPI (White House
photographs of two public figures, already public test data of a widely used library). They
are fetched with ``pip download`` so that the usual package-index settings (proxy, mirror,
``PIP_INDEX_URL``) apply, and pinned by sha256 so that a changed or corrupted file is caught.

    >>> folder = fetch_portraits()          # doctest: +SKIP
    >>> sorted(p.name for p in folder.iterdir())[:2]  # doctest: +SKIP
    ['32bit.png', 'biden.jpg']
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from dedup.atomic_files import sha256_file
from dedup.errors import DependencyError
from dedup.settings import default_cache_dir

SDIST_REQUIREMENT = "face-recognition==1.3.0"
SDIST_ROOT = "face_recognition-1.3.0"
_MEMBER_PREFIX = PurePosixPath(SDIST_ROOT, "tests", "test_images")
_IMAGE_SUFFIXES = (".jpg", ".png")

# sha256 of every file we keep, computed from the published 1.3.0 sdist.
PORTRAIT_SHA256: dict[str, str] = {
    "32bit.png": "44dca895a7d635a4aedddd91a4f37af9a8a5b44e66154282a24645a757b5f627",
    "biden.jpg": "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
    "obama.jpg": "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
    "obama2.jpg": "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
    "obama3.jpg": "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3",
    "obama_partial_face.jpg": "c2d1f09e7ef3042352b41e41286e6eb0522f64f88308be13886991b95db52117",
    "obama_partial_face2.jpg": "9a812347f97633542b8cd9992de22def11b74f79d82056bc3ee830f13878e028",
}

# Who is in each photo: the ground truth the matching evaluation scores against.
# 32bit.png is obama2.jpg saved as RGBA; obama_partial_face.jpg has the face cut by the left
# edge of the frame.
PORTRAIT_IDENTITIES: dict[str, str] = {
    "biden.jpg": "biden",
    "obama.jpg": "obama",
    "obama2.jpg": "obama",
    "obama3.jpg": "obama",
    "obama_partial_face.jpg": "obama",
    "obama_partial_face2.jpg": "obama",
    "32bit.png": "obama",
}


def portraits_dir(cache_dir: Path | None = None) -> Path:
    """Where ``fetch_portraits`` keeps the photos (whether or not they are there yet)."""
    return (cache_dir or default_cache_dir()) / "portraits" / SDIST_ROOT


def fetch_portraits(cache_dir: Path | None = None) -> Path:
    """Return the folder holding the seven pinned portraits, fetching them from PyPI once.

    A folder already in place whose files all match ``PORTRAIT_SHA256`` is returned without
    touching the network. Otherwise the sdist is downloaded, the images are extracted into a
    temporary sibling folder, checked, and renamed into place, so that a crash half-way never
    leaves a folder that looks complete.
    """
    target = portraits_dir(cache_dir)
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as work:
        archive = _download_sdist(Path(work) / "download")
        staging = Path(work) / SDIST_ROOT
        _extract_images(archive, staging)
        _check_hashes(staging)
        if target.exists():  # an incomplete or altered copy: replace it as a whole
            shutil.rmtree(target)
        os.replace(staging, target)
    return target


def _is_complete(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    return all(
        (folder / name).is_file() and sha256_file(folder / name) == digest
        for name, digest in PORTRAIT_SHA256.items()
    )


def _download_sdist(dest: Path) -> Path:
    dest.mkdir(parents=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-binary",
        ":all:",
        "--no-deps",
        "--disable-pip-version-check",
        SDIST_REQUIREMENT,
        "-d",
        str(dest),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DependencyError(
            f"could not run pip to fetch the demo portraits ({SDIST_REQUIREMENT}): {exc}"
        ) from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise DependencyError(
            f"pip could not download {SDIST_REQUIREMENT} (the source of the demo portraits); "
            "PyPI, or the index set in PIP_INDEX_URL, must be reachable. pip said: "
            + " | ".join(tail)
        )
    archives = sorted(dest.glob(f"{SDIST_ROOT}.tar.gz"))
    if not archives:
        raise DependencyError(
            f"pip ran but left no {SDIST_ROOT}.tar.gz in {dest}; "
            "check that the package index serves the source distribution"
        )
    return archives[0]


def _extract_images(archive: Path, staging: Path) -> None:
    """Copy out only the test images, refusing any member that could land elsewhere."""
    staging.mkdir()
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            name = PurePosixPath(member.name)
            if name.is_absolute() or ".." in name.parts:
                raise DependencyError(
                    f"{archive.name} holds an unsafe member path {member.name!r}; refusing it"
                )
            if name.parent != _MEMBER_PREFIX or name.suffix.lower() not in _IMAGE_SUFFIXES:
                continue
            if not member.isfile():
                raise DependencyError(f"{archive.name}: {member.name} is not a regular file")
            source = tar.extractfile(member)
            if source is None:
                raise DependencyError(f"{archive.name}: cannot read {member.name}")
            with source, (staging / name.name).open("wb") as out:
                shutil.copyfileobj(source, out)


def _check_hashes(folder: Path) -> None:
    wrong = [
        name
        for name, digest in PORTRAIT_SHA256.items()
        if not (folder / name).is_file() or sha256_file(folder / name) != digest
    ]
    if wrong:
        raise DependencyError(
            f"the downloaded {SDIST_REQUIREMENT} does not hold the pinned portraits "
            f"(missing or altered: {', '.join(wrong)}); the package index may serve a "
            "different file"
        )
