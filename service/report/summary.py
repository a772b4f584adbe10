"""A study's `Summary` (summary.json): statistics per variant, the diagnosis, and caveats."""

from __future__ import annotations

from collections import Counter

from service.report.diagnosis import diagnose
from service.report.models import RunRecord, StudyData, Summary, VariantRecord, VariantStats
from service.report.stats import variant_stats

ALPHA = 0.05
LISTED_RUNS = 10
"""Runs named per note; the rest are counted."""
UNFINISHED = ("failed", "cancelled", "queued", "running")


def summarize_study(data: StudyData, generated_at: str) -> Summary:
    """Compose the report's content from the study's runs; nothing here reads the store."""
    baseline = data.variants[0] if data.variants else None
    stats = [
        variant_stats(variant, None if index == 0 else baseline, ALPHA)
        for index, variant in enumerate(data.variants)
    ]
    holm_adjust(stats, ALPHA)
    findings, inconclusive = diagnose(data, stats, ALPHA)
    runs = _unique_runs(data)
    counts = dict(sorted(Counter(run.state for _, run in runs.values()).items()))
    return Summary(
        study_id=data.study_id,
        name=str(data.spec.get("name") or data.study_id),
        generated_at=generated_at,
        partial=any(run.state not in ("succeeded", "diverged") for _, run in runs.values()),
        counts=counts,
        baseline=baseline.name if baseline else "",
        alpha=ALPHA,
        variants=stats,
        findings=findings,
        inconclusive=inconclusive,
        notes=_notes(data, runs),
    )


def holm_adjust(stats: list[VariantStats], alpha: float) -> None:
    """Holm's step-down adjustment of the variants' p-values (family-wise error rate alpha);
    `significant` then means adjusted p < alpha."""
    tested = sorted(
        (s.vs_baseline for s in stats if s.vs_baseline is not None and s.vs_baseline.p_value is not None),
        key=lambda c: c.p_value,
    )
    running = 0.0
    for rank, comparison in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * comparison.p_value))
        comparison.p_adjusted = running
        comparison.significant = running < alpha


def _unique_runs(data: StudyData) -> dict[str, tuple[VariantRecord, RunRecord]]:
    """Each run once (variants with the same config share runs), with its first variant."""
    runs: dict[str, tuple[VariantRecord, RunRecord]] = {}
    for variant in data.variants:
        for run in variant.runs:
            runs.setdefault(run.run_id, (variant, run))
    return runs


def _notes(data: StudyData, runs: dict[str, tuple[VariantRecord, RunRecord]]) -> list[str]:
    notes = []
    for state in (*UNFINISHED, "diverged"):
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
