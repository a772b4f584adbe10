"""Artifact stores (local directory, S3) behind one interface, and the layout of DESIGN.md."""

from __future__ import annotations

from pathlib import Path

from service.errors import StoreError
from service.store.base import Store, validate_key
from service.store.local import LocalStore

__all__ = ["LocalStore", "S3Store", "Store", "StoreError", "open_store", "validate_key"]


def open_store(url: str | Path, outage_seconds: float | None = None) -> Store:
    """A store from a URL: a directory path (or file://...) gives a `LocalStore`, s3://bucket/prefix
    an `S3Store` that outlasts an unreachable endpoint for `outage_seconds`
    (ABLATE_STORE_OUTAGE_SECONDS, read by the caller; None: its default). Cheap: no network I/O
    (call `S3Store.check()` before real work)."""
    text = str(url)
    if text.startswith("s3://"):
        from service.store.s3 import DEFAULT_OUTAGE_SECONDS, S3Store  # boto3 only when S3 is used

        return S3Store(text, outage_seconds=DEFAULT_OUTAGE_SECONDS if outage_seconds is None else outage_seconds)
    if "://" in text and not text.startswith("file://"):
        raise StoreError(f"unsupported store URL {text!r}: use a directory path or s3://bucket/prefix")
    return LocalStore(text.removeprefix("file://"))


def __getattr__(name: str):
    if name == "S3Store":
        from service.store.s3 import S3Store

        return S3Store
    raise AttributeError(name)
