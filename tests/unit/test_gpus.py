"""workers.gpus and `ablate worker --gpus`: nvidia-smi output, CUDA_VISIBLE_DEVICES, how GPUs
are shared out, and the command's errors. No TensorFlow, no GPU: captured nvidia-smi output and
a fake nvidia-smi on PATH."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from service.cli import cli
from workers.gpus import (
    PROCESS_OVERHEAD_MB,
    Gpu,
    GpuPackingError,
    GpuSelectionError,
    detect_gpus,
    gpu_expected,
    local_placement,
    memory_limit_mb,
    parse_nvidia_smi,
    process_memory_mb,
    select_gpus,
    visible_devices,
    visible_indices,
    worker_env,
    worker_hostname,
)

# `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits`, as printed
# on a 4-GPU H100 node and on a machine with an older card.
FOUR_H100 = """0, NVIDIA H100 80GB HBM3, 81559
1, NVIDIA H100 80GB HBM3, 81559
2, NVIDIA H100 80GB HBM3, 81559
3, NVIDIA H100 80GB HBM3, 81559
"""
TWO_GPUS = "0, NVIDIA H100 80GB HBM3, 81559\n1, Tesla T4, 15360\n"


def fake_nvidia_smi(directory, output: str = TWO_GPUS, code: int = 0) -> dict[str, str]:
    """A PATH holding only a fake `nvidia-smi` that prints `output` and exits with `code`."""
    (directory / "nvidia-smi.txt").write_text(output)
    script = directory / "nvidia-smi"
    # Shell builtins only: the script needs nothing else on PATH.
    script.write_text(
        "#!/bin/sh\n"
        f"while IFS= read -r line; do printf '%s\\n' \"$line\"; done < '{directory}/nvidia-smi.txt'\n"
        f"exit {code}\n"
    )
    script.chmod(0o755)
    return {"PATH": str(directory)}


def test_parses_index_name_and_memory():
    gpus = parse_nvidia_smi(FOUR_H100)
    assert [gpu.index for gpu in gpus] == [0, 1, 2, 3]
    assert gpus[0] == Gpu(0, "NVIDIA H100 80GB HBM3", 81559)
    assert gpus[0].slug == "nvidia-h100-80gb-hbm3"


def test_unreported_memory_and_non_rows_are_handled():
    text = "WARNING: infoROM is corrupted at gpu 0000:01:00.0\n0, NVIDIA A100-SXM4-40GB MIG 1g.5gb, [N/A]\n\n"
    assert parse_nvidia_smi(text) == [Gpu(0, "NVIDIA A100-SXM4-40GB MIG 1g.5gb", None)]
    assert parse_nvidia_smi("No devices were found\n") == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", []), ("-1", []), ("1,0", [1, 0]), ("2, 3", [2, 3]), ("0,-1,1", [0])],
)
def test_cuda_visible_devices_is_read_as_cuda_reads_it(value, expected):
    env = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    assert visible_indices(env) == expected


UUIDS = """0, GPU-8f1c2d3e-aaaa-bbbb-cccc-000000000000, NVIDIA H100 80GB HBM3, 81559
1, GPU-77aa0000-aaaa-bbbb-cccc-111111111111, NVIDIA H100 80GB HBM3, 81559
"""
MIG = "MIG-4f6e2a1c-1111-2222-3333-444444444444"


def test_cuda_visible_devices_may_hold_uuids_and_mig_ids(tmp_path):
    assert parse_nvidia_smi(UUIDS)[1] == Gpu(
        1, "NVIDIA H100 80GB HBM3", 81559, "GPU-77aa0000-aaaa-bbbb-cccc-111111111111"
    )
    env = fake_nvidia_smi(tmp_path, UUIDS)
    # A unique UUID prefix is enough for CUDA, as is an index; an unknown UUID ends the list.
    picked = detect_gpus({**env, "CUDA_VISIBLE_DEVICES": "GPU-77aa,0,GPU-ffff,1"})
    assert [(gpu.index, gpu.device) for gpu in picked] == [(1, "1"), (0, "0")]
    (mig,) = detect_gpus({**env, "CUDA_VISIBLE_DEVICES": MIG})
    assert (mig.device, mig.memory_mb) == (MIG, None)  # pinned by its id; its memory is unknown
    assert worker_env(mig, 1, None, {})["CUDA_VISIBLE_DEVICES"] == MIG
    with pytest.raises(GpuPackingError, match="not reported .*set ABLATE_GPU_MEMORY_MB"):
        memory_limit_mb(mig, 2, None)
    assert memory_limit_mb(mig, 2, 4000) == 4000
    with pytest.raises(GpuSelectionError, match="CUDA_VISIBLE_DEVICES=gpu0: 'gpu0' is not a GPU index"):
        visible_devices({"CUDA_VISIBLE_DEVICES": "gpu0"})


def test_detects_through_nvidia_smi_on_path(tmp_path):
    gpus = detect_gpus(fake_nvidia_smi(tmp_path))
    assert [(gpu.index, gpu.name, gpu.memory_mb) for gpu in gpus] == [
        (0, "NVIDIA H100 80GB HBM3", 81559),
        (1, "Tesla T4", 15360),
    ]


def test_existing_cuda_visible_devices_narrows_and_orders_the_gpus(tmp_path):
    env = {**fake_nvidia_smi(tmp_path, FOUR_H100), "CUDA_VISIBLE_DEVICES": "3,1,7"}
    assert [gpu.index for gpu in detect_gpus(env)] == [3, 1]
    assert detect_gpus({**env, "CUDA_VISIBLE_DEVICES": ""}) == []


def test_no_nvidia_smi_or_a_failing_one_means_no_gpu(tmp_path):
    assert detect_gpus({"PATH": str(tmp_path)}) == []
    failing = fake_nvidia_smi(
        tmp_path, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", 9
    )
    assert detect_gpus(failing) == []


def test_gpu_choice_auto_none_and_indices():
    gpus = parse_nvidia_smi(FOUR_H100)
    assert select_gpus("auto", gpus) == gpus
    assert select_gpus("none", gpus) == []
    assert [gpu.index for gpu in select_gpus("2,0,2", gpus)] == [2, 0]
    with pytest.raises(GpuSelectionError, match=r"GPU 5 is not visible here \(GPUs found: 0, 1, 2, 3\)"):
        select_gpus("0,5", gpus)
    with pytest.raises(GpuSelectionError, match="expected auto, none or GPU indices"):
        select_gpus("first", gpus)


def test_memory_cap_leaves_each_process_its_cuda_context():
    h100, t4 = Gpu(0, "NVIDIA H100 80GB HBM3", 81559), Gpu(1, "Tesla T4", 15360)
    assert PROCESS_OVERHEAD_MB == 768
    assert memory_limit_mb(h100, 1, None) is None  # one run per GPU: memory growth
    assert memory_limit_mb(h100, 8, None) == (81559 - 8 * 768) // 8 == 9426
    assert memory_limit_mb(t4, 4, None) == (15360 - 4 * 768) // 4 == 3072
    assert memory_limit_mb(h100, 8, 4000) == 4000
    assert memory_limit_mb(h100, 1, 4000) == 4000


def test_runs_that_do_not_fit_on_the_gpu_are_refused():
    t4 = Gpu(1, "Tesla T4", 15360)
    with pytest.raises(
        GpuPackingError, match=r"--runs-per-gpu 16: GPU 1 \(Tesla T4, 15360 MiB\) leaves 192 MiB .*use at most 12"
    ):
        memory_limit_mb(t4, 16, None)
    assert memory_limit_mb(t4, 12, None) == 512
    with pytest.raises(
        GpuPackingError,
        match="ABLATE_GPU_MEMORY_MB=4000: 4 runs of 4000 MiB.*need 19072 MiB; GPU 1 \\(Tesla T4\\) has 15360",
    ):
        memory_limit_mb(t4, 4, 4000)


def test_a_gpu_is_expected_when_pinned_or_capped_unless_every_gpu_is_hidden():
    assert gpu_expected({}) is None
    assert gpu_expected({"CUDA_VISIBLE_DEVICES": "0"}) == "CUDA_VISIBLE_DEVICES=0"
    assert gpu_expected({"CUDA_VISIBLE_DEVICES": MIG}) == f"CUDA_VISIBLE_DEVICES={MIG}"
    assert gpu_expected({"ABLATE_RUNS_PER_GPU": "2"}) == "ABLATE_RUNS_PER_GPU=2"
    assert gpu_expected({"ABLATE_GPU_MEMORY_MB": "4000"}) == "ABLATE_GPU_MEMORY_MB=4000"
    # `--gpus none` hides every GPU: the CPU is meant, whatever else is set.
    assert gpu_expected({"CUDA_VISIBLE_DEVICES": "-1", "ABLATE_RUNS_PER_GPU": "2"}) is None
    assert gpu_expected({"CUDA_VISIBLE_DEVICES": ""}) is None


def test_process_memory_is_what_the_driver_lists_for_the_pid(tmp_path):
    env = fake_nvidia_smi(tmp_path, "4242, 1530\n77, 9000\n4242, 12\n")
    assert process_memory_mb(4242, env) == 1542.0  # one row per GPU the process uses
    assert process_memory_mb(5, env) is None  # not listed (another PID namespace)
    assert process_memory_mb(4242, {"PATH": str(tmp_path / "none")}) is None


def test_local_jobs_are_spread_over_the_gpus_pinned_and_capped(tmp_path):
    env = fake_nvidia_smi(tmp_path, TWO_GPUS)
    placement = local_placement(3, None, env)
    assert [slot["CUDA_VISIBLE_DEVICES"] for slot in placement] == ["0", "1", "0"]
    assert [slot["ABLATE_RUNS_PER_GPU"] for slot in placement] == ["2", "1", "2"]
    assert placement[0]["ABLATE_GPU_MEMORY_MB"] == str((81559 - 2 * 768) // 2)
    assert placement[1]["ABLATE_GPU_MEMORY_MB"] is None  # alone on the T4: memory growth
    assert {slot["ABLATE_TRAINING_PROCESSES"] for slot in placement} == {"3"}
    with pytest.raises(GpuPackingError, match="--runs-per-gpu 20: GPU 1"):
        local_placement(40, None, env)
    assert local_placement(1, None, env) == []
    cpu = local_placement(2, None, {"PATH": str(tmp_path / "none")})
    assert cpu == [{"ABLATE_TRAINING_PROCESSES": "2"}] * 2


def test_worker_names_say_which_gpu():
    gpu = Gpu(2, "NVIDIA H100 80GB HBM3", 81559)
    assert worker_hostname(gpu, None, 4) == "gpu2-nvidia-h100-80gb-hbm3@%h"
    assert worker_hostname(gpu, "ablate@%h", 1) == "ablate@%h"  # the image's health check pings it
    assert worker_hostname(gpu, "ablate@%h", 4) == "ablate-gpu2-nvidia-h100-80gb-hbm3@%h"


def test_worker_env_pins_the_gpu_and_passes_the_cap():
    gpu = Gpu(3, "Tesla T4", 15360)
    env = worker_env(gpu, 2, 6912, {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "1,3"})
    assert env["CUDA_VISIBLE_DEVICES"] == "3" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["ABLATE_GPU_MEMORY_MB"] == "6912" and env["ABLATE_RUNS_PER_GPU"] == "2"
    assert env["ABLATE_TRAINING_PROCESSES"] == "2"
    assert worker_env(gpu, 2, 6912, {}, 8)["ABLATE_TRAINING_PROCESSES"] == "8"
    assert env["PATH"] == "/bin"
    assert "ABLATE_GPU_MEMORY_MB" not in worker_env(gpu, 1, None, {"ABLATE_GPU_MEMORY_MB": "100"})


# The command's errors come before anything starts.


@pytest.fixture
def invoke_worker(monkeypatch):
    """`ablate worker ARGS` with PATH set; starting a worker or a supervisor fails the test."""
    import workers.supervisor

    def refuse(*_args, **_kwargs):
        raise AssertionError(f"a worker was started, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')}")

    from celery.bin.celery import celery as celery_command

    monkeypatch.setattr(celery_command, "main", refuse)
    monkeypatch.setattr(workers.supervisor, "start_children", refuse)

    def invoke(args: list[str], path: str):
        env = {"PATH": path, "CUDA_VISIBLE_DEVICES": None}
        return CliRunner().invoke(cli, ["worker", *args], env=env)

    return invoke


def test_runs_per_gpu_without_a_gpu_is_an_error_unless_gpus_none(tmp_path, invoke_worker):
    result = invoke_worker(["--runs-per-gpu", "2"], str(tmp_path))
    assert result.exit_code == 2
    assert "--runs-per-gpu 2: no GPU found" in result.output and "--gpus none" in result.output
    started = invoke_worker(["--gpus", "none", "--runs-per-gpu", "2"], str(tmp_path))
    assert str(started.exception) == "a worker was started, CUDA_VISIBLE_DEVICES=-1"  # on the CPU


def test_gpus_none_hides_the_gpus_from_the_training_processes(tmp_path, invoke_worker):
    fake_nvidia_smi(tmp_path)
    started = invoke_worker(["--gpus", "none", "--concurrency", "2"], str(tmp_path))
    assert str(started.exception) == "a worker was started, CUDA_VISIBLE_DEVICES=-1"
    started = invoke_worker(["--gpus", "auto", "--concurrency", "2"], str(tmp_path / "no-gpu"))
    assert str(started.exception) == "a worker was started, CUDA_VISIBLE_DEVICES=None"


def test_an_absent_gpu_index_is_an_error(tmp_path, invoke_worker):
    fake_nvidia_smi(tmp_path)
    result = invoke_worker(["--gpus", "0,4"], str(tmp_path))
    assert result.exit_code == 2
    assert "--gpus 0,4: GPU 4 is not visible here (GPUs found: 0, 1)" in result.output


def test_concurrency_with_gpus_points_to_runs_per_gpu(tmp_path, invoke_worker):
    fake_nvidia_smi(tmp_path)
    result = invoke_worker(["--concurrency", "2"], str(tmp_path))
    assert result.exit_code == 2
    assert "--concurrency is for CPU workers; with GPUs use --runs-per-gpu" in result.output


def test_the_detection_module_imports_no_tensorflow():
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import sys, workers.gpus, workers.supervisor; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ})
    assert done.returncode == 0, done.stderr


def test_gpu_settings_are_validated_and_pool_processes_recycled_only_when_asked():
    from pydantic import ValidationError

    from service.queue import make_celery
    from service.settings import Settings

    assert Settings().runs_per_gpu == 1 and Settings().gpu_memory_mb is None
    assert make_celery(Settings()).conf.worker_max_tasks_per_child is None
    assert make_celery(Settings(max_runs_per_process=50)).conf.worker_max_tasks_per_child == 50
    for field, value in (("gpu_memory_mb", 0), ("runs_per_gpu", 0), ("max_runs_per_process", 0)):
        with pytest.raises(ValidationError, match=field):
            Settings(**{field: value})


def test_each_local_training_process_takes_the_next_placement():
    # `ablate run`'s child initializer, in a fresh process (it sets a parent-death signal).
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import multiprocessing, os; from service.embedded import _init_child\n"
        "slots = multiprocessing.get_context('spawn').Value('i', 0)\n"
        "placement = [{'CUDA_VISIBLE_DEVICES': '0', 'ABLATE_GPU_MEMORY_MB': '9000'},"
        " {'CUDA_VISIBLE_DEVICES': '1', 'ABLATE_GPU_MEMORY_MB': None}]\n"
        "for _ in range(3):\n"
        "    _init_child(True, placement, slots)\n"
        "    print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ.get('ABLATE_GPU_MEMORY_MB'))\n"
    )
    env = {**os.environ, "ABLATE_GPU_MEMORY_MB": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["0 9000", "1 None", "0 9000"]


def test_a_cpu_worker_tells_its_pool_processes_how_many_share_the_cores(tmp_path, invoke_worker, monkeypatch):
    monkeypatch.setenv("ABLATE_TRAINING_PROCESSES", "unset")  # restored after the test
    started = invoke_worker(["--gpus", "none", "--concurrency", "3"], str(tmp_path))
    assert str(started.exception) == "a worker was started, CUDA_VISIBLE_DEVICES=-1"
    assert os.environ["ABLATE_TRAINING_PROCESSES"] == "3"
