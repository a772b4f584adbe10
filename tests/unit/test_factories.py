"""Model factories are code: a Celery worker imports none unless the operator allows its module,
nothing of a module runs before that check, and the factory's source is part of the run's
identity (editing the builder plans new runs; run ids of specs without a factory unchanged)."""

from __future__ import annotations

import uuid

import pytest

from service.factories import FactoryError, check_allowed, source_digest
from service.plan import build_plan
from service.settings import Settings
from service.spec import spec_from_data
from tests.conftest import TINY
from workers.run_options import RunOptions

BUILDER = '''
import pathlib
pathlib.Path(__file__).with_suffix(".imported").write_text("ran")  # acts on import

def build(config, input_shape, num_classes):
    raise AssertionError("never called here")
'''


def allowed(worker: bool = True) -> tuple[str, ...] | None:
    """The module prefixes a Celery worker's task (`worker`) or `ablate run`'s training process
    reads from the environment (`RunOptions.from_settings`, as workers/tasks.py does)."""
    return RunOptions.from_settings(Settings(), worker=worker).factory_modules


@pytest.fixture
def builder(tmp_path, monkeypatch):
    package = tmp_path / f"team_models_{uuid.uuid4().hex[:8]}"
    package.mkdir()
    (package / "__init__.py").write_text("raise AssertionError('the package was imported')\n")
    (package / "cnn.py").write_text(BUILDER)
    monkeypatch.syspath_prepend(str(tmp_path))
    return package


@pytest.mark.parametrize("path", ["os:system", "builtins:eval", "subprocess:run", "service.cli:main"])
def test_a_worker_refuses_every_factory_by_default(monkeypatch, path):
    monkeypatch.delenv("ABLATE_FACTORY_MODULES", raising=False)
    with pytest.raises(
        FactoryError, match=r"^model\.factory: .* is not allowed here: ABLATE_FACTORY_MODULES allows none"
    ):
        check_allowed(path, allowed())


def test_allowed_prefixes_match_whole_module_names(monkeypatch):
    monkeypatch.setenv("ABLATE_FACTORY_MODULES", "team, lab.models")
    prefixes = allowed()
    for path in ("team:build", "team.cnn:build", "lab.models.v2:make"):
        check_allowed(path, prefixes)
    for path in ("teamx:build", "lab:build", "lab.modelsx:make", "os:system"):
        with pytest.raises(FactoryError, match="allows team, lab.models"):
            check_allowed(path, prefixes)
    monkeypatch.setenv("ABLATE_FACTORY_MODULES", "*")
    check_allowed("anything.at:all", allowed())


def test_ablate_run_allows_factories_when_unset(monkeypatch):
    monkeypatch.delenv("ABLATE_FACTORY_MODULES", raising=False)
    assert allowed(worker=False) is None
    check_allowed("team.cnn:build", allowed(worker=False))
    monkeypatch.setenv("ABLATE_FACTORY_MODULES", "lab")  # set, it binds `ablate run` too
    with pytest.raises(FactoryError, match="allows lab"):
        check_allowed("team.cnn:build", allowed(worker=False))


def test_planning_locates_the_factory_without_running_any_of_it(builder):
    spec = spec_from_data({**TINY, "model": {"factory": f"{builder.name}.cnn:build"}})
    plan = build_plan(spec)
    (run,) = plan.runs.values()
    assert run.config.model.factory_sha256 == source_digest(f"{builder.name}.cnn:build")
    assert not (builder / "cnn.imported").exists()  # neither the module nor its package ran


def test_editing_the_factory_plans_new_runs(builder):
    spec = spec_from_data({**TINY, "model": {"factory": f"{builder.name}.cnn:build"}})
    before = set(build_plan(spec).runs)
    (builder / "cnn.py").write_text(BUILDER + "\n# tuned the builder\n")
    after = set(build_plan(spec).runs)
    assert before.isdisjoint(after)
    assert build_plan(spec).study_id == build_plan(spec).study_id


def test_run_ids_without_a_factory_are_those_of_earlier_versions():
    # Computed with the planner before factories were part of a run's identity.
    spec = spec_from_data({**TINY, "ablation": {"seeds": 2, "factors": [{"path": "model.dropout", "values": [0.2]}]}})
    plan = build_plan(spec)
    assert sorted(plan.runs) == ["158bf2d46b067dc0", "ea13983bca8bfa6a", "eabc136acfe549e3", "ee8c52774fddef13"]
    assert all("factory_sha256" not in run.canonical() for run in plan.runs.values())


def test_a_factory_that_cannot_be_found_is_a_spec_error():
    spec = spec_from_data({**TINY, "model": {"factory": "no_such_team_models.cnn:build"}})
    with pytest.raises(Exception, match=r"model\.factory: cannot find module 'no_such_team_models' on this machine"):
        build_plan(spec, source="spec.yaml")


def test_the_worker_refuses_a_factory_it_may_not_run_or_whose_code_changed(builder, monkeypatch):
    from workers.model import ModelConfigError, build_model

    path = f"{builder.name}.cnn:build"
    spec = spec_from_data({**TINY, "model": {"factory": path}})
    (run,) = build_plan(spec).runs.values()
    monkeypatch.delenv("ABLATE_FACTORY_MODULES", raising=False)
    with pytest.raises(ModelConfigError, match="is not allowed here"):
        build_model(run.config, (8, 8, 1), 10, allowed())

    monkeypatch.setenv("ABLATE_FACTORY_MODULES", builder.name)
    (builder / "cnn.py").write_text(BUILDER + "\n# edited after planning\n")
    with pytest.raises(ModelConfigError, match="is not the code the run was planned with"):
        build_model(run.config, (8, 8, 1), 10, allowed())
    assert not (builder / "cnn.imported").exists()
