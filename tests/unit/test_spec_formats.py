"""Spec files as users write them: YAML merge keys whose values are overridden, JSON indented
with tabs (the README says specs may be JSON), and JSON with YAML's refusals kept."""

from __future__ import annotations

import pytest

from service.errors import SpecError
from service.spec import load_spec


def test_a_merge_key_may_be_overridden(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("name: merged\ntraining:\n  <<: {epochs: 2, batch_size: 64}\n  epochs: 5\n")
    spec = load_spec(path)
    assert spec.training.epochs == 5 and spec.training.batch_size == 64


def test_an_explicit_duplicate_next_to_a_merge_key_is_still_refused(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("name: merged\ntraining:\n  <<: {batch_size: 64}\n  epochs: 5\n  epochs: 6\n")
    with pytest.raises(SpecError, match="duplicate key 'epochs'"):
        load_spec(path)


def test_json_indented_with_tabs_is_a_spec(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text('{\n\t"name": "tabbed",\n\t"training": {\n\t\t"epochs": 2\n\t}\n}\n')
    assert load_spec(path).training.epochs == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"name": "a", "name": "b"}', "invalid JSON: duplicate key 'name'"),
        ('{"name": "a", "model": {"dropout": NaN}}', "invalid JSON: NaN is not a number a spec may hold"),
        ('{"name": "a",\n\t"training": }', "line 2, column 14: invalid JSON: Expecting value"),
    ],
)
def test_json_keeps_the_yaml_refusals(tmp_path, text, message):
    path = tmp_path / "spec.json"
    path.write_text(text)
    with pytest.raises(SpecError, match=message):
        load_spec(path)
