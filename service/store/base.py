"""The artifact store interface shared by `LocalStore` and the S3 store, and key validation.

Keys are relative, slash-separated paths such as `runs/{run_id}/metrics.json`. Every key is
validated before any I/O: no `..` or `.` segments, no absolute paths, no empty segments, no NUL or
control characters, at most 512 characters.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from service.errors import StoreError

MAX_KEY_LENGTH = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative key; raise `StoreError` naming the problem."""
    if not isinstance(key, str) or not key:
        raise StoreError(f"invalid store key {key!r}: empty")
    if len(key) > MAX_KEY_LENGTH:
        raise StoreError(f"invalid store key {key[:40]!r}...: longer than {MAX_KEY_LENGTH} characters")
    if _CONTROL.search(key):
        raise StoreError(f"invalid store key {key!r}: contains NUL or control characters")
    if key.startswith("/") or key.startswith("\\") or re.match(r"^[A-Za-z]:", key):
        raise StoreError(f"invalid store key {key!r}: absolute paths are not allowed")
    if "\\" in key:
        raise StoreError(f"invalid store key {key!r}: backslashes are not allowed")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise StoreError(f"invalid store key {key!r}: empty, '.' or '..' segment")
    return key


def validate_prefix(prefix: str) -> str:
    """Prefixes for listing may be empty or end with '/'."""
    if prefix == "":
        return prefix
    validate_key(prefix.rstrip("/"))
    return prefix


class Store(ABC):
    """A flat key-value object store. Writes of one key are atomic: readers see old or new."""

    url: str

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Raise `KeyNotFound` when nothing is stored under `key`."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """All keys under `prefix`, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; no error when it is absent."""

    @abstractmethod
    def location(self, key: str = "") -> str:
        """Where `key` lives, for people: a filesystem path or an s3:// URI."""

    @abstractmethod
    def check(self) -> None:
        """One cheap probe before anything is written: raise a `StoreError` naming the problem
        when the store cannot be used (missing bucket, denied access, unwritable folder)."""

    @abstractmethod
    def head(self, key: str) -> tuple[str, int]:
        """(content tag, size in bytes) of `key` without reading it whole; the tag changes
        when the content does. `KeyNotFound` when absent."""

    def etag(self, key: str) -> str:
        """The content tag of `key` (for caching what was read from it)."""
        return self.head(key)[0]

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        self.put_bytes(key, Path(path).read_bytes(), content_type)

    def get_file(self, key: str, path: str | Path) -> None:
        data = self.get_bytes(key)
        Path(path).write_bytes(data)

    def get_json(self, key: str) -> Any:
        data = self.get_bytes(key)
        try:
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"{self.location(key)} is not valid JSON: {exc}") from None

    def put_json(self, key: str, value: Any) -> None:
        text = json.dumps(value, indent=2, sort_keys=True, allow_nan=False, default=str)
        self.put_bytes(key, text.encode("utf-8") + b"\n", "application/json")
