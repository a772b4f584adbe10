"""`ablate diagnose`'s terminal side: one progress bar per stage, the path of stages, the answer.

The diagnosis itself is `service.diagnose.staged.run_diagnosis`; this module only chooses the
dispatcher (training processes here, or the Celery workers with --submit) and shows the work.
"""

from __future__ import annotations

import sys

from rich.markup import escape

from service.cli.output import console
from service.cli.progress import RunsProgress, import_reporter_meanwhile, print_failures
from service.cli.reporting import numerical_warnings_quiet
from service.driver import Dispatcher, StudyStatus, SubmitReport
from service.lifecycle.documents import RoundDocument
from service.settings import get_settings
from service.spec import spec_from_data
from service.spec.models import StudySpec


def diagnose_in_stages(
    spec: StudySpec,
    source: str,
    store_url: str,
    submit: bool,
    broker: str | None,
    budget_runs: int | None,
    max_seeds: int | None,
    rounds: int,
    jobs: int,
    verbose: bool,
) -> None:
    from service.datasets.options import DataOptions
    from service.diagnose.staged import default_budget, diagnosis_spec, run_diagnosis
    from service.identity import study_id
    from service.report.terminal import answer, variants_table

    store, dispatcher, poll = _dispatcher(store_url, submit, broker, jobs, verbose)
    data = DataOptions.from_settings(get_settings())
    budget = min(budget_runs or default_budget(spec), spec.ablation.max_runs)
    failed: StudyStatus | None = None
    try:
        for repeat in range(rounds):
            console.print(
                f"diagnosis of [bold]{escape(spec.name)}[/]: study {study_id(diagnosis_spec(spec))}, "
                f"at most {budget} runs, store {escape(store.location())}"
            )
            with RunsProgress() as progress:
                def show_round(planned: RoundDocument, report: SubmitReport) -> None:
                    console.print(
                        f"[bold]stage {planned.index + 1} ({planned.kind})[/]: {escape(planned.reason)} "
                        f"[dim]{len(planned.runs)} runs, {report.reused} already stored[/]"
                    )
                    progress.add(planned.variants, planned.runs, description=planned.kind)

                def show(status: StudyStatus) -> None:
                    nonlocal failed
                    progress.show(status)
                    failed = status if status.errors else failed

                import_reporter_meanwhile()
                with numerical_warnings_quiet():
                    result = run_diagnosis(
                        spec, store, dispatcher, budget, max_seeds, source, show_round, show, poll, data
                    )
            console.print(variants_table(result.summary))
            console.print(answer(result.summary))
            _print_repair(result)
            console.print(f"report: {escape(result.report)}")
            if failed is not None:
                print_failures(failed, progress.names)
            budget -= len({run_id for planned in result.rounds for run_id in planned.runs})
            if result.repaired is None or repeat == rounds - 1 or budget <= 0:
                break
            spec = spec_from_data(_read_spec(store, result))  # diagnose again around the repair
    finally:
        dispatcher.close()
    if failed is not None:
        sys.exit(1)


def _dispatcher(store_url: str, submit: bool, broker: str | None, jobs: int, verbose: bool) -> tuple:
    """(store, dispatcher, seconds between reads of the store) for the chosen mode."""
    if submit:
        from service.client import AblationClient, CeleryDispatcher

        client = AblationClient(broker_url=broker, store_url=store_url)
        return client.store, CeleryDispatcher.of(client), 2.0
    from service.embedded import LocalDispatcher
    from service.store import open_store

    settings = get_settings()
    store = open_store(store_url, settings.store_outage_seconds)
    dispatcher: Dispatcher = LocalDispatcher(store, jobs, verbose, gpu_memory_mb=settings.gpu_memory_mb)
    return store, dispatcher, 0.5


def _print_repair(result) -> None:
    if result.repaired is None:
        console.print("[bold green]repair:[/] nothing to fix found, the baseline is kept as it is")
        return
    gain = result.gain
    measured = (
        f"{gain.delta * 100:+.1f} points" + ("" if gain.metric == "test_accuracy" else " of balanced accuracy")
        + (
            f" (95% interval {gain.ci_low * 100:+.1f} to {gain.ci_high * 100:+.1f})"
            if gain.ci_low is not None and gain.ci_high is not None
            else ""
        )
        if gain is not None
        else "not measured together"
    )
    changes = ", ".join(f"{path}={value}" for path, value in result.findings.repaired.items())
    console.print(f"[bold]repair:[/] {escape(changes)}: {measured} over the baseline")
    console.print(f"repaired config: {escape(result.repaired)}")


def _read_spec(store, result) -> dict:
    import yaml

    from service.diagnose.staged import REPAIRED_FILE
    from service.lifecycle.storage import study_key

    return yaml.safe_load(store.get_bytes(study_key(result.study_id, f"report/{REPAIRED_FILE}")))
