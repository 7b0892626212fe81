"""How long a batch's published figures stay where the jobs published them.

Every job run publishes a group per batch (``job_metrics``: the Pushgateway's ``{job, batch}``
group, the textfile collector's ``<job>-<batch>.prom``), and nothing ever removes one. A
Pushgateway keeps its groups for ever, and Prometheus scrapes every one of them at every
scrape: after three years of nights that is some 7,000 groups, scraped as live series though
their nights ended long ago. Prometheus's own storage keeps their history for its retention
anyway, so the groups of a batch older than ``metrics.retention_days`` are deleted: on the
Pushgateway by its API, in the textfile folder by unlinking the file.

Only groups this project's jobs publish are touched: a ``{job, batch}`` grouping of one of
``jobs``, never a job's last-success group (no batch), nor another system's groups on a
shared Pushgateway.
"""

from __future__ import annotations

import json
import os
import stat
import urllib.request
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import delete_from_gateway

from dedup.errors import DedupError
from dedup.settings import MetricsSettings

DAY_S = 86_400.0
GROUPS_API = "/api/v1/metrics"


@dataclass(frozen=True)
class Pruned:
    """What a pruning removed: Pushgateway groups as ``job/batch``, text files by name."""

    groups: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    def sentence(self) -> str:
        return (
            f"{len(self.groups)} Pushgateway groups and {len(self.files)} metric files of "
            "batches past the metrics retention removed"
        )


def prune_published(settings: MetricsSettings, jobs: Collection[str], now: float) -> Pruned:
    """Delete every batch group of ``jobs`` last published before ``now - retention_days``
    (Unix seconds), wherever the settings publish. Raises DedupError when the Pushgateway
    cannot be listed or refuses a deletion; the text files are pruned first."""
    cutoff = now - settings.retention_days * DAY_S
    files: tuple[str, ...] = ()
    if settings.textfile_dir is not None:
        files = tuple(_prune_files(Path(settings.textfile_dir), jobs, cutoff))
    groups: tuple[str, ...] = ()
    if settings.pushgateway:
        groups = tuple(_prune_groups(settings.pushgateway, settings.push_timeout_s, jobs, cutoff))
    return Pruned(groups, files)


def _prune_groups(
    gateway: str, timeout: float, jobs: Collection[str], cutoff: float
) -> Iterator[str]:
    base = gateway.rstrip("/") if "://" in gateway else f"http://{gateway.rstrip('/')}"
    for job, batch, pushed in _batch_groups(base, timeout):
        if job in jobs and pushed < cutoff:
            try:
                delete_from_gateway(base, job=job, grouping_key={"batch": batch}, timeout=timeout)
            except OSError as error:
                raise DedupError(
                    f"the Pushgateway at {base} refused to delete group {job}/{batch}: {error}"
                ) from error
            yield f"{job}/{batch}"


def _batch_groups(base: str, timeout: float) -> Iterator[tuple[str, str, float]]:
    try:
        with urllib.request.urlopen(base + GROUPS_API, timeout=timeout) as response:
            listing = json.loads(response.read())
    except (OSError, ValueError) as error:
        raise DedupError(f"could not list the Pushgateway's groups at {base}: {error}") from error
    if not isinstance(listing, dict) or not isinstance(listing.get("data"), list):
        raise DedupError(f"the Pushgateway at {base} answered {GROUPS_API} with no group list")
    return batch_groups(listing["data"])


def batch_groups(listed: list[object]) -> Iterator[tuple[str, str, float]]:
    """(job, batch, last successful push) of every group of a Pushgateway's listing that is
    grouped by exactly job and batch; anything else in the listing is passed over."""
    for group in listed:
        labels = group.get("labels") if isinstance(group, dict) else None
        if not isinstance(labels, dict) or set(labels) != {"job", "batch"}:
            continue
        yield str(labels["job"]), str(labels["batch"]), _push_time(group)  # type: ignore[arg-type]


def _push_time(group: dict[str, object]) -> float:
    """The group's last successful push (0 where it never had one, or it cannot be read)."""
    try:
        value = group["push_time_seconds"]["metrics"][0]["value"]  # type: ignore[index]
        return float(value)
    except (KeyError, IndexError, TypeError, ValueError):
        return 0.0


def _prune_files(folder: Path, jobs: Collection[str], cutoff: float) -> Iterator[str]:
    """Unlink ``<job>-<batch>.prom`` files older than ``cutoff``: regular files only (a
    link or anything else there is not one the jobs wrote), never ``<job>@last-success``."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    except OSError as error:
        raise DedupError(f"could not list the metrics folder {folder}: {error}") from error
    for entry in entries:
        if not any(entry.name.startswith(f"{job}-") for job in jobs):
            continue
        if not entry.name.endswith(".prom"):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                os.unlink(entry.path)
                yield entry.name
        except FileNotFoundError:
            continue  # removed meanwhile: a concurrent pruning
