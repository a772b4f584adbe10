"""Artifact stores (local directory, S3) behind one interface, and the layout of DESIGN.md."""

from __future__ import annotations

from pathlib import Path

from service.errors import StoreError
from service.store.base import Store, validate_key
from service.store.local import LocalStore

__all__ = ["LocalStore", "Store", "StoreError", "open_store", "validate_key"]


def open_store(url: str | Path) -> Store:
    """A store from a URL: a directory path (or file://...) gives a `LocalStore`."""
    text = str(url)
    if text.startswith("s3://"):
        raise StoreError("s3:// stores need the S3 store, which this build does not include yet")
    if "://" in text and not text.startswith("file://"):
        raise StoreError(f"unsupported store URL {text!r}: use a directory path or s3://bucket/prefix")
    return LocalStore(text.removeprefix("file://"))
