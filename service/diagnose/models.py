"""The planner's vocabulary: a stage (what to train next and why), its variants, and what the
planner needs to know about the data."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

StageKind = Literal["baseline", "search", "confirm", "repair"]
BASELINE = "baseline"
REPAIRED = "repaired"


class StageVariant(BaseModel):
    """One config to train: the baseline with dotted-path overrides, as `diagnose_battery`
    returns them (`{"optimizer.learning_rate": 0.0001}`)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    factor: str | None
    overrides: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] | None = None
    """Trained on these seeds instead of the stage's (an out-of-fold run: one seed)."""

    def candidate(
        self, field: str = "ablation.strategy"
    ) -> tuple[str, str | None, dict[str, Any], str]:
        """The (name, factor, overrides, field) tuple `service.plan.expand` takes."""
        return self.name, self.factor, self.overrides, field


class Stage(BaseModel):
    """One round of a staged diagnosis: its variants, each trained once per seed."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    kind: StageKind
    reason: str
    """Why this stage, in the words the report shows."""
    variants: list[StageVariant]
    seeds: list[int]

    @property
    def runs(self) -> int:
        """Runs the stage asks for at most (identical configs share runs)."""
        return sum(len(v.seeds if v.seeds is not None else self.seeds) for v in self.variants)

    @classmethod
    def from_round(cls, document: Any) -> Stage:
        """A stage done, from the driver's stored round
        (`service.lifecycle.documents.RoundDocument`): its seeds are those of its runs."""
        return cls(
            index=document.index,
            kind=document.kind,
            reason=document.reason,
            variants=[
                StageVariant(name=v.name, factor=v.factor, overrides=v.overrides)
                for v in document.variants
            ],
            seeds=sorted({run.seed for run in document.runs.values()}),
        )


class DataShape(BaseModel):
    """What the planner knows of the dataset (`service.datasets.inspect`): the model's input
    and classes, so a proposed architecture is checked as the spec's own (`check_model`), and
    the test split's size, whose binomial noise floors each seed's variance."""

    model_config = ConfigDict(extra="forbid")

    input_shape: tuple[int, int, int]
    num_classes: int = Field(gt=1)
    test_samples: int | None = None


class FixFound(BaseModel):
    """A change that repairs the baseline: significant in the study's screening family, or
    confirmed on fresh seeds."""

    model_config = ConfigDict(extra="forbid")

    variant: str
    overrides: dict[str, Any]
    gain: float
    """Accuracy gained (a fraction), as measured where it was decided: test accuracy, or balanced
    accuracy for a change of class weights or resampling alone."""
    decided_by: Literal["screening", "confirmation"]
    p_value: float | None


class Findings(BaseModel):
    """Where the diagnosis stands: the fixes found, the repaired config (the fixes merged),
    what confirmation refuted, and notes (what the budget cut or a factory ruled out)."""

    model_config = ConfigDict(extra="forbid")

    fixes: list[FixFound]
    repaired: dict[str, Any]
    """Dotted paths and values of the repaired config; empty when nothing to fix was found."""
    refuted: list[str]
    """Variants promising on screening that their confirmation did not bear out."""
    dropped: list[str]
    """Fixes left out of the repair because a larger one sets the same path."""
