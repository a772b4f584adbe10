"""Errors the user can act on. Each names the file or field at fault; the CLI exits with 2."""

from __future__ import annotations


class AblateError(Exception):
    """Base of every error shown to a user as a message rather than a traceback."""

    exit_code = 2


class SpecError(AblateError):
    """A spec (or something it points at, such as a dataset file) is invalid."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{field}: {message}" if field else message for field, message in problems]
        if len(lines) == 1:
            text = f"{source}: {lines[0]}"
        else:
            text = f"{source}: {len(lines)} problems\n" + "\n".join(f"  - {line}" for line in lines)
        super().__init__(text)


class DatasetError(AblateError):
    """A dataset file or folder cannot be used; the message names it and the problem."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class StoreError(AblateError):
    """The artifact store refused an operation (bad key, missing bucket, access denied)."""


class StoreUnavailable(StoreError):
    """The store could not be reached (connection refused, timeouts, 5xx) even after the
    client's own retries. Worth retrying later, unlike every other `StoreError`."""

    transient = True


class KeyNotFound(StoreError):
    """No object is stored under the key."""
