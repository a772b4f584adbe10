"""What long commands show while they train: a progress bar of runs with the running runs'
epochs and an ETA, the failures at the end, and the reporter imported while runs train."""

from __future__ import annotations

import threading

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column

from service.cli.output import console, errors
from service.driver import StudyStatus


def print_failures(status: StudyStatus, names: dict[str, str]) -> None:
    for run_id, error in status.errors.items():
        name = names.get(run_id, run_id)
        errors.print(f"[red]run {run_id} ({escape(name)}) failed:[/] {escape(error)}", highlight=False)


class RunsProgress:
    """A progress bar of runs done / total with the running runs' epochs and an ETA; one bar
    per batch of runs (a study, or each round of a staged one)."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            # The running runs take what is left of the line, cut with an ellipsis: the bar
            # stays one line at 80 columns whatever the names.
            TextColumn("{task.fields[current]}", table_column=Column(no_wrap=True, overflow="ellipsis", max_width=24)),
            console=console,
            transient=False,
            refresh_per_second=4,  # rich's 10 a second takes CPU from training on a small machine
        )
        self.names: dict[str, str] = {}
        self.task = None

    def __enter__(self) -> RunsProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def add(self, variants, runs, description: str = "runs") -> None:
        """A new bar for these variants' runs (`runs`: run_id -> RunSpec)."""
        for variant in variants:
            for run_id in variant.run_ids:
                self.names.setdefault(run_id, f"{variant.name} (seed {runs[run_id].seed})")
        self.task = self.bar.add_task(description, total=len(runs), current="", eta="")

    def show(self, status: StudyStatus) -> None:
        self.bar.update(self.task, completed=status.finished, current=_current(status, self.names), eta=_eta(status))


def _current(status: StudyStatus, names: dict[str, str]) -> str:
    """The runs training now with their epoch; before any has started, what is happening."""
    if status.running:
        return escape("; ".join(
            f"{names.get(run_id, run_id)} epoch {epoch}/{epochs}"
            for run_id, (epoch, epochs) in sorted(status.running.items())
        ))
    if status.finished == status.reused and not status.complete:
        return "loading TensorFlow…"
    return ""


def _eta(status: StudyStatus) -> str:
    if status.complete or status.eta_seconds is None:
        return ""
    minutes, seconds = divmod(int(status.eta_seconds), 60)
    return f"ETA {minutes}:{seconds:02d}" if minutes < 60 else f"ETA {minutes // 60}h{minutes % 60:02d}m"


def import_reporter_meanwhile() -> None:
    """Import the reporter (matplotlib, scipy: about a second) while the runs train, so the
    report follows the last run at once. The import lock makes a later import wait for it."""

    def load() -> None:
        try:
            import service.report.plots  # noqa: F401
            import service.report.render  # noqa: F401
            import service.report.summary  # noqa: F401
        except ImportError:
            pass  # the report's own import raises it where it can be reported

    threading.Thread(target=load, name="import-reporter", daemon=True).start()
