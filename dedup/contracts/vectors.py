"""Templates between their two forms: a vector column (Arrow, as tables and files hold it) and
a matrix (numpy, as engines search it). Every job and tool converts through here, so the
checks (one dimension for every row, float32) are written once.

Delta has no fixed-size arrays: the ``templates`` table stores ``list<float32>``, every row
holding exactly the model's dimension. Template files (what operators and tests use to drive
the gallery without Spark) are Parquet with ``enrollment_id`` and a ``vector`` column of
either form.

>>> import numpy as np
>>> column = vector_column(np.eye(2, dtype=np.float32))
>>> matrix_of(column, 2).tolist()
[[1.0, 0.0], [0.0, 1.0]]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray

from dedup.errors import GalleryError

Matrix = NDArray[np.float32]


def fixed_size_vectors(vectors: pa.Array | pa.ChunkedArray, dimension: int) -> pa.Array:
    """A list<float32> column as fixed_size_list<float32>[dimension], refusing ragged rows."""
    flat = pa.concat_arrays(vectors.chunks) if isinstance(vectors, pa.ChunkedArray) else vectors
    values = flat.flatten()
    if len(values) != len(flat) * dimension or (
        len(flat) and pc.min(pc.list_value_length(flat)).as_py() != dimension
    ):
        raise ValueError(f"template vectors are not all {dimension}-d")
    return pa.FixedSizeListArray.from_arrays(values.cast(pa.float32()), dimension)


def matrix_of(vectors: pa.Array | pa.ChunkedArray, dimension: int) -> Matrix:
    """An (N, dimension) float32 matrix from a vector column of either form."""
    values = fixed_size_vectors(vectors, dimension).flatten()
    matrix = values.to_numpy(zero_copy_only=False).reshape(-1, dimension)
    return np.asarray(matrix, dtype=np.float32)


def vector_column(matrix: NDArray[np.floating]) -> pa.FixedSizeListArray:
    """The fixed-size vector column of an (N, d) matrix."""
    flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).ravel(), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])


def vector_table(ids: list[str], vectors: NDArray[np.float32]) -> pa.Table:
    """A template file's table: enrollment ids and their fixed-size vectors."""
    return pa.table({"enrollment_id": pa.array(ids, pa.string()), "vector": vector_column(vectors)})


def read_templates(path: Path) -> tuple[list[str], Matrix]:
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
        dim = int(pc.max(pc.list_value_length(column)).as_py() or 0)
    try:
        matrix = matrix_of(column, dim)
    except ValueError as exc:
        raise GalleryError(f"{path}: {exc}") from exc
    return table["enrollment_id"].to_pylist(), matrix
