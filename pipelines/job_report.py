"""What every batch job returns: the batch, how long it took, and its summary for a person.

The command line prints ``summary()`` and nothing else, so each job decides in one place
what an operator reads about it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import RenderableType

# A job's figures: flat, numbers or short strings, never an enrollment id or a name.
Figures = dict[str, float | int | str | None]


@dataclass(frozen=True, kw_only=True)
class JobReport:
    batch_id: str
    seconds: float

    def summary(self) -> list[RenderableType]:
        """Lines (or rich tables) that tell an operator what the job did."""
        raise NotImplementedError

    def figures(self) -> Figures:
        """The job's figures as the night records them (``batch_runs.figures``), the batch
        report reads them and the job metrics publish them (the numbers among them).

        Every job gives at least ``seconds``, ``rows_in`` and ``rows_out``; a subclass
        adds its own to ``self.timing(rows_in, rows_out)``."""
        raise NotImplementedError

    def timing(self, rows_in: int, rows_out: int) -> Figures:
        """The figures every job has: its wall time and the rows it took and gave."""
        return {"seconds": round(self.seconds, 3), "rows_in": rows_in, "rows_out": rows_out}
