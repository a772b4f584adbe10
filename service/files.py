"""Reading files a user names (specs, datasets, images): only regular files, sizes checked first.

`Path.read_bytes()` on a FIFO waits forever for a writer, on `/dev/zero` (or a symlink to it)
reads until memory runs out, and on a 3 GB file reads all of it before any size check. Here a
file is opened without blocking, checked with `fstat` on the very descriptor that will be read
(so a swapped symlink cannot slip past the check), refused unless it is a regular file no larger
than the limit, and read no further than that limit.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO


class NotARegularFile(OSError):
    """The path is missing, not a regular file, or larger than allowed; the text says which."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: str | Path, limit: int) -> BinaryIO:
    """`path` opened for reading; `NotARegularFile` unless it is a regular file of at most
    `limit` bytes (symlinks are followed, and the file they lead to is what is checked)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        raise NotARegularFile("file not found") from None
    except IsADirectoryError:
        raise NotARegularFile("is a directory") from None
    except OSError as exc:
        raise NotARegularFile(f"cannot open: {exc.strerror}") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(f"is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise NotARegularFile(f"is {info.st_size} bytes, more than the {limit} allowed")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_regular(path: str | Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (never more, even if it grows)."""
    with open_regular(path, limit) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise NotARegularFile(f"grew past the {limit} bytes allowed while it was read")
    return data
