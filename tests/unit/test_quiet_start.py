"""workers.quiet_start: which captured lines are TensorFlow's, and what a GPU-pinned process
quotes from them."""

from __future__ import annotations

import os

import pytest

from workers import quiet_start

PREAMBLE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
)
ONEDNN = (
    "I0000 00:00:1796406309.934234   27182 port.cc:153] oneDNN custom operations are on. "
    "To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n"
)
CPU = (
    "I0000 00:00:1796406398.580544     579 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.\n"
)
CPU_CONTINUED = "To enable the following instructions: AVX2 FMA, in other operations, rebuild.\n"
CUINIT = (
    "E0000 00:00:1796406313.719454   27182 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
)
JSON_LINE = '{"event": "run started", "level": "info"}\n'
CELERY_LINE = "[2026-12-04 17:46:25,870: INFO/MainProcess] Connected to redis://127.0.0.1\n"
PY_WARNING = "/venv/lib/python3.11/site-packages/keras/x.py:12: UserWarning: something\n"


def test_tensorflow_lines_are_told_from_everyone_elses():
    text = PREAMBLE + ONEDNN + JSON_LINE + CPU + CPU_CONTINUED + PY_WARNING + CELERY_LINE + CUINIT
    ours, theirs = quiet_start.split_output(text)
    assert ours == [PREAMBLE, ONEDNN, CPU, CPU_CONTINUED, CUINIT]
    assert theirs == [JSON_LINE, PY_WARNING, CELERY_LINE]


def test_other_lines_written_meanwhile_reach_stderr_and_tensorflow_lines_do_not(capfd, monkeypatch):
    monkeypatch.setattr(quiet_start, "_output", [])
    with quiet_start.captured():
        os.write(2, (ONEDNN + JSON_LINE + CUINIT).encode())
    err = capfd.readouterr().err
    assert err == JSON_LINE
    assert quiet_start.startup_output() == ONEDNN + CUINIT


def test_echo_writes_everything_back_in_its_order_and_keeps_tensorflows_lines(capfd, monkeypatch):
    monkeypatch.setattr(quiet_start, "_output", [])
    with quiet_start.captured(echo=True):
        os.write(2, (ONEDNN + JSON_LINE + CUINIT).encode())
    assert capfd.readouterr().err == ONEDNN + JSON_LINE + CUINIT
    assert quiet_start.startup_output() == ONEDNN + CUINIT


def test_a_gpu_pinned_process_quotes_the_load_error_a_quiet_start_kept(monkeypatch):
    import tensorflow as tf

    from service.settings import get_settings
    from workers import process_setup

    monkeypatch.setattr(process_setup, "_done", None)
    monkeypatch.setattr(quiet_start, "_output", [PREAMBLE, CUINIT])
    # The second listing is silent: CUDA was loaded, and failed, during the quiet start.
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda device_type=None: [])
    for name in ("ABLATE_GPU_MEMORY_MB", "ABLATE_RUNS_PER_GPU"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        with pytest.raises(process_setup.GpuUnavailable, match="failed call to cuInit: INTERNAL"):
            process_setup.configure_process({"CUDA_VISIBLE_DEVICES": "0"})
    finally:
        get_settings.cache_clear()
