"""The runs progress bar of `ablate run` and `ablate diagnose` keeps to one 80-column line
whatever the variants are called, with the ETA, and says what happens while TensorFlow loads."""

from __future__ import annotations

import io
from collections import Counter
from types import SimpleNamespace

from rich.console import Console

from service.cli import progress
from service.driver import StudyStatus
from service.lifecycle.documents import Variant


def show(monkeypatch, status: StudyStatus, names: list[str]) -> str:
    buffer = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=buffer, width=80, force_terminal=False))
    variants = [Variant(name=n, factor=None, overrides={}, run_ids=[f"{i:016x}"]) for i, n in enumerate(names)]
    with progress.RunsProgress() as bar:
        bar.add(variants, {v.run_ids[0]: SimpleNamespace(seed=0) for v in variants})
        bar.show(status)
    return buffer.getvalue()


def test_long_names_are_cut_to_keep_one_line_within_80_columns(monkeypatch):
    names = ["optimizer.learning_rate=0.001, model.dropout=0.25, augmentation.zoom=0.1"] * 3
    running = {f"{i:016x}": (3, 20) for i in range(3)}
    status = StudyStatus("s", 3, Counter({"running": 3}), [], 3725.0, running=running)
    text = show(monkeypatch, status, names)
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and len(lines[0]) <= 80, text
    assert "0/3" in text and "ETA 1h02m" in text and "…" in text


def test_before_any_run_starts_the_bar_says_tensorflow_is_loading(monkeypatch):
    status = StudyStatus("s", 2, Counter({"queued": 2}), [], None)
    text = show(monkeypatch, status, ["baseline", "no dropout"])
    assert "loading TensorFlow" in text and "ETA" not in text
