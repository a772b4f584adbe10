"""Property-based fuzzing of the spec loader and the planner: any input yields a valid spec (or
plan) or a `SpecError`, never another exception, and `ablate validate` writes nothing.

A product gap that fuzzing finds is pinned by a deterministic `xfail(strict=True)` test with its
minimal example and listed in `KNOWN_GAPS`, which the fuzz tests tolerate (matched by type,
message and raising function) so they keep guarding everything else; once fixed, the pinned test
becomes a plain regression test and the entry goes. The gaps found so far are fixed and pinned
as regression tests at the end of this file.
"""

from __future__ import annotations

import json
import math
import traceback
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from service.cli import cli
from service.errors import SpecError
from service.plan import Plan, build_plan
from service.spec.load import parse_yaml, spec_from_data
from service.spec.models import StudySpec

SOURCE = "fuzz.yaml"


# Field names and string values, taken from the spec's JSON Schema so they follow the models.


def _schema_words() -> tuple[list[str], list[str]]:
    names: set[str] = set()
    values: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            names.update(node.get("properties", {}))
            for key in ("enum", "const"):
                found = node.get(key)
                for value in found if isinstance(found, list) else [found]:
                    if isinstance(value, str):
                        values.add(value)
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(StudySpec.model_json_schema())
    return sorted(names), sorted(values)


FIELD_NAMES, ENUM_VALUES = _schema_words()
assert {"name", "dataset", "kind", "conv_blocks", "learning_rate", "factors", "seeds"} <= set(
    FIELD_NAMES
)
PATHS = [
    "model.dropout",
    "model.l2",
    "model.dense",
    "model.conv_blocks",
    "model.conv_blocks.0.filters",
    "model.conv_blocks.9.filters",
    "model.drop_out",
    "model.dropout.rate",
    "optimizer",
    "optimizer.learning_rate",
    "schedule",
    "training.epochs",
    "training.early_stopping",
    "augmentation.zoom",
    "dataset.validation_split",
    "dataset.split_seed",
    "",
    ".",
]
STRINGS = [
    *ENUM_VALUES,
    *PATHS,
    "conv_block.0",
    "conv_block.3",
    "mypkg.models:build",
    "s3://b/k.npz",
    "../etc",
]

TOP_LEVEL = list(StudySpec.model_fields)


# Known product gaps (see the module docstring). Each entry: name -> predicate on the exception.


def _raised_in(exc: BaseException, *functions: str) -> bool:
    return any(frame.name in functions for frame in traceback.extract_tb(exc.__traceback__))


KNOWN_GAPS: dict[str, Callable[[BaseException], bool]] = {}


def known_gap(exc: BaseException) -> str | None:
    for name, matches in KNOWN_GAPS.items():
        if matches(exc):
            event(f"known gap: {name}")
            return name
    return None


def check_spec_error(exc: SpecError) -> None:
    assert exc.source == SOURCE
    assert exc.problems
    for field, message in exc.problems:
        assert isinstance(field, str)
        assert isinstance(message, str) and message
    assert str(exc).startswith(f"{SOURCE}: ")


def load_or_error(load: Callable[[], Any]) -> StudySpec | None:
    """Run `load`; return the spec, or None after a SpecError (or a known gap); fail otherwise."""
    try:
        spec = load()
    except SpecError as exc:
        check_spec_error(exc)
        return None
    except Exception as exc:
        if known_gap(exc) is None:
            raise
        return None
    assert isinstance(spec, StudySpec)
    return spec


# (a) arbitrary YAML-ish data -> spec_from_data


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-3, 100),
    st.floats(),
    st.floats(0, 1),
    st.text(max_size=16),
    st.sampled_from(STRINGS),
)
keys = st.one_of(
    st.sampled_from(FIELD_NAMES),
    st.sampled_from(FIELD_NAMES),
    st.sampled_from(FIELD_NAMES),
    st.text(max_size=12),
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats()),
)
yamlish = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=30,
)
spec_like = st.one_of(
    yamlish,
    st.dictionaries(st.sampled_from(TOP_LEVEL) | keys, yamlish, max_size=8),
    st.fixed_dictionaries(
        {"name": st.sampled_from(["s", "study-1", "a b.c_d"]) | st.text(max_size=70)},
        optional={field: yamlish for field in TOP_LEVEL if field != "name"},
    ),
)


@settings(max_examples=200, deadline=None)
@given(spec_like)
def test_spec_from_data_returns_a_spec_or_a_spec_error(data):
    spec = load_or_error(lambda: spec_from_data(data, SOURCE))
    event("spec: valid" if spec is not None else "spec: error")


# (b) arbitrary text -> parse_yaml + spec_from_data

WORDS = "name dataset kind ablation factors path values digits synthetic npz adam loco grid"
SCALAR_WORDS = (
    "model.dropout 1e-3 -0.5 0 3 99999999999999999999 .nan .inf ~ null yes 0x1F 2020-01-01"
)
TAGS = "!!str !!binary !!set !!map !!omap !!int !!float !!bool !!timestamp !python/object"
PUNCTUATION = [": ", ":", "\n", "\n  ", "  ", "- ", "{", "}", "[", "]", ", ", "? ", "&a ", "*a"]
ODD = [
    "<<: ",
    "'",
    '"',
    "# ",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "\t",
    "\\",
    "\x00",
    "\x1b",
    "\ufeff",
    "é",
]
TOKENS = [
    *FIELD_NAMES,
    *WORDS.split(),
    *SCALAR_WORDS.split(),
    *(f"{tag} " for tag in TAGS.split()),
    *PUNCTUATION,
    *ODD,
]
yaml_text = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(TOKENS) | st.text(max_size=3), max_size=60).map("".join),
)


@settings(max_examples=200, deadline=None)
@given(yaml_text)
@example("name: x\n? [1]\n: 2\n")  # unhashable-yaml-key
@example("name: !!int x\n")  # bad-explicitly-tagged-scalar
def test_yaml_text_returns_a_spec_or_a_spec_error(text):
    spec = load_or_error(lambda: spec_from_data(parse_yaml(text, SOURCE), SOURCE))
    event("spec: valid" if spec is not None else "spec: error")


# (c) specs that validate -> build_plan, and `ablate validate` writes nothing

SMALL_SYNTHETIC = {"kind": "synthetic", "image_size": 8, "samples_per_class": 8, "classes": 3}


def _sometimes(
    valid: st.SearchStrategy, invalid: st.SearchStrategy | None = None
) -> st.SearchStrategy:
    """`valid` nine times in ten, else `invalid` (default: any scalar)."""
    wrong = invalid if invalid is not None else scalars
    return st.integers(0, 9).flatmap(lambda roll: wrong if roll == 9 else valid)


fractions = _sometimes(st.floats(0, 0.9), st.floats())
datasets_ = st.one_of(
    st.fixed_dictionaries(
        {"kind": st.just("digits")},
        optional={
            "validation_split": st.sampled_from([0.0, 0.1, 0.2]),
            "test_split": st.sampled_from([0.2, 0.25]),
            "split_seed": st.integers(0, 3),
        },
    ),
    st.fixed_dictionaries(
        {"kind": st.just("synthetic")},
        optional={
            "image_size": st.integers(8, 12),
            "channels": st.sampled_from([1, 3]),
            "classes": st.integers(2, 4),
            "samples_per_class": st.integers(4, 10),
            "noise": st.floats(0, 1),
            "imbalance": st.floats(1, 3),
            "seed": st.integers(0, 5),
            "validation_split": st.sampled_from([0.0, 0.1]),
        },
    ),
)
conv_block = st.fixed_dictionaries(
    {},
    optional={
        "filters": _sometimes(st.integers(1, 16)),
        "kernel_size": _sometimes(st.integers(1, 5)),
        "batch_norm": _sometimes(st.booleans()),
        "pooling": _sometimes(st.sampled_from(["max", "avg", "none"])),
        "activation": _sometimes(st.sampled_from(["relu", "gelu"])),
    },
)
model = st.fixed_dictionaries(
    {},
    optional={
        "conv_blocks": _sometimes(st.lists(conv_block, min_size=1, max_size=3)),
        "dense": _sometimes(st.lists(st.integers(1, 32), max_size=2)),
        "dropout": fractions,
        "conv_dropout": fractions,
        "l2": _sometimes(st.sampled_from([0.0, 1e-4])),
        "factory": _sometimes(st.sampled_from(["mypkg.models:build", "bad factory"])),
    },
)
optimizer = st.fixed_dictionaries(
    {"name": _sometimes(st.sampled_from(["adam", "adamw", "sgd", "rmsprop"]))},
    optional={
        "learning_rate": _sometimes(st.floats(1e-4, 1.0), st.floats()),
        "clipnorm": _sometimes(st.floats(0.1, 5)),
    },
)
piecewise = st.lists(st.integers(1, 1000), max_size=3, unique=True).flatmap(
    lambda bounds: st.fixed_dictionaries(
        {
            "name": st.just("piecewise"),
            "boundaries": st.just(sorted(bounds)),
            "values": _sometimes(
                st.lists(st.floats(1e-4, 1), min_size=len(bounds) + 1, max_size=len(bounds) + 1),
                st.lists(st.floats(1e-4, 1), max_size=4),
            ),
        }
    )
)
schedule = st.one_of(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["constant", "exponential_decay", "cosine", "reduce_on_plateau"])}
    ),
    piecewise,
)
training = st.fixed_dictionaries(
    {},
    optional={
        "epochs": _sometimes(st.integers(1, 20)),
        "batch_size": _sometimes(st.integers(1, 64)),
        "label_smoothing": fractions,
        "early_stopping": _sometimes(
            st.fixed_dictionaries(
                {},
                optional={
                    "monitor": st.sampled_from(["loss", "val_loss"]),
                    "patience": st.integers(0, 3),
                },
            )
        ),
    },
)
factor_value = st.one_of(
    scalars,
    st.floats(0, 0.9),
    st.sampled_from([0.0, 0.1, 0.5, 1e-4]),
    st.integers(1, 32),
    st.lists(st.integers(1, 32), max_size=3),
    st.fixed_dictionaries(
        {"name": st.sampled_from(["adam", "sgd", "constant", "cosine", "bogus"])}
    ),
)
path_factor = st.fixed_dictionaries(
    {
        "path": _sometimes(st.sampled_from(PATHS)),
        "values": st.lists(factor_value, min_size=1, max_size=3),
    },
    optional={"name": st.sampled_from(["lr", "dropout", "x"])},
)
mapping_factor = st.fixed_dictionaries(
    {
        "values": st.lists(
            st.dictionaries(
                _sometimes(st.sampled_from(PATHS), keys), factor_value, min_size=1, max_size=2
            ),
            min_size=1,
            max_size=3,
        )
    },
    optional={"name": st.sampled_from(["lr", "dropout", "x"])},
)
raw_factor = st.fixed_dictionaries(
    {}, optional={"path": scalars, "values": yamlish, "name": scalars, "labels": yamlish}
)
labels = st.sampled_from(["a", "b", "baseline", "c", "[red]x", "[/]"])


def _with_labels(factor: dict) -> st.SearchStrategy:
    count = len(factor["values"])
    matching = st.lists(labels, min_size=count, max_size=count)
    return st.just(factor) | _sometimes(matching, st.lists(labels, max_size=4)).map(
        lambda found: {**factor, "labels": found}
    )


factor = _sometimes((path_factor | mapping_factor).flatmap(_with_labels), raw_factor)
seeds = _sometimes(
    st.integers(1, 3)
    | st.lists(st.integers(0, 5) | st.integers(0, 2**33), min_size=1, max_size=3, unique=True),
    scalars,
)
runs = {"seeds": seeds, "max_runs": _sometimes(st.integers(1, 60))}
COMPONENTS = [
    "dropout",
    "augmentation",
    "l2",
    "batch_norm",
    "schedule",
    "dense",
    "early_stopping",
    "conv_block.0",
    "conv_block.2",
    "dropuot",
]
ablation = _sometimes(
    st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "strategy": st.sampled_from(["one_at_a_time", "grid"]),
                "factors": st.lists(factor, max_size=3),
                **runs,
            },
        ),
        st.fixed_dictionaries(
            {
                "strategy": st.just("loco"),
                "components": st.lists(
                    st.sampled_from(COMPONENTS), min_size=1, max_size=3, unique=True
                ),
            },
            optional=runs,
        ),
        st.fixed_dictionaries({"strategy": st.just("diagnose")}, optional=runs),
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "strategy": scalars,
            "factors": st.lists(factor, max_size=2),
            "components": st.lists(st.sampled_from(COMPONENTS)),
            **runs,
        },
    ),
)
study = st.fixed_dictionaries(
    {"name": _sometimes(st.sampled_from(["study", "lr-sweep", "a b.c_d"]), st.text(max_size=70))},
    optional={
        "dataset": _sometimes(datasets_, yamlish),
        "model": model,
        "optimizer": optimizer,
        "schedule": _sometimes(schedule, yamlish),
        "augmentation": st.fixed_dictionaries(
            {}, optional={"zoom": fractions, "horizontal_flip": st.booleans()}
        ),
        "training": training,
        "ablation": ablation,
    },
)


def plannable(spec: StudySpec) -> StudySpec:
    """Keep planning cheap and file-free: only digits or a small synthetic dataset."""
    if spec.dataset.kind == "digits":
        return spec
    if spec.dataset.kind == "synthetic":
        dataset = spec.dataset.model_copy(
            update={
                "image_size": min(spec.dataset.image_size, 16),
                "samples_per_class": min(spec.dataset.samples_per_class, 16),
            }
        )
    else:
        dataset = spec_from_data({"name": "x", "dataset": SMALL_SYNTHETIC}).dataset
    return spec.model_copy(update={"dataset": dataset})


def plan_or_error(spec: StudySpec) -> Plan | None:
    try:
        plan = build_plan(spec, SOURCE)
    except SpecError as exc:
        check_spec_error(exc)
        event("plan: SpecError")
        return None
    except Exception as exc:
        if known_gap(exc) is None:
            raise
        return None
    assert isinstance(plan, Plan)
    assert plan.variants and plan.variants[0].name == "baseline"
    assert plan.run_count <= spec.ablation.max_runs
    assert all(run_id in plan.runs for variant in plan.variants for run_id in variant.run_ids)
    event("plan: ok")
    return plan


@settings(max_examples=50, deadline=None)
@given(study)
@example(
    {
        "name": "s",
        "ablation": {
            "seeds": [2**31],
            "factors": [{"path": "optimizer.learning_rate", "values": [math.nan]}],
        },
    }
)
def test_valid_specs_plan_or_raise_a_spec_error(data):
    spec = load_or_error(lambda: spec_from_data(data, SOURCE))
    event("spec: valid" if spec is not None else "spec: SpecError")
    if spec is not None:
        plan_or_error(plannable(spec))


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=study)
def test_validate_cli_writes_nothing(data, tmp_path, monkeypatch):
    spec = load_or_error(lambda: spec_from_data(data, SOURCE))
    if spec is None:
        return
    spec = plannable(spec)
    specs = tmp_path / "specs"
    specs.mkdir(exist_ok=True)
    path = specs / SOURCE
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    monkeypatch.chdir(cwd)

    result = CliRunner().invoke(cli, ["validate", str(path)])

    assert sorted(p.name for p in cwd.iterdir()) == []
    assert sorted(p.name for p in specs.iterdir()) == [SOURCE]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        if known_gap(result.exception) is None:
            raise result.exception
        return
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        assert "variants x" in result.output
        event("validate: ok")
    else:
        assert result.exit_code == 2, result.output
        assert result.output.count("error:") == 1, result.output
        event("validate: error")


# Gaps the fuzzers found (since fixed), pinned with their minimal examples.


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("? []\n: 0\n", id="unhashable-yaml-key"),
        pytest.param("{{}: 0}", id="unhashable-yaml-key-flow"),
        pytest.param("!!set 0", id="set-tag-on-scalar"),
        pytest.param("!!map [1]", id="map-tag-on-sequence"),
        pytest.param("!!int x", id="bad-explicitly-tagged-int"),
        pytest.param("!!int", id="empty-explicitly-tagged-int"),
        pytest.param("!!float x", id="bad-explicitly-tagged-float"),
        pytest.param("!!bool x", id="bad-explicitly-tagged-bool"),
        pytest.param("!!timestamp x", id="bad-explicitly-tagged-timestamp"),
        pytest.param("[" * 2000 + "]" * 2000, id="deep-yaml-nesting"),
    ],
)
def test_odd_yaml_is_a_spec_error(text):
    with pytest.raises(SpecError):
        spec_from_data(parse_yaml(text, SOURCE), SOURCE)


@pytest.mark.parametrize(
    "ablation",
    [
        pytest.param(
            {"factors": [{"path": "model.l2", "values": [math.nan]}]}, id="non-finite-factor-value"
        ),
        pytest.param(
            {"factors": [{"path": "model.dense", "values": [[math.inf]]}]},
            id="non-finite-factor-value-nested",
        ),
        pytest.param({"seeds": [2**31]}, id="seed-above-int32"),
        pytest.param({"factors": [{"values": [{0: 0}]}]}, id="non-string-override-path"),
    ],
)
def test_odd_ablation_values_are_a_spec_error(ablation):
    with pytest.raises(SpecError):
        spec = spec_from_data({"name": "s", "ablation": {"seeds": 1, **ablation}}, SOURCE)
        build_plan(spec, SOURCE)


def test_validate_prints_labels_as_text_not_markup(tmp_path, monkeypatch):
    spec = {
        "name": "s",
        "ablation": {
            "seeds": 1,
            "factors": [{"path": "model.l2", "values": [0.001], "labels": ["[/]"]}],
        },
    }
    (tmp_path / SOURCE).write_text(json.dumps(spec))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["validate", SOURCE])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0
    assert "[/]" in result.output
