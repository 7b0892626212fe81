"""Engine jobs (Spark, Ray) that drive the engine-free core in ``dedup``."""
