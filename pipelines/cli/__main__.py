"""``python -m pipelines.cli``: the same command line as the ``dedup`` script."""

from pipelines.cli import main

main()
