"""The case page and the compare view over HTTP (in-process), on SQLite and PostgreSQL: one
block per candidate identity, in rank order while scores are hidden and in score order once
they show; the compare view's roster, its position and its hostile parameters; the decision
form's preselected capture."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from dedup.adjudication import audit_store, database
from dedup.adjudication.tables import CaseCandidate
from tests.review_support import ReviewWorld, b64, png

PROBE = "P-1"
# (candidate, identity, score, rank): ranks that disagree with scores; the identity I-Y has
# two captures. Import ranks a case's candidates by score, so the ranks are set afterwards,
# in the database: the pages must order by rank whatever the ranks are.
ROWS = (("C-X", None, 0.90, 1), ("C-Y2", "I-Y", 0.80, 2), ("C-Y1", "I-Y", 0.95, 3))
HIDDEN_ORDER = ["C-X", "I-Y"]
SCORE_ORDER = ["I-Y", "C-X"]


def payload() -> dict[str, Any]:
    chip = {"chip": {"media_type": "image/png", "data_base64": b64(png())}}
    return {
        "model_id": "dlib-resnet-v1",
        "candidates": [
            {
                "probe_id": PROBE,
                "candidate_id": c,
                "score": s,
                "rank": r,
                "source": "gallery",
                "identity_id": i,
            }
            for c, i, s, r in ROWS
        ],
        "subjects": [{"enrollment_id": e, "images": chip} for e in (PROBE, *(r[0] for r in ROWS))],
    }


def holding(world: ReviewWorld) -> tuple[TestClient, str, str]:
    """Ann's client, the case she claimed and its lease token."""
    answer = world.client("operator").post("/api/v1/batches/B1/candidates", json=payload())
    assert answer.status_code == 200, answer.text
    with database.sessions(world.engine)() as db, db.begin():
        for candidate, _, _, rank in ROWS:
            db.execute(
                update(CaseCandidate)
                .where(CaseCandidate.candidate_id == candidate)
                .values(rank=rank)
            )
    ann = world.client("ann")
    case = ann.post("/api/v1/cases/claim").json()
    return ann, case["case_id"], case["lease_token"]


def case_views(world: ReviewWorld) -> list[str]:
    """The targets of ann's case views, oldest first."""
    with database.sessions(world.engine)() as db:
        found = audit_store.search(db, actor="ann", action="case.view", limit=100)
    return [e.target for e in sorted(found, key=lambda e: e.seq)]


def identity_order(html: str) -> list[str]:
    return re.findall(r'<section class="identity"[^>]* data-identity="([^"]+)"', html)


def roster(html: str) -> list[dict[str, Any]]:
    found = re.search(r'<script type="application/json" id="roster">(.*?)</script>', html, re.S)
    assert found, "no roster in the compare view"
    data: list[dict[str, Any]] = json.loads(found.group(1))
    return data


def position(html: str) -> tuple[int, int]:
    found = re.search(r'data-at="(\d+)" data-capture="(\d+)"', html)
    assert found
    return int(found.group(1)), int(found.group(2))


def checked(html: str) -> list[str]:
    return re.findall(r'value="([^"]+)"\s+data-key="[^"]*" data-candidate="[^"]*"\s+'
                      r'(?:autofocus)?\s+checked', html)  # fmt: skip


def test_the_case_page_shows_identities_in_rank_order_until_the_scores_show(
    world: ReviewWorld,
) -> None:
    ann, case_id, token = holding(world)
    blind = ann.get(f"/cases/{case_id}").text
    assert identity_order(blind) == HIDDEN_ORDER
    assert not re.search(r"0\.(900|800|950)", blind)
    # Both captures of I-Y in one block, in rank order; one radio per capture.
    block = blind.split('data-identity="I-Y"', 1)[1].split("</section>", 1)[0]
    assert re.findall(r'<p class="eid">([^<]+)</p>', block) == ["C-Y2", "C-Y1"]
    assert blind.count('name="choice" value="duplicate:') == 3

    form = {"lease_token": token, "choice": "duplicate:C-Y1"}
    assert ann.post(f"/cases/{case_id}/blind", data=form, follow_redirects=False).status_code == 303
    shown = ann.get(f"/cases/{case_id}").text
    assert identity_order(shown) == SCORE_ORDER
    block = shown.split('data-identity="I-Y"', 1)[1].split("</section>", 1)[0]
    assert re.findall(r'<p class="eid">([^<]+)</p>', block) == ["C-Y1", "C-Y2"]
    assert checked(shown) == ["duplicate:C-Y1"]  # the blind choice is kept


def test_the_compare_view_lists_identities_as_the_case_page_does_and_is_audited(
    world: ReviewWorld,
) -> None:
    ann, case_id, _ = holding(world)
    before = case_views(world)
    answer = ann.get(f"/cases/{case_id}/compare")
    assert answer.status_code == 200
    page = answer.text
    assert [g["identity"] for g in roster(page)] == HIDDEN_ORDER
    assert [[c["id"] for c in g["captures"]] for g in roster(page)] == [["C-X"], ["C-Y2", "C-Y1"]]
    assert {c["score"] for g in roster(page) for c in g["captures"]} == {""}
    assert not re.search(r"0\.(900|800|950)", page)
    assert '<script src="/static/compare.js" defer></script>' in page
    assert position(page) == (0, 0)
    assert case_views(world) == [*before, f"case:{case_id}"]

    # Opened at a capture; an id that is not a candidate of the case opens at the first.
    assert position(ann.get(f"/cases/{case_id}/compare?candidate=C-Y1").text) == (1, 1)
    assert position(ann.get(f"/cases/{case_id}/compare?candidate={PROBE}").text) == (0, 0)
    assert ann.get(f"/cases/{case_id}/compare?candidate={'x' * 200}").status_code == 422
    hostile = ann.get(f"/cases/{case_id}/compare?candidate=%3Cscript%3E").text
    assert "<script>" not in hostile and position(hostile) == (0, 0)


def test_the_case_page_preselects_the_capture_chosen_in_the_compare_view(
    world: ReviewWorld,
) -> None:
    ann, case_id, _ = holding(world)
    assert checked(ann.get(f"/cases/{case_id}?choose=C-Y1").text) == ["duplicate:C-Y1"]
    assert checked(ann.get(f"/cases/{case_id}?choose={PROBE}").text) == []
    assert checked(ann.get(f"/cases/{case_id}").text) == []
    assert ann.get(f"/cases/{case_id}?choose={'x' * 200}").status_code == 422
