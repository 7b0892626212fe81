"""A demo batch built from real, pinned portraits: for trying the system and testing it.

``fetch_portraits`` puts the seven test photos of ``face_recognition==1.3.0`` in the cache;
``build_demo_batch`` turns them into a batch folder whose ``expected.json`` says what the
stage job must conclude for every row.
"""

from dedup.demo.batch import DemoBatch, ExpectedRow, build_demo_batch, read_demo_batch
from dedup.demo.portraits import PORTRAIT_IDENTITIES, fetch_portraits

__all__ = [
    "PORTRAIT_IDENTITIES",
    "DemoBatch",
    "ExpectedRow",
    "build_demo_batch",
    "fetch_portraits",
    "read_demo_batch",
]
