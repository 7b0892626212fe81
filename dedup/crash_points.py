"""Named crash points, so fault tests can prove that a crash leaves a state a re-run repairs.

A job calls ``crash_point("stage.after_faces")`` between its steps. When the environment
variable ``DEDUP_CRASH_AT`` names that point, the call raises ``InjectedCrash``; with
``DEDUP_CRASH_MODE=exit`` it kills the process instead, as an OOM kill or a lost node would.
"""

from __future__ import annotations

import os

from dedup.errors import InjectedCrash

CRASH_AT_ENV = "DEDUP_CRASH_AT"
CRASH_MODE_ENV = "DEDUP_CRASH_MODE"


def crash_point(name: str) -> None:
    """Crash here if the environment asks for it; otherwise do nothing."""
    if os.environ.get(CRASH_AT_ENV) != name:
        return
    if os.environ.get(CRASH_MODE_ENV) == "exit":
        os._exit(137)
    raise InjectedCrash(f"crash injected at {name!r}")


CRASH_MARKER_ENV = "DEDUP_CRASH_MARKER"


def crash_once(name: str) -> None:
    """Kill this process the first time any process reaches ``name``; let later ones pass.

    For workers that a framework restarts and retries (Ray actors): the first arrival leaves
    a marker file (``DEDUP_CRASH_MARKER``) and exits hard, the retry finds it and goes on.
    """
    marker = os.environ.get(CRASH_MARKER_ENV)
    if os.environ.get(CRASH_AT_ENV) != name or not marker:
        return
    try:
        with open(marker, "x", encoding="utf-8") as claimed:
            claimed.write(str(os.getpid()))
    except FileExistsError:
        return
    os._exit(137)
