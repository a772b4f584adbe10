"""A study id shared by two different specs (forced here; 8-hex ids of earlier versions
collided within seconds): the second spec is refused with an error naming both, and the first
study's document and results stay as they were."""

from __future__ import annotations

import json

import yaml
from click.testing import CliRunner

import service.plan
from service.cli import cli
from service.errors import AblateError
from service.plan import build_plan
from service.spec import spec_from_data
from service.store import LocalStore
from service.study_record import StudyConflict, save_study
from tests.conftest import TINY

FORCED = "collide-0123abcd"


def _spec(name: str, epochs: int) -> dict:
    return {**TINY, "name": name, "training": {"epochs": epochs, "batch_size": 64}}


def test_save_study_refuses_a_document_of_another_spec(tmp_path):
    store = LocalStore(tmp_path)
    first = build_plan(spec_from_data(_spec("collide", 1)))
    second = build_plan(spec_from_data(_spec("collide", 2)))
    save_study(store, FORCED, first.study_document())
    save_study(store, FORCED, first.study_document())  # the same spec again: resumes in place
    stored = (tmp_path / "studies" / FORCED / "study.json").read_bytes()

    try:
        save_study(store, FORCED, second.study_document(), "b.yaml")
    except StudyConflict as exc:
        message = str(exc)
    else:
        raise AssertionError("a different spec replaced the stored study")
    assert FORCED in message and "b.yaml" in message and "refusing to overwrite" in message
    assert message.count("study 'collide' with spec sha256") == 2
    assert (tmp_path / "studies" / FORCED / "study.json").read_bytes() == stored

    (tmp_path / "studies" / FORCED / "study.json").write_text('{"spec": [1, 2]}')
    try:
        save_study(store, FORCED, first.study_document())
    except AblateError as exc:
        assert "a document that is not a study" in str(exc)
    else:
        raise AssertionError("a malformed study.json was overwritten")


def test_ablate_run_of_a_colliding_spec_is_refused_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(service.plan, "study_id", lambda spec: FORCED)
    store = tmp_path / "store"
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(_spec("collide", 1)))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(_spec("collide", 2)))
    monkeypatch.chdir(tmp_path)
    first = CliRunner().invoke(cli, ["run", "a.yaml", "--store", str(store)])
    assert first.exit_code == 0, first.output
    document = (store / "studies" / FORCED / "study.json").read_bytes()
    runs = sorted(path.name for path in (store / "runs").iterdir())

    second = CliRunner().invoke(cli, ["run", "b.yaml", "--store", str(store)])

    assert second.exit_code == 2, second.output
    assert "Traceback" not in second.output
    assert f"study {FORCED}:" in second.output and "refusing to overwrite" in second.output
    assert (store / "studies" / FORCED / "study.json").read_bytes() == document
    assert json.loads(document)["spec"]["training"]["epochs"] == 1
    assert sorted(path.name for path in (store / "runs").iterdir()) == runs
