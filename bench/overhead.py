"""How much slower is `ablate run` than the Keras script a user would write by hand?

Trains the baseline of examples/seed-study.yaml (its ablation cut to the baseline only: N seeds,
no factors) two ways, each as a fresh subprocess with this Python:

1. `ablate run SPEC --store TMPDIR --jobs 1`, exactly what a user runs (a CLI process that spawns
   one training child writing checkpoints, status.json, model.keras and metrics.json, then
   prints the summary and writes the report);
2. `python -m bench.bare_keras SPEC`: the same data split, the same model, optimizer, loss and seeded
   tf.data pipeline in plain Keras, `fit` then `evaluate`, nothing written.

After one untimed warm-up of each side (a 1-epoch run, so that both find TensorFlow in the page
cache), the sides alternate for --repeats rounds (ablate first in even rounds, bare first in odd
ones, so drift of a shared machine hits both), each ablate round with a fresh empty store so
nothing is reused; the median wall times give the ratio. The defaults (the demo's 20 epochs x 10
seeds, close to the demo's 12 runs) make each side take over a minute on a 2-core CPU, so the
fixed start-up costs (Python and TensorFlow imports, spawning the child, the report: 5-8 s) do
not dominate. It is a measurement, not a gate: exit code 0 whenever it ran.

    make bench                                  # = .venv/bin/python bench/overhead.py
    .venv/bin/python bench/overhead.py --epochs 20 --seeds 10 --repeats 3 --json overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.05
TIMINGS = ("fit_seconds", "checkpoint_seconds", "eval_seconds", "total_seconds")


def write_spec(directory: Path, epochs: int, seeds: int, name: str = "spec") -> Path:
    spec = yaml.safe_load((ROOT / "examples" / "seed-study.yaml").read_text())
    spec["name"] = "overhead-bench"
    spec["training"]["epochs"] = epochs
    spec["ablation"] = {"strategy": "one_at_a_time", "factors": [], "seeds": seeds}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # includes grandchildren reaped
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str]) -> tuple[float, float, str]:
    """Wall and CPU seconds of `command`: CPU tells work from waiting on a busy shared machine."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cpu, started = cpu_of_children(), time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - started, cpu_of_children() - cpu
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds, cpu, done.stdout


def run_ablate(spec: Path, seeds: int) -> tuple[float, float, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="ablate-bench-") as store:
        ablate = Path(sys.executable).with_name("ablate")
        seconds, cpu, _ = timed([str(ablate), "run", str(spec), "--store", store, "--jobs", "1"])
        metrics = [json.loads(p.read_text()) for p in Path(store).glob("runs/*/metrics.json")]
    if len(metrics) != seeds:
        sys.exit(f"ablate run trained {len(metrics)} runs, expected {seeds}")
    return seconds, cpu, {key: sum(m["timings"][key] for m in metrics) for key in TIMINGS}


def run_bare(spec: Path, seeds: int) -> tuple[float, float, dict[str, float]]:
    # -m, from the repository root: the bare script imports the project's data loading.
    seconds, cpu, stdout = timed([sys.executable, "-m", "bench.bare_keras", str(spec)])
    runs = json.loads(stdout.strip().splitlines()[-1])["runs"]
    if len(runs) != seeds:
        sys.exit(f"bare_keras.py trained {len(runs)} runs, expected {seeds}")
    return seconds, cpu, {key: sum(r.get(key, 0.0) for r in runs) for key in TIMINGS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()

    sides = {"ablate run": run_ablate, "bare keras": run_bare}
    walls: dict[str, list[float]] = {name: [] for name in sides}
    cpus: dict[str, list[float]] = {name: [] for name in sides}
    breakdowns: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="ablate-bench-spec-") as tmp:
        spec = write_spec(Path(tmp), args.epochs, args.seeds)
        # Untimed: the first process to load TensorFlow reads it from disk; later ones find it
        # in the page cache. Without this, whichever side goes first pays for both.
        warm_up = write_spec(Path(tmp), epochs=1, seeds=1, name="warm-up")
        for side in sides.values():
            side(warm_up, 1)
        print(f"{args.seeds} runs x {args.epochs} epochs, {args.repeats} rounds", flush=True)
        for round_ in range(args.repeats):
            order = list(sides) if round_ % 2 == 0 else list(sides)[::-1]
            for name in order:
                seconds, cpu, breakdown = sides[name](spec, args.seeds)
                walls[name].append(seconds)
                cpus[name].append(cpu)
                breakdowns[name].append(breakdown)
                print(f"  round {round_ + 1}: {name} {seconds:.1f} s (cpu {cpu:.1f} s)", flush=True)

    median = {name: statistics.median(times) for name, times in walls.items()}
    cpu_median = {name: statistics.median(times) for name, times in cpus.items()}
    ratio = median["ablate run"] / median["bare keras"]
    print(f"\n{'side':<12} {'wall times (s)':<28} {'median (s)':>10} {'median cpu (s)':>15}")
    for name, times in walls.items():
        walls_text = ", ".join(f"{t:.1f}" for t in times)
        print(f"{name:<12} {walls_text:<28} {median[name]:>10.1f} {cpu_median[name]:>15.1f}")
    print("\nin the training process, summed over runs, median of rounds (s); bare keras writes")
    print("no checkpoints, and its total is build + fit + evaluate per seed")
    print(f"{'side':<12}" + "".join(f"{key:>20}" for key in TIMINGS))
    summary = {}
    for name, rounds in breakdowns.items():
        summary[name] = {key: statistics.median(r[key] for r in rounds) for key in TIMINGS}
        print(f"{name:<12}" + "".join(f"{summary[name][key]:>20.2f}" for key in TIMINGS))
    # Each round's two sides ran back to back: their ratio is the least disturbed by a shared
    # machine's drift between rounds.
    paired = [a / b for a, b in zip(walls["ablate run"], walls["bare keras"], strict=True)]
    print(f"\nper-round ratios: {', '.join(f'{r:.3f}' for r in paired)}; median {statistics.median(paired):.3f}")
    print(f"overhead ratio (ablate run / bare keras): {ratio:.3f} (target <= {TARGET})")

    if args.json:
        document = {
            "epochs": args.epochs,
            "seeds": args.seeds,
            "repeats": args.repeats,
            "wall_seconds": walls,
            "cpu_seconds": cpus,
            "median_seconds": median,
            "median_cpu_seconds": cpu_median,
            "timings": summary,
            "ratio": round(ratio, 4),
            "per_round_ratios": [round(r, 4) for r in paired],
            "target": TARGET,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
