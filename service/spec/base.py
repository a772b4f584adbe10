"""Shared building blocks of the spec models: strict base model and validated path strings."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from service.text import has_unsafe


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
