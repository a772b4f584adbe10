"""Augmentation and other factors: an augmentation that hurts, and any significant effect no
earlier rule explained."""

from __future__ import annotations

from service.report.contrast import (
    Study,
    effect,
    effect_text,
    make_finding,
    open_contrasts,
)
from service.report.models import Finding
from service.report.rules.thresholds import DIVERGED_VARIANT_MAGNITUDE
from service.report.wording import describe, p_text, points


def harmful_augmentation(study: Study, claimed: set[str]) -> list[Finding]:
    found = []
    for c in open_contrasts(study, claimed):
        if not (c.significant and c.only("augmentation")):
            continue
        direction = c.direction()
        comparison = c.stats.vs_baseline
        if direction == 1 and c.worse:
            delta, low, high = comparison.delta, comparison.ci_low, comparison.ci_high
        elif direction == -1 and c.better:  # the baseline has the augmentation the variant drops
            delta, low, high = -comparison.delta, -comparison.ci_high, -comparison.ci_low
        else:
            continue
        names = [path.removeprefix("augmentation.") for path in c.changes]
        label = " and ".join(names)
        verb = "lowers" if len(names) == 1 else "lower"
        statement = (
            f"{label} {verb} test accuracy by {abs(delta) * 100:.1f} points "
            f"(95% CI {low * 100:+.1f} to {high * 100:+.1f}), {p_text(comparison.p_value)}; "
            f"compared through {c.name} ({describe(c.changes)})."
        )
        evidence = effect(study, c)
        evidence.update(
            augmentations=names,
            delta_with_augmentation=delta,
            ci_low_with_augmentation=low,
            ci_high_with_augmentation=high,
        )
        title = f"{label.replace('_', ' ').capitalize()} {'hurts' if len(names) == 1 else 'hurt'}: {points(delta)} of test accuracy"
        found.append(
            make_finding(
                study, "harmful_augmentation", title, "hurts", statement, evidence, [c], abs(delta)
            )
        )
    return found


def factor_effect(study: Study, claimed: set[str]) -> list[Finding]:
    """Whatever significant effect no specific rule explained, and variants that always diverge."""
    found = []
    baseline_trains = study.baseline.succeeded > 0
    for c in open_contrasts(study, claimed):
        if c.all_diverged and baseline_trains:
            statement = (
                f"{c.name} ({describe(c.changes)}) diverged in all {c.stats.seeds} seeds, "
                f"while the baseline trains."
            )
            evidence = {
                "variant": c.name,
                "diverged_seeds": c.stats.diverged,
                "seeds": c.stats.seeds,
                "changes": {p: list(v) for p, v in c.changes.items()},
            }
            found.append(
                make_finding(
                    study,
                    "factor_effect",
                    f"{c.name} diverges",
                    "hurts",
                    statement,
                    evidence,
                    [c],
                    DIVERGED_VARIANT_MAGNITUDE,
                )
            )
        elif c.significant:
            verb = "helps" if c.delta > 0 else "hurts"
            title = f"{c.name} {verb}: {points(c.delta)} of test accuracy"
            found.append(
                make_finding(
                    study,
                    "factor_effect",
                    title,
                    verb,
                    effect_text(c) + ".",
                    effect(study, c),
                    [c],
                    abs(c.delta),
                )
            )
    return found
