"""LocalStore: atomic writes, listing, and key validation before any I/O."""

from __future__ import annotations

import os

import pytest

from service.errors import KeyNotFound, StoreError
from service.store import LocalStore, open_store, validate_key


@pytest.mark.parametrize(
    "key",
    ["", "../x", "a/../b", "/etc/passwd", "a//b", "a/./b", "a\x00b", "a\nb", "C:/x", "a\\b", "x" * 600],
)
def test_bad_keys_are_refused(key):
    with pytest.raises(StoreError):
        validate_key(key)


def test_bad_key_is_refused_before_touching_disk(tmp_path):
    store = LocalStore(tmp_path / "store")
    with pytest.raises(StoreError):
        store.put_bytes("../escape.txt", b"x")
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "store").exists()


def test_round_trip_list_delete(tmp_path):
    store = LocalStore(tmp_path)
    store.put_json("runs/a/status.json", {"state": "running"})
    store.put_bytes("runs/a/checkpoints/epoch-0001.npz", b"123")
    store.put_bytes("runs/b/run.json", b"{}")
    assert store.get_json("runs/a/status.json") == {"state": "running"}
    assert store.list("runs/a/") == ["runs/a/checkpoints/epoch-0001.npz", "runs/a/status.json"]
    assert store.list("runs/") == [
        "runs/a/checkpoints/epoch-0001.npz",
        "runs/a/status.json",
        "runs/b/run.json",
    ]
    store.delete("runs/a/status.json")
    assert not store.exists("runs/a/status.json")
    with pytest.raises(KeyNotFound):
        store.get_bytes("runs/a/status.json")


def test_writes_leave_no_temporary_files(tmp_path):
    store = LocalStore(tmp_path)
    for index in range(5):
        store.put_bytes("k/obj", str(index).encode())
    assert [p.name for p in (tmp_path / "k").iterdir()] == ["obj"]
    assert store.get_bytes("k/obj") == b"4"


def test_open_store_accepts_paths_and_file_urls(tmp_path):
    assert open_store(tmp_path).location() == str(tmp_path)
    assert open_store(f"file://{tmp_path}").location() == str(tmp_path)
    with pytest.raises(StoreError, match="unsupported store URL"):
        open_store("ftp://host/x")


def test_store_root_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        LocalStore(tmp_path / "file")


def test_check_writes_nothing_and_names_an_unusable_root(tmp_path):
    LocalStore(tmp_path / "new" / "store").check()  # creatable: fine, and not created
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is not a directory"):
        LocalStore(tmp_path / "file" / "store").check()
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):  # root ignores permissions: nothing to refuse
        return
    with pytest.raises(StoreError, match="cannot be created in"):
        LocalStore(locked / "store").check()


def test_head_gives_a_tag_that_changes_with_the_content_and_the_size(tmp_path):
    store = LocalStore(tmp_path)
    store.put_bytes("a/b", b"one")
    tag, size = store.head("a/b")
    assert size == 3 and store.etag("a/b") == tag
    store.put_bytes("a/b", b"three")
    assert store.head("a/b")[0] != tag and store.head("a/b")[1] == 5
    with pytest.raises(KeyNotFound):
        store.head("a/missing")
    with pytest.raises(KeyNotFound):
        store.head("a")
