"""bench/diagnosis.py: its quick mode produces the table from real `ablate diagnose` runs, and
its reading of summary.json works on today's findings and on the staged diagnosis's causes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench.diagnosis import QUICK_BUDGET, names_fault, top_cause
from bench.diagnosis_cases import CASES, QUICK
from tests.waits import run_process

REPO = Path(__file__).resolve().parents[2]
ROW_FIELDS = {"case", "fault", "rule", "title", "correct", "runs", "seconds", "healthy", "error"}


def test_top_cause_prefers_ranked_causes_over_findings():
    summary = {
        "causes": [{"rule": "few_updates", "title": "Too few updates", "fix": {}}],
        "findings": [{"rule": "factor_effect", "kind": "helps", "title": "x"}],
    }
    assert top_cause(summary)["rule"] == "few_updates"
    assert top_cause({"causes": [], "findings": summary["findings"]}) is None


def test_top_cause_skips_findings_that_hurt():
    findings = [
        {"rule": "harmful_augmentation", "kind": "hurts", "title": "Flips hurt"},
        {"rule": "class_imbalance", "kind": "data", "title": "Imbalanced"},
    ]
    assert top_cause({"findings": findings})["rule"] == "class_imbalance"
    assert top_cause({"findings": findings[:1]}) is None


def test_top_cause_counts_a_harmful_part_of_the_baseline_whose_removal_helps():
    finding = {
        "rule": "harmful_augmentation",
        "kind": "hurts",
        "variants": ["baseline", "no augmentation"],
    }
    variants = [{"name": "baseline", "vs_baseline": None}]
    removal_helps = variants + [{"name": "no augmentation", "vs_baseline": {"delta": 0.3}}]
    addition_hurts = variants + [{"name": "no augmentation", "vs_baseline": {"delta": -0.3}}]
    summary = {"baseline": "baseline", "findings": [finding]}
    assert top_cause({**summary, "variants": removal_helps}) == finding
    assert top_cause({**summary, "variants": addition_hurts}) is None


def test_names_fault_reads_qualified_rules_and_healthy_cases():
    cause = {"rule": "factor_effect", "title": "no l2 helps: +40 points", "variants": ["no l2"]}
    assert names_fault(cause, frozenset({"factor_effect:no l2"}))
    assert not names_fault(cause, frozenset({"factor_effect:no dropout"}))
    assert not names_fault(None, frozenset({"underfitting"}))
    assert names_fault(None, frozenset())
    assert not names_fault(cause, frozenset())


def test_suite_has_a_case_per_fault_family_and_healthy_baselines():
    assert len(CASES) >= 14
    assert len({case.name for case in CASES}) == len(CASES)
    assert sum(case.healthy for case in CASES) >= 2
    assert all(case.fix for case in CASES if not case.healthy)
    assert {case.data for case in CASES} == {"digits", "synthetic"}


# A diagnose battery's size in runs, at most (bench/diagnosis.py measured a median of 33).
BATTERY_RUNS = 40


@pytest.mark.slow
def test_quick_mode_runs_two_diagnoses_and_writes_the_table(tmp_path, local_pace):
    out = tmp_path / "diagnosis.json"
    # two diagnoses of 2-epoch runs on 2 jobs, each `ablate diagnose` a fresh process
    deadline = 2 * local_pace.deadline(epochs=2, runs=BATTERY_RUNS, workers=2, cold=True)
    done = run_process(
        [
            sys.executable,
            str(REPO / "bench" / "diagnosis.py"),
            "--quick",
            "--ablate",
            f"{sys.executable} -m service.cli",
            "--out",
            str(out),
        ],
        deadline,
        "the quick diagnosis benchmark",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for label in ("recall:", "false alarms:", "median runs:", "median wall time:"):
        assert label in done.stdout
    document = json.loads(out.read_text())
    assert [row["case"] for row in document["cases"]] == list(QUICK)
    for row in document["cases"]:
        assert set(row) >= ROW_FIELDS, row
        assert row["error"] is None
        # The diagnose battery: a baseline and its variants, 2 seeds each, all trained here.
        assert row["runs"] >= 2 * 5, row
        assert row["runs"] <= QUICK_BUDGET, row  # --quick passes its budget to ablate diagnose
        assert row["seconds"] > 0
        assert isinstance(row["correct"], bool)
    totals = document["totals"]
    assert totals["cases"] == 2 and totals["healthy"] == 1
    assert totals["median_runs"] >= 10
    assert 0.0 <= totals["recall"] <= 1.0
