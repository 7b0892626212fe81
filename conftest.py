"""pytest collects the docstring examples of dedup/ and pipelines/ (``--doctest-modules`` in
pyproject.toml). Alembic's env.py is not collected: it reads the context of a running migration
when it is imported, so it can only be imported by Alembic."""

collect_ignore = ["dedup/adjudication/migrations/env.py"]
