"""Packing runs onto one GPU: runs per hour for K = 1, 2, 4, 8 runs per GPU, and the runner vs a
bare `model.fit`.

Made to run on a GPU machine as one bounded script, with no Redis and no downloads. For each K,
K training processes are spawned as `ablate worker --runs-per-gpu K` would start its pool: pinned
to the GPU (CUDA_VISIBLE_DEVICES), with the same per-process memory cap (ABLATE_GPU_MEMORY_MB
from `workers.gpus`: memory growth for K=1, (total - K x context overhead) / K for K>1), each
importing TensorFlow and training one warm-up run before the clock starts. Then K x
--runs-per-process runs of the demo CNN (the baseline of examples/seed-study.yaml) on each
--cells dataset (tiny: synthetic 28x28x1, 4k samples; heavy: 32x32x3, 20k samples, where the GPU
and not the CPU's Python does most of the work, so the ratio measures GPU sharing) go
through `workers.runner.run` on a LocalStore, the processes taking runs as they free up (as
Celery's pool does); runs per hour = runs / wall time. Each K is timed with mixed precision and
XLA off, and on (`training.mixed_precision: true`, `training.jit_compile: true`). The GPU memory
of each run is its peak (`tf.config.experimental.get_memory_info`, reset at the start of every
run, recorded by the runner in metrics.json). Each cell is timed --repeats times: the table
gives the median runs per hour and the spread (lowest-highest), and the median seconds per run.

Then, in one process: samples per second of the fit phase of `workers.runner.run` (checkpoints,
status.json and the epoch callback included) vs a bare `model.fit` of the same model, data
pipeline and compile options, alternating for --compare-repeats rounds.

    python -m bench.gpu_packing                          # everything, ~6 minutes on one H100
    python -m bench.gpu_packing --budget-seconds 300     # skips what would not fit
    python -m bench.gpu_packing --allow-cpu --quick      # tiny smoke run without a GPU

Targets (issue 6, one H100): K=8 gives at least 3x the runs per hour of K=1; the runner within 5%
of bare `model.fit`. A measurement, not a gate: exit code 0 whenever it ran (1 without a GPU).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PACKING_TARGET = 3.0
RUNNER_TARGET = 0.95
CONFIGS = {
    "off": {"mixed_precision": False, "jit_compile": False},
    "on": {"mixed_precision": True, "jit_compile": True},
}
CELLS = {
    "tiny": {"image_size": 28, "channels": 1, "classes": 8},
    "heavy": {"image_size": 32, "channels": 3, "classes": 8},
}
"""Datasets of the packing cells; samples per class: --samples-per-class (tiny), 2500 (heavy: 20k)."""
HEAVY_SAMPLES_PER_CLASS = 2500


def demo_spec(args: argparse.Namespace, config: str, seeds: list[int], epochs: int, cell: str = "tiny") -> dict:
    spec = yaml.safe_load((ROOT / "examples" / "seed-study.yaml").read_text())
    spec["name"] = f"gpu-packing-{cell}-{config}"
    per_class = args.samples_per_class if cell == "tiny" or args.quick else HEAVY_SAMPLES_PER_CLASS
    spec["dataset"] = {"kind": "synthetic", **CELLS[cell], "samples_per_class": per_class}
    spec["training"].update(epochs=epochs, batch_size=args.batch_size, **CONFIGS[config])
    spec["ablation"] = {"strategy": "one_at_a_time", "factors": [], "seeds": seeds}
    return spec


def run_specs(spec: dict) -> list[str]:
    from service.plan import build_plan
    from service.spec import spec_from_data

    return [run.model_dump_json() for run in build_plan(spec_from_data(spec)).runs.values()]


# Training processes (spawned: TensorFlow is imported there, never in this script's parent)


def _init_process(env: dict[str, str]) -> None:
    os.environ.update(env)  # before TensorFlow: the GPU pin and the memory cap
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from service.logs import configure_logging

    configure_logging(level="warning")


def train_one(run_json: str, store_dir: str) -> dict:
    from service.identity import RunSpec
    from service.lifecycle.storage import read_metrics
    from service.store import LocalStore
    from workers.runner import run

    spec = RunSpec.model_validate_json(run_json)
    store = LocalStore(Path(store_dir))
    started = time.perf_counter()
    result = run(spec, store)
    seconds = time.perf_counter() - started
    metrics = read_metrics(store, spec.run_id)
    if result.state != "succeeded" or metrics is None:
        raise RuntimeError(f"run {spec.run_id} ended {result.state}: {result.error}")
    environment = metrics.environment
    return {"seconds": seconds, "pid": os.getpid(), "peak_mb": environment.get("gpu_memory_peak_mb"),
            "policy": environment["precision_policy"], "xla": environment["xla"],
            "device": environment["device"], "fit_seconds": metrics.timings["fit_seconds"]}


def bare_fit(run_json: str) -> dict:
    """The runner's model, data pipeline and compile options, trained by a bare `model.fit`."""
    import keras

    from service import datasets
    from service.identity import RunSpec
    from service.settings import get_settings
    from workers import devices
    from workers.model import build_model
    from workers.optim import build_optimizer, loss_for
    from workers.pipeline import eval_dataset, training_dataset

    spec = RunSpec.model_validate_json(run_json)
    config, training = spec.config, spec.config.training
    data = datasets.load(config.dataset)
    classes, one_hot = data.info.num_classes, training.label_smoothing > 0
    devices.configure_gpu_memory(get_settings().gpu_memory_mb)
    keras.backend.clear_session()
    keras.utils.set_random_seed(spec.seed)
    precision = devices.choose_precision(training.mixed_precision, devices.gpu_compute_capabilities())
    keras.mixed_precision.set_global_policy(precision.policy)
    model = build_model(config, data.info.input_shape, classes)
    steps = max(1, -(-len(data.x_train) // training.batch_size))
    model.compile(optimizer=build_optimizer(config, steps), loss=loss_for(config), metrics=["accuracy"],
                  jit_compile=devices.choose_xla(config).applied, steps_per_execution=training.steps_per_execution)
    train = training_dataset(data.x_train, data.y_train, training.batch_size, spec.seed, classes, one_hot)
    val = eval_dataset(data.x_val, data.y_val, training.batch_size, classes, one_hot)
    started = time.perf_counter()
    model.fit(train, validation_data=val, epochs=training.epochs, shuffle=False, verbose=0)
    seconds = time.perf_counter() - started
    devices.release_run_memory()
    return {"fit_seconds": seconds, "samples": len(data.x_train) * training.epochs}


def _init_with_barrier(env: dict[str, str], barrier) -> None:
    _init_process(env)
    global _barrier
    _barrier = barrier


def warm_up(run_json: str, store_dir: str) -> tuple[int, str]:
    """One run per process (TensorFlow import, GPU set-up, first traces), then wait for all:
    each of the K processes takes exactly one. Returns the process id and its device."""
    try:
        result = train_one(run_json, store_dir)
    except BaseException:
        _barrier.abort()  # the others stop waiting
        raise
    _barrier.wait(timeout=600)
    return os.getpid(), result["device"]


# The parent


def detect(args: argparse.Namespace):
    from workers.gpus import Gpu, detect_gpus, select_gpus

    detected = detect_gpus()
    if detected:
        return select_gpus(str(args.gpu), detected)[0]
    if not args.allow_cpu:
        sys.exit("bench/gpu_packing.py: no GPU found (nvidia-smi lists none, or CUDA_VISIBLE_DEVICES "
                 "hides it): run it on a GPU machine, or pass --allow-cpu for a tiny smoke run on the CPU")
    return Gpu(-1, "CPU (--allow-cpu)", None)


def process_env(gpu, k: int) -> dict[str, str]:
    from service.settings import get_settings
    from workers.gpus import memory_limit_mb, worker_env

    if gpu.index < 0:
        env = {key: value for key, value in os.environ.items() if key != "ABLATE_GPU_MEMORY_MB"}
        return {**env, "CUDA_VISIBLE_DEVICES": ""}
    return worker_env(gpu, k, memory_limit_mb(gpu, k, get_settings().gpu_memory_mb), os.environ)


def packing_cell(args, gpu, k: int, configs: list[str], tmp: Path, seeds, deadline: float) -> list[dict]:
    """K warmed-up processes; for each cell and config, K x runs-per-process runs timed together,
    --repeats times."""
    env = process_env(gpu, k)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(k)
    rows = []
    started = time.perf_counter()
    with ProcessPoolExecutor(k, mp_context=context, initializer=_init_with_barrier, initargs=(env, barrier)) as pool:
        warm = run_specs(demo_spec(args, configs[0], [next(seeds) for _ in range(k)], 1))
        store = str(tmp / f"k{k}-warm")
        warmed = list(pool.map(warm_up, warm, [store] * k))
        startup = time.perf_counter() - started
        if len({pid for pid, _ in warmed}) != k:
            sys.exit(f"K={k}: the warm-up reached {len(set(warmed))} processes, not {k}")
        if gpu.index >= 0 and any(device.startswith("CPU") for _, device in warmed):
            sys.exit("TensorFlow in the training processes sees no GPU although nvidia-smi lists one: "
                     "install TensorFlow's CUDA build (pip install 'tensorflow[and-cuda]')")
        for cell in args.cells:
            for config in configs:
                if time.monotonic() > deadline:
                    rows.append({"k": k, "cell": cell, "config": config, "skipped": True})
                    continue
                rows.append(timed_cell(args, pool, k, cell, config, env, startup, tmp, seeds))
        if k == 1 and args.compare_repeats and time.monotonic() < deadline:
            rows.append(compare(args, pool, configs, tmp, seeds))
    return rows


def timed_cell(args, pool, k: int, cell: str, config: str, env: dict, startup: float, tmp: Path, seeds) -> dict:
    rates, seconds, results = [], [], []
    for repeat in range(args.repeats):
        runs = run_specs(
            demo_spec(args, config, [next(seeds) for _ in range(k * args.runs_per_process)], args.epochs, cell)
        )
        store = str(tmp / f"k{k}-{cell}-{config}-{repeat}")
        clock = time.perf_counter()
        done = list(pool.map(train_one, runs, [store] * len(runs)))
        wall = time.perf_counter() - clock
        rates.append(3600 * len(runs) / wall)
        seconds += [r["seconds"] for r in done]
        results += done
    peaks = [r["peak_mb"] for r in results if r["peak_mb"] is not None]
    row = {
        "k": k, "cell": cell, "config": config, "runs": k * args.runs_per_process, "repeats": args.repeats,
        "runs_per_hour": statistics.median(rates), "spread": [min(rates), max(rates)], "startup": startup,
        "run_seconds": statistics.median(seconds), "run_seconds_spread": [min(seconds), max(seconds)],
        "peak_mb": max(peaks) if peaks else None, "cap_mb": env.get("ABLATE_GPU_MEMORY_MB"),
        "policy": results[0]["policy"], "xla": results[0]["xla"], "device": results[0]["device"],
    }
    print(f"  K={k} {cell} {config}: {row['runs_per_hour']:.0f} runs/h (median of {args.repeats}, "
          f"{min(rates):.0f}-{max(rates):.0f}), policy {row['policy']}, xla {row['xla']}", flush=True)
    return row


def compare(args, pool, configs: list[str], tmp: Path, seeds) -> dict:
    """Fit-phase samples/s of the runner vs bare model.fit, in the same (warm) process."""
    sides: dict[str, list[float]] = {"runner": [], "bare": []}
    runner_samples = train_samples(args)
    for round_ in range(args.compare_repeats):
        (run_json,) = run_specs(demo_spec(args, configs[0], [next(seeds)], args.compare_epochs))
        order = ["runner", "bare"] if round_ % 2 == 0 else ["bare", "runner"]
        for side in order:
            if side == "runner":
                result = pool.submit(train_one, run_json, str(tmp / "compare")).result()
                samples = runner_samples
            else:
                result = pool.submit(bare_fit, run_json).result()
                samples = result["samples"]
            sides[side].append(samples / result["fit_seconds"])
    runner, bare = (statistics.median(sides[side]) for side in ("runner", "bare"))
    print(f"  runner {runner:.0f} samples/s, bare fit {bare:.0f} samples/s", flush=True)
    return {"compare": True, "config": configs[0], "runner": runner, "bare": bare, "ratio": runner / bare,
            "samples_per_second": sides}


def train_samples(args) -> int:
    from service import datasets
    from service.spec import spec_from_data

    config = spec_from_data(demo_spec(args, "off", [0], args.compare_epochs)).baseline()
    return len(datasets.load(config.dataset).x_train) * args.compare_epochs


def print_tables(gpu, rows: list[dict], args) -> dict:
    cells = [row for row in rows if not row.get("compare")]
    seen = sorted({row["device"] for row in cells if not row.get("skipped")})
    print(f"\ndevice: {gpu.name}" + (f" ({gpu.memory_mb} MiB)" if gpu.memory_mb else "")
          + f", TensorFlow sees: {', '.join(seen)}"
          + f", {os.cpu_count()} CPUs; demo CNN, {args.epochs} epochs, batch {args.batch_size}, "
          f"{args.repeats} timing(s) per cell")
    summary: dict[str, dict[str, float]] = {}
    for cell in args.cells:
        mine = [row for row in cells if row["cell"] == cell]
        base = {row["config"]: row["runs_per_hour"] for row in mine if row["k"] == 1 and not row.get("skipped")}
        size = CELLS[cell]
        print(f"\ncell {cell}: synthetic {size['image_size']}x{size['image_size']}x{size['channels']}")
        print("\n| runs per GPU (K) | mixed precision + XLA | runs | runs/hour (median) | spread | vs K=1 "
              "| s per run (median) | peak GPU memory per run (MiB) | memory cap per process (MiB) "
              "| policy, XLA as applied |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for row in sorted(mine, key=lambda r: (r["config"], r["k"])):
            if row.get("skipped"):
                print(f"| {row['k']} | {row['config']} | skipped (--budget-seconds) | | | | | | | |")
                continue
            factor = row["runs_per_hour"] / base[row["config"]] if row["config"] in base else float("nan")
            low, high = row["spread"]
            print(f"| {row['k']} | {row['config']} | {row['runs']} | {row['runs_per_hour']:.0f} | {low:.0f}-{high:.0f} "
                  f"| {factor:.2f}x | {row['run_seconds']:.1f} "
                  f"| {row['peak_mb'] if row['peak_mb'] is not None else 'n/a'} "
                  f"| {row['cap_mb'] or 'growth' if gpu.index >= 0 else 'n/a'} | {row['policy']}, xla {row['xla']} |")
        for config in CONFIGS:
            top = [r for r in mine if r["config"] == config and r["k"] == max(args.ks) and not r.get("skipped")]
            if top and config in base:
                summary.setdefault(cell, {})[config] = top[0]["runs_per_hour"] / base[config]
                print(f"\n{cell}: K={max(args.ks)} vs K=1, mixed precision + XLA {config}: "
                      f"{summary[cell][config]:.2f}x runs/hour (target on one H100: K=8 >= {PACKING_TARGET:.0f}x)")
    comparison = next((row for row in rows if row.get("compare")), None)
    if comparison:
        print(f"\n| side | fit samples/s (median of {args.compare_repeats}) |\n|---|---|")
        print(f"| workers.runner.run | {comparison['runner']:.0f} |\n| bare model.fit | {comparison['bare']:.0f} |")
        print(f"\nrunner / bare model.fit samples/s: {comparison['ratio']:.3f} (mixed precision + XLA "
              f"{comparison['config']}, {args.compare_epochs} epochs; target: >= {RUNNER_TARGET}, within 5%)")
    return {"packing": summary, "runner_vs_bare": comparison["ratio"] if comparison else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", default="0", help="the GPU index to pack (nvidia-smi's numbering)")
    parser.add_argument("--ks", default="1,8,4,2", help="runs per GPU to time, in this order")
    parser.add_argument("--configs", default="off,on", help="mixed precision + XLA: off, on or both")
    parser.add_argument("--cells", default="tiny", help="datasets to pack: tiny, heavy or both (tiny,heavy)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per cell (median and spread)")
    parser.add_argument("--runs-per-process", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples-per-class", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--compare-epochs", type=int, default=8)
    parser.add_argument("--compare-repeats", type=int, default=2)
    parser.add_argument("--budget-seconds", type=float, default=420,
                        help="skip the cells (and configs) that would start or end after this")
    parser.add_argument("--allow-cpu", action="store_true", help="without a GPU, a tiny run on the CPU")
    parser.add_argument("--quick", action="store_true", help="smallest settings (a smoke test)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.ks, args.runs_per_process, args.epochs, args.samples_per_class = "1,2", 1, 1, 20
        args.compare_epochs, args.compare_repeats, args.repeats = 1, 1, 1
    args.ks = [int(k) for k in args.ks.split(",")]
    configs = [c for c in args.configs.split(",") if c in CONFIGS]
    args.cells = [c for c in args.cells.split(",") if c in CELLS] or ["tiny"]

    gpu = detect(args)
    started = time.monotonic()
    deadline = started + args.budget_seconds
    seeds = iter(range(10_000, 10_000_000))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="ablate-gpu-packing-") as tmp:
        print(f"{gpu.name}: K = {', '.join(map(str, args.ks))}, configs {', '.join(configs)}, "
              f"budget {args.budget_seconds:.0f} s", flush=True)
        last = 0.0
        for k in args.ks:
            # A cell that would not end within the budget (judged by the one before) is skipped.
            if time.monotonic() + last > deadline:
                rows += [
                    {"k": k, "cell": cell, "config": config, "skipped": True}
                    for cell in args.cells
                    for config in configs
                ]
                continue
            cell_started = time.monotonic()
            rows += packing_cell(args, gpu, k, configs, Path(tmp), seeds, deadline)
            last = time.monotonic() - cell_started
    summary = print_tables(gpu, rows, args)
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"device": gpu.name, "rows": rows, **summary}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
