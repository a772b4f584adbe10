"""The reporter: statistics across seeds, a diagnosis, plots, and a report in the store.

`write_report(store, study_id)` gathers the study's runs from the store and writes
`studies/{study_id}/report/`: index.html (self-contained), report.md, summary.json, runs.csv,
plots/*.png and, when the diagnosis has one, next-study.yaml (the study to run next). It is
idempotent: the report's timestamp is the newest run result's, so writing it twice gives the
same files.
"""

from __future__ import annotations

import json
from typing import Any

from service.errors import KeyNotFound, StoreError
from service.holdout import HeldOutPredictions, read_held_out
from service.lifecycle.documents import RepairDocument, RoundDocument, StudyDocument
from service.lifecycle.states import RunState
from service.lifecycle.storage import effective_state, read_document, read_metrics, read_status, run_key, study_key
from service.report.label_issues import is_out_of_fold
from service.report.models import Summary
from service.report.study_data import RunRecord, StudyData, VariantRecord
from service.spec import spec_from_data
from service.store.base import Store

REPORT_FILES = ("index.html", "report.md", "summary.json", "runs.csv")


def gather(store: Store, study_id: str) -> StudyData:
    """Everything the reporter needs about a study, read from the store."""
    document = store.get_json(study_key(study_id, "study.json"))
    return gather_document(store, {**document, "study_id": study_id})


def gather_document(
    store: Store, document: StudyDocument | dict[str, Any], with_facts: bool = True
) -> StudyData:
    """The study's runs from the store, for its `study.json` (as a document or its JSON);
    `with_facts` False skips reading the dataset (rows need only the runs)."""
    if isinstance(document, StudyDocument):
        document = document.model_dump(mode="json")
    records: dict[str, RunRecord] = {}
    for run_id in document["run_ids"]:
        records[run_id] = _run_record(store, run_id)
    variants = [
        VariantRecord(
            name=variant["name"],
            factor=variant.get("factor"),
            overrides=variant.get("overrides", {}),
            runs=[records[run_id] for run_id in variant["run_ids"]],
        )
        for variant in document["variants"]
    ]
    # Out-of-fold runs are no variant: kept apart, so no comparison or claim sees them.
    out_of_fold = [v for index, v in enumerate(variants) if index and is_out_of_fold(v)]
    return StudyData(
        study_id=document["study_id"],
        spec=document["spec"],
        variants=[v for v in variants if not any(v is o for o in out_of_fold)],
        dataset=_facts(document["spec"]) if with_facts else None,
        stages=_rounds(store, document["study_id"]),
        repair=_repair(store, document["study_id"]),
        out_of_fold=out_of_fold,
        held_out=_held_out(store, out_of_fold),
    )


def _held_out(store: Store, variants: list[VariantRecord]) -> dict[str, HeldOutPredictions]:
    """The stored predictions of the succeeded out-of-fold runs."""
    found = {}
    for variant in variants:
        for run in variant.runs:
            if run.state == RunState.SUCCEEDED.value and run.run_id not in found:
                try:
                    found[run.run_id] = read_held_out(store, run.run_id)
                except KeyNotFound:
                    continue
    return found


def _rounds(store: Store, study_id: str) -> list[RoundDocument]:
    """The study's rounds, when it was planned in rounds (a staged diagnosis)."""
    keys = sorted(store.list(study_key(study_id, "rounds/")))
    return [read_document(store, key, RoundDocument) for key in keys if key.endswith(".json")]


def _repair(store: Store, study_id: str) -> RepairDocument | None:
    try:
        return read_document(store, study_key(study_id, "diagnosis.json"), RepairDocument)
    except KeyNotFound:
        return None


def _run_record(store: Store, run_id: str) -> RunRecord:
    try:
        run = store.get_json(run_key(run_id, "run.json"))
    except KeyNotFound:
        run = {"config": {}, "seed": -1}
    state, status = effective_state(store, run_id)
    metrics = read_metrics(store, run_id) if state is RunState.SUCCEEDED else None
    return RunRecord(
        run_id=run_id,
        seed=run.get("seed", -1),
        config=run.get("config", {}),
        state=state.value,
        metrics=metrics,
        status=status,
    )


def _facts(spec: dict[str, Any]):
    # The reporter's one read of the user's data: the operator's dataset settings (allowed
    # folders, size limit) are read here, where the reporter reaches the datasets.
    from service.datasets.options import DataOptions
    from service.report.data_facts import dataset_facts
    from service.settings import get_settings

    try:
        return dataset_facts(spec_from_data(spec).dataset, DataOptions.from_settings(get_settings()))
    except Exception:  # the report must not fail because the data moved; the rules skip
        return None


def _report_time(data: StudyData) -> str:
    """The newest result or status time of the study's runs (deterministic for a rewrite)."""
    stamps = []
    for variant in data.variants:
        for run in variant.runs:
            if run.metrics is not None:
                stamps.append(run.metrics.finished_at)
            elif run.status is not None:
                stamps.append(run.status.updated_at)
    return max(stamps, default="")


def build_report(store: Store, study_id: str) -> tuple[Summary, dict[str, bytes]]:
    """The report's files (name -> bytes), without writing them."""
    from service.report.plots import render_plots
    from service.report.render import render_html, render_markdown, runs_csv
    from service.report.summary import summarize_with_files

    data = gather(store, study_id)
    summary, spec_files = summarize_with_files(data, generated_at=_report_time(data))
    plots = render_plots(summary, data)
    files: dict[str, bytes] = {
        "summary.json": (
            json.dumps(summary.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
        ).encode(),
        "report.md": render_markdown(summary).encode(),
        "runs.csv": runs_csv(data).encode(),
        "index.html": render_html(summary, plots).encode(),
    }
    files.update({f"plots/{name}": png for name, png in plots.items()})
    files.update({name: text.encode() for name, text in spec_files.items()})
    return summary, files


def write_report(store: Store, study_id: str) -> str:
    """Write the report of `study_id` into the store; returns where index.html is."""
    return publish_report(store, study_id)[1]


def publish_report(store: Store, study_id: str) -> tuple[Summary, str]:
    """Write the report of `study_id` into the store; returns its summary and where index.html
    is."""
    summary, files = build_report(store, study_id)
    content_types = {
        ".html": "text/html; charset=utf-8",
        ".md": "text/markdown; charset=utf-8",
        ".json": "application/json",
        ".csv": "text/csv; charset=utf-8",
        ".png": "image/png",
        ".yaml": "application/yaml",
    }
    # index.html last: its presence means the rest of the report is there.
    for name in sorted(files, key=lambda n: n == "index.html"):
        suffix = name[name.rfind(".") :]
        store.put_bytes(
            study_key(study_id, f"report/{name}"), files[name], content_types.get(suffix)
        )
    return summary, store.location(study_key(study_id, "report/index.html"))


def study_finished(store: Store, study_id: str) -> bool:
    """Every run of the study has a final state (succeeded, diverged, failed or cancelled).

    Asked after every run a worker finishes, so it checks the runs in reverse queue order: the
    last-queued runs are the likeliest to be unfinished, and the answer is usually known after
    one or two reads instead of one read per run of the study.
    """
    try:
        document = store.get_json(study_key(study_id, "study.json"))
    except (KeyNotFound, StoreError):
        return False
    seen: set[str] = set()
    for variant in reversed(document["variants"]):
        for run_id in reversed(variant["run_ids"]):
            if run_id in seen:
                continue
            seen.add(run_id)
            status = read_status(store, run_id)
            if status is not None and RunState(status.state).is_final:
                continue
            if not store.exists(run_key(run_id, "metrics.json")):
                return False
    return True
