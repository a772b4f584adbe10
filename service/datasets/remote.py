"""s3:// datasets: downloaded once per machine into a local cache keyed by their ETags.

An `npz` URI names one object; an `image_folder` URI names a prefix whose objects are the class
folders. A cached copy is reused while the objects' ETags are unchanged; downloads go to a
temporary folder renamed into place, so a crash never leaves a half-filled cache entry.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from service.datasets.options import DataOptions
from service.errors import DatasetError, KeyNotFound, StoreError


def fetch(uri: str, field: str, folder: bool, options: DataOptions) -> Path:
    """A local path holding the object (or, with `folder`, the objects under the prefix)."""
    from service.store.s3 import S3Store, parse_s3_url

    try:
        bucket, key = parse_s3_url(uri)
    except StoreError as exc:
        raise DatasetError(field, str(exc)) from None
    if not key:
        raise DatasetError(field, f"{uri}: names a bucket, not an object or folder")
    cache = Path(options.dataset_cache).expanduser()
    outage = options.store_outage_seconds
    limit = options.max_dataset_bytes
    try:
        if folder:
            store = S3Store(f"s3://{bucket}/{key}", outage_seconds=outage)
            keys = [k for k in store.list("") if not k.endswith("/")]
            if not keys:
                raise DatasetError(field, f"{uri}: folder not found (no objects under this prefix)")
            heads = {k: store.head(k) for k in keys}
            _check_size(uri, sum(size for _, size in heads.values()), field, limit)
            identity = "\n".join(f"{k}\t{heads[k][0]}" for k in keys)
            return _cached(cache, uri, identity, lambda tmp: _download_all(store, keys, tmp))
        parent, _, name = key.rpartition("/")
        store = S3Store(f"s3://{bucket}/{parent}" if parent else f"s3://{bucket}", outage_seconds=outage)
        etag, size = store.head(name)
        _check_size(uri, size, field, limit)
        entry = _cached(cache, uri, etag, lambda tmp: store.get_file(name, tmp / name))
        return entry / name
    except KeyNotFound:
        raise DatasetError(field, f"{uri}: file not found") from None
    except StoreError as exc:
        raise DatasetError(field, f"{uri}: {exc}") from None


def _check_size(uri: str, size: int, field: str, limit: int) -> None:
    """Before downloading: the objects' sizes against ABLATE_MAX_DATASET_BYTES (`limit`)."""
    if size > limit:
        raise DatasetError(field, f"{uri}: {size} bytes, more than the {limit} allowed (ABLATE_MAX_DATASET_BYTES)")


def _cached(cache: Path, uri: str, identity: str, download) -> Path:
    digest = hashlib.sha256(f"{uri}\n{identity}".encode()).hexdigest()[:24]
    entry = cache / digest
    if entry.is_dir():
        return entry
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{digest}."))
    try:
        download(tmp)
        os.replace(tmp, entry)
    except OSError:
        if entry.is_dir():  # another process filled the entry first
            return entry
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return entry


def _download_all(store, keys: list[str], target: Path) -> None:
    for key in keys:
        path = target.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        store.get_file(key, path)
