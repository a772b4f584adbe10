"""The README stays a user's guide that is true: short, every spec field and setting and command
documented, the operations and reference pages in docs/ where it points to them."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

from service.cli import cli
from service.settings import Settings
from service.spec.models import StudySpec
from tests.conftest import REPO

README = (REPO / "README.md").read_text()
SPEC_REFERENCE = (REPO / "docs" / "spec.md").read_text()
MAX_README_LINES = 300


def _models(model: type[BaseModel], seen: set) -> None:
    if model in seen:
        return
    seen.add(model)
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            annotation = stack.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                _models(annotation, seen)
            stack.extend(typing.get_args(annotation))


@pytest.mark.parametrize("page", ["README.md", "docs/spec.md"])
def test_every_spec_field_is_documented(page):
    text = README if page == "README.md" else SPEC_REFERENCE
    models: set = set()
    _models(StudySpec, models)
    assert len(models) > 15  # every dataset kind, optimizer, schedule and section
    missing = sorted(
        f"{model.__name__}.{name}"
        for model in models
        for name in model.model_fields
        if f"`{name}`" not in text and f"{name}:" not in text
    )
    assert not missing, missing


def test_every_setting_is_in_the_configuration_table():
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    missing = [
        name for name in Settings.model_fields if f"| `ABLATE_{name.upper()}` |" not in table
    ]
    assert not missing, missing


def test_every_command_is_in_the_cli_table():
    table = README.split("### CLI", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in cli.commands if f"| `ablate {name}" not in table]
    assert not missing, missing


def test_quick_start_is_the_two_commands():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in quick_start and "make test" in quick_start


def test_the_readme_is_a_guide_read_in_minutes():
    lines = README.count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move reference text to docs/"


@pytest.mark.parametrize(
    ("page", "heading"),
    [
        ("docs/operations.md", "## Distributed mode"),
        ("docs/operations.md", "## Workers on GPUs"),
        ("docs/operations.md", "## The container and the stack"),
        ("docs/operations.md", "## Kubernetes"),
        ("docs/reliability.md", "# Reliability"),
        ("docs/store-layout.md", "# Store layout"),
        ("docs/spec.md", "### Dataset paths"),
    ],
)
def test_operations_and_reference_live_in_docs_and_the_readme_links_them(page, heading):
    assert heading + "\n" in (REPO / page).read_text()
    assert f"]({page}" in README
