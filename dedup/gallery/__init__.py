"""The gallery: every enrolled template, in sharded FAISS IVF-PQ indexes with full vectors
beside them for exact re-scoring. Storage (layout, training, reader, writer, erasure, publish)
and the search engines only; what a search's scores mean is ``dedup.matching``."""
