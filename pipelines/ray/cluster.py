"""Joining the Ray cluster the way every dedup job does: quietly.

The console of a job is its summary. Ray's own progress bars and INFO lines (Ray Data prints
each dataset's plan and progress) go to the run's log file when one is given, and only
warnings and errors reach the console. While a job's Ray work runs (``stderr_into``), the
process's standard error goes to that file too: Ray's C++ core worker writes its own lines
there (for one, that Ray Data's actors take their arguments from the object store, which
Ray Data does for every actor pool), and Python cannot filter them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

RAY_LOGGERS = ("ray", "ray.data")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def connect(address: str | None, log_file: Path | None = None) -> None:
    """Start or join Ray once per process, with library logs kept off the console."""
    import ray
    import ray.data

    if not ray.is_initialized():
        with stderr_into(log_file):
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.WARNING)
        if log_file is not None and not any(
            getattr(h, "baseFilename", None) == str(log_file) for h in logger.handlers
        ):
            log_file.parent.mkdir(parents=True, exist_ok=True)
            to_file = logging.FileHandler(log_file, encoding="utf-8")
            to_file.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            logger.addHandler(to_file)


@contextlib.contextmanager
def stderr_into(log_file: Path | None) -> Iterator[None]:
    """Point the process's standard error (file descriptor 2, which native code writes to as
    well) at ``log_file`` until the block ends; without a file, change nothing."""
    if log_file is None:
        yield
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(log_file, "ab") as target:
            os.dup2(target.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
