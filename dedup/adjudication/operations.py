"""The service's operations, shared by the JSON API and the web pages.

Each runs one transaction: the change, the object-level check, and the audit entry commit
together. Views of a case and of each image are audited like decisions are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import Request

from dedup.adjudication import accounts, audit_store, catch_trials, intake, queue, views
from dedup.adjudication.access import Permission, Role, allowed, parse_roles
from dedup.adjudication.accounts import LoginRefusal, Principal
from dedup.adjudication.audit_chain import ChainCheck
from dedup.adjudication.audit_store import Actor
from dedup.adjudication.cases import CaseState, Judgement, Outcome
from dedup.adjudication.payloads import BatchImport, ImportResult
from dedup.adjudication.queue import Claim
from dedup.adjudication.tables import SubjectImage
from dedup.adjudication.views import CaseView
from dedup.adjudication.web.guards import audit, client_of, refuse, service
from dedup.errors import StaleLease


@dataclass(frozen=True)
class LoginOutcome:
    principal: Principal | None
    session_token: str | None
    throttled: bool = False


def login(request: Request, username: str, password: str, code: str) -> LoginOutcome:
    state = service(request)
    client = client_of(request)
    if not state.throttle.allow(client):
        audit_store.record_alone(
            state.sessions,
            Actor(username[:128], audit_store.ANONYMOUS_ROLE, client),
            "login",
            f"user:{username[:120]}",
            outcome="refused",
            details={"why": "too many attempts from this address"},
            at=state.now(),
        )
        return LoginOutcome(None, None, throttled=True)
    now = state.now()
    with state.sessions() as db, db.begin():
        result = state.identity.authenticate(db, username, password, code, now)
        user = result.user
        if result.refusal is not None or user is None:
            why = (result.refusal or LoginRefusal.BAD_CREDENTIALS).value
            audit_store.record(
                db,
                Actor(username[:128], audit_store.ANONYMOUS_ROLE, client),
                "login",
                f"user:{username[:120]}",
                outcome="refused",
                details={"why": why},
                at=now,
            )
            return LoginOutcome(None, None)
        token, csrf = accounts.start_session(db, user, client, now)
        roles = accounts.user_roles(user)
        principal = Principal(user.username, user.display_name, roles, None, csrf)
        audit_store.record(
            db,
            Actor(user.username, ",".join(sorted(roles)), client),
            "login",
            f"user:{user.username}",
            at=now,
        )
    return LoginOutcome(principal, token)


def logout(request: Request, principal: Principal) -> None:
    if principal.session is None:
        return
    with service(request).sessions() as db, db.begin():
        accounts.end_session(db, principal.session)
        audit(request, db, principal, None, "logout", f"user:{principal.username}")


def claim(request: Request, principal: Principal) -> Claim | None:
    state = service(request)
    with state.sessions() as db, db.begin():
        got = queue.claim_next(db, principal.username, state.now(), state.lease)
        if got is not None and not got.resumed:
            audit(request, db, principal, Permission.REVIEW, "case.claim", f"case:{got.case_id}")
        return got


def may_view(principal: Principal, now_holds: bool) -> bool:
    """Object level: adjudicators see only the case they hold; supervisors see any."""
    return allowed(principal.roles, Permission.SUPERVISE) or (
        allowed(principal.roles, Permission.REVIEW) and now_holds
    )


def view_case(request: Request, principal: Principal, case_id: str) -> CaseView:
    state = service(request)
    with state.sessions() as db, db.begin():
        view = views.case_view(db, case_id)
        holding = queue.holds(view.row, principal.username, state.now())
        permitted = may_view(principal, holding)
        if permitted:
            permission = Permission.REVIEW if holding else Permission.SUPERVISE
            audit(request, db, principal, permission, "case.view", f"case:{case_id}")
    if not permitted:  # audited after the read transaction ends (SQLite holds one writer)
        raise refuse(request, principal, Permission.REVIEW, "not your case", f"case:{case_id}")
    return view


def scores_visible(request: Request, principal: Principal, view: CaseView) -> bool:
    """Scores show once the holder has recorded a blind judgement (or to a supervisor)."""
    if not service(request).settings.hide_scores_until_judgement:
        return True
    if queue.holds(view.row, principal.username, service(request).now()):
        return view.row.blind_outcome is not None
    return allowed(principal.roles, Permission.SUPERVISE)


def view_image(
    request: Request, principal: Principal, case_id: str, enrollment_id: str, kind: str
) -> SubjectImage | None:
    state = service(request)
    with state.sessions() as db, db.begin():
        row = queue.case_row(db, case_id)
        holding = queue.holds(row, principal.username, state.now())
        permitted = may_view(principal, holding)
        found = views.image(db, case_id, enrollment_id, kind) if permitted else None
        if found is not None:
            permission = Permission.REVIEW if holding else Permission.SUPERVISE
            audit(
                request,
                db,
                principal,
                permission,
                "image.view",
                f"image:{enrollment_id}/{kind}",
                {"case": case_id},
            )
    if not permitted:
        raise refuse(request, principal, Permission.REVIEW, "not your case", f"case:{case_id}")
    return found


def judgement_from(
    principal: Principal, outcome: str, duplicate_of: str | None, reason: str | None
) -> Judgement:
    return Judgement(
        principal.username,
        Outcome(outcome),
        duplicate_of or None if outcome == Outcome.DUPLICATE else None,
        (reason or "").strip() or None,
    )


@contextmanager
def _refused_unless_holder(request: Request, principal: Principal, case_id: str) -> Iterator[None]:
    """Turn a stale-lease failure on a case someone else holds (or nobody holds) into an
    audited 403: writing to another's case is an access refusal. The holder's own expired
    lease stays a conflict (409)."""
    try:
        yield
    except StaleLease:
        with service(request).sessions() as db:
            holder = queue.case_row(db, case_id).lease_holder
        if holder != principal.username:
            raise refuse(
                request, principal, Permission.REVIEW, "not your case", f"case:{case_id}"
            ) from None
        raise


def record_blind(
    request: Request, principal: Principal, case_id: str, token: str, judgement: Judgement
) -> None:
    state = service(request)
    with _refused_unless_holder(request, principal, case_id), state.sessions() as db, db.begin():
        queue.record_blind(db, case_id, principal.username, token, judgement, state.now())
        audit(
            request,
            db,
            principal,
            Permission.REVIEW,
            "case.blind_judgement",
            f"case:{case_id}",
            _judgement_details(judgement),
        )


def judge(
    request: Request, principal: Principal, case_id: str, token: str, judgement: Judgement
) -> CaseState:
    state = service(request)
    with _refused_unless_holder(request, principal, case_id), state.sessions() as db, db.begin():
        blind = state.settings.hide_scores_until_judgement
        after = queue.judge_case(db, case_id, token, judgement, state.now(), blind)
        audit(
            request,
            db,
            principal,
            Permission.REVIEW,
            "case.judge",
            f"case:{case_id}",
            {**_judgement_details(judgement), "state": after.state.value},
        )
        return after.state


def supervise(
    request: Request, principal: Principal, case_id: str, judgement: Judgement
) -> CaseState:
    state = service(request)
    with state.sessions() as db, db.begin():
        after = queue.supervise_case(db, case_id, judgement, state.now())
        audit(
            request,
            db,
            principal,
            Permission.SUPERVISE,
            "case.supervise",
            f"case:{case_id}",
            {**_judgement_details(judgement), "state": after.state.value},
        )
        return after.state


def _judgement_details(judgement: Judgement) -> dict[str, str]:
    details = {"outcome": judgement.outcome.value}
    if judgement.duplicate_of:
        details["duplicate_of"] = judgement.duplicate_of
    if judgement.reason:
        details["reason"] = judgement.reason[:200]
    return details


def import_candidates(
    request: Request,
    principal: Principal,
    batch_id: str,
    payload: BatchImport,
    part: int = 1,
    parts: int = 1,
) -> ImportResult:
    state = service(request)
    with state.sessions() as db, db.begin():
        result = intake.import_batch(
            db,
            batch_id,
            payload,
            principal.username,
            state.now(),
            state.settings.max_image_bytes,
            part=part,
            parts=parts,
        )
        audit(
            request,
            db,
            principal,
            Permission.IMPORT_CANDIDATES,
            "batch.import",
            f"batch:{batch_id}",
            {**intake.import_details(result), "part": f"{part}/{parts}"},
        )
        return result


def export_decisions(
    request: Request, principal: Principal, batch_id: str | None
) -> list[queue.Decision]:
    with service(request).sessions() as db, db.begin():
        found = queue.decisions(db, batch_id)
        audit(
            request,
            db,
            principal,
            Permission.EXPORT_DECISIONS,
            "decisions.export",
            f"batch:{batch_id or '*'}",
            {"rows": str(len(found))},
        )
        return found


def erase(request: Request, principal: Principal, enrollment_id: str) -> queue.Erasure:
    with service(request).sessions() as db, db.begin():
        done = queue.erase_enrollment(db, enrollment_id)
        audit(
            request,
            db,
            principal,
            Permission.ERASE,
            "enrollment.erase",
            f"enrollment:{enrollment_id}",
            {"cases": str(done.cases_removed), "candidacies": str(done.candidate_rows_removed)},
        )
        return done


def verify_audit(
    request: Request, principal: Principal
) -> tuple[ChainCheck, tuple[int, str] | None]:
    with service(request).sessions() as db:
        check = audit_store.verify_log(db)
        head = audit_store.stored_head(db)
    with service(request).sessions() as db, db.begin():
        audit(
            request,
            db,
            principal,
            Permission.READ_AUDIT,
            "audit.verify",
            "audit",
            {"ok": str(check.ok).lower()},
        )
    return check, head


def set_catch_rate(request: Request, principal: Principal, rate: float) -> None:
    with service(request).sessions() as db, db.begin():
        catch_trials.set_catch_rate(db, rate)
        audit(
            request, db, principal, Permission.MANAGE_CATCH_TRIALS, "catch.rate", "catch_trials",
            {"rate": repr(rate)},
        )  # fmt: skip


def add_catch_pair(request: Request, principal: Principal, case_id: str) -> int:
    """Make a decided case a known pair; its id."""
    state = service(request)
    with state.sessions() as db, db.begin():
        pair = catch_trials.add_catch_pair(db, case_id, principal.username, state.now())
        audit(
            request, db, principal, Permission.MANAGE_CATCH_TRIALS, "catch.add_pair",
            f"case:{case_id}",
        )  # fmt: skip
        return pair.id


def create_user(
    request: Request,
    principal: Principal,
    username: str,
    password: str,
    roles: Iterable[str],
    display_name: str | None = None,
) -> str:
    """A new account (``ValueError`` for an unknown role); its TOTP secret, shown once."""
    wanted = parse_roles(roles)
    state = service(request)
    with state.sessions() as db, db.begin():
        secret = accounts.create_user(db, username, password, wanted, state.now(), display_name)
        audit(
            request, db, principal, Permission.MANAGE_USERS, "user.create", f"user:{username}",
            {"roles": ",".join(sorted(r.value for r in wanted))},
        )  # fmt: skip
    return secret


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
