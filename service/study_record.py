"""`studies/{study_id}/study.json`: written only over a document that describes the same spec.

A study id is a slug of the name plus a hash of the spec (service/identity.py); should two
different specs ever share one (ids of earlier versions had 8 hex characters, and collisions
were found in seconds), the second must not replace the first's document and so orphan its
results. The stored document is read first: the same spec is re-planned in place, anything else
is refused with an error naming both.
"""

from __future__ import annotations

from typing import Any

from service.errors import AblateError, KeyNotFound, StoreError
from service.identity import canonical_json, sha256_hex
from service.lifecycle.storage import study_key
from service.store.base import Store
from service.text import printable


class StudyConflict(AblateError):
    """The store holds another study (or an unreadable document) under this study id."""


def save_study(store: Store, study_id: str, document: dict[str, Any], source: str = "this spec") -> None:
    """Write `document` as the study's study.json unless the store's describes another spec."""
    key = study_key(study_id, "study.json")
    try:
        stored = store.get_json(key)
    except KeyNotFound:
        stored = None
    except StoreError as exc:
        raise StudyConflict(
            f"study {study_id}: {store.location(key)} is unreadable ({exc}); not overwriting it"
        ) from None
    if stored is not None and not _same_spec(stored, document):
        raise StudyConflict(
            f"study {study_id}: {store.location(key)} describes {_describe(stored)}, not "
            f"{source} ({_describe(document)}); refusing to overwrite it (rename the study to "
            "give it another id)"
        )
    store.put_json(key, document)


def _same_spec(stored: Any, document: dict[str, Any]) -> bool:
    return isinstance(stored, dict) and _spec_hash(stored) == _spec_hash(document)


def _spec_hash(document: Any) -> str | None:
    spec = document.get("spec") if isinstance(document, dict) else None
    if not isinstance(spec, dict):
        return None
    try:
        return sha256_hex(canonical_json(spec))
    except (TypeError, ValueError, RecursionError):
        return None


def _describe(document: Any) -> str:
    spec = document.get("spec") if isinstance(document, dict) else None
    digest = _spec_hash(document)
    if not isinstance(spec, dict) or digest is None:
        return "a document that is not a study"
    return f"study {printable(spec.get('name'))} with spec sha256 {digest[:16]}"
