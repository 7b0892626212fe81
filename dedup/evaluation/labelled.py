"""An evaluation set as ``dedup evaluate`` reads it: templates and their labels, validated.

Two Parquet files. The templates hold ``enrollment_id`` and ``vector`` (fixed_size_list<float32>
or list<float>); the labels hold ``enrollment_id``, ``subject_id`` and any number of group
columns (every other column: ``group``, ``age_band``...). The files may come from anyone, so
every way they can be wrong is one ``EvaluationError`` naming the file and what to fix: not a
Parquet file, a column missing, an id null or twice, an id in one file only, a null, non-finite
or zero vector, vectors of different dimensions.

The groups are kept apart from the vectors here: ``EvaluationSet.vectors`` and the ids are
what the search sees; ``groups`` only meets the search's results (``differentials``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray

from dedup.errors import EvaluationError

MISSING_GROUP = "(none)"  # the group of a label row whose group cell is null


@dataclass(frozen=True)
class EvaluationSet:
    """Enrollments in the templates' order: ids, unit vectors, subjects, group columns."""

    enrollment_ids: list[str]
    vectors: NDArray[np.float32]  # (n, d), unit length
    subjects: NDArray[np.int64]  # subject number per enrollment (0..subject_count-1)
    subject_ids: list[str]
    groups: dict[str, list[str]]  # column -> group label per enrollment


def _read(path: Path, what: str) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise EvaluationError(f"{path}: the {what} are not a readable Parquet file: {exc}") from exc


def _ids(table: pa.Table, column: str, path: Path) -> list[str]:
    if column not in table.column_names:
        raise EvaluationError(
            f"{path}: no column {column!r} (columns: {', '.join(table.column_names) or 'none'})"
        )
    values = table[column]
    if values.null_count:
        raise EvaluationError(f"{path}: {values.null_count} rows have no {column}")
    if not (pa.types.is_string(values.type) or pa.types.is_integer(values.type)):
        raise EvaluationError(f"{path}: {column} must be text or integers, not {values.type}")
    return [str(v) for v in values.to_pylist()]


def _unique(ids: list[str], path: Path) -> None:
    seen: set[str] = set()
    for value in ids:
        if value in seen:
            raise EvaluationError(f"{path}: enrollment_id {value!r} appears more than once")
        seen.add(value)


def unit_vectors(column: pa.ChunkedArray, path: Path) -> NDArray[np.float32]:
    """The vector column as unit-length float32 rows, refusing nulls, ragged rows, non-finite
    values and zero vectors."""
    kind = column.type
    if not (pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind)):
        raise EvaluationError(f"{path}: vector must be a list of floats, not {kind}")
    if not pa.types.is_floating(kind.value_type):
        raise EvaluationError(f"{path}: vector must hold floats, not {kind.value_type}")
    flat = pa.concat_arrays(column.chunks) if column.num_chunks else pa.array([], kind)
    if flat.null_count:
        raise EvaluationError(f"{path}: {flat.null_count} rows have no vector")
    lengths = pc.list_value_length(flat).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths.min() != lengths.max() or lengths.min() == 0):
        raise EvaluationError(
            f"{path}: vectors of mixed dimensions ({int(lengths.min())} to {int(lengths.max())}); "
            "every template must come from one model"
        )
    dim = int(lengths[0]) if len(lengths) else 0
    values = flat.flatten()
    if values.null_count:
        raise EvaluationError(f"{path}: vectors hold null values")
    matrix = np.asarray(values.to_numpy(zero_copy_only=False), np.float64).reshape(-1, dim)
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise EvaluationError(f"{path}: {int(bad.sum())} vectors hold NaN or infinite values")
    norms = np.linalg.norm(matrix, axis=1)
    if (norms == 0).any():
        raise EvaluationError(f"{path}: {int((norms == 0).sum())} vectors are all zeros")
    unit: NDArray[np.float32] = (matrix / norms[:, None]).astype(np.float32)
    return unit


def read_evaluation_set(templates: Path, labels: Path) -> EvaluationSet:
    """Both files, checked against each other; the enrollments in the templates' order."""
    t_table, l_table = _read(templates, "templates"), _read(labels, "labels")
    t_ids = _ids(t_table, "enrollment_id", templates)
    if "vector" not in t_table.column_names:
        raise EvaluationError(f"{templates}: no column 'vector'")
    l_ids = _ids(l_table, "enrollment_id", labels)
    subject_ids = _ids(l_table, "subject_id", labels)
    _unique(t_ids, templates)
    _unique(l_ids, labels)
    only_t, only_l = set(t_ids) - set(l_ids), set(l_ids) - set(t_ids)
    for only, where, other in ((only_t, templates, labels), (only_l, labels, templates)):
        if only:
            some = ", ".join(repr(v) for v in sorted(only)[:3])
            raise EvaluationError(
                f"{len(only)} enrollment ids of {where} are not in {other}: {some}"
            )
    if len(t_ids) < 2:
        raise EvaluationError(f"{templates}: an evaluation needs at least two templates")
    vectors = unit_vectors(t_table["vector"], templates)
    row_of = {e: i for i, e in enumerate(l_ids)}
    order = np.array([row_of[e] for e in t_ids], dtype=np.int64)
    names, subjects = np.unique(np.array(subject_ids, dtype=object)[order], return_inverse=True)
    groups: dict[str, list[str]] = {}
    for column in l_table.column_names:
        if column in ("enrollment_id", "subject_id"):
            continue
        cells = l_table[column].to_pylist()
        groups[column] = [MISSING_GROUP if cells[i] is None else str(cells[i]) for i in order]
    return EvaluationSet(
        enrollment_ids=t_ids,
        vectors=vectors,
        subjects=subjects.astype(np.int64),
        subject_ids=[str(n) for n in names],
        groups=groups,
    )
