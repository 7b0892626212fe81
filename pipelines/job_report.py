"""What every batch job returns: the batch, how long it took, and its summary for a person.

The command line prints ``summary()`` and nothing else, so each job decides in one place
what an operator reads about it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import RenderableType


@dataclass(frozen=True, kw_only=True)
class JobReport:
    batch_id: str
    seconds: float

    def summary(self) -> list[RenderableType]:
        """Lines (or rich tables) that tell an operator what the job did."""
        raise NotImplementedError

    def figures(self) -> dict[str, float | int | str | None]:
        """The job's figures as the night records them (``batch_runs.figures``), the batch
        report reads them and the job metrics publish them."""
        return {"seconds": round(self.seconds, 3)}
