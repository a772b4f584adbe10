"""Relative dataset paths in a spec file are read from the spec's own folder.

Every tool that reads a configuration file does this (Docker Compose, Kubernetes' kustomize,
pytest's ini files): `path: data/train.npz` in `specs/a.yaml` names `specs/data/train.npz`,
wherever the command is run from. The spec is rewritten with the resolved absolute path before
validation, so the resolved path is what the run's identity, `study.json` and the workers see
(a worker never guesses what a client's working directory was).

Only a spec read from a file has a folder. A spec given as a mapping (the Python client, a
stored study.json) is left as written: a relative path there is read from the working directory
of the process that reads it, as before, and its run ids do not change.

Joining is textual (`os.path.normpath`, as Compose and Go's `filepath.Join` do): `..` is
collapsed without following links, so the path shown is the one the user can read in the spec.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.spec.base import _check_data_path

MAX_PATH_CHARS = 1024  # the spec model's limit on a path (service.spec.base.DataPath)
_KINDS_WITH_PATH = {"npz": "file", "image_folder": "folder"}


@dataclass(frozen=True)
class ResolvedPath:
    """One relative path of a spec file and where it was resolved to."""

    field: str
    """Where the spec wrote it: `dataset.path`, `ablation.factors[0].values[1]`, ..."""
    written: str
    resolved: str
    kind: str
    """What it should name: `file` (npz), `folder` (image_folder), or `file or folder`."""


def is_relative_local(value: Any) -> bool:
    """A local path that the spec's folder completes: not s3://, not absolute, not `~user/`.
    A value the spec model would refuse is left alone, so its error quotes it as written."""
    if not isinstance(value, str) or not value or len(value) > MAX_PATH_CHARS:
        return False
    try:
        _check_data_path(value)
    except ValueError:
        return False
    return not (value.startswith(("s3://", "~")) or os.path.isabs(value))


def resolve_relative_paths(data: Any, folder: Path) -> tuple[Any, list[ResolvedPath]]:
    """`data` (a parsed spec) with every relative dataset path joined to `folder`, and the list
    of what was resolved. `data` itself is not modified. Covers the baseline's `dataset.path`
    and factor values that set a dataset: `path: dataset.path`, `path: dataset` (a mapping with
    a path) and factors without `path` whose mappings set `dataset.path` or `dataset`."""
    resolved: list[ResolvedPath] = []
    if not isinstance(data, Mapping):
        return data, resolved
    base = os.path.abspath(folder)
    out = dict(data)
    baseline_kind = _kind_of(data.get("dataset"))
    if "dataset" in data:
        out["dataset"] = _resolve_dataset(data["dataset"], "dataset", base, resolved)
    ablation = data.get("ablation")
    factors = ablation.get("factors") if isinstance(ablation, Mapping) else None
    if isinstance(factors, list):
        new_factors = []
        for index, factor in enumerate(factors):
            field = f"ablation.factors[{index}]"
            new_factors.append(_resolve_factor(factor, field, baseline_kind, base, resolved))
        out["ablation"] = {**ablation, "factors": new_factors}
    return out, resolved


def missing(resolved: list[ResolvedPath]) -> list[tuple[str, str]]:
    """(field, message) for each resolved path that does not exist, naming it both ways."""
    problems = []
    for item in resolved:
        if not os.path.lexists(item.resolved):
            problems.append((
                item.field,
                f"{item.written}: {item.kind} not found (a relative path is read from the "
                f"spec's folder: {item.resolved})",
            ))
    return problems


def _kind_of(dataset: Any) -> str:
    kind = dataset.get("kind") if isinstance(dataset, Mapping) else None
    return _KINDS_WITH_PATH.get(kind, "file or folder") if isinstance(kind, str) else (
        "file or folder"
    )


def _resolve_dataset(dataset: Any, field: str, base: str, out: list[ResolvedPath]) -> Any:
    """A dataset mapping with its relative `path` resolved (only for kinds that take one)."""
    if not isinstance(dataset, Mapping) or dataset.get("kind") not in _KINDS_WITH_PATH:
        return dataset
    if "path" not in dataset:  # its error is "Field required", not a path of None
        return dataset
    path = _resolve(dataset["path"], f"{field}.path", _kind_of(dataset), base, out)
    return {**dataset, "path": path}


def _resolve(value: Any, field: str, kind: str, base: str, out: list[ResolvedPath]) -> Any:
    if not is_relative_local(value):
        return value
    resolved = os.path.normpath(os.path.join(base, value))
    out.append(ResolvedPath(field=field, written=value, resolved=resolved, kind=kind))
    return resolved


def _resolve_factor(
    factor: Any, field: str, baseline_kind: str, base: str, out: list[ResolvedPath]
) -> Any:
    if not isinstance(factor, Mapping) or not isinstance(factor.get("values"), list):
        return factor
    path = factor.get("path")
    values = []
    for index, value in enumerate(factor["values"]):
        where = f"{field}.values[{index}]"
        if path == "dataset.path":
            value = _resolve(value, where, baseline_kind, base, out)
        elif path == "dataset":
            value = _resolve_dataset(value, where, base, out)
        elif path is None and isinstance(value, Mapping):
            value = dict(value)
            if "dataset.path" in value:
                value["dataset.path"] = _resolve(
                    value["dataset.path"], f"{where}.dataset.path", baseline_kind, base, out
                )
            if "dataset" in value:
                value["dataset"] = _resolve_dataset(value["dataset"], f"{where}.dataset", base, out)
        values.append(value)
    return {**factor, "values": values}
