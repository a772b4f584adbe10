"""Settings are read once at the edges (issue 12): `get_settings()` is called only where a process
or a public API starts, and every other module takes the values it needs from its caller
(`DataOptions`, `RunOptions`, plain parameters). The source is scanned, not imported."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("service", "workers")

DEFINITION = "service/settings.py"
EDGES = {
    "service/cli/__init__.py": "the CLI's start: settings validated once",
    "service/cli/local.py": "ablate run / validate / diagnose",
    "service/cli/staged.py": "ablate diagnose",
    "service/cli/studies.py": "ablate studies",
    "service/cli/cluster.py": "ablate worker",
    "service/client.py": "AblationClient's constructor",
    "service/embedded.py": "ablate run's training process",
    "service/report/__init__.py": "the reporter's one read of the user's data",
    "workers/app.py": "the Celery worker's start",
}
"""Modules that may call `get_settings`, and why each is an edge. workers/tasks.py reads the
settings workers/app.py read at the worker's start."""


def settings_readers(path: Path) -> list[int]:
    """Lines of `path` that call `get_settings` or import it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name == "get_settings":
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and any(alias.name == "get_settings" for alias in node.names):
            lines.append(node.lineno)
    return lines


def test_only_the_edges_read_the_settings():
    readers = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            lines = settings_readers(path)
            if lines and relative not in EDGES and relative != DEFINITION:
                readers[relative] = lines
    assert not readers, (
        f"get_settings() outside the edges: {readers}; take the value as a parameter (or a "
        "DataOptions / RunOptions) from the caller, or add a real edge to EDGES saying why"
    )


def test_every_listed_edge_still_reads_the_settings():
    # A stale entry would let a leaf module start reading them unnoticed.
    stale = [edge for edge in EDGES if not settings_readers(REPO / edge)]
    assert not stale, f"listed as edges but no longer reading the settings: {stale}"


def test_the_scan_finds_a_leaf_that_reads_the_settings(tmp_path):
    leaf = tmp_path / "leaf.py"
    leaf.write_text(
        "import service.settings as s\n"
        "def limit():\n"
        "    from service.settings import get_settings\n"
        "    return s.get_settings().max_dataset_bytes\n"
    )
    assert settings_readers(leaf) == [3, 4]
