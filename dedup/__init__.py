"""dedup: nightly face deduplication for identity registries.

This package is the engine-free domain core. It never imports pyspark or ray at
module level; the engine jobs live in the sibling package ``pipelines``.
"""

__version__ = "0.1.0"
