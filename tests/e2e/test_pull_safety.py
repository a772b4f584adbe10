"""`ablate pull` never overwrites a different file in DEST (unless --overwrite), refuses a DEST
equal to or inside the store or reached through a link out of it, and reports a malformed
stored document by its key."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from service.cli import cli
from service.store import LocalStore

STUDY = "pulled-" + "ab" * 16
RUN = "0123456789abcdef"


@pytest.fixture
def store(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.put_json(
        f"studies/{STUDY}/study.json",
        {"study_id": STUDY, "spec": {"name": "pulled"}, "variants": [], "run_ids": [RUN]},
    )
    store.put_json(f"studies/{STUDY}/report/summary.json", {"variants": []})
    store.put_json(f"runs/{RUN}/metrics.json", {"run_id": RUN})
    store.put_bytes(f"runs/{RUN}/model.keras", b"weights")
    return store


def pull(store, dest, *extra):
    return CliRunner().invoke(cli, ["pull", STUDY, str(dest), "--store", str(store.root), *extra])


def said(result) -> str:
    """The command's output on one line: the console wraps long paths at its width."""
    return " ".join(result.output.split())


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_pull_copies_then_leaves_identical_files_alone(store, tmp_path):
    dest = tmp_path / "copy"
    first = pull(store, dest)
    assert first.exit_code == 0, first.output
    assert "4 files of study" in said(first)
    assert _files(dest) == _files(store.root)
    again = pull(store, dest)
    assert again.exit_code == 0 and "0 files of study" in said(again) and "4 already there" in said(again)


def test_a_different_file_in_dest_is_kept_unless_overwrite(store, tmp_path):
    dest = tmp_path / "copy"
    (dest / "runs" / RUN).mkdir(parents=True)
    (dest / "runs" / RUN / "model.keras").write_bytes(b"my own edits")
    refused = pull(store, dest)
    assert refused.exit_code == 2, refused.output
    assert "differ from the store's and were kept (use --overwrite" in said(refused)
    assert "Traceback" not in refused.output
    assert (dest / "runs" / RUN / "model.keras").read_bytes() == b"my own edits"
    forced = pull(store, dest, "--overwrite")
    assert forced.exit_code == 0, forced.output
    assert (dest / "runs" / RUN / "model.keras").read_bytes() == b"weights"


@pytest.mark.parametrize("where", ["the store", "inside the store"])
def test_dest_in_the_store_is_refused(store, where):
    before = _files(store.root)
    dest = store.root if where == "the store" else store.root / "studies" / "copy"
    result = pull(store, dest)
    assert result.exit_code == 2, result.output
    assert "is inside the store" in said(result) and "Traceback" not in result.output
    assert _files(store.root) == before


def test_a_link_in_dest_cannot_lead_the_copy_elsewhere(store, tmp_path):
    dest, elsewhere = tmp_path / "copy", tmp_path / "elsewhere"
    dest.mkdir()
    elsewhere.mkdir()
    (dest / "runs").symlink_to(elsewhere, target_is_directory=True)
    result = pull(store, dest)
    assert result.exit_code == 2, result.output
    assert "leads out of" in said(result)
    assert not any(elsewhere.iterdir())


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([1, 2], "not a study document (a JSON list)"),
        ({"run_ids": "abc"}, "not a study document (no list of run_ids)"),
        ({"run_ids": ["../../etc"]}, "run_ids[0] is '../../etc', not a run id"),
    ],
)
def test_a_malformed_study_document_is_reported_by_key(store, tmp_path, document, message):
    (store.root / "studies" / STUDY / "study.json").write_text(json.dumps(document))
    result = pull(store, tmp_path / "copy")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    flat = " ".join(result.output.split())
    assert f"studies/{STUDY}/study.json: {message}" in flat, flat
    assert not (tmp_path / "copy").exists()
