"""Demo data for the review service: accounts for every role (two adjudicators for four eyes),
and synthetic review batches for tests and benchmarks.

Demo accounts:

Created once per demo folder with random passwords and TOTP secrets, kept in
``review-accounts.json`` there (readable by its owner only), and printed so that someone
trying the demo can log in. Demo only: real accounts are created with ``dedup users add``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
from pathlib import Path
from typing import Any

from PIL import Image

from dedup.adjudication import operations
from dedup.adjudication.access import Actor, Role
from dedup.adjudication.context import opened
from dedup.atomic_files import write_bytes_atomically
from dedup.contracts.schemas import CandidateSource
from dedup.settings import Settings

DEMO_USERS = (
    ("adjudicator-1", Role.ADJUDICATOR),
    ("adjudicator-2", Role.ADJUDICATOR),
    ("supervisor", Role.SUPERVISOR),
    ("auditor", Role.AUDITOR),
    ("operator", Role.OPERATOR),
    ("admin", Role.ADMIN),
)


def demo_accounts(settings: Settings, workdir: Path) -> str:
    """Create the demo accounts if needed; a text telling how to log in as each."""
    path = workdir / "review-accounts.json"
    known: dict[str, dict[str, str]] = (
        json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    )
    demo = Actor.local("demo", Role.ADMIN)
    with opened(settings) as context:
        present = {user.username for user in operations.users(context)}
        for name, role in DEMO_USERS:
            if name in present:
                continue  # made before (or outside the demo): left as it is
            password = secrets.token_urlsafe(12)
            secret = operations.create_user(context, demo, name, password, [role])
            known[name] = {"role": role.value, "password": password, "totp_secret": secret}
    write_bytes_atomically(path, json.dumps(known, indent=2, sort_keys=True).encode("utf-8"))
    os.chmod(path, 0o600)
    lines = [
        f"demo accounts (also in {path}); the code is the TOTP of the secret, as an "
        "authenticator app shows it, or `dedup users totp SECRET`:"
    ]
    for name, _ in DEMO_USERS:
        if name in known:
            entry = known[name]
            lines.append(
                f"  {name:14} password {entry['password']}  TOTP secret {entry['totp_secret']}"
            )
    return "\n".join(lines)


def swatch_png(shade: int = 120, side: int = 64) -> bytes:
    """A plain square PNG standing in for a face chip (synthetic queues carry no faces)."""
    out = io.BytesIO()
    Image.new("RGB", (side, side), (shade, 90, 60)).save(out, "PNG")
    return out.getvalue()


def synthetic_review_batch(
    probes: int, candidates_per_probe: int = 2, prefix: str = "P", images: bool = True
) -> dict[str, Any]:
    """An import body (``BatchImport`` shape): ``probes`` probes, each with its own gallery
    candidates and plausible display fields; for tests and benchmarks of the review queue."""
    chip = base64.b64encode(swatch_png()).decode("ascii")

    def image() -> dict[str, dict[str, str]]:
        return {"chip": {"media_type": "image/png", "data_base64": chip}} if images else {}

    rows: list[dict[str, Any]] = []
    subjects: list[dict[str, Any]] = []
    for p in range(probes):
        probe = f"{prefix}{p:05d}"
        subjects.append(
            {
                "enrollment_id": probe,
                "captured_at": "2026-11-20T09:30:00Z",
                "center_id": "C-01",
                "display": {"given_name": "Ada", "family_name": f"Probe{p}"},
                "quality": {"inter_eye_px": 61.5, "sharpness": 80.0},
                "images": image(),
            }
        )
        for c in range(candidates_per_probe):
            candidate = f"G{prefix}{p:05d}-{c}"
            rows.append({"probe_id": probe, "candidate_id": candidate, "score": 0.97 - 0.01 * c,
                         "rank": c + 1, "source": CandidateSource.GALLERY})  # fmt: skip
            subjects.append({"enrollment_id": candidate, "images": image()})
    return {"model_id": "dlib-resnet-v1", "candidates": rows, "subjects": subjects}
