"""Read a study spec from YAML/JSON into `StudySpec`, with errors that name the file and field.

A spec file's relative dataset paths are read from the file's folder (`service.spec.paths`); a
spec given as data (`spec_from_data`) keeps them as written, read from the working directory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from service.errors import SpecError
from service.files import NotARegularFile, read_regular
from service.spec.models import StudySpec
from service.spec.paths import missing, resolve_relative_paths
from service.text import cut, escape_unsafe, printable

# YAML 1.1 reads `1e-3` as a string; every user means a float, so resolve it as one.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _SpecConstruction:
    """Reads 1e-3 as a float and refuses duplicate keys (mixed into a SafeLoader)."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            # PyYAML's own constructors fail this way on explicitly tagged values (`!!int ten`)
            tag = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {printable(node.value)} as !!{printable(tag)}", node.start_mark
            ) from None

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(None, None, "expected a mapping", node.start_mark)
        # Duplicates among the keys written here; a key merged in with `<<` may be overridden.
        seen: set[Any] = set()
        own = [(k, v) for k, v in node.value if k.tag != "tag:yaml.org,2002:merge"]
        for key_node, _ in own:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be strings", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {printable(key)}", key_node.start_mark
                )
            seen.add(key)
        self.flatten_mapping(node)  # resolve `<<` merge keys: later keys win
        return super().construct_mapping(node, deep=deep)


class _SpecLoader(_SpecConstruction, yaml.SafeLoader):
    """The pure-Python parser: its error messages say most (the character at fault...)."""


class _FastSpecLoader(_SpecConstruction, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """libyaml's parser where installed: ten times faster on a large spec."""


for _loader in (_SpecLoader, _FastSpecLoader):
    _loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))

MAX_SPEC_BYTES = 1_000_000


def parse_yaml(text: str, source: str) -> Any:
    fast = _FastSpecLoader(text)
    try:
        return fast.get_single_data()
    except Exception:  # read it again with the parser whose messages say more
        pass
    finally:
        fast.dispose()
    loader = None
    try:
        loader = _SpecLoader(text)
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        if context and getattr(exc, "context_mark", None) is not None and exc.context_mark is not mark:
            problem += f" ({context} at line {exc.context_mark.line + 1})"
        raise SpecError(source, [("", f"{where}invalid YAML: {problem}")]) from None
    except RecursionError:
        raise SpecError(source, [("", "invalid YAML: nested too deeply")]) from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        # PyYAML's constructors fail this way on explicitly tagged values (`!!int ten`)
        mark = getattr(loader, "mark", None) or getattr(loader, "get_mark", lambda: None)()
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(
            source, [("", f"{where}invalid YAML: cannot read a tagged value ({type(exc).__name__}: {exc})")]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a spec file; raises `SpecError` naming the file and each bad field.
    Relative dataset paths are resolved from the file's folder and must exist."""
    path = Path(path)
    source = str(path)
    try:  # a FIFO, a device or a 3 GB file is refused before a byte of it is read
        raw = read_regular(path, MAX_SPEC_BYTES)
    except NotARegularFile as exc:
        message = "is a directory, not a spec file" if str(exc).startswith("is a directory") else str(exc)
        raise SpecError(source, [("", message)]) from None
    except OSError as exc:
        raise SpecError(source, [("", f"cannot read: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(source, [("", "not UTF-8 text")]) from None
    data = parse_json(text, source) if path.suffix.lower() == ".json" else parse_yaml(text, source)
    data, resolved = resolve_relative_paths(data, path.absolute().parent)
    spec = spec_from_data(data, source)
    problems = missing(resolved)
    if problems:  # before anything is planned, naming the path as written and as resolved
        raise SpecError(source, problems)
    return spec


def parse_json(text: str, source: str) -> Any:
    """A .json spec, read as JSON (tabs and all), with YAML's refusals: no duplicate keys, no
    NaN or Infinity."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        mapping: dict[str, Any] = {}
        for key, value in items:
            if key in mapping:
                raise _JsonProblem(f"duplicate key {printable(key)}")
            mapping[key] = value
        return mapping

    def constant(name: str) -> Any:
        raise _JsonProblem(f"{name} is not a number a spec may hold")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise SpecError(source, [("", f"line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}")]) from None
    except _JsonProblem as exc:
        raise SpecError(source, [("", f"invalid JSON: {exc}")]) from None
    except RecursionError:
        raise SpecError(source, [("", "invalid JSON: nested too deeply")]) from None


class _JsonProblem(ValueError):
    pass


def spec_from_data(data: Any, source: str = "<spec>") -> StudySpec:
    """Validate a parsed spec. Paths are kept as written: a relative dataset path in data that
    did not come from a file (the Python client's dict, a stored study.json) is read from the
    working directory of the process that reads it."""
    if not isinstance(data, Mapping):
        kind = "empty" if data is None else type(data).__name__
        raise SpecError(source, [("", f"a spec must be a mapping of fields, got {kind}")])
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(source, format_errors(exc, data)) from None
    except (TypeError, ValueError, RecursionError) as exc:  # pydantic's own input guards
        raise SpecError(source, [("", f"invalid spec: {type(exc).__name__}: {exc}")]) from None


def format_errors(exc: ValidationError, data: Any) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        field = dotted(error["loc"], data, keep_last=error["type"] == "missing")
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "union_tag_invalid":
            message = (
                f"unknown {error['ctx']['discriminator'].strip(chr(39))} {printable(error['ctx']['tag'])}; "
                f"expected one of {error['ctx']['expected_tags']}"
            )
        elif error["type"] == "union_tag_not_found":
            message = f"missing {error['ctx']['discriminator'].strip(chr(39))!r}"
        message = message.removeprefix("Value error, ")
        if error["type"] != "extra_forbidden" and "input" in error and not isinstance(
            error["input"], (dict, list)
        ):
            message += f" (got {printable(error['input'])})"
        problems.append((field, message))
    return problems


def dotted(loc: Iterable[Any], data: Any, keep_last: bool = True) -> str:
    """`('dataset', 'npz', 'path')` -> `dataset.path`: drop union tags that are not input keys."""
    parts: list[str] = []
    current = data
    for item in loc:
        if isinstance(item, int) and isinstance(current, list):
            parts.append(f"[{item}]")
            current = current[item] if item < len(current) else None
        elif isinstance(current, Mapping) and item in current:
            name = _key_name(item, current)
            parts.append(f".{name}" if parts else name)
            current = current[item]
        elif isinstance(current, Mapping) or current is None:
            # A union tag or a model name pydantic inserts: skip it unless it is the last part.
            if keep_last and item == list(loc)[-1]:
                parts.append(f".{item}" if parts else str(item))
            current = current if isinstance(current, Mapping) else None
        else:
            parts.append(f".{item}" if parts else str(item))
    return "".join(parts)


def _key_name(item: Any, mapping: Mapping[Any, Any]) -> str:
    """A key as the spec wrote it: pydantic reports a `true:` key as 1 (True == 1)."""
    if isinstance(item, int) and not isinstance(item, bool) and item in (0, 1):
        for key in mapping:
            if isinstance(key, bool) and key == item:
                return "true" if key else "false"
    if item is None:
        return "null"
    return escape_unsafe(cut(str(item)))
