"""Property-based fuzzing of the spec loader: any YAML-ish data (`spec_from_data`) and any text
(`parse_yaml`, then `spec_from_data`) yields a valid spec or a `SpecError`, never another
exception. Known product gaps are tolerated as tests/spec_fuzzing.py describes."""

from __future__ import annotations

from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from service.spec.load import parse_yaml, spec_from_data
from tests.spec_fuzzing import FIELD_NAMES, SOURCE, TOP_LEVEL, keys, load_or_error, yamlish

# (a) arbitrary YAML-ish data -> spec_from_data


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
