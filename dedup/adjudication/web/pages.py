"""The server-rendered web pages: login, queue, case view, supervisor, auditor and admin pages.

Plain HTML forms, usable with the keyboard alone (every control is reachable with Tab, the
main action of a page has the focus, and single keys pick an outcome on the case page).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from dedup.adjudication import audit_store, catch_trials, operations, queue, views
from dedup.adjudication.access import Permission, Role, allowed
from dedup.adjudication.accounts import Principal
from dedup.adjudication.cases import CaseState, Judgement
from dedup.adjudication.credentials import totp_uri
from dedup.adjudication.tables import CatchPair
from dedup.adjudication.web import reports
from dedup.adjudication.web.guards import (
    SESSION_COOKIE,
    acting,
    context_of,
    log_in,
    principal_of,
    require,
    set_session_cookie,
)

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)
router.include_router(reports.router)  # the batch reports the operator page links

Text = Annotated[str, Form(max_length=1024)]
Reason = Annotated[str | None, Form(max_length=500)]


def render(
    request: Request,
    name: str,
    principal: Principal | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    roles = set() if principal is None else {r.value for r in principal.roles}
    return TEMPLATES.TemplateResponse(
        request,
        name,
        {"principal": principal, "roles": roles, **context},
        status_code=status_code,
    )


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def home_for(principal: Principal) -> str:
    """Where a user lands after logging in: the page of their first working role."""
    for role, page in (
        (Role.ADJUDICATOR, "/queue"),
        (Role.SUPERVISOR, "/supervisor"),
        (Role.AUDITOR, "/audit"),
        (Role.ADMIN, "/admin/users"),
        (Role.OPERATOR, "/operator"),
    ):
        if role in principal.roles:
            return page
    return "/login"


@router.get("/")
def home(request: Request) -> Response:
    principal = principal_of(request)
    return see_other("/login" if principal is None else home_for(principal))


@router.get("/login")
def login_page(request: Request) -> Response:
    return render(request, "login.html", None)


@router.post("/login")
def login_form(
    request: Request,
    username: Annotated[str, Form(max_length=128)],
    password: Text,
    totp: Annotated[str, Form(max_length=16)],
) -> Response:
    outcome = log_in(request, username, password, totp)
    if outcome.principal is None or outcome.session_token is None:
        message = (
            "Too many attempts from this address; wait a minute."
            if outcome.throttled
            else "Login refused: check the user name, password and code."
        )
        return render(request, "login.html", None, status_code=401, error=message)
    response = see_other(home_for(outcome.principal))
    set_session_cookie(request, response, outcome.session_token)
    return response


@router.post("/logout")
def logout(
    request: Request, principal: Annotated[Principal, Depends(require(*Permission))]
) -> Response:
    operations.logout(*acting(request, principal), principal.session)
    response = see_other("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# ---------------------------------------------------------------- adjudicator


@router.get("/queue")
def queue_page(
    request: Request, principal: Annotated[Principal, Depends(require(Permission.REVIEW))]
) -> Response:
    depth = operations.queue_depth(context_of(request))
    waiting = depth.by_state[CaseState.OPEN] + depth.by_state[CaseState.AWAITING_SECOND_REVIEW]
    return render(request, "queue.html", principal, waiting=waiting)


@router.post("/queue/claim")
def claim_case(
    request: Request, principal: Annotated[Principal, Depends(require(Permission.REVIEW))]
) -> Response:
    got = operations.claim(*acting(request, principal))
    if got is None:
        return render(request, "queue.html", principal, waiting=0, empty=True)
    return see_other(f"/cases/{got.case_id}")


@router.get("/cases/{case_id}")
def case_page(
    case_id: str,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.REVIEW, Permission.SUPERVISE))],
) -> Response:
    context, actor = acting(request, principal)
    view = operations.view_case(context, actor, case_id)
    holding = queue.holds(view.row, actor.username, context.now())
    return render(
        request,
        "case.html",
        principal,
        view=view,
        holding=holding,
        scores=operations.scores_visible(context, actor, view),
        supervising=not holding and view.row.state == CaseState.ESCALATED,
        labels=_labels(len(view.candidates)),
    )


def _labels(count: int) -> list[str]:
    return [str(i + 1) if i < 9 else "" for i in range(count)]


@router.get("/cases/{case_id}/images/{enrollment_id}/{kind}")
def case_image(
    case_id: str,
    enrollment_id: str,
    kind: str,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.REVIEW, Permission.SUPERVISE))],
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
    choice: Annotated[str, Form(max_length=200)] = "",
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
    choice: Annotated[str, Form(max_length=200)] = "",
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
    choice: Annotated[str, Form(max_length=200)] = "",
    reason: Reason = None,
) -> Response:
    outcome, duplicate_of = _choice(choice)
    if outcome not in ("duplicate", "not_duplicate"):
        return see_other(f"/cases/{case_id}")
    judgement = operations.judgement_from(principal.username, outcome, duplicate_of, reason)
    operations.supervise(*acting(request, principal), case_id, judgement)
    return see_other("/supervisor")


# ---------------------------------------------------------------- supervisor


@router.get("/supervisor")
def supervisor_page(
    request: Request, principal: Annotated[Principal, Depends(require(Permission.SUPERVISE))]
) -> Response:
    with context_of(request).sessions() as db:
        escalations = views.escalated(db)
        decided = views.recently_decided(db)
        sources = set(db.execute(select(CatchPair.source_case_id)).scalars())
    return render(
        request,
        "supervisor.html",
        principal,
        escalations=escalations,
        decided=decided,
        sources=sources,
    )


@router.get("/supervisor/catch-trials")
def catch_page(
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.MANAGE_CATCH_TRIALS))],
) -> Response:
    with context_of(request).sessions() as db:
        rate = catch_trials.catch_rate(db)
        pairs = list(db.execute(select(CatchPair).order_by(CatchPair.id)).scalars())
    return render(request, "catch.html", principal, rate=rate, pairs=pairs)


@router.post("/supervisor/catch-trials/rate")
def catch_rate_form(
    request: Request,
    rate: Annotated[float, Form(ge=0, le=0.5)],
    principal: Annotated[Principal, Depends(require(Permission.MANAGE_CATCH_TRIALS))],
) -> Response:
    operations.set_catch_rate(*acting(request, principal), rate)
    return see_other("/supervisor/catch-trials")


@router.post("/supervisor/catch-trials/pairs")
def catch_pair_form(
    request: Request,
    case_id: Annotated[str, Form(max_length=32)],
    principal: Annotated[Principal, Depends(require(Permission.MANAGE_CATCH_TRIALS))],
) -> Response:
    operations.add_catch_pair(*acting(request, principal), case_id)
    return see_other("/supervisor/catch-trials")


@router.get("/supervisor/accuracy")
def accuracy_page(
    request: Request, principal: Annotated[Principal, Depends(require(Permission.VIEW_ACCURACY))]
) -> Response:
    rows = operations.accuracy(context_of(request))
    return render(request, "accuracy.html", principal, rows=rows)


# ---------------------------------------------------------------- auditor


@router.get("/audit")
def audit_page(
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.READ_AUDIT))],
    actor: str = "",
    action: str = "",
    target: str = "",
) -> Response:
    with context_of(request).sessions() as db:
        found = audit_store.search(
            db, actor=actor[:128] or None, action=action[:64] or None, target=target[:300] or None
        )
    return render(
        request,
        "audit.html",
        principal,
        entries=found,
        query={"actor": actor, "action": action, "target": target},
    )


@router.get("/audit/verify")
def verify_page(
    request: Request, principal: Annotated[Principal, Depends(require(Permission.READ_AUDIT))]
) -> Response:
    check, head = operations.verify_audit(*acting(request, principal))
    return render(request, "verify.html", principal, check=check, head=head)


# ---------------------------------------------------------------- admin and operator


@router.get("/admin/users")
def users_page(
    request: Request, principal: Annotated[Principal, Depends(require(Permission.MANAGE_USERS))]
) -> Response:
    users = operations.users(context_of(request))
    return render(request, "users.html", principal, users=users, all_roles=[r.value for r in Role])


@router.post("/admin/users")
def create_user_form(
    request: Request,
    username: Annotated[str, Form(max_length=128)],
    password: Text,
    roles: Annotated[list[str], Form()],
    principal: Annotated[Principal, Depends(require(Permission.MANAGE_USERS))],
) -> Response:
    try:
        secret = operations.create_user(*acting(request, principal), username, password, roles)
    except ValueError as exc:
        return render(request, "message.html", principal, status_code=422, message=str(exc))
    users = operations.users(context_of(request))
    return render(
        request,
        "users.html",
        principal,
        users=users,
        all_roles=[r.value for r in Role],
        created=username,
        secret=secret,
        uri=totp_uri(secret, username),
    )


@router.get("/operator")
def operator_page(
    request: Request, principal: Annotated[Principal, Depends(require(Permission.VIEW_QUEUE))]
) -> Response:
    context = context_of(request)
    return render(
        request,
        "operator.html",
        principal,
        depth=operations.queue_depth(context),
        supervisor=allowed(principal.roles, Permission.SUPERVISE),
        reports=reports.listed_reports(context.settings.reports_dir),
    )
