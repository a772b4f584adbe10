"""Distributed-mode commands: submit, status, cancel, results, report, pull and worker. Every
STUDY argument is a study id, a unique prefix of one, or the study's spec file."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from service.cli import cli
from service.cli.output import console, errors
from service.errors import AblateError
from service.lifecycle.states import RunState
from service.lifecycle.storage import study_key

if TYPE_CHECKING:
    from service.client import AblationClient, Study, StudyStatus

STATE_COLUMNS = tuple(RunState)
study_argument = click.argument("study_id", metavar="STUDY")


def _client(store: str | None, broker: str | None = None) -> AblationClient:
    from service.client import AblationClient  # celery and kombu only for these commands

    return AblationClient(broker_url=broker, store_url=store)


store_option = click.option("--store", help="The store (default: $ABLATE_STORE).")
broker_option = click.option("--broker", help="Broker URL (default: $ABLATE_BROKER_URL).")


def status_table(status: StudyStatus) -> Table:
    table = Table(
        title=f"study {status.study_id}: {status.finished}/{status.total} runs finished", title_justify="left"
    )
    table.add_column("variant")
    for state in STATE_COLUMNS:
        table.add_column(str(state), justify="right")
    table.add_column("epochs of running runs")
    for variant in status.variants:
        epochs = ", ".join(f"{epoch}/{total}" for epoch, total in variant.running_epochs)
        table.add_row(escape(variant.name), *[str(variant.counts[s] or "") for s in STATE_COLUMNS], epochs)
    if status.eta_seconds:
        table.caption = f"ETA {_duration(status.eta_seconds)}"
    return table


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _watch(study: Study, client: AblationClient, timeout: float | None = None) -> StudyStatus:
    from service.queue_watch import QueueWatch

    def warn(message: str) -> None:
        errors.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False)

    settings = client.settings
    watch = QueueWatch(client.celery, settings.queue, settings.broker_url_redacted(), warn)
    with Live(console=console, auto_refresh=False) as live:
        def show(status: StudyStatus) -> None:
            live.update(status_table(status), refresh=True)
            watch.check(unfinished=not status.complete)

        final = study.wait(timeout=timeout, on_progress=show)
    console.print()
    return final


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--wait", "wait_", is_flag=True, help="Follow the study until every run finished.")
@store_option
@broker_option
def submit(spec: str, wait_: bool, store: str | None, broker: str | None) -> None:
    """Queue the runs of SPEC for the workers (runs stored or queued already are skipped)."""
    client = _client(store, broker)
    submit_plan(client.plan(spec), store, broker, wait_, client)


def submit_plan(plan, store: str | None, broker: str | None, wait: bool, client=None) -> None:
    client = client or _client(store, broker)
    study = client.submit_plan(plan)
    report = study.submit_report
    console.print(
        f"study [bold]{study.study_id}[/]: {report.queued} runs queued, "
        f"{report.already_queued} already queued or running, {report.reused} reused from the store"
    )
    console.print(f"follow it with: ablate status {study.study_id} --watch")
    if wait:
        final = _watch(study, client)
        from service.cli.reporting import write_report_with_status

        console.print(f"report: {escape(write_report_with_status(client.store, study.study_id))}")
        if final.counts["failed"]:
            sys.exit(1)


@cli.command()
@study_argument
@click.option(
    "--watch",
    is_flag=True,
    help="Refresh until every run finished; warn while no worker consumes the queue.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON (no --watch).")
@store_option
@broker_option
def status(study_id: str, watch: bool, as_json: bool, store: str | None, broker: str | None) -> None:
    """Progress of STUDY: runs per variant and state, epochs of running runs, ETA."""
    if watch and as_json:
        raise AblateError("--json prints the status once; it goes without --watch")
    client = _client(store, broker)
    study = client.study(study_id)
    if watch:
        _watch(study, client)
    elif as_json:
        click.echo(json.dumps(status_document(study.status()), indent=2))
    else:
        console.print(status_table(study.status()))


def status_document(status: StudyStatus) -> dict:
    """The status as JSON: runs per state for the study and each variant, running epochs, ETA."""
    return {
        "study_id": status.study_id,
        "total": status.total,
        "finished": status.finished,
        "complete": status.complete,
        "counts": {str(state): status.counts[state] for state in STATE_COLUMNS},
        "eta_seconds": status.eta_seconds,
        "variants": [
            {
                "name": variant.name,
                "counts": {str(state): variant.counts[state] for state in STATE_COLUMNS},
                "running_epochs": [list(pair) for pair in variant.running_epochs],
            }
            for variant in status.variants
        ],
        "errors": status.errors,
    }


@cli.command()
@study_argument
@store_option
@broker_option
def cancel(study_id: str, store: str | None, broker: str | None) -> None:
    """Cancel STUDY: queued runs do not start, running runs stop at their next epoch end."""
    study = _client(store, broker).study(study_id)
    count = study.cancel()
    console.print(f"study {study.study_id}: {count} runs cancelled (submit the spec again to resume them)")


@cli.command()
@study_argument
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@store_option
def results(study_id: str, fmt: str, store: str | None) -> None:
    """Results of STUDY, one row per variant and run."""
    client = _client(store)
    study = client.study(study_id)
    rows = study.results()
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        buffer = io.StringIO()
        from service.report.rows import columns_of

        writer = csv.DictWriter(buffer, fieldnames=columns_of(rows), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        click.echo(buffer.getvalue(), nl=False)
    else:
        _print_summary(client, study)


def _print_summary(client: AblationClient, study: Study) -> None:
    from service.report.terminal import results_table

    console.print(results_table(client.store, study.document))


@cli.command()
@study_argument
@click.option("--open", "open_", is_flag=True, help="Open index.html in a browser.")
@store_option
def report(study_id: str, open_: bool, store: str | None) -> None:
    """Write (or rewrite) the report of STUDY into the store and print where it is."""
    import tempfile
    import webbrowser

    from service.cli.reporting import write_report_with_status

    client = _client(store)
    study_id = client.study(study_id).study_id  # a clear error for an unknown study
    location = write_report_with_status(client.store, study_id)
    console.print(f"report: {escape(location)}")
    if open_:
        local = Path(location)
        if not local.is_file():  # in a bucket: open a local copy
            local = Path(tempfile.mkdtemp(prefix="ablate-report-")) / "index.html"
            client.store.get_file(study_key(study_id, "report/index.html"), local)
        webbrowser.open(local.resolve().as_uri())


@cli.command()
@study_argument
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace files in DEST that differ from the store's.")
@click.option("--report-only", is_flag=True, help="Only the study's folder: study.json and its report.")
@click.option(
    "--no-checkpoints",
    is_flag=True,
    help="Every run's files but its checkpoints (only a resume needs them).",
)
@store_option
def pull(study_id: str, dest: str, store: str | None, overwrite: bool, report_only: bool, no_checkpoints: bool) -> None:
    """Download STUDY's artifacts into DEST, in the store's own layout (files already there
    with other content are kept unless --overwrite)."""
    if report_only and no_checkpoints:
        raise AblateError("--report-only copies no run files; --no-checkpoints goes without it")
    from service.pull import pull_study

    client = _client(store)
    study = client.study(study_id)
    study_id = study.study_id

    def show(index: int, total: int) -> None:
        if sys.stdout.isatty():
            console.print(f"\r{index}/{total} files", end="")

    pulled = pull_study(
        client.store, study_id, study.document.model_dump(mode="json"), Path(dest), overwrite, show,
        report_only=report_only, checkpoints=not no_checkpoints,
    )
    console.print(
        f"{pulled.copied} files of study {study_id} copied into {escape(str(dest))}, "
        f"{pulled.unchanged} already there"
    )
    if report_only and not client.store.list(study_key(study_id, "report/")):
        console.print(f"study {study_id} has no report yet: `ablate report {study_id}` writes it")
    if pulled.conflicts:
        raise AblateError(
            f"{len(pulled.conflicts)} files in {dest} differ from the store's and were kept "
            f"(use --overwrite to replace them), e.g. {pulled.conflicts[0]}"
        )


@cli.command()
@click.option("--queue", "-Q", help="Queue to consume (default: $ABLATE_QUEUE).")
@click.option(
    "--gpus",
    default="auto",
    show_default=True,
    help="GPUs to train on: auto (every GPU nvidia-smi lists), none (CPU), or indices such as 0,2.",
)
@click.option(
    "--runs-per-gpu",
    type=click.IntRange(1, 64),
    help="Runs trained at once on each GPU, each in its own process (default: $ABLATE_RUNS_PER_GPU, 1).",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 64),
    help="Without GPUs: runs trained at once (pool processes)  [default: 1]",
)
@click.option("--hostname", "-n", help="Worker name (default: celery@<host>; gpu<i>-<model>@<host> per GPU).")
@click.option("--loglevel", "-l", default="info", show_default=True)
@click.option(
    "--gpu-child",
    is_flag=True,
    hidden=True,
    help="Internal: the worker of one GPU, started by the GPU supervisor.",
)
def worker(
    queue: str | None,
    gpus: str,
    runs_per_gpu: int | None,
    concurrency: int | None,
    hostname: str | None,
    loglevel: str,
    gpu_child: bool,
) -> None:
    """Start a Celery worker that trains runs (needs the `worker` extra).

    With GPUs, one worker process per GPU, pinned with CUDA_VISIBLE_DEVICES, each training
    --runs-per-gpu runs at once under a per-process memory cap; without, --concurrency runs
    on the CPU.
    """
    from service.settings import get_settings
    from workers.cli import start_worker  # the layer rule's one exception: starting a worker

    settings = get_settings()
    code = start_worker(settings, queue, gpus, runs_per_gpu, concurrency, hostname, loglevel, gpu_child)
    if code:
        sys.exit(code)
