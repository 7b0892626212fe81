"""The writer's lock of an ``s3://`` gallery: the ``LOCK`` object, and clearing a stale one.

There is no flock on S3. The lock is an object created with ``If-None-Match: *``, so exactly
one writer's create succeeds; it says who took it (user, host, pid), from which command, when,
and a random token; the holder deletes it on exit. Another writer polls, backing off from
0.1 s to 5 s, for at most ``LOCK_WAIT_S`` (15 minutes: longer than a night's add or a
compaction usually holds it), then fails with an error that names the holder and the command
that clears its lock.

It is deliberately not a lease that expires by itself: a writer paused past its lease (a long
GC, a network partition) could not know it had lost the lock, and two writers would sweep each
other's unpublished files. A lock outlives its holder only when the holder was killed (OOM, a
lost node), and clearing it is the operator's call once that holder is known to be gone:
``dedup gallery unlock --gallery s3://... --token T`` deletes it only if it still holds ``T``.
A writer whose lock was cleared while it ran finds out before it publishes (``check_mine``),
and the conditional write of ``CURRENT`` fences it even if another writer took the lock since.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dedup.errors import GalleryError
from dedup.gallery.s3_objects import Refused, S3Prefix
from dedup.gallery.storage import LOCK_KEY, GalleryRoot, gallery_location

LOCK_WAIT_S = 15 * 60.0
FIRST_PAUSE_S, LONGEST_PAUSE_S = 0.1, 5.0


class ObjectLock:
    """The ``LOCK`` object of one gallery; ``token`` is set while this process holds it."""

    def __init__(self, objects: S3Prefix, *, wait_s: float | None = None) -> None:
        self.objects = objects
        self.wait_s = LOCK_WAIT_S if wait_s is None else wait_s
        self.token: str | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        token = secrets.token_hex(8)
        self._acquire(token)
        self.token = token
        try:
            yield
        except BaseException:
            self.token = None
            with contextlib.suppress(GalleryError):  # the error that ended the work comes first
                self._release(token)
            raise
        self.token = None
        self._release(token)

    def holder(self) -> dict[str, Any] | None:
        """What ``LOCK`` says (holder, command, token, acquired_at), None when unlocked."""
        try:
            return dict(json.loads(self.objects.request("get_object", LOCK_KEY)["Body"].read()))
        except FileNotFoundError:
            return None
        except ValueError:
            return {"holder": "unknown (the lock object is not this release's)", "token": ""}

    def clear(self, token: str) -> dict[str, Any]:
        """Delete a lock left by a writer that is gone, only if it still holds ``token``."""
        root, held = self.objects.where.root, self.holder()
        if held is None:
            raise GalleryError(f"gallery {root} is not locked: nothing to clear")
        if held.get("token") != token:
            raise GalleryError(
                f"the lock of gallery {root} is held by {describe_lock(held)}, not by token "
                f"{token}: not cleared"
            )
        self.objects.request("delete_object", LOCK_KEY)
        return held

    def check_mine(self, name: str) -> None:
        """Refuse to publish ``name`` if this process's lock was cleared while it held it."""
        if self.token is None:
            return
        held = self.holder()
        if held is None or held.get("token") != self.token:
            now = "nobody" if held is None else describe_lock(held)
            raise GalleryError(
                f"version {name} of gallery {self.objects.where.root} was not published: this "
                f"writer's lock was cleared while it ran (it is now held by {now}); run it again"
            )

    def _acquire(self, token: str) -> None:
        body = {
            "holder": f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}",
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "",
            "token": token,
            "acquired_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        started, pause = time.monotonic(), FIRST_PAUSE_S
        while True:
            try:
                self.objects.request("put_object", LOCK_KEY, Body=json.dumps(body).encode(),
                                     IfNoneMatch="*", ContentType="application/json")  # fmt: skip
                return
            except Refused:
                waited = time.monotonic() - started
                if waited >= self.wait_s:
                    raise self._still_locked(waited) from None
                time.sleep(min(pause, self.wait_s - waited))
                pause = min(pause * 2, LONGEST_PAUSE_S)

    def _release(self, token: str) -> None:
        held = self.holder()
        if held is not None and held.get("token") == token:  # never a lock taken after ours
            self.objects.request("delete_object", LOCK_KEY)

    def _still_locked(self, waited: float) -> GalleryError:
        root = self.objects.where.root
        held = self.holder() or {"holder": "a writer that released it just now", "token": ""}
        return GalleryError(
            f"gallery {root} is locked by {describe_lock(held)}; waited {waited:.0f} s. If that "
            "writer is still running (a night's add, a compaction), let it finish and try "
            "again. If it is gone (killed, its node lost), it left its lock behind: clear it "
            f"with `dedup gallery unlock --gallery {root} --token {held.get('token')}` and run "
            "this again"
        )


def describe_lock(held: dict[str, Any]) -> str:
    """Who holds a lock, from what ``LOCK`` says."""
    command = f" (`{held['command']}`)" if held.get("command") else ""
    since = f" since {held['acquired_at']}" if held.get("acquired_at") else ""
    return f"{held.get('holder')}{command}{since}, lock token {held.get('token')}"


def clear_stale_lock(where: GalleryRoot, token: str) -> dict[str, Any]:
    """``dedup gallery unlock``: clear the lock a killed writer left; what it said."""
    location = gallery_location(where)
    if not location.is_s3:
        raise GalleryError(
            f"gallery {location.root} is a local folder: its lock is released by the system "
            "when its holder exits, so there is never one to clear"
        )
    return ObjectLock(S3Prefix(location)).clear(token)
