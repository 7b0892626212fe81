"""Ray jobs: the embed job (and, later, matching against FAISS shards)."""
