"""Joining the Ray cluster the way every dedup job does: quietly.

The console of a job is its summary. Ray's own progress bars and INFO lines (Ray Data prints
each dataset's plan and progress) go to the run's log file when one is given, and only
warnings and errors reach the console.
"""

from __future__ import annotations

import logging
from pathlib import Path

RAY_LOGGERS = ("ray", "ray.data")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def connect(address: str | None, log_file: Path | None = None) -> None:
    """Start or join Ray once per process, with library logs kept off the console."""
    import ray
    import ray.data

    if not ray.is_initialized():
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
