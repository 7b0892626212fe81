"""The case pages: the case (the probe beside every candidate identity, with the decision
form), the compare view (the probe beside one candidate identity, large enough to compare on
a laptop screen), the case's images and the decision forms.

Both views of a case have the same access rule (the holder of the case or a supervisor) and
are audited alike (``operations.view_case``); every image fetch is audited on its own.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from dedup.adjudication import operations, queue
from dedup.adjudication.access import Permission
from dedup.adjudication.accounts import Principal
from dedup.adjudication.cases import CaseState, Judgement
from dedup.adjudication.views import IdentityGroup, SubjectView
from dedup.adjudication.web.guards import acting, require
from dedup.adjudication.web.rendering import Reason, Text, render, see_other

router = APIRouter(include_in_schema=False)

Viewer = Annotated[Principal, Depends(require(Permission.REVIEW, Permission.SUPERVISE))]
Chosen = Annotated[str, Query(max_length=128)]
Choice = Annotated[str, Form(max_length=200)]


@router.get("/cases/{case_id}")
def case_page(case_id: str, request: Request, principal: Viewer, choose: Chosen = "") -> Response:
    """The case; ``choose`` (a candidate's id, as the compare view sends it) preselects that
    candidate in the decision form."""
    context, actor = acting(request, principal)
    view = operations.view_case(context, actor, case_id)
    holding = queue.holds(view.row, actor.username, context.now())
    scores = operations.scores_visible(context, actor, view)
    chosen = choose if any(c.subject.enrollment_id == choose for c in view.candidates) else None
    return render(
        request,
        "case.html",
        principal,
        view=view,
        identities=view.shown_identities(scores),
        holding=holding,
        scores=scores,
        supervising=not holding and view.row.state == CaseState.ESCALATED,
        chosen=chosen,
    )


@router.get("/cases/{case_id}/compare")
def compare_page(
    case_id: str, request: Request, principal: Viewer, candidate: Chosen = ""
) -> Response:
    """The probe beside one candidate identity (``candidate``: one of its captures; the first
    identity when absent). The page steps through identities and captures with the arrow keys
    without reloading; the links do the same without script."""
    context, actor = acting(request, principal)
    view = operations.view_case(context, actor, case_id)
    scores = operations.scores_visible(context, actor, view)
    identities = view.shown_identities(scores)
    roster = compare_roster(case_id, identities, scores)
    at, capture = _position(identities, candidate)
    return render(
        request,
        "compare.html",
        principal,
        view=view,
        probe=picture(case_id, view.probe, "Probe"),
        roster=roster,
        at=at,
        capture=capture,
        scores=scores,
    )


def _position(identities: tuple[IdentityGroup, ...], candidate: str) -> tuple[int, int]:
    """(identity, capture) indexes of the capture named ``candidate``; (0, 0) if none is."""
    for i, group in enumerate(identities):
        for k, c in enumerate(group.captures):
            if c.subject.enrollment_id == candidate:
                return i, k
    return 0, 0


def picture(case_id: str, subject: SubjectView, label: str) -> dict[str, Any]:
    """What the compare view shows of one subject: its aligned chip (the photo when it has no
    chip), its id and a one-line summary of its display fields and capture."""
    kind = "chip" if "chip" in subject.images else ("photo" if "photo" in subject.images else "")
    fields = [v for _, v in sorted(subject.display.items())]
    if subject.captured_at is not None:
        fields.append(subject.captured_at.strftime("%Y-%m-%d"))
    if subject.center_id:
        fields.append(subject.center_id)
    return {
        "id": subject.enrollment_id,
        "label": label,
        "src": f"/cases/{case_id}/images/{subject.enrollment_id}/{kind}" if kind else "",
        "kind": kind,
        "summary": " · ".join(fields),
    }


def compare_roster(
    case_id: str, identities: tuple[IdentityGroup, ...], scores: bool
) -> list[dict[str, Any]]:
    """The candidate identities in page order, each with its captures; scores only when they
    are visible (a hidden score is not in the page at all)."""
    roster = []
    for i, group in enumerate(identities, start=1):
        count = len(group.captures)
        captures = [
            {
                **picture(case_id, c.subject, _capture_label(i, k, count)),
                "score": f"{c.score:.3f}" if scores else "",
            }
            for k, c in enumerate(group.captures, start=1)
        ]
        roster.append({"label": f"Candidate {i}", "identity": group.identity_id,
                       "captures": captures})  # fmt: skip
    return roster


def _capture_label(identity: int, capture: int, captures: int) -> str:
    if captures == 1:
        return f"Candidate {identity}"
    return f"Candidate {identity}, capture {capture} of {captures}"


@router.get("/cases/{case_id}/images/{enrollment_id}/{kind}")
def case_image(
    case_id: str, enrollment_id: str, kind: str, request: Request, principal: Viewer
) -> Response:
    found = operations.view_image(*acting(request, principal), case_id, enrollment_id, kind)
    if found is None:
        return Response(status_code=404)
    return Response(found.data, media_type=found.media_type)


def _form_judgement(principal: Principal, choice: str, reason: str | None) -> Judgement | None:
    """The judgement a case form carries; None when no outcome was chosen."""
    outcome, duplicate_of = _choice(choice)
    if not outcome:
        return None
    return operations.judgement_from(principal.username, outcome, duplicate_of, reason)


def _choice(choice: str) -> tuple[str, str | None]:
    """A form's outcome field: ``not_duplicate``, ``cannot_decide`` or ``duplicate:<id>``."""
    if choice.startswith("duplicate:"):
        return "duplicate", choice.split(":", 1)[1]
    if choice in ("not_duplicate", "cannot_decide"):
        return choice, None
    return "", None


@router.post("/cases/{case_id}/blind")
def blind_form(
    case_id: str,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.REVIEW))],
    lease_token: Text,
    choice: Choice = "",
    reason: Reason = None,
) -> Response:
    judgement = _form_judgement(principal, choice, reason)
    if judgement is not None:
        operations.record_blind(*acting(request, principal), case_id, lease_token, judgement)
    return see_other(f"/cases/{case_id}")


@router.post("/cases/{case_id}/decide")
def decide_form(
    case_id: str,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.REVIEW))],
    lease_token: Text,
    choice: Choice = "",
    reason: Reason = None,
) -> Response:
    judgement = _form_judgement(principal, choice, reason)
    if judgement is None:
        return see_other(f"/cases/{case_id}")
    state = operations.judge(*acting(request, principal), case_id, lease_token, judgement)
    return render(request, "decided.html", principal, case_id=case_id, state=state.value)


@router.post("/cases/{case_id}/supervise")
def supervise_form(
    case_id: str,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.SUPERVISE))],
    choice: Choice = "",
    reason: Reason = None,
) -> Response:
    outcome, duplicate_of = _choice(choice)
    if outcome not in ("duplicate", "not_duplicate"):
        return see_other(f"/cases/{case_id}")
    judgement = operations.judgement_from(principal.username, outcome, duplicate_of, reason)
    operations.supervise(*acting(request, principal), case_id, judgement)
    return see_other("/supervisor")
