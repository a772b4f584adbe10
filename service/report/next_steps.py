"""What to change: each fix as a spec fragment, the changes to try next, the recommended config
(the significant fixes combined) and the next study, written as a spec beside the report.

Suggestions go beyond what the study tested (a learning rate ten and a hundred times below the
lowest one tried), are checked against the spec's own bounds, and never repeat a tested change.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import ValidationError

from service.report.advice import NAMES
from service.report.configs import apply_overrides, flatten
from service.report.contrast import Contrast, StudyContrasts
from service.report.diagnosis_models import Cause, Fix, NextSteps
from service.report.rules.fixes import rate_direction
from service.report.wording import inline
from service.spec.models import StudySpec, TrainConfig

NEXT_STUDY_FILE = "next-study.yaml"
MAX_EPOCHS = 10_000


def fragment(paths: list[str], config: dict[str, Any]) -> str:
    """The YAML that sets `paths` to their values in `config`; a path through a list (a conv
    block's option) sets the whole list, since YAML cannot set one item of it."""
    nested: dict[str, Any] = {}
    for path in paths:
        parts = path.split(".")
        cut = next((i for i, part in enumerate(parts) if part.isdigit()), len(parts))
        parts = parts[: max(cut, 1)]
        value: Any = config
        for part in parts:
            value = value.get(part) if isinstance(value, dict) else None
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = copy.deepcopy(value)
    return yaml.safe_dump(nested, sort_keys=False, default_flow_style=None).strip() if nested else ""


def fix_of(study: StudyContrasts, c: Contrast, confirmed: bool = True) -> Fix:
    comparison = c.stats.vs_baseline
    return Fix(
        confirmed=confirmed,
        variant=c.name,
        changes={path: new for path, (_, new) in c.changes.items()},
        spec=fragment(list(c.changes), c.config),
        delta=comparison.delta if comparison else None,
        ci_low=comparison.ci_low if comparison else None,
        ci_high=comparison.ci_high if comparison else None,
        p_adjusted=comparison.p_adjusted if comparison else None,
        metric=comparison.metric if comparison else "test_accuracy",
    )


# Changes to try


def _tested_rates(study: StudyContrasts) -> list[float]:
    rates = [study.flat["optimizer.learning_rate"]]
    for c in study.contrasts:
        if rate_direction(study, c) is not None and c.only("optimizer.learning_rate"):
            rates.append(flatten(c.config)["optimizer.learning_rate"])
    return rates


def _tested_epochs(study: StudyContrasts) -> list[int]:
    epochs = [study.flat["training.epochs"]]
    epochs += [flatten(c.config)["training.epochs"] for c in study.contrasts if c.only("training.epochs")]
    return epochs


def at_edge(study: StudyContrasts, rule: str, best: Contrast) -> bool:
    """The best fix is the furthest step tested in its direction, so the optimum may lie
    further (a learning rate lowered x0.1 may want x0.01): the next study goes on."""
    new = flatten(best.config)
    if rule == "learning_rate_too_high" and best.only("optimizer.learning_rate"):
        return new["optimizer.learning_rate"] <= min(_tested_rates(study))
    if rule == "learning_rate_too_low":
        return new["optimizer.learning_rate"] >= max(_tested_rates(study))
    if rule == "too_few_epochs":
        return new["training.epochs"] >= max(_tested_epochs(study))
    return False


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def _candidates(study: StudyContrasts, rule: str) -> list[dict[str, Any]]:
    flat = study.flat
    rates = _tested_rates(study)
    low, high = min(rates), max(rates)
    epochs, batch = max(_tested_epochs(study)), flat["training.batch_size"]
    if rule in ("learning_rate_too_high",):
        return [{"optimizer.learning_rate": _round(low / 10)}, {"optimizer.learning_rate": _round(low / 100)}]
    if rule == "learning_rate_too_low":
        return [
            {"optimizer.learning_rate": _round(min(10.0, high * 10))},
            {"optimizer.learning_rate": _round(min(10.0, high * 100))},
        ]
    if rule == "learned_nothing":
        found = [{"optimizer.learning_rate": _round(r)} for r in (low / 100, low / 10, min(10.0, high * 10))]
        if flat.get("dataset.scale") == "none":
            found.append({"dataset.scale": "auto"})
        return found
    if rule == "too_few_epochs":
        return [{"training.epochs": min(MAX_EPOCHS, epochs * 2)}, {"training.epochs": min(MAX_EPOCHS, epochs * 4)}]
    if rule == "few_updates":
        return [{"training.batch_size": max(8, batch // 8)}, {"training.epochs": min(MAX_EPOCHS, epochs * 4)}]
    if rule == "underfitting":
        return [_wider(study, 2), _wider(study, 4), {"training.epochs": min(MAX_EPOCHS, epochs * 2)}]
    if rule == "overfitting":
        found = []
        if flat.get("model.dropout", 0) < 0.5:
            found.append({"model.dropout": 0.5})
        found.append({"model.l2": 1e-4 if not flat.get("model.l2") else _round(flat["model.l2"] * 10)})
        mild = {"translation": 0.1, "zoom": 0.1}
        if not any(v not in (False, 0, 0.0, None) for k, v in flat.items() if k.startswith("augmentation.")):
            found.append({"augmentation": mild})
            found.append({"augmentation": mild, "model.dropout": 0.5, "model.l2": 1e-4})
        found.append({"model.l2": _round(max(flat.get("model.l2") or 0, 1e-4) * 10)})
        found.append(_wider(study, 0.5))
        return found
    if rule == "over_regularization":
        return [
            {path: 0.0}
            for path in ("model.dropout", "model.conv_dropout", "model.l2", "training.label_smoothing")
            if flat.get(path)
        ]
    if rule == "harmful_augmentation":
        return [{"augmentation": {}}]
    if rule == "unscaled_input":
        return [{"dataset.scale": "auto"}]
    if rule == "label_noise":
        return [{"training.label_smoothing": 0.1}]
    return []


def _wider(study: StudyContrasts, scale: float) -> dict[str, Any]:
    model = study.config["model"]
    blocks = [{**b, "filters": max(1, round(b["filters"] * scale))} for b in model["conv_blocks"]]
    return {"model.conv_blocks": blocks, "model.dense": [max(1, round(u * scale)) for u in model["dense"]]}


def suggestions(study: StudyContrasts, rule: str) -> list[Fix]:
    """Changes this study did not test that would repair `rule`, valid under the spec's bounds."""
    tested = [{path: new for path, (_, new) in c.changes.items()} for c in study.contrasts]
    tested_configs = [c.config for c in study.contrasts]
    found = []
    for overrides in _candidates(study, rule):
        if study.config.get("model", {}).get("factory") and any(p.startswith("model.") for p in overrides):
            continue  # a model factory's architecture is not in the spec
        try:
            config = TrainConfig.model_validate(apply_overrides(study.config, overrides)).model_dump(mode="json")
        except (ValidationError, ValueError, TypeError, KeyError, IndexError):
            continue
        if config == study.config or config in tested_configs or overrides in tested:
            continue
        found.append(Fix(variant=None, changes=overrides, spec=fragment(list(overrides), config)))
    return found


# The recommendation and the next study


def _overlaps(path: str, taken: set[str]) -> bool:
    return any(path == t or path.startswith(t + ".") or t.startswith(path + ".") for t in taken)


def build_next_steps(
    study: StudyContrasts | None, causes: list[Cause]
) -> tuple[NextSteps, dict[str, str]]:
    """The next steps and the files to write beside the report (name -> YAML text)."""
    recommended: dict[str, Any] = {}
    combined: list[str] = []
    for cause in causes:
        if cause.fix is None or _overlaps_any(cause.fix.changes, recommended):
            continue
        recommended.update(cause.fix.changes)
        combined.append(cause.fix.variant or "")
    config = apply_overrides(study.config, recommended) if study and recommended else None
    actions = []
    for cause in causes:
        if cause.fix is not None and cause.fix.variant in combined:
            actions.append(f"{cause.title}: set {inline(cause.fix.spec)}.")
        elif cause.try_next or cause.advice:
            actions.append(f"{cause.title}: {cause.advice}")
    files: dict[str, str] = {}
    reason = None
    to_try = [(cause, fix) for cause in causes for fix in cause.try_next]
    if study is not None and (to_try or len(combined) > 1):
        text, reason = _next_study(study, recommended, combined, to_try)
        if text:
            files[NEXT_STUDY_FILE] = text
    if len(combined) > 1:
        actions.append(
            f"The recommended config combines {', '.join(combined)}; the combination is untested"
            + (f": {NEXT_STUDY_FILE} confirms it." if files else ".")
        )
    elif files:
        actions.append(f"Run {NEXT_STUDY_FILE} (beside this report) to test what this study could not.")
    if not causes:
        actions.append("Nothing to fix: keep the baseline.")
    steps = NextSteps(
        recommended=recommended,
        recommended_spec=fragment(list(recommended), config) if config else "",
        combined_from=combined,
        untested=len(combined) > 1,
        next_study=NEXT_STUDY_FILE if files else None,
        next_study_reason=reason,
        actions=actions,
    )
    return steps, files


def _overlaps_any(changes: dict[str, Any], taken: dict[str, Any]) -> bool:
    return any(_overlaps(path, set(taken)) for path in changes)


def _next_study(
    study: StudyContrasts,
    recommended: dict[str, Any],
    combined: list[str],
    to_try: list[tuple[Cause, Fix]],
) -> tuple[str | None, str]:
    """A one-at-a-time study around the recommended config: each untested change, and the
    original baseline (when the recommendation changes it) to confirm the combination."""
    spec = copy.deepcopy(study.data.spec)
    for key in ("study_id",):
        spec.pop(key, None)
    base = {k: spec[k] for k in ("dataset", "model", "optimizer", "schedule", "augmentation", "training") if k in spec}
    base = apply_overrides(base, recommended)
    factors = []
    for cause, fix in to_try:
        labels = _label(fix.changes)
        factors.append({"name": cause.rule.replace("_", " ")[:80], "values": [fix.changes], "labels": [labels]})
    if recommended:
        original = {path: flatten_value(study.config, path) for path in recommended}
        factors.append({"name": "original baseline", "values": [original], "labels": ["original baseline"]})
    # Fresh seeds, so the next study confirms on runs this one did not see.
    first = max((run.seed for run in study.baseline_record.runs), default=-1) + 1
    seeds = list(range(first, first + max(3, len(study.baseline_record.runs))))
    name = f"{str(spec.get('name', 'study'))[:56]}-next"
    document = {
        "name": name,
        "description": "Next study written by the Ablate report of " + study.data.study_id,
        **base,
        "ablation": {"strategy": "one_at_a_time", "seeds": seeds, "factors": factors},
    }
    try:
        StudySpec.model_validate(document)
    except (ValidationError, ValueError):
        return None, "the next study would not validate"
    reasons = [NAMES.get(cause.rule, cause.rule).lower() for cause, _ in to_try]
    reason = (
        "tests what would repair: " + "; ".join(dict.fromkeys(reasons))
        if reasons
        else "confirms the combined fixes"
    )
    header = f"# {reason}\n# Run it with: ablate run {NEXT_STUDY_FILE}\n"
    return header + yaml.safe_dump(document, sort_keys=False), reason


def flatten_value(config: dict[str, Any], path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node.get(part)
    return copy.deepcopy(node)


def _label(changes: dict[str, Any]) -> str:
    parts = []
    for path, value in changes.items():
        short = path.rsplit(".", 1)[-1]
        if isinstance(value, float):
            text = f"{value:g}"
        elif isinstance(value, (dict, list)):
            text = "changed"
        else:
            text = str(value)
        parts.append(f"{short} {text}")
    return ", ".join(parts)[:80]
