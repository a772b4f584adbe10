"""Local-mode commands: `ablate run`, `ablate validate`, `ablate schema`."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.table import Table

from service.cli import cli
from service.cli.output import console
from service.cli.progress import RunsProgress, import_reporter_meanwhile, print_failures
from service.cli.reporting import write_report_with_status
from service.settings import get_settings
from service.spec import load_spec
from service.spec.models import StudySpec

if TYPE_CHECKING:
    from service.plan import Plan


def build_plan(spec: StudySpec, source: str) -> Plan:
    from service.datasets.options import DataOptions
    from service.plan import build_plan as build  # numpy, scikit-learn: after the trainers start

    return build(spec, source=source, data=DataOptions.from_settings(get_settings()))


def _plan(spec_path: str) -> tuple[StudySpec, Plan]:
    spec = load_spec(spec_path)
    return spec, build_plan(spec, source=spec_path)


def _plan_table(plan: Plan) -> Table:
    table = Table(title=f"study {plan.study_id}", title_justify="left")
    table.add_column("variant")
    table.add_column("changes")
    table.add_column("runs", justify="right")
    for variant in plan.variants:
        changes = ", ".join(f"{k}={json.dumps(v)}" for k, v in variant.overrides.items()) or "—"
        table.add_row(escape(variant.name), escape(changes), str(len(variant.run_ids)))
    return table


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
def validate(spec: str) -> None:
    """Check SPEC and print its plan (variants x seeds = runs) without training."""
    study, plan = _plan(spec)
    console.print(_plan_table(plan))
    seeds = len(study.ablation.seed_list)
    console.print(
        f"{len(plan.variants)} variants x {seeds} seeds = {plan.run_count} runs "
        f"({len(plan.variants) * seeds - plan.run_count} identical runs collapsed)"
    )


@cli.command()
def schema() -> None:
    """Print the JSON Schema of a study spec (for editor completion of YAML files)."""
    document = StudySpec.model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "Ablate study spec"
    click.echo(json.dumps(document, indent=2))


store_option = click.option(
    "--store",
    "store_url",
    help="Result directory (default: $ABLATE_STORE or ./ablate-results).",
)
jobs_option = click.option(
    "--jobs",
    "-j",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Runs trained at once, each in its own process.",
)
verbose_option = click.option("--verbose", "-v", is_flag=True, help="Show the training processes' logs.")
broker_option = click.option("--broker", help="Broker URL, with --submit (default: $ABLATE_BROKER_URL).")


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@store_option
@jobs_option
@verbose_option
def run(spec: str, store_url: str | None, jobs: int, verbose: bool) -> None:
    """Train the study in SPEC on this machine, print a summary table, write the report."""
    from service.embedded import Trainers

    settings = get_settings()
    study = load_spec(spec)
    trainers = Trainers(jobs, verbose, settings.gpu_memory_mb)  # TensorFlow loads while the plan is built
    try:
        plan = build_plan(study, source=spec)
    except BaseException:
        trainers.kill()
        raise
    try:
        train_locally(plan, store_url or settings.store, jobs, verbose, trainers)
    except BaseException:
        trainers.kill()
        raise


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--submit",
    "submit_",
    is_flag=True,
    help="Train on the workers (Celery) instead of here; this process plans and follows the stages.",
)
@click.option(
    "--budget-runs",
    type=click.IntRange(1, 100_000),
    help="Runs the whole diagnosis may train (default: 40; never more than the spec's ablation.max_runs).",
)
@click.option(
    "--max-seeds",
    type=click.IntRange(2, 1000),
    help="Seeds per config at most, fresh ones for confirmation "
    "(default: the spec's ablation.max_seeds, else twice its seeds, at least 5).",
)
@click.option(
    "--rounds",
    type=click.IntRange(1, 10),
    default=1,
    show_default=True,
    help="Diagnose again around the repaired config, until no fix helps or the budget is spent.",
)
@store_option
@broker_option
@jobs_option
@verbose_option
def diagnose(
    spec: str, submit_: bool, budget_runs: int | None, max_seeds: int | None, rounds: int,
    store_url: str | None, broker: str | None, jobs: int, verbose: bool,
) -> None:
    """Diagnose the baseline in SPEC in stages: its seeds and symptoms, a search where the
    symptoms point, more seeds where the answer is open, and a repaired config (its ablation
    section's seeds and max_runs are kept; its factors are not used)."""
    from service.cli.staged import diagnose_in_stages

    settings = get_settings()
    diagnose_in_stages(
        load_spec(spec),
        spec,
        store_url or settings.store,
        submit_,
        broker,
        budget_runs,
        max_seeds,
        rounds,
        jobs,
        verbose,
    )


def train_locally(plan: Plan, store_url: str, jobs: int, verbose: bool, trainers=None) -> None:
    from service.embedded import run_plan
    from service.store import open_store

    settings = get_settings()
    store = open_store(store_url, settings.store_outage_seconds)
    console.print(f"study [bold]{plan.study_id}[/]: {plan.run_count} runs, store {escape(store.location())}")
    with RunsProgress() as progress:
        progress.add(plan.variants, plan.runs)
        import_reporter_meanwhile()
        final = run_plan(
            plan, store, jobs, on_progress=progress.show, verbose=verbose, trainers=trainers,
            gpu_memory_mb=settings.gpu_memory_mb,
        )
        if trainers is not None:
            trainers.close(wait=False)  # their TensorFlow shutdown overlaps the report

    console.print(f"{final.total - final.reused} runs trained, {final.reused} reused from the store")
    print_failures(final, progress.names)
    console.print(f"results: {escape(store.location('studies/' + plan.study_id))}")
    report_location = write_report_with_status(store, plan.study_id)
    console.print(f"report: {escape(report_location)}")
    if final.errors:
        sys.exit(1)
