"""A study's `Summary` (summary.json): statistics per variant, the diagnosis, and caveats."""

from __future__ import annotations

from collections import Counter

from service.lifecycle.states import RunState
from service.report.analysis_models import StageRecord
from service.report.balance import judged_metrics
from service.report.diagnosis import Diagnosis, diagnose
from service.report.factorial import analyse_grid
from service.report.label_issues import label_issues
from service.report.labels import short_labels
from service.report.learning_curve import learning_curve
from service.report.models import Summary
from service.report.next_steps import build_next_steps
from service.report.stats import adjust, holm, variant_stats
from service.report.study_data import RunRecord, StudyData, VariantRecord
from service.report.variant_models import CONFIRM_SUFFIX, CONFIRMED_BASELINE, VariantStats

ALPHA = 0.05
LISTED_RUNS = 10
"""Runs named per note; the rest are counted."""
UNFINISHED = tuple(
    state.value
    for state in sorted(RunState, key=lambda state: state.is_active)  # ended ones first
    if not state.is_reusable
)
"""States whose runs have no result the statistics can use (failed, cancelled, or not yet
finished); a diverged run is a result of its own."""


def summarize_study(data: StudyData, generated_at: str) -> Summary:
    """Compose the report's content from the study's runs; nothing here reads the store."""
    return summarize_with_files(data, generated_at)[0]


def summarize_with_files(data: StudyData, generated_at: str) -> tuple[Summary, dict[str, str]]:
    """The summary and the spec files the next steps write beside the report (name -> YAML)."""
    baseline = data.variants[0] if data.variants else None
    stats = variant_summaries(data)
    factorial = analyse_grid(data, ALPHA)
    found = diagnose(data, stats, ALPHA, factorial)
    steps, files = build_next_steps(found.study, found.causes)
    runs = _unique_runs(data)
    counts = dict(sorted(Counter(run.state for _, run in runs.values()).items()))
    summary = Summary(
        study_id=data.study_id,
        name=str(data.spec.get("name") or data.study_id),
        generated_at=generated_at,
        partial=any(not RunState(run.state).is_reusable for _, run in runs.values()),
        counts=counts,
        baseline=baseline.name if baseline else "",
        alpha=ALPHA,
        verdict=verdict(found),
        variants=stats,
        causes=found.causes,
        symptoms=found.symptoms,
        strengths=found.strengths,
        facts=found.facts,
        inconclusive=found.inconclusive,
        not_comparable=found.not_comparable,
        statistics=found.statistics,
        next_steps=steps,
        notes=_notes(data, runs) + found.small_gains
        + ([CONFIRMATION_NOTE] if any(v.name == CONFIRMED_BASELINE for v in data.variants) else []),
        factorial=factorial,
        labels=short_labels([v.name for v in data.variants], baseline.name if baseline else ""),
        stages=[
            StageRecord(
                index=stage.index, kind=stage.kind, reason=stage.reason,
                variants=[v.name for v in stage.variants], runs=len(stage.runs),
            )
            for stage in data.stages
        ],
        repair=data.repair,
        label_issues=label_issues(data),
        learning_curve=learning_curve(found.study, ALPHA),
    )
    return summary, files


def variant_summaries(data: StudyData, alpha: float = ALPHA) -> list[VariantStats]:
    """Each variant's statistics and its comparison with the baseline (the first variant),
    Benjamini-Hochberg adjusted over the study: the one computation behind the report and the
    terminal's tables."""
    baseline = data.variants[0] if data.variants else None
    # A staged diagnosis's confirmation variants ("X (confirm)") are compared with the
    # baseline retrained on the same fresh seeds, and decided among themselves (Holm), apart
    # from the screening family; see service/diagnose/confirm.py.
    retrained = next((v for v in data.variants if v.name == CONFIRMED_BASELINE), None)
    confirming = [
        retrained is not None and v.name.endswith(CONFIRM_SUFFIX) and v is not retrained
        for v in data.variants
    ]
    # Class weighting and resampling are judged on balanced accuracy (service/report/balance.py).
    metrics = judged_metrics(data)
    stats = [
        variant_stats(
            variant, _reference(index, variant, confirm, baseline, retrained), alpha, metric
        )
        for index, (variant, confirm, metric) in enumerate(
            zip(data.variants, confirming, metrics, strict=True)
        )
    ]
    family = [
        (s.vs_baseline, confirm)
        for s, confirm in zip(stats, confirming, strict=True)
        if s.vs_baseline is not None
    ]
    adjust([c for c, confirm in family if not confirm], alpha)
    holm([c for c, confirm in family if confirm], alpha)
    return stats


def _reference(index, variant, confirm, baseline, retrained):
    """What a variant is compared with: nothing for the baseline and its retraining, the
    retrained baseline for a confirmation variant, else the baseline."""
    if index == 0 or variant is retrained:
        return None
    return retrained if confirm else baseline


CONFIRMATION_NOTE = (
    "Variants marked (confirm) were trained again on fresh seeds: each is compared with the "
    "baseline retrained on the same seeds (baseline (confirm)) and judged among themselves "
    "with Holm's adjustment, apart from the screening comparisons' Benjamini-Hochberg."
)


def verdict(found: Diagnosis) -> str:
    """The answer in one sentence."""
    if found.causes:
        top = found.causes[0]
        more = len(found.causes) - 1
        return top.title + (f" ({more} more cause{'s' if more > 1 else ''} below)" if more else "")
    if found.study is None or not found.study.baseline.succeeded:
        return "No baseline run has finished: nothing can be said yet."
    caveat = (
        f"; at this study's power only effects above {found.statistics.detectable_effect * 100:.1f} "
        "points would show"
        if found.statistics.underpowered and found.statistics.detectable_effect
        else ""
    )
    return (
        "Nothing to fix found: no change tested helps significantly and the baseline's runs show "
        f"no symptom of a problem{caveat}."
    )


def _unique_runs(data: StudyData) -> dict[str, tuple[VariantRecord, RunRecord]]:
    """Each run once (variants with the same config share runs), with its first variant."""
    runs: dict[str, tuple[VariantRecord, RunRecord]] = {}
    for variant in data.variants:
        for run in variant.runs:
            runs.setdefault(run.run_id, (variant, run))
    return runs


def _notes(data: StudyData, runs: dict[str, tuple[VariantRecord, RunRecord]]) -> list[str]:
    notes = []
    for state in (*UNFINISHED, RunState.DIVERGED.value):
        hit = [(variant, run) for variant, run in runs.values() if run.state == state]
        if not hit:
            continue
        described = [_describe(variant, run) for variant, run in hit[:LISTED_RUNS]]
        more = f" and {len(hit) - LISTED_RUNS} more" if len(hit) > LISTED_RUNS else ""
        verb = {"queued": "are still queued", "running": "are still running"}.get(state, state)
        if len(hit) == 1:
            verb = {"queued": "is still queued", "running": "is still running"}.get(state, state)
        caveat = "; the statistics use only succeeded runs" if state in UNFINISHED else ""
        run_word = "run" if len(hit) == 1 else "runs"
        notes.append(f"{len(hit)} {run_word} {verb}{caveat}: {', '.join(described)}{more}.")
    if data.variants:
        base_ids = [run.run_id for run in data.variants[0].runs]
        for variant in data.variants[1:]:
            if variant.runs and [run.run_id for run in variant.runs] == base_ids:
                notes.append(
                    f"Variant {variant.name!r} has the baseline's config; its runs are the "
                    "baseline's, so it is not compared."
                )
    return notes


def _describe(variant: VariantRecord, run: RunRecord) -> str:
    text = f"{variant.name} seed {run.seed} (run {run.run_id[:12]}"
    status = run.status
    if status is not None and status.error:
        text += f": {status.error.strip().splitlines()[0][:200]}"
    elif status is not None and status.diverged_epoch:
        text += f": diverged at epoch {status.diverged_epoch}"
    return text + ")"
