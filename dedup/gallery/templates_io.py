"""Template files: Parquet with ``enrollment_id`` (string) and ``vector`` (fixed-size list of
float32), the form operators and tests use to drive the gallery without Spark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from dedup.contracts.schemas import fixed_size_vectors
from dedup.errors import GalleryError


def vector_table(ids: list[str], vectors: NDArray[np.float32]) -> pa.Table:
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), type=pa.float32())
    return pa.table(
        {
            "enrollment_id": pa.array(ids, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
        }
    )


def read_templates(path: Path) -> tuple[list[str], NDArray[np.float32]]:
    """(enrollment ids, (N, d) float32 vectors) from a template Parquet file."""
    try:
        table = pq.read_table(path, columns=["enrollment_id", "vector"])
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        raise GalleryError(
            f"{path}: not a template file with enrollment_id and vector: {exc}"
        ) from exc
    column = table["vector"]
    if pa.types.is_fixed_size_list(column.type):
        dim = column.type.list_size
    else:
        lengths = pa.compute.list_value_length(column)
        dim = int(pa.compute.max(lengths).as_py() or 0)
    try:
        vectors = fixed_size_vectors(column, dim)
    except ValueError as exc:
        raise GalleryError(f"{path}: {exc}") from exc
    matrix = vectors.flatten().to_numpy(zero_copy_only=False).reshape(len(table), dim)
    return table["enrollment_id"].to_pylist(), matrix.astype(np.float32)
