"""Spark jobs: the stage job and the Delta Lake plumbing it needs."""
