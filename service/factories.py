"""Model factories (`model.factory: package.module:function`): who may run one, and its identity.

A factory is code: a worker that imports whatever module a spec names runs `os:system` or
`builtins:eval` for anyone who can submit a study. So

- a module is imported only if `ABLATE_FACTORY_MODULES` allows it (comma-separated module
  prefixes, `*` for any). Unset, Celery workers allow none and `ablate run`, which trains the
  user's own spec on the user's own machine, allows any (`allowed_prefixes`, called where the
  worker's task or `ablate run`'s training process reads the settings);
- the module's source file is part of the run's identity (`ModelSpec.factory_sha256`, filled in
  by the planner): editing the builder plans new runs instead of reusing the old code's results,
  and a worker whose copy differs from the planner's refuses the run.

Modules are located without being executed (`PathFinder` walks the package folders itself
instead of importing the parent packages), so planning and `ablate validate` run no user code.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

from service.errors import AblateError
from service.text import printable

MAX_SOURCE_BYTES = 10 * 1024 * 1024


class FactoryError(AblateError):
    """The factory cannot be used here; the message starts with `model.factory: `."""

    def __init__(self, message: str) -> None:
        self.field = "model.factory"
        super().__init__(f"model.factory: {message}")


def allowed_prefixes(setting: str | None, allow_when_unset: bool) -> list[str] | None:
    """The module prefixes ABLATE_FACTORY_MODULES (`setting`) allows; None when any module is.
    Unset, any module is allowed with `allow_when_unset` (`ablate run`), none without (a Celery
    worker)."""
    if setting is None:
        return None if allow_when_unset else []
    prefixes = [prefix.strip() for prefix in setting.split(",") if prefix.strip()]
    return None if "*" in prefixes else prefixes


def check_allowed(path: str, prefixes: Sequence[str] | None) -> None:
    """Raise `FactoryError` unless `prefixes` (from `allowed_prefixes`; None: any) allow the
    factory's module."""
    module = path.partition(":")[0]
    if prefixes is None or any(module == p or module.startswith(p + ".") for p in prefixes):
        return
    listed = ", ".join(prefixes) if prefixes else "none"
    raise FactoryError(
        f"{printable(path)} is not allowed here: ABLATE_FACTORY_MODULES allows {listed} "
        "(an operator setting: comma-separated module prefixes, * for any)"
    )


def locate(module: str) -> importlib.machinery.ModuleSpec:
    """The module's spec, found without importing it or any of its parent packages."""
    parts = module.split(".")
    found = None
    search: list[str] | None = None
    for depth in range(len(parts)):
        name = ".".join(parts[: depth + 1])
        if depth == 0 and (name in sys.builtin_module_names or name in sys.modules):
            found = importlib.util.find_spec(name)  # no import: built in, or already loaded
        else:
            found = importlib.machinery.PathFinder.find_spec(name, search)
        if found is None:
            raise FactoryError(f"cannot find module {printable(name)} on this machine")
        if depth < len(parts) - 1:
            if found.submodule_search_locations is None:
                raise FactoryError(f"{printable(name)} is a module, not a package holding {printable(module)}")
            search = list(found.submodule_search_locations)
    assert found is not None
    return found


def source_digest(path: str) -> str:
    """sha256 of the factory module's source file (of the interpreter's version for a module
    without one, such as `builtins`); raises `FactoryError` when the module cannot be found."""
    module = path.partition(":")[0]
    spec = locate(module)
    origin = spec.origin if spec.has_location else None
    if origin is None:
        return hashlib.sha256(f"{module} {sys.version}".encode()).hexdigest()
    file = Path(origin)
    try:
        if not file.is_file() or file.stat().st_size > MAX_SOURCE_BYTES:
            raise FactoryError(f"{printable(module)} ({file}) is not a source file of at most {MAX_SOURCE_BYTES} bytes")
        return hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError as exc:
        raise FactoryError(f"cannot read {file}: {exc.strerror}") from None
