"""The repaired config as a spec file (service.diagnose.staged.repaired_spec): a valid spec of
the baseline with the fixes merged, headed by the fixes and the gain measured, with the metric
named where it is not plain test accuracy (a class-balance repair is judged on balanced accuracy)."""

from __future__ import annotations

import pytest
import yaml

from service.diagnose.models import Findings, FixFound
from service.diagnose.staged import repaired_spec
from service.report.variant_models import Comparison
from service.spec import spec_from_data
from tests.conftest import TINY


def findings(path: str, value) -> Findings:
    fix = FixFound(variant="fix", overrides={path: value}, gain=0.2, decided_by="screening", p_value=0.001)
    return Findings(fixes=[fix], repaired={path: value}, refuted=[], dropped=[])


def gain(metric: str) -> Comparison:
    return Comparison(
        delta=0.2, ci_low=0.1, ci_high=0.3, p_value=0.001, effect_size=2.0,
        significant=True, metric=metric,
    )


@pytest.mark.parametrize(
    ("path", "value", "metric", "named"),
    [
        ("optimizer.learning_rate", 0.001, "test_accuracy", "+20.0 points, 95% interval"),
        ("training.class_weight", "balanced", "balanced_accuracy", "+20.0 points of balanced accuracy"),
    ],
)
def test_the_header_names_the_gain_and_its_metric_and_the_body_is_a_valid_spec(path, value, metric, named):
    text = repaired_spec(spec_from_data(TINY), findings(path, value), gain(metric))
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any(named in line for line in header), header
    assert ("balanced accuracy" in text) == (metric == "balanced_accuracy")
    repaired = spec_from_data(yaml.safe_load(text))
    section, key = path.split(".")
    assert getattr(getattr(repaired, section), key) == value
