"""The repaired config: every fix found, merged into one set of overrides.

A fix is a change significant in the study's screening family by at least MIN_GAIN, or one
confirmed on fresh seeds (`confirm.decide`). Fixes that set the same path, or paths inside one
another (`augmentation` and `augmentation.zoom`), conflict: the larger gain wins, the other is
dropped and named.
"""

from __future__ import annotations

from typing import Any

from service.diagnose.confirm import decide, is_candidate_fix
from service.diagnose.models import BASELINE, Findings, FixFound, Stage
from service.report.models import Summary
from service.report.rules.thresholds import MIN_GAIN
from service.report.variant_models import CONFIRM_SUFFIX, VariantStats


def screening_fixes(summary: Summary, undecided: set[str]) -> list[FixFound]:
    """Variants significant in the report's family by at least MIN_GAIN (those sent to
    confirmation, `undecided`, are judged there instead)."""
    base = summary.variants[0]
    if base.succeeded == 0 and base.diverged:
        return _training_at_all(summary, undecided)
    found = []
    for stats in summary.variants[1:]:
        c = stats.vs_baseline
        if not is_candidate_fix(stats) or stats.name in undecided or c is None:
            continue
        if c.significant and c.delta >= MIN_GAIN:
            found.append(
                FixFound(
                    variant=stats.name,
                    overrides=stats.overrides,
                    gain=c.delta,
                    decided_by="screening",
                    p_value=c.p_adjusted,
                )
            )
    return found


def _training_at_all(summary: Summary, undecided: set[str]) -> list[FixFound]:
    """A baseline that diverged in every seed has no accuracy to compare with (the report
    compares nothing with it): a change whose every seed trains is a fix, its gain the
    accuracy it reaches."""
    return [
        FixFound(
            variant=stats.name,
            overrides=stats.overrides,
            gain=stats.test_accuracy.mean,
            decided_by="screening",
            p_value=None,
        )
        for stats in summary.variants[1:]
        if is_candidate_fix(stats)
        and stats.name not in undecided
        and stats.seeds >= 2
        and stats.succeeded == stats.seeds
        and stats.test_accuracy.mean is not None
        and stats.test_accuracy.mean >= MIN_GAIN
    ]


def _overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def outranked(candidate: VariantStats, fixes: list[FixFound]) -> bool:
    """A fix with a larger gain sets a path the candidate sets: the merge would drop it."""
    gain = candidate.vs_baseline.delta if candidate.vs_baseline else 0.0
    return any(
        fix.gain >= gain and any(_overlap(a, b) for a in candidate.overrides for b in fix.overrides)
        for fix in fixes
    )


def merge(fixes: list[FixFound]) -> tuple[dict[str, Any], list[str]]:
    """(the merged overrides, the fixes dropped for a conflict with a larger one)."""
    merged: dict[str, Any] = {}
    dropped = []
    for fix in sorted(fixes, key=lambda f: -f.gain):
        if any(_overlap(path, taken) for path in fix.overrides for taken in merged):
            dropped.append(fix.variant)
            continue
        merged.update(fix.overrides)
    return merged, dropped


def findings(summary: Summary | None, stages: list[Stage], test_samples: int | None) -> Findings:
    """Where the diagnosis stands after `stages`, read from the study's `summary`."""
    if summary is None or not summary.variants:
        return Findings(fixes=[], repaired={}, refuted=[], dropped=[])
    confirmations = [s for s in stages if s.kind == "confirm"]
    undecided = {
        v.name.removesuffix(CONFIRM_SUFFIX) for stage in confirmations for v in stage.variants
    } - {BASELINE}
    fixes = screening_fixes(summary, undecided)
    refuted: list[str] = []
    for stage in confirmations:
        confirmed, rejected = decide(summary, stage, test_samples)
        fixes += confirmed
        refuted += rejected
    repaired, dropped = merge(fixes)
    return Findings(fixes=fixes, repaired=repaired, refuted=refuted, dropped=dropped)
