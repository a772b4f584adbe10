"""Study specs: pydantic models, loading from YAML, and the JSON Schema for editors."""

from service.spec.load import load_spec, spec_from_data
from service.spec.models import StudySpec, TrainConfig

__all__ = ["StudySpec", "TrainConfig", "load_spec", "spec_from_data"]
