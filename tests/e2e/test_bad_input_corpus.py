"""The bad-input corpus (tests/bad_inputs/, see its README.md): every malformed spec or dataset is
refused by `ablate run` with one clear error naming the field or file, exit code 2, and nothing
trained or written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import service.cli.local
from service.cli import cli

CORPUS = Path(__file__).resolve().parent.parent / "bad_inputs"
CASE_DIRS = sorted(path for path in CORPUS.iterdir() if path.is_dir())


# Materializing dataset.json (a broken description raises CaseError, never AssertionError, so
# that it cannot pass for the expected failure of an xfail case)


class CaseError(Exception):
    """A case folder does not follow tests/bad_inputs/README.md."""


def _require(condition: object, message: str) -> None:
    if not condition:
        raise CaseError(message)


def _array(name: str, desc: dict[str, Any]) -> np.ndarray:
    unknown = set(desc) - {"shape", "dtype", "fill", "values", "length", "offset"}
    _require(not unknown, f"dataset.json: array {name}: unknown keys {sorted(unknown)}")
    if "values" in desc:
        values = desc["values"]
        if isinstance(values, str):
            _require(
                values.startswith("range"), f"dataset.json: array {name}: bad values {values!r}"
            )
            array = np.arange(desc["length"]) % int(values.removeprefix("range"))
        else:
            array = np.array(values, dtype=desc.get("dtype"))  # exact: no detour through float
        array = array.astype(desc.get("dtype", "int64"))
    else:
        shape, dtype = tuple(desc["shape"]), np.dtype(desc.get("dtype", "float32"))
        if "fill" in desc:
            array = np.full(
                shape,
                float(desc["fill"]) if isinstance(desc["fill"], str) else desc["fill"],
                dtype=dtype,
            )
        elif np.issubdtype(dtype, np.floating):
            array = np.random.default_rng(0).random(shape).astype(dtype)
        else:
            array = (np.arange(int(np.prod(shape))) % 10).reshape(shape).astype(dtype)
    if "offset" in desc:
        array = array + desc["offset"]
    return array


def _write_npz(root: Path, desc: dict[str, Any]) -> None:
    _require(set(desc) <= {"file", "arrays"}, f"dataset.json: npz: unknown keys {sorted(desc)}")
    arrays = {name: _array(name, array) for name, array in desc.get("arrays", {}).items()}
    with (root / desc.get("file", "data.npz")).open("wb") as handle:
        np.savez(handle, **arrays)


def _write_image_folder(root: Path, desc: dict[str, Any]) -> None:
    unknown = set(desc) - {"folder", "classes", "extra_files"}
    _require(not unknown, f"dataset.json: image_folder: unknown keys {sorted(unknown)}")
    folder = root / desc.get("folder", "images")
    folder.mkdir(parents=True)
    for name, count in desc.get("classes", {}).items():
        (folder / name).mkdir()
        for index in range(count):
            pixels = np.full((12, 12, 3), index * 20 % 256, dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{index}.png")
    for relative, text in desc.get("extra_files", {}).items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)


def _write_files(root: Path, desc: dict[str, dict[str, str]]) -> None:
    for relative, content in desc.items():
        _require(
            len(content) == 1 and set(content) <= {"text", "hex"},
            f"dataset.json: files: {relative}: give exactly one of 'text' or 'hex'",
        )
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if "text" in content:
            target.write_bytes(content["text"].encode("utf-8"))
        else:
            target.write_bytes(bytes.fromhex(content["hex"]))


def _write_special(root: Path, desc: dict[str, Any]) -> None:
    """Files that are not files: FIFOs, and symlinks (to a device, or out of the case)."""
    _require(set(desc) <= {"fifo", "symlink"}, f"dataset.json: special: unknown keys {sorted(desc)}")
    for relative in desc.get("fifo", []):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(root / relative)
    for relative, target in desc.get("symlink", {}).items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).symlink_to(target)


def materialize(case: Path, root: Path) -> None:
    """Copy the case folder to `root` and write what its dataset.json describes."""
    shutil.copytree(case, root)
    described = root / "dataset.json"
    if not described.exists():
        return
    desc = json.loads(described.read_text())
    unknown = set(desc) - {"npz", "image_folder", "files", "special"}
    _require(not unknown, f"{case.name}/dataset.json: unknown keys {sorted(unknown)}")
    if "npz" in desc:
        _write_npz(root, desc["npz"])
    if "image_folder" in desc:
        _write_image_folder(root, desc["image_folder"])
    if "files" in desc:
        _write_files(root, desc["files"])
    if "special" in desc:
        _write_special(root, desc["special"])


def _snapshot(root: Path) -> dict[str, int]:
    # lstat: a FIFO or a link to /dev/zero is recorded, never opened
    return {
        path.relative_to(root).as_posix(): path.lstat().st_size for path in sorted(root.rglob("*"))
    }


def _flat(text: str) -> str:
    return " ".join(text.split())


# The tests


def _param(case: Path):
    xfail = case / "xfail.txt"
    reason = xfail.read_text().strip() if xfail.exists() else None
    # AssertionError only: a broken case folder (bad dataset.json) must not pass as a known gap
    marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)] if reason else []
    return pytest.param(case, id=case.name, marks=marks)


def test_corpus_has_at_least_30_well_formed_cases():
    assert len(CASE_DIRS) >= 30
    for case in CASE_DIRS:
        files = {path.name for path in case.iterdir()}
        # only text files: data is generated from dataset.json at test time, never committed
        assert files <= {"spec.yaml", "expected.txt", "dataset.json", "xfail.txt"}, case.name
        assert (case / "expected.txt").read_text().strip(), f"{case.name}: empty expected.txt"
        if "spec.yaml" not in files:
            desc = json.loads((case / "dataset.json").read_text())
            special = desc.get("special", {})
            generated = {*desc.get("files", {}), *special.get("fifo", []), *special.get("symlink", {})}
            assert "spec.yaml" in generated, f"{case.name}: no spec.yaml"


@pytest.mark.parametrize("case", [_param(case) for case in CASE_DIRS])
def test_bad_input_is_refused_with_its_expected_message(case, tmp_path, monkeypatch):
    work = tmp_path / "case"
    materialize(case, work)
    store = tmp_path / "store"
    trained = []
    monkeypatch.setattr(
        service.cli.local, "train_locally", lambda plan, *args: trained.append(plan)
    )
    monkeypatch.chdir(work)
    before = _snapshot(work)

    result = CliRunner().invoke(cli, ["run", "spec.yaml", "--store", str(store)])

    output = result.output
    assert not trained, f"the spec was accepted and would have trained:\n{output}"
    assert "Traceback" not in output
    assert result.exit_code == 2, f"exit code {result.exit_code}, {result.exception!r}:\n{output}"
    assert output.count("error:") == 1, output
    assert output.startswith("error: spec.yaml: "), output
    for line in (case / "expected.txt").read_text().splitlines():
        if line.strip():
            assert _flat(line) in _flat(output), f"expected {line!r} in:\n{output}"
    assert not store.exists()
    assert _snapshot(work) == before
