"""The JSON API (``/api/v1``): the pipeline imports candidates and exports decisions here,
and review clients claim and judge. Every route declares its permission; see ``access``."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse

from dedup.adjudication import audit_store, operations
from dedup.adjudication.access import Actor, Permission
from dedup.adjudication.accounts import Principal
from dedup.adjudication.cases import Judgement
from dedup.adjudication.context import Context
from dedup.adjudication.payloads import (
    BatchImport,
    CandidateOut,
    CaseOut,
    DecisionOut,
    DecisionsOut,
    EnrollmentId,
    ErasureIn,
    ErasureOut,
    ImportResult,
    JudgementIn,
    LoginIn,
    LoginOut,
    QueueOut,
    RevisionIn,
    SupervisionIn,
    UserIn,
    VerifyOut,
)
from dedup.adjudication.queue_metrics import CLAIM_SECONDS
from dedup.adjudication.review_stats import ScoreInfluence
from dedup.adjudication.views import CaseView
from dedup.adjudication.web.guards import acting, context_of, log_in, require, set_session_cookie

router = APIRouter(prefix="/api/v1", tags=["api"])

ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "not logged in"},
    403: {"description": "forbidden for this role or object (audited)"},
}
CaseId = Annotated[str, Query(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]


@router.post("/login", response_model=LoginOut, responses={401: {"description": "refused"}})
def login(body: LoginIn, request: Request, response: Response) -> LoginOut | JSONResponse:
    outcome = log_in(request, body.username, body.password, body.totp)
    if outcome.throttled:
        return JSONResponse({"detail": "too many attempts; wait a minute"}, status_code=429)
    if outcome.principal is None or outcome.session_token is None:
        return JSONResponse({"detail": "login refused"}, status_code=401)
    set_session_cookie(request, response, outcome.session_token)
    return LoginOut(
        username=outcome.principal.username,
        roles=sorted(r.value for r in outcome.principal.roles),
        csrf_token=outcome.principal.csrf_token or "",
    )


@router.post(
    "/batches/{batch_id}/candidates",
    response_model=ImportResult,
    responses={**ERRORS, 409: {"description": "the payload breaks a rule"}},
)
def import_candidates(
    batch_id: EnrollmentId,
    body: BatchImport,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.IMPORT_CANDIDATES))],
    part: Annotated[int, Query(ge=1, le=100_000)] = 1,
    parts: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> ImportResult:
    """Import a batch's candidates, whole or as part ``part`` of ``parts`` (a large batch
    does not fit one request). Each part holds whole probes (all of a probe's candidate
    rows) and the subjects they name. Sending a part again creates nothing."""
    return operations.import_candidates(*acting(request, principal), batch_id, body, part, parts)


@router.get("/decisions", response_model=DecisionsOut, responses=ERRORS)
def export_decisions(
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.EXPORT_DECISIONS))],
    batch_id: Annotated[str | None, Query(max_length=128)] = None,
) -> DecisionsOut:
    found = operations.export_decisions(*acting(request, principal), batch_id)
    rows = [
        DecisionOut(
            enrollment_id=d.enrollment_id,
            batch_id=d.batch_id,
            case_id=d.case_id,
            decision=None if d.final is None else d.final.outcome.value,
            duplicate_of=None if d.final is None else d.final.duplicate_of,
            state=d.state.value,
            decided_at=d.decided_at,
            decided_by=list(d.decided_by),
            revision=d.revision,
        )
        for d in found
    ]
    decided = sum(1 for r in rows if r.decision is not None)
    return DecisionsOut(
        batch_id=batch_id, decided=decided, pending=len(rows) - decided, decisions=rows
    )


@router.get("/queue", response_model=QueueOut, responses=ERRORS)
def queue_state(
    request: Request, _: Annotated[Principal, Depends(require(Permission.VIEW_QUEUE))]
) -> QueueOut:
    context = context_of(request)
    depth = operations.queue_depth(context)
    now = context.now()
    age = None if depth.oldest_open is None else (now - depth.oldest_open).total_seconds()
    return QueueOut(depth=depth.by_state, oldest_open_age_seconds=age)


def case_out(context: Context, actor: Actor, view: CaseView) -> CaseOut:
    visible = operations.scores_visible(context, actor, view)
    holding = view.row.lease_holder == actor.username
    return CaseOut(
        case_id=view.case_id,
        probe_id=view.row.probe_id,
        state=view.row.state,
        lease_token=view.row.lease_token if holding else None,
        lease_until=view.row.lease_until if holding else None,
        scores_hidden=not visible,
        candidates=[
            CandidateOut(
                candidate_id=c.subject.enrollment_id,
                rank=c.rank,
                source=c.source,
                score=c.score if visible else None,
            )
            for c in view.candidates
        ],
    )


def _judgement(actor: Actor, body: JudgementIn | SupervisionIn | RevisionIn) -> Judgement:
    return operations.judgement_from(actor.username, body.outcome, body.duplicate_of, body.reason)


@router.post(
    "/cases/claim",
    response_model=CaseOut,
    responses={**ERRORS, 204: {"description": "nothing to claim"}},
)
def claim(
    request: Request, principal: Annotated[Principal, Depends(require(Permission.REVIEW))]
) -> CaseOut | Response:
    context, actor = acting(request, principal)
    started = time.perf_counter()
    got = operations.claim(context, actor)
    CLAIM_SECONDS.observe(time.perf_counter() - started)
    if got is None:
        return Response(status_code=204)
    return case_out(context, actor, operations.view_case(context, actor, got.case_id))


@router.get("/cases/{case_id}", response_model=CaseOut, responses={**ERRORS, 404: {}})
def get_case(
    case_id: str,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.REVIEW, Permission.SUPERVISE))],
) -> CaseOut:
    context, actor = acting(request, principal)
    return case_out(context, actor, operations.view_case(context, actor, case_id))


@router.post("/cases/{case_id}/blind", response_model=CaseOut, responses={**ERRORS, 409: {}})
def blind_judgement(
    case_id: str,
    body: JudgementIn,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.REVIEW))],
) -> CaseOut:
    """Record the judgement made before seeing scores; the answer carries the scores."""
    context, actor = acting(request, principal)
    judgement = _judgement(actor, body)
    operations.record_blind(context, actor, case_id, body.lease_token, judgement)
    return case_out(context, actor, operations.view_case(context, actor, case_id))


@router.post("/cases/{case_id}/judgement", responses={**ERRORS, 409: {}})
def judge(
    case_id: str,
    body: JudgementIn,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.REVIEW))],
) -> dict[str, str]:
    context, actor = acting(request, principal)
    judgement = _judgement(actor, body)
    state = operations.judge(context, actor, case_id, body.lease_token, judgement)
    return {"case_id": case_id, "state": state.value}


@router.post("/cases/{case_id}/supervision", responses={**ERRORS, 409: {}})
def supervise(
    case_id: str,
    body: SupervisionIn,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.SUPERVISE))],
) -> dict[str, str]:
    context, actor = acting(request, principal)
    judgement = _judgement(actor, body)
    state = operations.supervise(context, actor, case_id, judgement)
    return {"case_id": case_id, "state": state.value}


@router.post("/cases/{case_id}/revision", responses={**ERRORS, 404: {}, 409: {}})
def revise(
    case_id: str,
    body: RevisionIn,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.SUPERVISE))],
) -> dict[str, str | int]:
    """Change the decision of a decided case, with a reason: the case becomes decided by
    the supervisor, its revision one higher, and every member's exported decision changes."""
    context, actor = acting(request, principal)
    after = operations.revise(context, actor, case_id, _judgement(actor, body))
    return {"case_id": case_id, "state": after.state.value, "revision": after.revision}


@router.post(
    "/erasures/{enrollment_id}",
    response_model=ErasureOut,
    responses={**ERRORS, 404: {"description": "no such enrollment"}},
)
def erase(
    enrollment_id: EnrollmentId,
    body: ErasureIn,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.ERASE))],
) -> ErasureOut:
    """Erase an enrollment everywhere (the lake, the gallery and the queue where the service
    is wired to them: ``create_app(..., eraser=...)``), audited with the reason given."""
    eraser = request.app.state.eraser
    done = operations.erase(*acting(request, principal), enrollment_id, body.reason, eraser)
    return ErasureOut(
        enrollment_id=enrollment_id,
        cases_removed=done.queue.cases_removed,
        candidate_rows_removed=done.queue.candidate_rows_removed,
        subject_removed=done.queue.subject_removed,
        records_removed=None if done.records is None else dict(done.records.removed),
        identity_renamed_to=None if done.records is None else done.records.identity_renamed_to,
        nothing_left=done.nothing_left,
    )


@router.get("/audit/verify", response_model=VerifyOut, responses=ERRORS)
def verify_audit(
    request: Request, principal: Annotated[Principal, Depends(require(Permission.READ_AUDIT))]
) -> VerifyOut:
    check, head = operations.verify_audit(*acting(request, principal))
    return VerifyOut(
        ok=check.ok,
        entries=check.entries,
        first_bad_seq=check.first_bad_seq,
        problem=check.problem,
        head_seq=None if head is None else head[0],
        head_hash=None if head is None else head[1],
    )


@router.get("/audit", responses=ERRORS)
def search_audit(
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.READ_AUDIT))],
    actor: Annotated[str | None, Query(max_length=128)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    target: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, object]]:
    with context_of(request).sessions() as db:
        found = audit_store.search(db, actor=actor, action=action, target=target, limit=limit)
    return [e.as_dict() for e in found]


@router.put("/catch-trials/rate", responses=ERRORS)
def set_catch_rate(
    request: Request,
    rate: Annotated[float, Query(ge=0, le=0.5)],
    principal: Annotated[Principal, Depends(require(Permission.MANAGE_CATCH_TRIALS))],
) -> dict[str, float]:
    operations.set_catch_rate(*acting(request, principal), rate)
    return {"rate": rate}


@router.post("/catch-trials/pairs", responses={**ERRORS, 404: {}, 409: {}})
def add_catch_pair(
    request: Request,
    case_id: CaseId,
    principal: Annotated[Principal, Depends(require(Permission.MANAGE_CATCH_TRIALS))],
) -> dict[str, object]:
    return {
        "pair_id": operations.add_catch_pair(*acting(request, principal), case_id),
        "source_case_id": case_id,
    }


@router.get("/accuracy", responses=ERRORS)
def adjudicator_accuracy(
    request: Request, _: Annotated[Principal, Depends(require(Permission.VIEW_ACCURACY))]
) -> list[dict[str, object]]:
    return [
        {
            "adjudicator": a.adjudicator,
            "trials": a.trials,
            "correct": a.correct,
            "accuracy": a.rate,
            "interval_95": a.interval,
            "few_trials": a.few,
            "changed_after_scores": a.changed_after_scores,
        }
        for a in operations.accuracy(context_of(request))
    ]


@router.get("/review-habits", responses=ERRORS)
def review_habits(
    request: Request, _: Annotated[Principal, Depends(require(Permission.VIEW_ACCURACY))]
) -> dict[str, object]:
    """Decisions changed after the scores were shown, and which way (towards the top-scored
    candidate or away from it), and seconds from claim to judgement: per adjudicator and
    overall."""
    habits = operations.review_habits(context_of(request))
    return {
        "score_influence": [_influence(i) for i in habits.influence],
        "score_influence_overall": _influence(habits.overall_influence),
        "case_seconds": [asdict(t) for t in habits.times],
        "case_seconds_overall": asdict(habits.overall_times),
    }


def _influence(i: ScoreInfluence) -> dict[str, object]:
    return {**asdict(i), "other": i.other, "changed_rate": i.changed_rate}


@router.get("/users", responses=ERRORS)
def list_users(
    request: Request, _: Annotated[Principal, Depends(require(Permission.MANAGE_USERS))]
) -> list[dict[str, object]]:
    return [
        {"username": u.username, "roles": u.roles.split(","), "active": u.active}
        for u in operations.users(context_of(request))
    ]


@router.post("/users", responses={**ERRORS, 409: {}})
def create_user(
    body: UserIn,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.MANAGE_USERS))],
) -> dict[str, str]:
    """Create an account; the answer carries its TOTP secret, shown this once."""
    try:
        secret = operations.create_user(
            *acting(request, principal), body.username, body.password, body.roles, body.display_name
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"username": body.username, "totp_secret": secret}
