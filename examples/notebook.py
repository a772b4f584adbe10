# %% [markdown]
# # Ablate from Python: a study, its results in pandas, and its findings
#
# Cells (`# %%`) open as a notebook in VS Code, PyCharm or Jupyter (jupytext); the file also runs
# as a script:
#
#     python examples/notebook.py                          # trains the demo study on this machine
#     python examples/notebook.py my-study.yaml --jobs 4   # another spec
#     python examples/notebook.py --submit                 # on the workers (ABLATE_BROKER_URL)
#
# Runs already in the store are reused, never retrained: running it twice trains nothing.

# %%
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

from service.client import AblationClient

pd.set_option("display.max_columns", 20)  # a terminal shows every column, not "..."
pd.set_option("display.width", 160)
IN_NOTEBOOK = "ipykernel" in sys.modules  # a kernel's sys.argv is its own, and it has no __file__
HERE = Path.cwd() if IN_NOTEBOOK else Path(__file__).resolve().parent
parser = argparse.ArgumentParser(description="Train a study, then read its results and findings.")
parser.add_argument("spec", nargs="?", default=str(HERE / "seed-study.yaml"))
parser.add_argument("--store", default=None, help="a directory or s3://bucket/prefix")
parser.add_argument("--jobs", type=int, default=2, help="runs trained at once (locally)")
parser.add_argument("--submit", action="store_true", help="queue the runs for the workers")
args = parser.parse_args([] if IN_NOTEBOOK else None)  # in a notebook, edit the defaults

# %% [markdown]
# ## Train the study
#
# Locally, `ablate run` trains what the store does not hold yet, `--jobs` runs at a time, each in
# its own process. It runs here as a command: its training processes are spawned, and a spawned
# process re-runs the main script, which a notebook cell cannot guard. It exits 1 when a run
# failed: the results below still show the others. Distributed,
# `client.submit` queues the runs (nothing is queued twice) and `study.wait` follows them.

# %%
client = AblationClient(store_url=args.store)
if args.submit:
    study = client.submit(args.spec)
    print(study.study_id, study.submit_report)
    study.wait(timeout=6 * 3600)
else:
    store = ["--store", args.store] if args.store else []
    ablate = [sys.executable, "-m", "service.cli", "run", args.spec, "--jobs", str(args.jobs)]
    done = subprocess.run([*ablate, *store])
    if done.returncode == 2:  # the spec or its data is refused: the error is printed above
        raise SystemExit(2)
    study = client.study(args.spec)  # a spec path names its study, as in every command
status = study.status()
counts = {str(state): count for state, count in status.counts.items()}
print(f"{study.study_id}: {status.finished}/{status.total} runs finished {counts}")

# %% [markdown]
# ## Results: one row per variant and run
#
# The same columns as the report's runs.csv: state, seed, test/train/validation metrics and
# timings per run, and a `config.<path>` column for each setting that differs between runs.
# `groupby` gives the per-variant means behind the report's table.

# %%
runs = pd.DataFrame(study.results())
config = [column for column in runs.columns if column.startswith("config.")]
print(runs[["variant", "seed", "state", "test_accuracy", "val_accuracy", *config]].head(10))
by_variant = runs.groupby("variant", sort=False)["test_accuracy"].agg(["mean", "std", "count"])
print((by_variant * [100, 100, 1]).round(1))

# %% [markdown]
# ## Findings: what is wrong with the baseline, and what to do
#
# `study.report()` returns the report's `Summary` (`service/report/models.py`), writing the
# report first when the study has none: the verdict, the causes (each with its fix), the
# baseline's symptoms, what it already gets right, and the next steps.

# %%
summary = study.report()
print(summary.verdict)
for cause in summary.causes:
    print(f"- cause: {cause.title} (+{100 * cause.gain:.1f} points): {cause.statement}")
    if cause.fix is not None:
        print(f"  fix: {cause.fix.spec}")
for symptom in summary.symptoms:
    print(f"- symptom: {symptom.title}: {symptom.statement}")
for strength in summary.strengths:
    print(f"- already right: {strength.title}")
print(summary.statistics.statement)
for action in summary.next_steps.actions:
    print(f"- next: {action}")
if summary.next_steps.next_study:
    print("a next study was written beside the report: next-study.yaml")

# %%
# Each variant against the baseline, as the report's table shows it (accuracies are fractions
# in the Summary; points here).
comparisons = pd.DataFrame(
    [
        {
            "variant": v.name,
            "test accuracy (%)": v.test_accuracy.mean,
            "delta (points)": v.vs_baseline.delta if v.vs_baseline else None,
            "p (BH)": v.vs_baseline.p_adjusted if v.vs_baseline else None,
        }
        for v in summary.variants
    ]
)
comparisons[["test accuracy (%)", "delta (points)"]] *= 100
print(comparisons.round(3).to_string(index=False))
