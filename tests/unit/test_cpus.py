"""workers.cpus: the cores a container gives a training process (affinity and cgroup quota,
from cgroup files written by the test) and the thread pools of K processes sharing them."""

from __future__ import annotations

import os

from workers.cpus import available_cores, thread_counts, training_processes


def test_cgroup_v2_quota_lowers_the_core_count(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cores(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: one whole core
    assert available_cores(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{(affinity + 8) * 100000} 100000\n")  # above the mask
    assert available_cores(tmp_path) == affinity


def test_cgroup_v1_quota_is_read_too(tmp_path):
    folder = tmp_path / "cpu,cpuacct"
    folder.mkdir()
    (folder / "cpu.cfs_quota_us").write_text("-1\n")
    (folder / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cores(tmp_path) == len(os.sched_getaffinity(0))
    (folder / "cpu.cfs_quota_us").write_text("50000\n")  # half a CPU: still one thread
    assert available_cores(tmp_path) == 1


def test_each_of_k_processes_gets_its_share_of_the_cores():
    assert thread_counts(32, 8) == (4, 2)
    assert thread_counts(16, 1) == (16, 2)
    assert thread_counts(2, 8) == (1, 1)  # never zero


def test_the_number_of_processes_comes_from_the_supervisor_or_the_runs_per_gpu():
    assert training_processes({}) == 1
    assert training_processes({"ABLATE_RUNS_PER_GPU": "2"}) == 2
    assert training_processes({"ABLATE_TRAINING_PROCESSES": "16", "ABLATE_RUNS_PER_GPU": "2"}) == 16
    assert training_processes({"ABLATE_TRAINING_PROCESSES": "zero"}) == 1
