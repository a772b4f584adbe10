"""Property-based fuzzing of the planner and `ablate validate`: a spec that validates plans (a
baseline first, within its run budget) or raises a `SpecError`, never another exception, and
`ablate validate` writes nothing whatever the spec. Known product gaps are tolerated as
tests/spec_fuzzing.py describes."""

from __future__ import annotations

import math

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from service.cli import cli
from service.errors import SpecError
from service.plan import Plan, build_plan
from service.spec.load import spec_from_data
from service.spec.models import StudySpec
from tests.spec_fuzzing import (
    PATHS,
    SOURCE,
    check_spec_error,
    keys,
    known_gap,
    load_or_error,
    scalars,
    yamlish,
)

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
