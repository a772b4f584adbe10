"""The studies a store holds: listing them (`ablate studies`) and finding one from what a user
types (a full study id, a unique prefix of one, or the path of its spec file).

Read from the store alone (no broker): a study is a `studies/{study_id}/study.json`; its runs'
states are read as everywhere else (metrics.json present = succeeded, else status.json, else
queued); its best variant comes from the report's summary.json when a report was written.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from service.errors import AblateError, KeyNotFound, StoreError
from service.identity import RUN_ID_PATTERN, STUDY_ID_PATTERN, study_id
from service.lifecycle.storage import read_status, run_key, study_key
from service.store.base import Store

SHORT_HASH = 8
"""Hex characters of a study id's hash shown in the list: enough to tell studies apart, and a
prefix that every command accepts."""
LISTED_MATCHES = 10


class StudyNotFound(AblateError):
    """No study in the store answers to what was given, or more than one does."""


@dataclass
class StudyListing:
    study_id: str
    name: str
    runs: int
    states: dict[str, int] = field(default_factory=dict)
    best_variant: str | None = None
    best_test_accuracy: float | None = None
    updated_at: str | None = None
    """The newest status.json of its runs, or its report's, whichever is later."""
    error: str | None = None
    """Why the study.json could not be read (the study is still listed)."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def stored_study_ids(store: Store) -> list[str]:
    """Ids of every study with a study.json in the store, sorted."""
    ids = set()
    for key in store.list("studies/"):
        parts = key.split("/")
        if len(parts) == 3 and parts[2] == "study.json" and STUDY_ID_PATTERN.match(parts[1]):
            ids.add(parts[1])
    return sorted(ids)


def resolve_study_id(store: Store, reference: str) -> str:
    """The id of the study `reference` names: a full id, a unique prefix of stored ids, or the
    path of a spec file (its study id, computed from the spec). `StudyNotFound` otherwise, listing
    the matches when a prefix is ambiguous."""
    if STUDY_ID_PATTERN.match(reference) and store.exists(study_key(reference, "study.json")):
        return reference
    path = Path(reference)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.is_file():
        from service.spec import load_spec  # only for a path: a spec is read and validated

        if not path.is_file():
            raise StudyNotFound(f"{reference}: no such spec file, and no study id")
        wanted = study_id(load_spec(path))
        if not store.exists(study_key(wanted, "study.json")):
            raise StudyNotFound(
                f"the spec {reference} is study {wanted}, which is not in {store.location()} "
                "(submit or run it first)"
            )
        return wanted
    matches = [candidate for candidate in stored_study_ids(store) if candidate.startswith(reference)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        from service.text import printable

        raise StudyNotFound(
            f"no study {printable(reference)} in {store.location()} (`ablate studies` lists them)"
        )
    shown = ", ".join(matches[:LISTED_MATCHES])
    more = f" and {len(matches) - LISTED_MATCHES} more" if len(matches) > LISTED_MATCHES else ""
    raise StudyNotFound(
        f"{reference!r} matches {len(matches)} studies: {shown}{more}; give more of the id"
    )


def short_ids(ids: list[str]) -> dict[str, str]:
    """Each id cut to its name and `SHORT_HASH` hash characters, longer where that is not
    unique among `ids` (like git's abbreviated commits)."""
    shortened = {}
    for full in ids:
        length = len(full) - len(full.rsplit("-", 1)[1]) + SHORT_HASH
        while length < len(full) and any(o != full and o.startswith(full[:length]) for o in ids):
            length += 1
        shortened[full] = full[:length]
    return shortened


def list_studies(store: Store) -> list[StudyListing]:
    """Every study in the store, the most recently updated first."""
    listings = [_listing(store, identifier) for identifier in stored_study_ids(store)]
    listings.sort(key=lambda item: (item.updated_at or "", item.study_id), reverse=True)
    return listings


def _listing(store: Store, identifier: str) -> StudyListing:
    try:
        document = store.get_json(study_key(identifier, "study.json"))
    except (KeyNotFound, StoreError) as exc:
        return StudyListing(identifier, "", 0, error=str(exc))
    spec = document.get("spec") if isinstance(document, dict) else None
    run_ids = document.get("run_ids") if isinstance(document, dict) else None
    if not isinstance(spec, dict) or not isinstance(run_ids, list):
        return StudyListing(identifier, "", 0, error="study.json is not a study document")
    run_ids = [r for r in run_ids if isinstance(r, str) and RUN_ID_PATTERN.match(r)]
    states: Counter = Counter()
    updated = []
    for run_id in run_ids:
        status = read_status(store, run_id)
        if store.exists(run_key(run_id, "metrics.json")):
            states["succeeded"] += 1
        else:
            states[status.state if status else "queued"] += 1
        if status is not None:
            updated.append(status.updated_at)
    name = spec.get("name")
    listing = StudyListing(identifier, name if isinstance(name, str) else "", len(run_ids), dict(states))
    summary = _summary(store, identifier)
    if summary is not None:
        listing.best_variant, listing.best_test_accuracy = _best_variant(summary)
        if isinstance(summary.get("generated_at"), str):
            updated.append(summary["generated_at"])
    listing.updated_at = max(updated) if updated else None
    return listing


def _summary(store: Store, identifier: str) -> dict | None:
    try:
        summary = store.get_json(study_key(identifier, "report/summary.json"))
    except (KeyNotFound, StoreError):
        return None
    return summary if isinstance(summary, dict) else None


def _best_variant(summary: dict) -> tuple[str | None, float | None]:
    """The variant with the highest mean test accuracy in the report's summary."""
    best: tuple[str | None, float | None] = (None, None)
    for variant in summary.get("variants") or []:
        if not isinstance(variant, dict):
            continue
        stats = variant.get("test_accuracy")
        mean = stats.get("mean") if isinstance(stats, dict) else None
        if isinstance(mean, (int, float)) and (best[1] is None or mean > best[1]):
            best = (str(variant.get("name")), float(mean))
    return best
