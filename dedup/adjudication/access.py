"""Who may do what in the review service: roles, permissions, and the one table joining them.

Every route names the permission it needs; the server checks it (function level) before
any work, and the queue checks ownership of the object (object level: the lease on a case,
the case an image belongs to). A refusal is answered 403 and written to the audit log.

Roles are deliberately narrow. An operator moves batches in and decisions out but never
sees a face; an auditor reads the audit log but never sees a face; an adjudicator sees only
the case they hold; a supervisor sees escalated and decided cases; an admin manages accounts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    OPERATOR = "operator"
    ADJUDICATOR = "adjudicator"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    ADMIN = "admin"


class Permission(StrEnum):
    IMPORT_CANDIDATES = "import_candidates"
    EXPORT_DECISIONS = "export_decisions"
    VIEW_QUEUE = "view_queue"  # depth by state, no faces
    REVIEW = "review"  # claim, view the held case and its images, judge
    SUPERVISE = "supervise"  # escalations, any case's view, supervisor decisions
    MANAGE_CATCH_TRIALS = "manage_catch_trials"
    VIEW_ACCURACY = "view_accuracy"
    ERASE = "erase"
    READ_AUDIT = "read_audit"
    MANAGE_USERS = "manage_users"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OPERATOR: frozenset(
        {Permission.IMPORT_CANDIDATES, Permission.EXPORT_DECISIONS, Permission.VIEW_QUEUE}
    ),
    Role.ADJUDICATOR: frozenset({Permission.REVIEW}),
    Role.SUPERVISOR: frozenset(
        {
            Permission.VIEW_QUEUE,
            Permission.SUPERVISE,
            Permission.MANAGE_CATCH_TRIALS,
            Permission.VIEW_ACCURACY,
            Permission.ERASE,
        }
    ),
    Role.AUDITOR: frozenset({Permission.READ_AUDIT}),
    Role.ADMIN: frozenset({Permission.MANAGE_USERS, Permission.VIEW_QUEUE}),
}


def parse_roles(text: str | Iterable[str]) -> frozenset[Role]:
    """Roles from a comma-separated text or a list; an unknown role is an error."""
    names = text.split(",") if isinstance(text, str) else list(text)
    roles = set()
    for name in (n.strip() for n in names):
        if not name:
            continue
        try:
            roles.add(Role(name))
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise ValueError(f"unknown role {name!r} (known: {known})") from None
    return frozenset(roles)


def allowed(roles: Iterable[Role], permission: Permission) -> bool:
    return any(permission in ROLE_PERMISSIONS[role] for role in roles)


ANONYMOUS = "anonymous"  # the role recorded for a caller nobody has authenticated


@dataclass(frozen=True)
class Actor:
    """Who acts, with which roles, from where: the caller of every operation, and the first
    fields of every audit entry it writes.

    The service makes one per request from the logged-in principal; the command line, the
    review feed and the demo make theirs with ``local``. An actor without roles is anonymous:
    a caller not logged in, or a login attempt under the name it gave. ``asking`` says what
    the caller asked for (the service: the request's method and path); a refusal records it.
    """

    username: str
    roles: frozenset[Role]
    client: str
    asking: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def local(cls, username: str, role: Role) -> Actor:
        """A program on the service's own host acting in one role (``dedup users``, say)."""
        return cls(username, frozenset({role}), "local")

    def role_for(self, permission: Permission | None) -> str:
        """The role an action is recorded under: the first role granting ``permission``, or
        all roles for an action that needs none (or that none of them grants)."""
        if not self.roles:
            return ANONYMOUS
        granting = sorted(r.value for r in self.roles if permission in ROLE_PERMISSIONS[r])
        return granting[0] if granting else ",".join(sorted(r.value for r in self.roles))


class Forbidden(Exception):
    """The caller lacks the permission or does not own the object (403, audited)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
