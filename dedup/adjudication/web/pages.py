"""The server-rendered web pages: login, queue, supervisor, auditor and admin pages, with the
case page and the compare view from ``case_pages``.

Plain HTML forms, usable with the keyboard alone (every control is reachable with Tab, the
main action of a page has the focus, and single keys pick an outcome on the case page).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy import select

from dedup.adjudication import audit_store, catch_trials, operations, views
from dedup.adjudication.access import Permission, Role, allowed
from dedup.adjudication.accounts import Principal
from dedup.adjudication.cases import CaseState
from dedup.adjudication.credentials import totp_uri
from dedup.adjudication.tables import CatchPair
from dedup.adjudication.web import case_pages, reports
from dedup.adjudication.web.guards import (
    SESSION_COOKIE,
    acting,
    context_of,
    log_in,
    principal_of,
    require,
    set_session_cookie,
)
from dedup.adjudication.web.rendering import Text, render, see_other

__all__ = ["render", "router"]  # the service renders its error pages with ``render``

router = APIRouter(include_in_schema=False)
router.include_router(case_pages.router)  # the case page, the compare view and their forms
router.include_router(reports.router)  # the batch reports the operator page links


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
    context = context_of(request)
    rows, habits = operations.accuracy(context), operations.review_habits(context)
    return render(request, "accuracy.html", principal, rows=rows, habits=habits)


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
