"""The gallery: every enrolled template, in sharded FAISS IVF-PQ indexes with full vectors
beside them for exact re-scoring; one-to-many and in-batch search; thresholds at scale."""
