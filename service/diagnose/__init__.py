"""The staged diagnosis's planner: what to train next, and why, from the results so far.

Pure functions (no I/O, no TensorFlow). The study driver calls `next_stage` between rounds with
the baseline's resolved config, the stages done, the report's `Summary` of the study so far, the
runs left in the budget and `max_seeds`; it trains the stage returned (its variants x its seeds,
through `service.plan.expand`) and calls again, until None. `findings` gives the fixes found
and the repaired config (for `repaired.yaml`) at any point.

Stages: the baseline on its seeds; a targeted search where its symptoms point (the report's own
`CANDIDATES` / `FALLBACK` / `EXPLAINS` tables, `search.py`; a short battery for a baseline with
no symptom); a confirmation of the open comparisons on fresh seeds, decided on those seeds alone
with Holm's procedure (`confirm.py` states the procedure); and a repair that merges the fixes
(`repair.py`).
"""

from service.diagnose.models import DataShape, Findings, FixFound, Stage, StageVariant
from service.diagnose.planner import next_stage
from service.diagnose.repair import findings

__all__ = [
    "DataShape",
    "Findings",
    "FixFound",
    "Stage",
    "StageVariant",
    "findings",
    "next_stage",
]
