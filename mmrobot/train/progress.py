"""The trainer's progress bar (rich): steps done, loss, token accuracy, samples/s."""

from __future__ import annotations

__all__ = ["TrainProgress"]


class TrainProgress:
    """A rich progress bar with loss, token accuracy and throughput."""

    def __init__(self, total: int, start: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._p = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
        )
        self._p.start()
        self._task = self._p.add_task("train", total=total, completed=start, status="")
        self._status = ""

    def update(self, done: int, loss: float, acc: float, rate: float | None) -> None:
        if rate is not None:
            self._status = f"loss {loss:.3f} acc {acc:.3f} {rate:.0f} samples/s"
        self._p.update(self._task, completed=done, status=self._status)

    def close(self) -> None:
        self._p.stop()
