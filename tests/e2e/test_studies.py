"""On a store trained and reported by the test: `ablate studies` lists its studies (newest first,
runs by state, best variant from the report), every command taking a study accepts a unique
prefix or the spec file, and `ablate pull --report-only` / `--no-checkpoints` copy what they say."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from service.cli import cli
from service.lifecycle.documents import RunStatus
from service.lifecycle.storage import write_status
from service.plan import build_plan
from service.report import write_report
from service.spec import load_spec
from service.store import LocalStore
from service.study_record import save_study
from tests.conftest import TINY


def spec_file(folder, name: str, factors: list | None = None, **training) -> str:
    data = yaml.safe_load(yaml.safe_dump(TINY))
    data["name"] = name
    data["training"].update(training)
    if factors:
        data["ablation"]["factors"] = factors
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A store with a trained and reported study (2 variants, 1 seed, 2 epochs) and a newer one
    whose runs are queued but one, running."""
    from workers.runner import run  # TensorFlow: in this test's process, no worker to start

    folder = tmp_path_factory.mktemp("studies")
    store = LocalStore(folder / "store")
    dropout = [{"name": "dropout", "path": "model.dropout", "values": [0.5]}]
    trained_spec = spec_file(folder, "tiny-trained", dropout, epochs=2)
    trained = build_plan(load_spec(trained_spec), source=trained_spec)
    save_study(store, trained.study_id, trained.study_document())
    for run_spec in trained.runs.values():
        assert run(run_spec, store).state == "succeeded"
    write_report(store, trained.study_id)

    waiting_spec = spec_file(folder, "tiny-waiting", batch_size=32)
    waiting = build_plan(load_spec(waiting_spec), source=waiting_spec)
    save_study(store, waiting.study_id, waiting.study_document())
    (run_id,) = waiting.runs
    write_status(store, RunStatus(run_id=run_id, state="running", epoch=1, epochs=3))
    return {"store": store, "trained": trained, "trained_spec": trained_spec,
            "waiting": waiting, "waiting_spec": waiting_spec, "folder": folder}


def ablate(stored, *args):
    return CliRunner().invoke(cli, [*args, "--store", str(stored["store"].root)])


def test_studies_json_lists_newest_first_with_states_and_best_variant(stored):
    result = ablate(stored, "studies", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [s["study_id"] for s in listed] == [stored["waiting"].study_id, stored["trained"].study_id]
    waiting, trained = listed
    assert waiting["name"] == "tiny-waiting" and waiting["states"] == {"running": 1}
    assert waiting["best_variant"] is None  # no report yet
    assert trained["states"] == {"succeeded": 2} and trained["runs"] == 2
    summary = stored["store"].get_json(f"studies/{stored['trained'].study_id}/report/summary.json")
    means = {v["name"]: v["test_accuracy"]["mean"] for v in summary["variants"]}
    assert trained["best_variant"] == max(means, key=means.get)
    assert trained["best_test_accuracy"] == pytest.approx(max(means.values()))
    assert trained["updated_at"] >= summary["generated_at"]


def test_studies_table_shows_short_ids_every_command_accepts(stored):
    result = ablate(stored, "studies")
    assert result.exit_code == 0, result.output
    short = stored["trained"].study_id[: len("tiny-trained-") + 8]
    assert short in result.output and stored["trained"].study_id not in result.output
    assert "2: 2 succeeded" in result.output and "1: 1 running" in result.output
    assert result.output.index("tiny-waiting") < result.output.index("tiny-trained")
    shown = ablate(stored, "results", short, "--format", "json")
    assert shown.exit_code == 0, shown.output
    assert {row["study_id"] for row in json.loads(shown.output)} == {stored["trained"].study_id}


def test_a_spec_path_names_its_study(stored):
    result = ablate(stored, "status", stored["waiting_spec"])
    assert result.exit_code == 0, result.output
    assert stored["waiting"].study_id in result.output


def test_an_ambiguous_prefix_is_refused_listing_the_matches(stored):
    result = ablate(stored, "status", "tiny-")
    assert result.exit_code == 2
    assert "matches 2 studies" in result.output and "give more of the id" in result.output
    assert stored["waiting"].study_id in result.output and stored["trained"].study_id in result.output
    assert "Traceback" not in result.output


def test_an_unknown_study_or_spec_is_a_clear_error(stored, tmp_path):
    unknown = ablate(stored, "report", "nothing-like-it")
    assert unknown.exit_code == 2 and "no study 'nothing-like-it'" in unknown.output
    assert "ablate studies" in unknown.output
    other = spec_file(tmp_path, "never-submitted")
    missing = ablate(stored, "pull", other, str(tmp_path / "copy"))
    assert missing.exit_code == 2 and "which is not in" in missing.output


def test_an_empty_store_says_so(tmp_path):
    result = CliRunner().invoke(cli, ["studies", "--store", str(tmp_path / "empty")])
    assert result.exit_code == 0 and "no studies in" in result.output


def files(folder) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_pull_report_only_copies_the_study_folder_alone(stored, tmp_path):
    trained = stored["trained"].study_id
    result = ablate(stored, "pull", trained[:20], str(tmp_path / "copy"), "--report-only")
    assert result.exit_code == 0, result.output
    copied = files(tmp_path / "copy")
    assert copied == {k for k in stored["store"].list(f"studies/{trained}/")}
    assert f"studies/{trained}/report/index.html" in copied
    assert f"studies/{trained}/report/summary.json" in copied
    assert not any(key.startswith("runs/") for key in copied)


def test_pull_no_checkpoints_copies_every_run_file_but_checkpoints(stored, tmp_path):
    store, plan = stored["store"], stored["trained"]
    result = ablate(stored, "pull", plan.study_id, str(tmp_path / "copy"), "--no-checkpoints")
    assert result.exit_code == 0, result.output
    copied = files(tmp_path / "copy")
    for run_id in plan.runs:
        stored_keys = set(store.list(f"runs/{run_id}/"))
        checkpoints = {k for k in stored_keys if k.startswith(f"runs/{run_id}/checkpoints/")}
        assert checkpoints  # the test would prove nothing without them
        assert {k for k in copied if k.startswith(f"runs/{run_id}/")} == stored_keys - checkpoints
        assert f"runs/{run_id}/model.keras" in copied and f"runs/{run_id}/metrics.json" in copied
    everything = ablate(stored, "pull", plan.study_id, str(tmp_path / "all"))
    assert everything.exit_code == 0
    assert files(tmp_path / "all") - copied == {
        k for run_id in plan.runs for k in store.list(f"runs/{run_id}/checkpoints/")
    }


def test_pull_report_only_of_an_unreported_study_says_how_to_write_it(stored, tmp_path):
    result = ablate(stored, "pull", stored["waiting_spec"], str(tmp_path / "copy"), "--report-only")
    assert result.exit_code == 0, result.output
    assert "has no report yet" in result.output
    assert files(tmp_path / "copy") == {f"studies/{stored['waiting'].study_id}/study.json"}


def test_status_json_counts_runs_by_state_with_the_running_epochs(stored):
    waiting = stored["waiting"]
    result = ablate(stored, "status", stored["waiting_spec"], "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["study_id"] == waiting.study_id and status["total"] == 1
    assert status["counts"]["running"] == 1 and status["finished"] == 0 and not status["complete"]
    assert status["variants"][0]["running_epochs"] == [[1, 3]]
    done = json.loads(ablate(stored, "status", stored["trained"].study_id[:12], "--json").output)
    assert done["complete"] and done["counts"]["succeeded"] == 2 and done["eta_seconds"] == 0.0
    refused = ablate(stored, "status", stored["waiting_spec"], "--json", "--watch")
    assert refused.exit_code == 2 and "--json" in refused.output
