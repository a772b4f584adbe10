"""Shared fixtures: tiny specs that train in seconds on two CPU cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent

TINY = {
    "name": "tiny",
    "dataset": {"kind": "digits", "validation_split": 0.1, "test_split": 0.25},
    "model": {"conv_blocks": [{"filters": 8}], "dense": [16]},
    "optimizer": {"name": "adam", "learning_rate": 0.005},
    "training": {"epochs": 3, "batch_size": 64},
    "ablation": {"seeds": 1},
}


@pytest.fixture
def tiny_spec() -> dict:
    """A deep copy of the tiny study spec, free to modify."""
    return yaml.safe_load(yaml.safe_dump(TINY))


@pytest.fixture
def write_spec(tmp_path):
    def write(data: dict, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write
