"""Expand a study spec into variants and content-addressed runs.

A variant is the baseline with some dotted-path overrides; each variant runs once per seed.
Identical runs (same config, data and seed) collapse into one run_id, so a factor value equal to
the baseline costs nothing extra. Everything here is checked before anything is queued or written.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import json
import math
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ValidationError

from service import datasets
from service.datasets.balance import check_class_weight
from service.datasets.options import DEFAULT_DATA_OPTIONS, DataOptions
from service.datasets.splits import check_folds
from service.errors import DatasetError, SpecError
from service.factories import FactoryError, source_digest
from service.identity import RunSpec, canonical_json, study_id
from service.lifecycle.documents import StudyDocument, Variant
from service.spec.load import format_errors
from service.spec.models import StudySpec, TrainConfig
from service.spec.shapes import ShapeError, check_model
from service.spec.training import FULL_DUMP
from service.text import cut, escape_unsafe, printable

BASELINE = "baseline"


class Plan(BaseModel):
    study_id: str
    spec: StudySpec
    variants: list[Variant]
    runs: dict[str, RunSpec]

    @property
    def run_count(self) -> int:
        return len(self.runs)

    def document(self) -> StudyDocument:
        """`studies/{study_id}/study.json` for this plan."""
        return StudyDocument(
            study_id=self.study_id,
            spec=self.spec.model_dump(mode="json"),
            variants=self.variants,
            run_ids=sorted(self.runs),
        )

    def study_document(self) -> dict[str, Any]:
        """The contents of `studies/{study_id}/study.json`, as JSON."""
        return self.document().model_dump(mode="json")


def build_plan(spec: StudySpec, source: str = "<spec>", data: DataOptions = DEFAULT_DATA_OPTIONS) -> Plan:
    """Expand `spec`; raises `SpecError` (naming the field) for any bad factor, path or dataset.
    `data`: the operator's dataset settings (allowed folders, size limit), read by the caller."""
    baseline = spec.baseline().model_dump(mode="json", context=FULL_DUMP)  # later options settable by path
    _check_size_before_expanding(spec, source)
    candidates = list(_variants(spec, baseline, source))
    variants, runs = expand(spec, candidates, spec.ablation.seed_list, source, data=data)
    return Plan(study_id=study_id(spec), spec=spec, variants=_unique_names(variants), runs=runs)


def expand(
    spec: StudySpec,
    candidates: list[tuple[str, str | None, dict[str, Any], str]],
    seeds: list[int],
    source: str = "<spec>",
    max_runs: int | None = None,
    data: DataOptions = DEFAULT_DATA_OPTIONS,
) -> tuple[list[Variant], dict[str, RunSpec]]:
    """Variants and runs of `candidates` (name, factor, overrides, the spec field that produced
    them) around the spec's baseline, one run per seed, each checked as a spec's own variants
    are: the strategies' plans and the rounds a staged diagnosis plans from results alike."""
    baseline = spec.baseline().model_dump(mode="json", context=FULL_DUMP)  # later options settable by path
    limit = spec.ablation.max_runs if max_runs is None else max_runs
    configs: list[tuple[str, str | None, dict[str, Any], TrainConfig]] = []
    digests: dict[str, str] = {}
    fields: list[str] = []
    for name, factor, overrides, field in candidates:
        _check_overlaps(overrides, field, source)
        try:
            config = _apply(baseline, overrides, field, source)
        except (ValueError, TypeError, RecursionError) as exc:  # e.g. a self-referencing YAML anchor
            if isinstance(exc, SpecError):
                raise
            raise SpecError(source, [(field, f"unusable value: {type(exc).__name__}: {exc}")]) from None
        configs.append((name, factor, overrides, config))
        fields.append(field)

    distinct = {canonical_json(config.model_dump(mode="json")) for *_, config in configs}
    planned = len(distinct) * len(seeds)
    if planned > limit:
        raise SpecError(
            source,
            [(
                "ablation.max_runs",
                f"the plan has {planned} runs ({len(distinct)} distinct variants x "
                f"{len(seeds)} seeds), more than max_runs={limit}; "
                "raise max_runs or ablate fewer values",
            )],
        )

    infos: dict[str, datasets.DatasetInfo] = {}
    variants: list[Variant] = []
    runs: dict[str, RunSpec] = {}
    for (name, factor, overrides, config), field in zip(configs, fields, strict=True):
        config = _with_factory_source(config, digests, source)
        data_key = canonical_json(config.dataset.model_dump(mode="json"))
        if data_key not in infos:
            try:
                infos[data_key] = datasets.inspect(config.dataset, options=data)
            except DatasetError as exc:
                raise SpecError(source, [(exc.field, str(exc).removeprefix(f"{exc.field}: "))]) from None
        info = infos[data_key]
        try:  # the builder's shape arithmetic, so a model that cannot build fails here
            check_model(config, info.input_shape, info.num_classes)
        except ShapeError as exc:
            where = exc.field if name == BASELINE else f"{field} ({exc.field})"
            raise SpecError(source, [(where, str(exc))]) from None
        try:  # a weight for a class the data does not have, more folds than samples: here, not in a worker
            check_class_weight(config.training.class_weight, info.class_names)
            if config.training.holdout is not None:
                check_folds(config.training.holdout.folds, info.train_size, "training.holdout.folds")
        except DatasetError as exc:
            where = exc.field if name == BASELINE else f"{field} ({exc.field})"
            raise SpecError(source, [(where, str(exc).removeprefix(f"{exc.field}: "))]) from None
        run_ids = []
        for seed in seeds:
            run = RunSpec(config=config, dataset_fingerprint=info.fingerprint, seed=seed)
            runs.setdefault(run.run_id, run)
            run_ids.append(run.run_id)
        variants.append(Variant(name=name, factor=factor, overrides=overrides, run_ids=run_ids))
    return variants, runs


# Variants expanded at most, whatever max_runs says: each costs a copy and a validation.
MAX_EXPANDED_VARIANTS = 5000


def variant_bound(spec: StudySpec) -> int:
    """How many variants the strategy yields at most (baseline included), by arithmetic alone."""
    ablation = spec.ablation
    if ablation.strategy == "one_at_a_time":
        return 1 + sum(len(factor.values) for factor in ablation.factors)
    if ablation.strategy == "grid":
        return 1 + math.prod(len(factor.values) for factor in ablation.factors)
    if ablation.strategy == "loco":
        return 1 + len(ablation.components)
    return 1 + len(diagnose_battery(spec.baseline().model_dump(mode="json")))  # a short list


def _check_size_before_expanding(spec: StudySpec, source: str) -> None:
    """Refuse a plan far over max_runs before a single variant is built (a 10^7-run grid took
    minutes and gigabytes to expand before it was counted). Plans near the limit are expanded
    and counted exactly below, since identical variants collapse into one."""
    variants, seeds = variant_bound(spec), len(spec.ablation.seed_list)
    limit = spec.ablation.max_runs
    if variants * seeds > 2 * limit or variants > MAX_EXPANDED_VARIANTS:
        raise SpecError(
            source,
            [(
                "ablation.max_runs",
                f"the plan has up to {variants * seeds} runs ({variants} variants x {seeds} "
                f"seeds), more than max_runs={limit}; raise max_runs or ablate fewer values"
                + (f" (at most {MAX_EXPANDED_VARIANTS} variants)" if variants > MAX_EXPANDED_VARIANTS else ""),
            )],
        )


def _with_factory_source(config: TrainConfig, digests: dict[str, str], source: str) -> TrainConfig:
    """The config with its factory's source digest: the builder's code is part of the run."""
    path = config.model.factory
    if path is None:
        return config
    if path not in digests:
        try:
            digests[path] = source_digest(path)
        except FactoryError as exc:
            raise SpecError(source, [(exc.field, str(exc).removeprefix(f"{exc.field}: "))]) from None
    model = config.model.model_copy(update={"factory_sha256": digests[path]})
    return config.model_copy(update={"model": model})


# Strategies


def _variants(
    spec: StudySpec, baseline: dict[str, Any], source: str
) -> Iterator[tuple[str, str | None, dict[str, Any], str]]:
    """Yield (variant name, factor name, overrides, spec field that produced it)."""
    ablation = spec.ablation
    yield BASELINE, None, {}, "ablation"
    if ablation.strategy == "one_at_a_time":
        for index, factor in enumerate(ablation.factors):
            for value_index, overrides in enumerate(_factor_overrides(factor)):
                name = _label(factor, value_index, overrides)
                yield name, factor.display_name, overrides, f"ablation.factors[{index}].values[{value_index}]"
    elif ablation.strategy == "grid":
        choices = [list(enumerate(_factor_overrides(factor))) for factor in ablation.factors]
        for combo in itertools.product(*choices):
            overrides: dict[str, Any] = {}
            for _, change in combo:
                for path in change:
                    if path in overrides:
                        raise SpecError(
                            source, [("ablation.factors", f"two factors both set {printable(path)} in a grid")]
                        )
                overrides.update(change)
            names = [_label(f, vi, ch) for (vi, ch), f in zip(combo, ablation.factors, strict=True)]
            if overrides:
                yield ", ".join(names), "grid", overrides, "ablation.factors"
    elif ablation.strategy == "diagnose":
        for name, factor, overrides in diagnose_battery(baseline):
            yield name, factor, overrides, "ablation.strategy"
    else:
        for index, component in enumerate(ablation.components):
            overrides = _loco_overrides(component, baseline, f"ablation.components[{index}]", source)
            yield f"no {component}", component, overrides, f"ablation.components[{index}]"


def _factor_overrides(factor: Any) -> list[dict[str, Any]]:
    if factor.path is not None:
        return [{factor.path: value} for value in factor.values]
    return [dict(value) for value in factor.values]


def _label(factor: Any, index: int, overrides: dict[str, Any]) -> str:
    if factor.labels is not None:
        return factor.labels[index]
    return ", ".join(f"{path}={_short(value)}" for path, value in overrides.items())


def _short(value: Any) -> str:
    if isinstance(value, dict) and "name" in value:
        rest = ",".join(f"{k}={v}" for k, v in value.items() if k != "name")
        return f"{value['name']}({rest})" if rest else str(value["name"])
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (ValueError, TypeError, RecursionError):  # validation names the problem later
        return repr(value)[:60]


def _check_overlaps(overrides: dict[str, Any], field: str, source: str) -> None:
    """`model` and `model.dropout` set together: the later would silently undo the other.
    Linear in the total length of the paths: each path's own prefixes are looked up."""
    paths = set(overrides)
    for second in sorted(paths):
        parts = second.split(".")
        for depth in range(1, len(parts)):
            first = ".".join(parts[:depth])
            if first in paths:
                raise SpecError(
                    source, [(field, f"{printable(first)} and {printable(second)} overlap; set one or the other")]
                )


def diagnose_battery(baseline: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """The standard battery of `strategy: diagnose`, built from the baseline alone: each
    variant probes one usual cause of low accuracy. Returns (name, factor, overrides)."""
    model, training = baseline["model"], baseline["training"]
    rate = baseline["optimizer"]["learning_rate"]
    battery: list[tuple[str, str, dict[str, Any]]] = [
        (f"lr x{factor:g}", "learning_rate", {"optimizer.learning_rate": _round(rate * factor)})
        for factor in (0.1, 0.3, 3.0)
        if rate * factor <= 10.0
    ]
    if baseline["schedule"]["name"] == "constant":
        battery.append(("cosine decay", "schedule", {"schedule": {"name": "cosine"}}))
    else:
        battery.append(("constant lr", "schedule", {"schedule": {"name": "constant"}}))
    if model["dropout"] > 0 or model["conv_dropout"] > 0:
        battery.append(("no dropout", "dropout", {"model.dropout": 0.0, "model.conv_dropout": 0.0}))
    else:
        battery.append(("dropout 0.5", "dropout", {"model.dropout": 0.5}))
    if model["l2"] > 0:
        battery.append(("no l2", "l2", {"model.l2": 0.0}))
    else:
        battery.append(("l2 1e-4", "l2", {"model.l2": 0.0001}))
    if any(value not in (False, 0, 0.0) for value in baseline["augmentation"].values()):
        battery.append(("no augmentation", "augmentation", {"augmentation": {}}))
    else:
        mild = {"translation": 0.1, "zoom": 0.1}
        battery.append(("augmentation (shift, zoom)", "augmentation", {"augmentation": mild}))
    if model.get("factory") is None:
        for name, scale in (("half width", 0.5), ("double width", 2.0)):
            blocks = [{**b, "filters": max(1, round(b["filters"] * scale))} for b in model["conv_blocks"]]
            dense = [max(1, round(units * scale)) for units in model["dense"]]
            battery.append((name, "width", {"model.conv_blocks": blocks, "model.dense": dense}))
    if training["epochs"] * 2 <= 10_000:
        battery.append(("double epochs", "epochs", {"training.epochs": training["epochs"] * 2}))
    return battery


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def _loco_overrides(component: str, baseline: dict[str, Any], field: str, source: str) -> dict[str, Any]:
    model = baseline["model"]
    if component == "dropout":
        return {"model.dropout": 0.0, "model.conv_dropout": 0.0}
    if component == "augmentation":
        return {"augmentation": {}}
    if component == "l2":
        return {"model.l2": 0.0}
    if component == "batch_norm":
        return {"model.conv_blocks": [{**block, "batch_norm": False} for block in model["conv_blocks"]]}
    if component == "schedule":
        return {"schedule": {"name": "constant"}}
    if component == "label_smoothing":
        return {"training.label_smoothing": 0.0}
    if component == "early_stopping":
        return {"training.early_stopping": None}
    if component == "dense":
        return {"model.dense": []}
    block = int(component.split(".", 1)[1])
    blocks = model["conv_blocks"]
    if not blocks:
        raise SpecError(source, [(field, f"{component}: the baseline has no conv blocks")])
    if block >= len(blocks):
        raise SpecError(
            source, [(field, f"{component}: the baseline has {len(blocks)} conv blocks (0..{len(blocks) - 1})")]
        )
    if len(blocks) == 1:
        raise SpecError(source, [(field, f"{component}: cannot remove the only conv block")])
    return {"model.conv_blocks": blocks[:block] + blocks[block + 1 :]}


# Applying overrides


def _apply(baseline: dict[str, Any], overrides: dict[str, Any], field: str, source: str) -> TrainConfig:
    data = copy.deepcopy(baseline)
    for path, value in overrides.items():
        _set_path(data, path, value, field, source)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        problems = [(f"{field} ({path})", message) for path, message in format_errors(exc, data)]
        raise SpecError(source, problems) from None


def _set_path(data: dict[str, Any], path: str, value: Any, field: str, source: str) -> None:
    parts = path.split(".")
    node: Any = data
    for depth, part in enumerate(parts):
        here = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpecError(source, [(
                    field,
                    f"unknown factor path {printable(path)}: {escape_unsafe(cut(here))} "
                    f"is not an index of a {len(node)}-item list",
                )])
            key: Any = int(part)
        elif isinstance(node, dict):
            if part not in node:
                hint = difflib.get_close_matches(part, list(node), n=1) if len(part) <= 100 else []
                suggestion = f" (did you mean {printable('.'.join(parts[:depth] + hint))}?)" if hint else ""
                known = ", ".join(sorted(node))
                raise SpecError(
                    source, [(field, f"unknown factor path {printable(path)}{suggestion}; fields here: {known}")]
                )
            key = part
        else:
            parent = ".".join(parts[:depth])
            raise SpecError(source, [(
                field,
                f"unknown factor path {printable(path)}: {escape_unsafe(cut(parent))} "
                f"is {printable(node)} in the baseline, not a mapping",
            )])
        if last:
            node[key] = value
        else:
            node = node[key]


def _unique_names(variants: list[Variant]) -> list[Variant]:
    seen: dict[str, int] = {}
    for variant in variants:
        count = seen.get(variant.name, 0)
        seen[variant.name] = count + 1
        if count:
            variant.name = f"{variant.name} #{count + 1}"
    return variants
