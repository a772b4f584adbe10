"""Gaps the spec fuzzers found (tests/unit/test_spec_fuzz_loading.py and
test_spec_fuzz_planning.py), since fixed, pinned as regression tests with their minimal examples:
odd YAML and odd ablation values are a `SpecError`; `ablate validate` prints labels as text, not
markup."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from service.cli import cli
from service.errors import SpecError
from service.plan import build_plan
from service.spec.load import parse_yaml, spec_from_data
from tests.spec_fuzzing import SOURCE


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
