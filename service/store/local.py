"""`LocalStore`: the artifact store as a directory, for `ablate run` on one machine."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from service.errors import KeyNotFound, StoreError
from service.store.base import Store, validate_key, validate_prefix


class LocalStore(Store):
    """Objects are files under `root`; writes go to a temporary file and are renamed into place,
    so a reader (or a crash) never sees half an object."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store {self.root} exists and is not a directory")
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise KeyNotFound(f"{path} does not exist") from None
        except IsADirectoryError:
            raise KeyNotFound(f"{path} is a folder, not an object") from None

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(handle)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get_file(self, key: str, path: str | Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise KeyNotFound(f"{source} does not exist")
        shutil.copyfile(source, path)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        base = self.root.joinpath(*[p for p in prefix.split("/") if p]) if prefix else self.root
        if not base.exists():
            return []
        keys = []
        start = base if base.is_dir() else base.parent
        for path in start.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def location(self, key: str = "") -> str:
        return str(self._path(key)) if key else str(self.root)

    def check(self) -> None:
        """The root is a folder this process may write into, or can be created as one (it is
        not created here: a check writes nothing)."""
        existing = self.root
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise StoreError(f"store {self.root}: {existing} is not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            what = "is not writable" if existing == self.root else f"cannot be created in {existing}"
            raise StoreError(f"store {self.root} {what} by this user")

    def head(self, key: str) -> tuple[str, int]:
        """(size and modification time in nanoseconds, size): every write replaces the file, so
        a new content gets a new tag."""
        path = self._path(key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise KeyNotFound(f"{path} does not exist") from None
        if not path.is_file():
            raise KeyNotFound(f"{path} is a folder, not an object")
        return f"{stat.st_size:x}-{stat.st_mtime_ns:x}", stat.st_size
