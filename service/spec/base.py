"""Shared building blocks of the spec models: strict base model, bounded numbers and validated
path strings."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from service.text import has_unsafe

PositiveInt = Annotated[int, Field(gt=0)]
# Every integer that reaches a library has that library's bound (TensorFlow's step counters
# and schedule boundaries are int32/int64 tensors, scikit-learn's seeds 32-bit): an error that
# names the field instead of an OverflowError in a worker.
MAX_STEPS = 1_000_000_000
Steps = Annotated[int, Field(gt=0, le=MAX_STEPS)]
Patience = Annotated[int, Field(ge=0, le=10_000)]
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]


class StrictModel(BaseModel):
    """Unknown keys and wrong types are errors, never silently coerced or dropped."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def _check_data_path(value: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("path contains NUL or control characters")
    if has_unsafe(value):  # bidi overrides and zero-width marks: shown, the path would lie
        raise ValueError("path contains bidi or zero-width characters")
    if value.startswith("s3://"):
        bucket, _, key = value[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError("s3:// URI has no bucket")
        if ".." in key.split("/"):
            raise ValueError("s3:// key must not contain '..' segments")
    elif "://" in value:
        raise ValueError("only local paths and s3:// URIs are supported")
    return value


DataPath = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_check_data_path)]
