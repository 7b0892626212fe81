"""The service's operations, written once for every caller: the JSON API, the web pages, the
command line, the review feed and the demo.

Each takes a ``Context`` (the database, the clock, the settings) and the ``Actor`` acting, and
runs in one transaction (``context.audited``) in which the change, the object-level check and
the audit entry commit together. Views of a case and of each image are audited like
decisions; reads that change nothing and show no face (queue depth, accuracy, the account
list) are not. Nothing here speaks HTTP: ``web`` turns a request into (context, actor) and the
result into a response.

>>> with opened(settings) as context:  # context.opened           # doctest: +SKIP
...     secret = create_user(context, Actor.local("cli", Role.ADMIN), "zoe", password, ["auditor"])
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from dedup.adjudication import (
    accounts,
    audit_store,
    catch_trials,
    erasure,
    intake,
    queue,
    review_stats,
    views,
)
from dedup.adjudication.access import Actor, Permission, allowed, parse_roles
from dedup.adjudication.accounts import IdentityProvider, LoginRefusal, Principal
from dedup.adjudication.audit_chain import ChainCheck
from dedup.adjudication.cases import Case, CaseState, Judgement, Outcome
from dedup.adjudication.context import Context, audited, refuse
from dedup.adjudication.payloads import BatchImport, ImportResult
from dedup.adjudication.queue import Claim
from dedup.adjudication.queue_metrics import CASE_SECONDS
from dedup.adjudication.tables import SubjectImage, User
from dedup.adjudication.views import CaseView
from dedup.errors import StaleLease

# ---------------------------------------------------------------- sessions


class Throttle(Protocol):
    """Whether a client address may try another login now (the service's ``ClientThrottle``)."""

    def allow(self, client: str) -> bool: ...


@dataclass(frozen=True)
class LoginOutcome:
    principal: Principal | None
    session_token: str | None
    throttled: bool = False


def login(
    context: Context,
    actor: Actor,
    username: str,
    password: str,
    code: str,
    *,
    identity: IdentityProvider,
    throttle: Throttle,
) -> LoginOutcome:
    """A new session for the account when the password and code hold; every attempt is
    recorded (a refusal under the name given, with why)."""
    attempt = Actor(username[:128], frozenset(), actor.client)
    target = f"user:{username[:120]}"
    if not throttle.allow(actor.client):
        with audited(context, attempt) as tx:
            why = "too many attempts from this address"
            tx.record(None, "login", target, {"why": why}, outcome="refused")
        return LoginOutcome(None, None, throttled=True)
    with audited(context, attempt) as tx:
        result = identity.authenticate(tx.db, username, password, code, tx.now)
        user = result.user
        if result.refusal is not None or user is None:
            why = (result.refusal or LoginRefusal.BAD_CREDENTIALS).value
            tx.record(None, "login", target, {"why": why}, outcome="refused")
            return LoginOutcome(None, None)
        token, csrf = accounts.start_session(tx.db, user, actor.client, tx.now)
        roles = accounts.user_roles(user)
        principal = Principal(user.username, user.display_name, roles, None, csrf)
        user_actor = Actor(user.username, roles, actor.client)
        tx.record(None, "login", f"user:{user.username}", actor=user_actor)
    return LoginOutcome(principal, token)


def logout(context: Context, actor: Actor, session: str | None) -> None:
    if session is None:
        return
    with audited(context, actor) as tx:
        accounts.end_session(tx.db, session)
        tx.record(None, "logout", f"user:{actor.username}")


# ---------------------------------------------------------------- cases


def queue_depth(context: Context) -> queue.QueueDepth:
    with context.sessions() as db:
        return queue.queue_depth(db, context.now())


def claim(context: Context, actor: Actor) -> Claim | None:
    with audited(context, actor) as tx:
        got = queue.claim_next(tx.db, actor.username, tx.now, context.lease)
        if got is not None and not got.resumed:
            tx.record(Permission.REVIEW, "case.claim", f"case:{got.case_id}")
        return got


def may_view(actor: Actor, holding: bool) -> bool:
    """Object level: adjudicators see only the case they hold; supervisors see any."""
    return allowed(actor.roles, Permission.SUPERVISE) or (
        allowed(actor.roles, Permission.REVIEW) and holding
    )


def view_case(context: Context, actor: Actor, case_id: str) -> CaseView:
    with audited(context, actor) as tx:
        view = views.case_view(tx.db, case_id)
        holding = queue.holds(view.row, actor.username, tx.now)
        permitted = may_view(actor, holding)
        if permitted:
            permission = Permission.REVIEW if holding else Permission.SUPERVISE
            tx.record(permission, "case.view", f"case:{case_id}")
    if not permitted:  # audited after the read transaction ends (SQLite holds one writer)
        raise refuse(context, actor, Permission.REVIEW, "not your case", f"case:{case_id}")
    return view


def scores_visible(context: Context, actor: Actor, view: CaseView) -> bool:
    """Scores show once the holder has recorded a blind judgement (or to a supervisor)."""
    if not context.settings.hide_scores_until_judgement:
        return True
    if queue.holds(view.row, actor.username, context.now()):
        return view.row.blind_outcome is not None
    return allowed(actor.roles, Permission.SUPERVISE)


def view_image(
    context: Context, actor: Actor, case_id: str, enrollment_id: str, kind: str
) -> SubjectImage | None:
    with audited(context, actor) as tx:
        row = queue.case_row(tx.db, case_id)
        holding = queue.holds(row, actor.username, tx.now)
        permitted = may_view(actor, holding)
        found = views.image(tx.db, case_id, enrollment_id, kind) if permitted else None
        if found is not None:
            permission = Permission.REVIEW if holding else Permission.SUPERVISE
            target, details = f"image:{enrollment_id}/{kind}", {"case": case_id}
            # A catch trial's copy is a view of a catch-trial subject; the log keeps whose.
            source = catch_trials.sources_of(tx.db, [enrollment_id]).get(enrollment_id)
            if source is not None:
                target = f"catch-subject:{enrollment_id}/{kind}"
                details["source"] = source
            tx.record(permission, "image.view", target, details)
    if not permitted:
        raise refuse(context, actor, Permission.REVIEW, "not your case", f"case:{case_id}")
    return found


def judgement_from(
    adjudicator: str, outcome: str, duplicate_of: str | None, reason: str | None
) -> Judgement:
    return Judgement(
        adjudicator,
        Outcome(outcome),
        duplicate_of or None if outcome == Outcome.DUPLICATE else None,
        (reason or "").strip() or None,
    )


@contextmanager
def _refused_unless_holder(context: Context, actor: Actor, case_id: str) -> Iterator[None]:
    """Turn a stale-lease failure on a case someone else holds (or nobody holds) into an
    audited refusal: writing to another's case is an access refusal. The holder's own
    expired lease stays a conflict."""
    try:
        yield
    except StaleLease:
        with context.sessions() as db:
            holder = queue.case_row(db, case_id).lease_holder
        if holder != actor.username:
            raise refuse(
                context, actor, Permission.REVIEW, "not your case", f"case:{case_id}"
            ) from None
        raise


def record_blind(
    context: Context, actor: Actor, case_id: str, token: str, judgement: Judgement
) -> None:
    with _refused_unless_holder(context, actor, case_id), audited(context, actor) as tx:
        queue.record_blind(tx.db, case_id, actor.username, token, judgement, tx.now)
        details = _judgement_details(judgement)
        tx.record(Permission.REVIEW, "case.blind_judgement", f"case:{case_id}", details)


def judge(
    context: Context, actor: Actor, case_id: str, token: str, judgement: Judgement
) -> CaseState:
    with _refused_unless_holder(context, actor, case_id), audited(context, actor) as tx:
        blind = context.settings.hide_scores_until_judgement
        claimed = queue.case_row(tx.db, case_id).claimed_at
        after = queue.judge_case(tx.db, case_id, token, judgement, tx.now, blind)
        details = {**_judgement_details(judgement), "state": after.state.value}
        tx.record(Permission.REVIEW, "case.judge", f"case:{case_id}", details)
        took = None if claimed is None else (tx.now - claimed).total_seconds()
    if took is not None:
        CASE_SECONDS.observe(max(0.0, took))
    return after.state


def supervise(context: Context, actor: Actor, case_id: str, judgement: Judgement) -> CaseState:
    with audited(context, actor) as tx:
        after = queue.supervise_case(tx.db, case_id, judgement, tx.now)
        details = {**_judgement_details(judgement), "state": after.state.value}
        tx.record(Permission.SUPERVISE, "case.supervise", f"case:{case_id}", details)
        return after.state


def revise(context: Context, actor: Actor, case_id: str, judgement: Judgement) -> Case:
    """A supervisor changes a decided case's decision (``cases.revise``): the decision of
    every member changes, and the audit entry keeps the decision before and after."""
    if not allowed(actor.roles, Permission.SUPERVISE):
        raise refuse(context, actor, Permission.SUPERVISE, "needs permission supervise",
                     f"case:{case_id}")  # fmt: skip
    with audited(context, actor) as tx:
        before = queue.load_case(tx.db, queue.locked_case(tx.db, case_id))
        after = queue.revise_case(tx.db, case_id, judgement, tx.now)
        details = _judgement_details(judgement)
        details.update(state=after.state.value, revision=str(after.revision))
        if before.final is not None:
            details["before_outcome"] = before.final.outcome.value
            if before.final.duplicate_of:
                details["before_duplicate_of"] = before.final.duplicate_of
        tx.record(Permission.SUPERVISE, "case.revise", f"case:{case_id}", details)
        return after


def _judgement_details(judgement: Judgement) -> dict[str, str]:
    details = {"outcome": judgement.outcome.value}
    if judgement.duplicate_of:
        details["duplicate_of"] = judgement.duplicate_of
    if judgement.reason:
        details["reason"] = judgement.reason[:200]
    return details


# ---------------------------------------------------------------- batches in, decisions out


def import_candidates(
    context: Context,
    actor: Actor,
    batch_id: str,
    payload: BatchImport,
    part: int = 1,
    parts: int = 1,
) -> ImportResult:
    """Import a batch's candidates (whole, or part ``part`` of ``parts``) as cases."""
    with audited(context, actor) as tx:
        result = intake.import_batch(
            tx.db, batch_id, payload, actor.username, tx.now, context.settings.max_image_bytes,
            part=part, parts=parts,
        )  # fmt: skip
        details = {**intake.import_details(result), "part": f"{part}/{parts}"}
        tx.record(Permission.IMPORT_CANDIDATES, "batch.import", f"batch:{batch_id}", details)
        return result


def export_decisions(context: Context, actor: Actor, batch_id: str | None) -> list[queue.Decision]:
    with audited(context, actor) as tx:
        found = queue.decisions(tx.db, batch_id)
        target = f"batch:{batch_id or '*'}"
        tx.record(
            Permission.EXPORT_DECISIONS, "decisions.export", target, {"rows": str(len(found))}
        )
        return found


def erase(
    context: Context,
    actor: Actor,
    enrollment_id: str,
    reason: str,
    eraser: erasure.RecordEraser | None = None,
) -> erasure.ErasureReport:
    """Erase an enrollment everywhere it lives: the records through ``eraser`` (the lake and
    the gallery; None where the caller has none) and the review queue, audited with who,
    when and why (``erasure.erase_everywhere``: the API and ``dedup erase`` both call this)."""
    return erasure.erase_everywhere(context, actor, enrollment_id, reason, eraser)


def verify_audit(context: Context, actor: Actor) -> tuple[ChainCheck, tuple[int, str] | None]:
    """The chain checked against its stored head, and that head; the check is recorded."""
    with context.sessions() as db:
        check = audit_store.verify_log(db)
        head = audit_store.stored_head(db)
    with audited(context, actor) as tx:
        tx.record(Permission.READ_AUDIT, "audit.verify", "audit", {"ok": str(check.ok).lower()})
    return check, head


# ---------------------------------------------------------------- catch trials


def set_catch_rate(context: Context, actor: Actor, rate: float) -> None:
    with audited(context, actor) as tx:
        catch_trials.set_catch_rate(tx.db, rate)
        permission = Permission.MANAGE_CATCH_TRIALS
        tx.record(permission, "catch.rate", "catch_trials", {"rate": repr(rate)})


def add_catch_pair(context: Context, actor: Actor, case_id: str) -> int:
    """Make a decided case a known pair; its id."""
    with audited(context, actor) as tx:
        pair = catch_trials.add_catch_pair(tx.db, case_id, actor.username, tx.now)
        tx.record(Permission.MANAGE_CATCH_TRIALS, "catch.add_pair", f"case:{case_id}")
        return pair.id


def accuracy(context: Context) -> list[catch_trials.Accuracy]:
    with context.sessions() as db:
        return catch_trials.accuracy(db)


@dataclass(frozen=True)
class ReviewHabits:
    """How adjudicators decide (``review_stats``), per adjudicator and overall."""

    influence: list[review_stats.ScoreInfluence]
    overall_influence: review_stats.ScoreInfluence
    times: list[review_stats.CaseTimes]
    overall_times: review_stats.CaseTimes


def review_habits(context: Context) -> ReviewHabits:
    with context.sessions() as db:
        return ReviewHabits(*review_stats.score_influence(db), *review_stats.case_times(db))


# ---------------------------------------------------------------- accounts


def users(context: Context) -> list[User]:
    with context.sessions() as db:
        return accounts.list_users(db)


def create_user(
    context: Context,
    actor: Actor,
    username: str,
    password: str,
    roles: Iterable[str],
    display_name: str | None = None,
) -> str:
    """A new account (``ValueError`` for an unknown role); its TOTP secret, shown once."""
    wanted = parse_roles(roles)
    with audited(context, actor) as tx:
        secret = accounts.create_user(tx.db, username, password, wanted, tx.now, display_name)
        details = {"roles": ",".join(sorted(r.value for r in wanted))}
        tx.record(Permission.MANAGE_USERS, "user.create", f"user:{username}", details)
    return secret


def issue_api_token(context: Context, actor: Actor, username: str, label: str) -> str:
    """A bearer token for a service account; shown once (the database keeps its hash)."""
    with audited(context, actor) as tx:
        token = accounts.issue_api_token(tx.db, username, label, tx.now)
        tx.record(
            Permission.MANAGE_USERS, "token.issue", f"user:{username}", {"label": label[:200]}
        )
    return token


def deactivate_user(context: Context, actor: Actor, username: str) -> int:
    """Turn an account off (no more logins, sessions and tokens end); sessions ended."""
    with audited(context, actor) as tx:
        ended = accounts.deactivate_user(tx.db, username)
        details = {"sessions_ended": str(ended)}
        tx.record(Permission.MANAGE_USERS, "user.deactivate", f"user:{username}", details)
    return ended
