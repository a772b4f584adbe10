"""Symptoms of how the baseline's training went: it learned nothing (at chance), diverged,
oscillated, was still improving at the last epoch, or made too few optimizer updates. Each is
read across the baseline's seeds, with the test accuracy it puts at stake.
"""

from __future__ import annotations

import math

import numpy as np

from service.report.contrast import StudyContrasts
from service.report.diagnosis_models import Symptom
from service.report.readings import final_value, one_sided_p
from service.report.rules.thresholds import (
    CHANCE_LOSS_SHARE,
    CHANCE_MARGIN,
    FALLING_DROP,
    FALLING_SHARE,
    FEW_UPDATES,
    LATE_LOSS_MARGIN,
    LOSS_INCREASE,
    LOW_TRAIN_ACCURACY,
    OSCILLATING_SHARE,
    RISING_SLOPE,
    RISING_WINDOW,
)
from service.report.stats import binomial_var, finite
from service.report.study_data import RunRecord
from service.report.wording import p_text, pct

# Chance level and training trouble


def chance_level(runs: list[RunRecord]) -> tuple[float, int, int]:
    """(chance accuracy, classes K, test samples): the larger of 1/K and the test split's
    majority-class share, as a network that always predicts one class scores."""
    matrix = np.asarray(runs[0].metrics.test.confusion_matrix, dtype=float)
    classes, total = len(matrix), float(matrix.sum())
    majority = float(matrix.sum(axis=1).max() / total) if total else 0.0
    return max(1.0 / max(classes, 1), majority), classes, int(total)



def learned_nothing(study: StudyContrasts, runs: list[RunRecord]) -> Symptom | None:
    """Test accuracy within noise of chance in most seeds, and training at chance too (a model
    that fits its training set but not the test is overfitting, not this)."""
    if not runs:
        return None
    chance, classes, samples = chance_level(runs)
    margin = max(CHANCE_MARGIN, 3 * math.sqrt(binomial_var(chance, samples)))
    ln_k = math.log(max(classes, 2))
    at_chance = []
    for run in runs:
        train_acc, loss = final_value(run, "accuracy"), final_value(run, "loss")
        train_flat = (train_acc is not None and train_acc <= chance + 2 * margin) or (
            loss is not None and loss >= CHANCE_LOSS_SHARE * ln_k
        )
        at_chance.append(run.metrics.test.accuracy <= chance + margin and train_flat)
    if sum(at_chance) * 2 <= len(runs):
        return None
    mean = float(np.mean([run.metrics.test.accuracy for run in runs]))
    losses = finite(final_value(run, "loss") for run in runs)
    falling = sum(_falling(run) for run in runs) * 2 > len(runs)
    columns = np.sum([np.asarray(run.metrics.test.confusion_matrix, dtype=float).sum(axis=0) for run in runs], axis=0)
    evidence = {
        "loss_falling_slowly": bool(falling),
        "classes": classes,
        "most_predicted_class": int(np.argmax(columns)),
        "most_predicted_share": float(columns.max() / max(columns.sum(), 1.0)),
        "seeds_at_chance": int(sum(at_chance)),
        "seeds": len(runs),
        "test_accuracy": mean,
        "chance_accuracy": chance,
        "final_train_loss": float(losses.mean()) if len(losses) else None,
        "ln_classes": ln_k,
    }
    loss_text = f", training loss {evidence['final_train_loss']:.2f} against ln K = {ln_k:.2f}"
    statement = (
        f"The baseline learned nothing: {sum(at_chance)} of {len(runs)} seeds score "
        f"{pct(mean)} test accuracy, within noise of chance ({pct(chance)})"
        + (loss_text if evidence["final_train_loss"] is not None else "")
        + "."
    )
    return Symptom(
        rule="learned_nothing",
        title=f"Learned nothing: {pct(mean)} test accuracy, chance is {pct(chance)}",
        statement=statement,
        evidence=evidence,
        stake=1.0 - mean,
    )


def _falling(run: RunRecord) -> bool:
    """The training loss falls epoch after epoch, if slowly: the optimizer moves, too little."""
    loss = finite(r.loss for r in run.metrics.history)
    if len(loss) < 3:
        return False
    drops = loss[1:] < loss[:-1]
    return float(drops.mean()) >= FALLING_SHARE and loss[-1] < loss[0] * (1 - FALLING_DROP)


def diverged(study: StudyContrasts) -> Symptom | None:
    base = study.baseline
    if not base.seeds or base.diverged * 2 < base.seeds:
        return None
    epochs = [
        run.status.diverged_epoch
        for run in study.baseline_record.runs
        if run.state == "diverged" and run.status and run.status.diverged_epoch
    ]
    rate = study.flat.get("optimizer.learning_rate")
    statement = (
        f"{base.diverged} of {base.seeds} baseline seeds diverged (the loss became NaN or "
        f"infinite{f', first at epoch {min(epochs)}' if epochs else ''}) at learning rate {rate}."
    )
    evidence = {
        "diverged_seeds": base.diverged,
        "seeds": base.seeds,
        "first_diverged_epoch": min(epochs) if epochs else None,
        "learning_rate": rate,
    }
    share = base.diverged / base.seeds
    return Symptom(
        rule="diverged",
        title=f"Training diverges: {base.diverged} of {base.seeds} seeds",
        statement=statement,
        evidence=evidence,
        stake=1.0 - (1 - share) * (base.test_accuracy.mean or 0.0),
    )


def _oscillating(run: RunRecord) -> bool:
    loss = finite(r.loss for r in run.metrics.history)
    if len(loss) < 4:
        return False
    rises = loss[1:] > loss[:-1] * (1 + LOSS_INCREASE)
    return float(rises.mean()) > OSCILLATING_SHARE or loss[-1] > LATE_LOSS_MARGIN * loss.min()


def oscillating_loss(
    study: StudyContrasts, runs: list[RunRecord], found: list[Symptom]
) -> Symptom | None:
    """A training loss that keeps rising between epochs in most seeds. Alone it costs nothing
    measurable; it is at stake only when the baseline also fits its training data poorly."""
    if any(s.rule == "learned_nothing" for s in found):
        return None
    oscillating = sum(_oscillating(run) for run in runs)
    if oscillating * 2 <= len(runs):
        return None
    train = study.baseline.train_accuracy.mean
    stake = max(0.0, 1.0 - train) if train is not None and train < LOW_TRAIN_ACCURACY else 0.0
    return Symptom(
        rule="oscillating_loss",
        title=f"Oscillating training loss in {oscillating} of {len(runs)} seeds",
        statement=(
            f"The training loss rises between epochs, or ends well above its minimum, in "
            f"{oscillating} of {len(runs)} baseline seeds: the steps are too large to settle."
        ),
        evidence={"oscillating_seeds": oscillating, "seeds": len(runs), "train_accuracy": train},
        stake=stake,
    )


def still_improving(study: StudyContrasts, runs: list[RunRecord], trouble: bool) -> Symptom | None:
    """Validation accuracy still climbing at the last epoch, significantly across seeds."""
    slopes, curves = [], []
    for run in runs:
        if run.metrics.stopped_early:
            continue
        series = [
            (r.epoch, r.val_accuracy if r.val_accuracy is not None else r.accuracy)
            for r in run.metrics.history
        ]
        series = [(e, v) for e, v in series if v is not None and math.isfinite(v)]
        if len(series) <= RISING_WINDOW:
            continue
        epochs, values = (np.asarray(v, dtype=float) for v in zip(*series, strict=True))
        slopes.append(float(np.polyfit(epochs[-RISING_WINDOW:], values[-RISING_WINDOW:], 1)[0]))
        curves.append(values)
    if len(slopes) < 2 or trouble:
        return None
    length = min(len(c) for c in curves)
    mean_curve = np.mean([c[-length:] for c in curves], axis=0)
    p_value = one_sided_p(np.asarray(slopes), 0.0, 0.0)
    slope = float(np.mean(slopes))
    if p_value is None or not (slope > RISING_SLOPE and p_value < study.alpha):
        return None
    if mean_curve[-1] <= mean_curve[:-1].max():
        return None
    epochs_run = study.flat.get("training.epochs")
    return Symptom(
        rule="still_improving",
        title=f"Still improving at the last epoch: {slope * 100:+.1f} points per epoch",
        statement=(
            f"Baseline validation accuracy is still rising at epoch {epochs_run} "
            f"({slope * 100:+.1f} points per epoch over the last {RISING_WINDOW} epochs, "
            f"{len(slopes)} seeds, {p_text(p_value)}): training ends before it converges."
        ),
        evidence={
            "val_accuracy_slope": slope,
            "slope_p_value": p_value,
            "slope_seeds": len(slopes),
            "window_epochs": RISING_WINDOW,
            "final_val_accuracy": float(mean_curve[-1]),
        },
        stake=min(1.0 - float(mean_curve[-1]), slope * RISING_WINDOW),
    )


def few_updates(study: StudyContrasts, found: list[Symptom]) -> Symptom | None:
    """Very few optimizer steps in all (a batch too large for the epochs), with the baseline
    short of training: learned nothing, underfitting or still improving."""
    facts = study.data.dataset
    batch, epochs = study.flat.get("training.batch_size"), study.flat.get("training.epochs")
    if facts is None or not batch or not epochs:
        return None
    steps = math.ceil(facts.train_size / batch) * epochs
    short = [s for s in found if s.rule in ("learned_nothing", "underfitting", "still_improving")]
    if steps >= FEW_UPDATES or not short:
        return None
    return Symptom(
        rule="few_updates",
        title=f"Only {steps} optimizer updates in all",
        statement=(
            f"The baseline makes only {steps} optimizer updates: {math.ceil(facts.train_size / batch)}"
            f" steps per epoch ({facts.train_size} training samples, batch size {batch}) x "
            f"{epochs} epochs, fewer than {FEW_UPDATES}; it stops short of training "
            f"({short[0].title.lower()})."
        ),
        evidence={
            "updates": steps,
            "steps_per_epoch": math.ceil(facts.train_size / batch),
            "epochs": epochs,
            "batch_size": batch,
            "threshold": FEW_UPDATES,
        },
        stake=max(s.stake for s in short),
    )
