"""What the spec fuzz tests share: the spec's vocabulary (field names and string values from its
JSON Schema), the arbitrary YAML-ish data their inputs are built from, and the check that any
input yields a valid spec or a `SpecError`, never another exception.

A product gap that fuzzing finds is pinned by a deterministic `xfail(strict=True)` test with its
minimal example and listed in `KNOWN_GAPS`, which the fuzz tests tolerate (matched by type,
message and raising function) so they keep guarding everything else; once fixed, the pinned test
becomes a plain regression test and the entry goes. The gaps found so far are fixed and pinned
as regression tests in tests/unit/test_spec_fuzz_gaps.py.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from hypothesis import event
from hypothesis import strategies as st

from service.errors import SpecError
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


# Arbitrary YAML-ish data, the building block of every fuzzer's input


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
