"""examples/notebook.py runs as a script: it trains a tiny study locally (2 runs of 1 epoch), loads
its runs into pandas and prints the typed findings of `study.report()` (reuse on a second run
is `ablate run`'s, tested in test_cli_run.py)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import yaml

from tests.conftest import REPO, TINY

EXAMPLE = REPO / "examples" / "notebook.py"


def _example(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=600,
    )


def test_the_example_trains_locally_and_prints_results_and_findings(tmp_path):
    spec = {
        **TINY,
        "name": "notebook",
        "training": {"epochs": 1, "batch_size": 64},
        "ablation": {"seeds": 1, "factors": [{"path": "model.dropout", "values": [0.2]}]},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))

    done = _example("spec.yaml", "--store", "store", "--jobs", "1", cwd=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 runs trained" in done.stdout
    assert "2/2 runs finished {'succeeded': 2}" in done.stdout
    assert "test_accuracy" in done.stdout  # the pandas frame of study.results()
    assert "config.model.dropout" in done.stdout  # the setting that differs between runs
    assert "Significance: Benjamini-Hochberg" in done.stdout  # summary.statistics.statement
    assert (tmp_path / "store" / "studies").is_dir()



def test_the_example_uses_only_public_names_of_the_project():
    tree = ast.parse(EXAMPLE.read_text())
    imported = [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("service")
        for alias in node.names
    ]
    assert imported == [("service.client", "AblationClient")]
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not any(name.startswith("_") for name in attributes)
