"""`ablate diagnose`: the staged diagnosis, round by round through the study driver.

Each stage the planner returns (`next_stage`) becomes one round of the study driver: its
variants are expanded and checked as a spec's own (`service.plan.expand`), the round is stored
before anything is dispatched, and the next stage is planned from the report's summary of every
run so far. The same code serves both modes (a local pool or the Celery workers); a driver that
died is resumed by running the command again, training nothing twice. At the end the report is
written, and the fixes found, merged, become `repaired.yaml` beside it with their measured gain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from service import datasets
from service.datasets.options import DEFAULT_DATA_OPTIONS, DataOptions
from service.diagnose.models import REPAIRED, DataShape, Findings, Stage
from service.diagnose.planner import next_stage
from service.diagnose.repair import findings
from service.driver import Dispatcher, StudyDriver, StudyStatus, SubmitReport
from service.identity import study_id as study_id_of
from service.lifecycle.documents import FixRecord, RepairDocument, RoundDocument, StudyDocument
from service.lifecycle.storage import study_key, write_document
from service.plan import expand
from service.report import gather, publish_report
from service.report.configs import apply_overrides
from service.report.models import Summary
from service.report.summary import summarize_study
from service.report.variant_models import CONFIRM_SUFFIX, Comparison
from service.spec import spec_from_data
from service.spec.ablation import AblationSpec
from service.spec.models import StudySpec
from service.store.base import Store

REPAIRED_FILE = "repaired.yaml"
DEFAULT_BUDGET = 40
"""Runs a diagnosis trains at most by default (never more than `ablation.max_runs`):
the baseline, a search of about a dozen configs and the confirmation of two or three, on 2-3
seeds; `--budget-runs` sets it."""
SECTIONS = ("dataset", "model", "optimizer", "schedule", "augmentation", "training")
"""The spec's sections that are the baseline's config (the paths the fixes set)."""


@dataclass
class Diagnosis:
    """What a staged diagnosis found: its rounds, the final summary, the fixes and the repair."""

    study_id: str
    rounds: list[RoundDocument]
    summary: Summary
    findings: Findings
    report: str
    """Where index.html is."""
    repaired: str | None
    """Where repaired.yaml is; None when nothing to fix was found."""
    gain: Comparison | None
    """The repaired config's measured comparison with the baseline (None when not measured)."""


def diagnosis_spec(spec: StudySpec) -> StudySpec:
    """The study a diagnosis of `spec` is: its baseline, seeds and max_runs, no factors."""
    ablation = AblationSpec(
        strategy="diagnose", seeds=spec.ablation.seeds, max_runs=spec.ablation.max_runs
    )
    return spec.model_copy(update={"ablation": ablation})


def run_diagnosis(
    spec: StudySpec,
    store: Store,
    dispatcher: Dispatcher,
    budget_runs: int | None = None,
    max_seeds: int | None = None,
    source: str = "<spec>",
    on_round: Callable[[RoundDocument, SubmitReport], None] | None = None,
    on_progress: Callable[[StudyStatus], None] | None = None,
    poll_seconds: float = 2.0,
    data: DataOptions = DEFAULT_DATA_OPTIONS,
) -> Diagnosis:
    """Diagnose the baseline of `spec` in stages until the planner is done or the budget
    (`budget_runs`, at most the spec's `ablation.max_runs`) is spent."""
    spec = diagnosis_spec(spec)
    study_id = study_id_of(spec)
    seeds = spec.ablation.seed_list
    budget = min(budget_runs or default_budget(spec), spec.ablation.max_runs)
    max_seeds = max_seeds or spec.ablation.max_seeds or max(2 * len(seeds), 5)
    baseline = spec.baseline().model_dump(mode="json")
    info = datasets.inspect(spec.baseline().dataset, options=data)
    shape = DataShape(
        input_shape=info.input_shape, num_classes=info.num_classes, test_samples=info.test_size
    )
    base = StudyDocument(
        study_id=study_id, spec=spec.model_dump(mode="json"), variants=[], run_ids=[]
    )

    def plan_round(done: list[RoundDocument]) -> RoundDocument | None:
        stages = [Stage.from_round(planned) for planned in done]
        used = len({run_id for planned in done for run_id in planned.runs})
        summary = summarize_study(gather(store, study_id), generated_at="") if done else None
        stage = next_stage(baseline, stages, summary, budget - used, max_seeds, seeds, shape)
        if stage is None:
            return None
        # The stage's seeds, and seeds of a variant's own (an out-of-fold run's one seed).
        groups: dict[tuple[int, ...], list] = {}
        for variant in stage.variants:
            own = variant.seeds if variant.seeds is not None else stage.seeds
            groups.setdefault(tuple(own), []).append(variant.candidate())
        variants, runs = [], {}
        for own, candidates in groups.items():
            expanded, own_runs = expand(spec, candidates, list(own), source, max_runs=budget, data=data)
            variants += expanded
            runs.update(own_runs)
        return RoundDocument(
            study_id=study_id,
            index=stage.index,
            kind=stage.kind,
            reason=stage.reason,
            variants=variants,
            runs=runs,
        )

    driver = StudyDriver(store, dispatcher, poll_seconds=poll_seconds)
    rounds = driver.run_rounds(study_id, plan_round, base, on_round, on_progress)
    so_far = summarize_study(gather(store, study_id), generated_at="")
    found = findings(so_far, [Stage.from_round(planned) for planned in rounds], info.test_size)
    gain = measured_gain(so_far, found)
    repaired = None
    if found.repaired:
        key = study_key(study_id, f"report/{REPAIRED_FILE}")
        store.put_bytes(key, repaired_spec(spec, found, gain).encode(), "application/yaml")
        repaired = store.location(key)
    write_document(
        store, study_key(study_id, "diagnosis.json"), repair_document(study_id, found, gain)
    )
    summary, report = publish_report(store, study_id)  # shows the stages and the repair
    return Diagnosis(study_id, rounds, summary, found, report, repaired, gain)


def repair_document(study_id: str, found: Findings, gain: Comparison | None) -> RepairDocument:
    return RepairDocument(
        study_id=study_id,
        changes=found.repaired,
        fixes=[FixRecord(**fix.model_dump()) for fix in found.fixes],
        dropped=found.dropped,
        refuted=found.refuted,
        gain=gain.delta if gain else None,
        ci_low=gain.ci_low if gain else None,
        ci_high=gain.ci_high if gain else None,
        p_value=(gain.p_adjusted if gain.p_adjusted is not None else gain.p_value)
        if gain
        else None,
        file=REPAIRED_FILE if found.repaired else None,
    )


def default_budget(spec: StudySpec) -> int:
    return min(DEFAULT_BUDGET, spec.ablation.max_runs)


def measured_gain(summary: Summary, found: Findings) -> Comparison | None:
    """The repaired config's comparison with the baseline: the repair stage's, or that of the
    variant that trained exactly the repaired config (a single fix, or the one that won where
    fixes set the same path). Confirmation variants come last: their seeds are fresh."""
    if not found.repaired:
        return None
    matches = [
        s
        for s in summary.variants[1:]
        if s.overrides == found.repaired and s.vs_baseline is not None
    ]
    matches.sort(key=lambda s: (s.name != REPAIRED, s.name.endswith(CONFIRM_SUFFIX)))
    return matches[0].vs_baseline if matches else None


def repaired_spec(spec: StudySpec, found: Findings, gain: Comparison | None) -> str:
    """A spec file of the repaired baseline (validated), headed by what was measured."""
    data = spec.model_dump(mode="json", exclude_none=True)
    config = {section: data[section] for section in SECTIONS if section in data}
    repaired = apply_overrides(config, found.repaired)
    document: dict[str, Any] = {
        "name": f"{spec.name}-repaired"[:80],
        "description": f"The baseline of {spec.name} with the fixes its diagnosis found.",
        **repaired,
        "ablation": {"strategy": "one_at_a_time", "seeds": spec.ablation.seeds, "factors": []},
    }
    spec_from_data(document)  # never write a spec that does not validate
    lines = [f"# The repaired config of study {study_id_of(spec)}."]
    for fix in found.fixes:
        lines.append(f"# fix: {fix.variant} ({fix.gain * 100:+.1f} points, {fix.decided_by})")
    if gain is not None:
        interval = (
            f", 95% interval [{gain.ci_low * 100:+.1f}, {gain.ci_high * 100:+.1f}]"
            if gain.ci_low is not None and gain.ci_high is not None
            else ""
        )
        of = "" if gain.metric == "test_accuracy" else " of balanced accuracy"
        lines.append(f"# measured gain over the baseline: {gain.delta * 100:+.1f} points{of}{interval}")
    else:
        lines.append("# measured gain: not measured together (train this spec to measure it)")
    return "\n".join(lines) + "\n" + yaml.safe_dump(document, sort_keys=False)
