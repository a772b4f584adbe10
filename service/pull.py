"""`ablate pull`: copy a study's artifacts out of the store into a folder, safely.

- DEST equal to or inside a local store is refused (the copy would write into the store);
- every key is validated and its target must stay inside DEST after resolving links, so a key
  or a symlink already in DEST cannot make the copy write elsewhere;
- a file already in DEST with other content is never replaced unless `overwrite` is given (the
  same content is skipped: pulling twice is a no-op);
- a stored document that is not what it should be is reported by its key, not as a traceback.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.errors import AblateError, StoreError
from service.identity import RUN_ID_PATTERN
from service.lifecycle.storage import run_key, study_key
from service.store.base import Store, validate_key
from service.store.local import LocalStore
from service.text import printable


class PullError(AblateError):
    """The pull cannot go ahead; nothing, or only what the message says, was written."""


@dataclass
class PullReport:
    copied: int = 0
    unchanged: int = 0
    conflicts: list[str] = field(default_factory=list)
    """Files in DEST that differ from the store's and were left as they were."""


def study_run_ids(document: Any, key: str) -> list[str]:
    """The run ids a stored study.json lists; `PullError` naming the key when it is malformed."""
    if not isinstance(document, dict):
        raise PullError(f"{key}: not a study document (a JSON {type(document).__name__})")
    run_ids = document.get("run_ids")
    if not isinstance(run_ids, list):
        raise PullError(f"{key}: not a study document (no list of run_ids)")
    for index, run_id in enumerate(run_ids):
        if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
            raise PullError(f"{key}: run_ids[{index}] is {printable(run_id)}, not a run id")
    return run_ids


def check_destination(store: Store, dest: Path) -> Path:
    """DEST resolved; `PullError` when it is the store itself or inside it."""
    root = dest.expanduser().resolve()
    if isinstance(store, LocalStore):
        store_root = store.root.resolve()
        if root == store_root or store_root in root.parents:
            raise PullError(f"{dest} is inside the store {store_root}; pull into a folder outside it")
    if root.exists() and not root.is_dir():
        raise PullError(f"{dest} exists and is not a folder")
    return root


def pull_study(
    store: Store,
    study_id: str,
    document: Any,
    dest: Path,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    report_only: bool = False,
    checkpoints: bool = True,
) -> PullReport:
    """Copy the study's files and its runs' files into `dest`, in the store's own layout:
    with `report_only` only the study's folder (study.json and report/); without `checkpoints`
    every run's files but its `checkpoints/` (only a resume reads them)."""
    root = check_destination(store, dest)
    run_ids = study_run_ids(document, store.location(study_key(study_id, "study.json")))
    keys = store.list(study_key(study_id, ""))
    for run_id in [] if report_only else run_ids:
        skipped = run_key(run_id, "checkpoints/")
        keys += [key for key in store.list(run_key(run_id, "")) if checkpoints or not key.startswith(skipped)]
    report = PullReport()
    for index, key in enumerate(keys, start=1):
        _pull_one(store, key, root, overwrite, report)
        if on_progress is not None:
            on_progress(index, len(keys))
    return report


def _pull_one(store: Store, key: str, root: Path, overwrite: bool, report: PullReport) -> None:
    try:
        validate_key(key)
    except StoreError as exc:
        raise PullError(f"the store lists a key that cannot be a file: {exc}") from None
    target = root.joinpath(*key.split("/"))
    # Resolving follows any link already in DEST: the file must still land inside it.
    if root not in target.resolve().parents:
        raise PullError(f"{target} leads out of {root} (a symbolic link in the folder?); nothing more copied")
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise PullError(f"{target} exists and is not a regular file; nothing more copied")
    data = store.get_bytes(key)
    if target.exists():
        if _same(target, data):
            report.unchanged += 1
            return
        if not overwrite:
            report.conflicts.append(str(target))
            return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.pulling")
    partial.write_bytes(data)
    partial.replace(target)
    report.copied += 1


def _same(path: Path, data: bytes) -> bool:
    if path.stat().st_size != len(data):
        return False
    return hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()
