"""A rich progress bar over Spark's own task counts, for long jobs run from a terminal."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.sql import SparkSession
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def spark_progress(
    spark: SparkSession, label: str, console: Console | None = None
) -> Iterator[None]:
    """Show the tasks of the running Spark stages as they complete, until the block ends."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield
        return
    tracker = spark.sparkContext.statusTracker()
    stop = threading.Event()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tasks"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = progress.add_task(label, total=None)

    def poll() -> None:
        while not stop.wait(0.5):
            infos = (tracker.getStageInfo(s) for s in tracker.getActiveStageIds())
            stages = [info for info in infos if info is not None]
            if stages:
                total = sum(int(info.numTasks) for info in stages)
                done = sum(int(info.numCompletedTasks) for info in stages)
                progress.update(task, total=total, completed=done)

    with progress:
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            yield
        finally:
            stop.set()
            poller.join()
