"""Content-addressed identity of runs and studies (DESIGN.md, "Identity").

`run_id` = first 16 hex chars of sha256 over the run's canonical JSON (sorted keys, no
whitespace, schema version included). `study_id` = slug of the study name + "-" + 32 hex chars
(128 bits) of sha256 over the canonical spec: with the 8 of earlier versions, two specs of the
same name collided within seconds of searching. Ids of those versions stay valid, so old stores
stay readable. Both are stable across processes and key order.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any

from pydantic import Field

from service.spec.base import StrictModel
from service.spec.models import StudySpec, TrainConfig

SCHEMA_VERSION = 1


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class RunSpec(StrictModel):
    """One run: a fully resolved training config, its dataset's fingerprint and a seed."""

    schema_version: int = SCHEMA_VERSION
    config: TrainConfig
    dataset_fingerprint: Annotated[str, Field(min_length=1, max_length=128)]
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)]

    def canonical(self) -> str:
        return canonical_json(self.model_dump(mode="json"))

    @property
    def run_id(self) -> str:
        return sha256_hex(self.canonical())[:16]


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:40].strip("-") or "study"


def study_id(spec: StudySpec) -> str:
    payload = {"schema_version": SCHEMA_VERSION, "spec": spec.model_dump(mode="json")}
    return f"{slugify(spec.name)}-{sha256_hex(canonical_json(payload))[:STUDY_HASH_CHARS]}"


STUDY_HASH_CHARS = 32
RUN_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")
STUDY_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}-(?:[0-9a-f]{32}|[0-9a-f]{8})$")
"""Study ids of this version (32 hex) and of earlier ones (8 hex), at most 74 characters."""
