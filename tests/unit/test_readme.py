"""The README stays true: every spec field and every setting is documented there."""

from __future__ import annotations

import typing

from pydantic import BaseModel

from service.settings import Settings
from service.spec.models import StudySpec
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


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


def test_every_spec_field_is_documented():
    models: set = set()
    _models(StudySpec, models)
    assert len(models) > 15  # every dataset kind, optimizer, schedule and section
    missing = sorted(
        f"{model.__name__}.{name}"
        for model in models
        for name in model.model_fields
        if f"`{name}`" not in README and f"{name}:" not in README
    )
    assert not missing, missing


def test_every_setting_is_in_the_configuration_table():
    missing = [name for name in Settings.model_fields if f"`ABLATE_{name.upper()}`" not in README]
    assert not missing, missing


def test_quick_start_is_the_two_commands():
    assert "make demo" in README and "make test" in README
