"""The parent side of bench/gpu_check.py: which checks run, in which fresh processes and
environments, how each is judged, the JSON written after every check, the table at the end.

It imports no TensorFlow (the training processes it starts do), so that CUDA is never
initialised here: a parent holding a CUDA context would skew every memory figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.gpu_check import ROOT, child, finish_child, gpu_used_mb, start_child, training_spec

PIN_VARIABLES = ("CUDA_VISIBLE_DEVICES", "ABLATE_GPU_MEMORY_MB", "ABLATE_RUNS_PER_GPU", "ABLATE_TRAINING_PROCESSES")


class Report:
    """The checks so far, rewritten to the JSON file after each one (a check that hangs until
    the budget ends still leaves the ones before it on disk)."""

    def __init__(self, path: Path, budget: float) -> None:
        self.path, self.deadline, self.started = path, time.monotonic() + budget, time.monotonic()
        self.checks: list[dict] = []
        self.context: dict = {}

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def add(self, name: str, ok: bool | None, figures: str, **detail) -> None:
        at = round(time.monotonic() - self.started, 1)
        self.checks.append({"check": name, "ok": ok, "figures": figures, "done_at_seconds": at, **detail})
        print(f"  {name}: {'ok' if ok else 'skipped' if ok is None else 'FAILED'} {figures}", flush=True)
        self.write()

    def write(self) -> None:
        document = {**self.context, "seconds": round(time.monotonic() - self.started, 1), "checks": self.checks}
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(document, indent=2, default=str) + "\n")
        partial.replace(self.path)

    def table(self) -> None:
        print("\n| check | result | figures |\n|---|---|---|")
        for check in self.checks:
            result = "ok" if check["ok"] else "skipped" if check["ok"] is None else "**FAILED**"
            print(f"| {check['check']} | {result} | {check['figures']} |")
        print(f"\n{sum(c['ok'] is False for c in self.checks)} failed, written to {self.path} "
              f"({time.monotonic() - self.started:.0f} s)")


def run_checks(options, tmp: Path) -> int:
    from workers.gpus import detect_gpus, select_gpus

    report = Report(options.json, options.budget_seconds)
    base = {k: v for k, v in os.environ.items() if k not in PIN_VARIABLES}
    detected = detect_gpus()
    gpu = select_gpus(str(options.gpu), detected)[0] if detected else None
    pinned = (
        {**base, "CUDA_VISIBLE_DEVICES": gpu.device, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        if gpu
        else {**base, "CUDA_VISIBLE_DEVICES": ""}
    )
    report.context = {
        "gpu": gpu.__dict__ if gpu else None, "driver": driver_version(gpu), "allow_cpu": options.allow_cpu,
    }
    args = {"store": str(tmp / "store"), "quick": options.quick, "gpu": gpu.index if gpu else None}

    first = preflight(report, pinned, options.allow_cpu)
    sees_gpu = bool(first and first["gpus"])
    if not sees_gpu and not options.allow_cpu:
        report.table()
        print(
            "TensorFlow sees no GPU: fix the set-up above (or pass --allow-cpu to check the CPU path)",
            file=sys.stderr,
        )
        return 2
    gpu = gpu if sees_gpu else None
    if first:
        cold_start(report, pinned, sees_gpu, first["cold_start"])
    if gpu is not None:
        memory_cap(report, pinned, gpu)
    else:
        report.add("memory cap", None, "no GPU: nothing to cap")
    options_args = {**args, "store": args["store"] + "-options"}
    # Without a GPU there is no memory to keep apart: the options process starts beside the K.
    early = start_child("options", options_args, pinned) if gpu is None else None
    k_processes(report, base, gpu, options.k, args)
    training_options(report, early or start_child("options", options_args, pinned))
    packing(report, options, tmp)
    report.table()
    return 1 if any(check["ok"] is False for check in report.checks) else 0


def driver_version(gpu) -> str | None:
    if gpu is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", f"--id={gpu.index}", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        )
        return done.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def preflight(report: Report, env: dict, allow_cpu: bool) -> dict | None:
    found = child("preflight", {}, env, min(600, report.remaining()))
    if "error" in found:
        report.add("preflight", False, found["error"], **found)
        return None
    build = found["build"]
    listed = ", ".join(
        f"{g['name']} (compute capability {'.'.join(map(str, g['compute_capability'] or ()))})" for g in found["gpus"]
    )
    figures = (f"TensorFlow {found['tensorflow']} "
               f"(CUDA {build.get('cuda_version')}, cuDNN {build.get('cudnn_version')}); "
               f"GPU: {listed or 'none, ' + str(found['no_gpu_reason'])}; "
               f"driver {report.context['driver'] or 'n/a'}")
    off_pin = found["wheels_off_pin"]
    if off_pin:
        figures += f"; NVIDIA wheels off infra/constraints-cuda.txt: {off_pin}"
    report.add("preflight", (bool(found["gpus"]) or allow_cpu) and not off_pin, figures, **found)
    return found


def cold_start(report: Report, env: dict, on_gpu: bool, first_run: dict) -> None:
    if not on_gpu:
        report.add("cold start", None, f"no GPU: first kernel {first_run['first_kernel_seconds']:.1f} s on the CPU, "
                   f"import {first_run['import_seconds']:.1f} s; no JIT cache to check")
        return
    runs = [first_run, child("cold_start", {}, env, min(600, report.remaining()))]
    if "error" in runs[1]:
        report.add("cold start", False, runs[1]["error"], runs=runs)
        return
    first, second = (run["first_kernel_seconds"] for run in runs)
    # The second process reuses what the first compiled (CUDA_CACHE_PATH): fast, or as fast.
    ok = not on_gpu or second <= max(5.0, first / 2)
    report.add("cold start", ok, f"first kernel {first:.1f} s in a fresh process, {second:.1f} s in the next "
               f"(import {runs[0]['import_seconds']:.1f} s; cache {runs[0]['cache_path'] or 'default'})", runs=runs)


def memory_cap(report: Report, env: dict, gpu) -> None:
    from workers.gpus import PROCESS_OVERHEAD_MB

    total = gpu.memory_mb or 8192
    cap = min(2048, total // 4)
    before = gpu_used_mb(gpu.index)
    found = child("memory_cap", {"cap_mb": cap, "gpu": gpu.index}, {**env, "ABLATE_GPU_MEMORY_MB": str(cap)},
                  min(300, report.remaining()))
    if "error" in found:
        report.add("memory cap", False, found["error"], **found)
        return
    # The driver's figure for the process, else the GPU's used memory grown by it.
    process = found["driver_mb"]
    if process is None and found["gpu_used_mb"] is not None and before is not None:
        process = found["gpu_used_mb"] - before
    overhead = None if process is None else round(process - found["peak_mb"], 1)
    honoured = cap / 2 <= found["allocated_mb"] <= cap
    fits = overhead is None or overhead <= PROCESS_OVERHEAD_MB
    report.add("memory cap", honoured and fits,
               f"cap {cap} MiB: allocated {found['allocated_mb']} MiB before refused (peak {found['peak_mb']}); "
               f"process {process if process is not None else 'n/a'} MiB per the driver, overhead "
               f"{overhead if overhead is not None else 'n/a'} MiB (allowed for: {PROCESS_OVERHEAD_MB})",
               overhead_mb=overhead, **found)


def k_processes(report: Report, base: dict, gpu, k: int, args: dict) -> None:
    from service.settings import get_settings
    from workers.gpus import memory_limit_mb, worker_env

    if gpu is not None:
        cap = memory_limit_mb(gpu, k, get_settings().gpu_memory_mb)
        env = worker_env(gpu, k, cap, base, k)
    else:
        cap, env = None, {**base, "CUDA_VISIBLE_DEVICES": "", "ABLATE_TRAINING_PROCESSES": str(k)}
    processes = [
        start_child(
            "train",
            {**args, "store": args["store"] + "-k", "spec": training_spec({**args, "seed": i}, f"k{k}", 2)},
            env,
        )
        for i in range(k)
    ]
    results = [finish_child(process, min(300, report.remaining())) for process in processes]
    succeeded = [r for r in results if r.get("state") == "succeeded"]
    driver = [r["driver_mb"] for r in succeeded if r.get("driver_mb") is not None]
    below = gpu is None or not driver or gpu.memory_mb is None or sum(driver) < gpu.memory_mb
    threads = {r["environment"].get("intra_op_threads") for r in succeeded}
    report.add(f"{k} processes on one {'GPU' if gpu else 'CPU'}", len(succeeded) == k and below,
               f"{len(succeeded)}/{k} runs succeeded, cap {cap or 'none'} MiB each; driver memory "
               f"{' + '.join(f'{d:.0f}' for d in driver) or 'n/a'} MiB of {gpu.memory_mb if gpu else 'n/a'}; "
               f"intra-op threads {sorted(t for t in threads if t)}",
               results=[{k_: v for k_, v in r.items() if k_ != "environment"} for r in results])


def training_options(report: Report, process: subprocess.Popen) -> None:
    found = finish_child(process, min(600, report.remaining()))
    if "error" in found:
        report.add("precision options", False, found["error"])
        return
    rows = found["precision"]
    good = [row["state"] == "succeeded" and row["recorded"] == row["expected"] and row["output_dtype"] == "float32"
            and row["loss_scaling"] == (row["recorded"] == "mixed_float16") for row in rows]
    report.add("precision options", all(good), "; ".join(
        f"{row['requested']} -> {row['recorded']} (output {row['output_dtype']}, loss scaling {row['loss_scaling']})"
        for row in rows), rows=rows)
    augmentation = found["augmentation"]
    report.add("augmentation under bfloat16", augmentation["ok"],
               f"rotation, zoom, translation, crop on {augmentation['device']} with soft placement off: "
               + (f"{augmentation['dtype']}" if augmentation["ok"] else augmentation["error"]), detail=augmentation)
    xla = found["xla"]
    report.add("XLA on and off", all(r["state"] == "succeeded" and r["recorded"] == r["requested"] for r in xla),
               "; ".join(f"jit_compile {r['requested']} -> xla {r['recorded']}, compile {r['compile_seconds']} s, "
                         f"steady epoch {r['steady_epoch_seconds']} s" for r in xla), rows=xla)
    peaks = [row["peak_mb"] for row in rows]
    if found["gpu"]:
        report.add("peak memory recorded", all(p is not None for p in peaks), f"peaks {peaks} MiB")
    else:
        report.add("peak memory recorded", None, "no GPU: TensorFlow's CPU allocator keeps no peak")


def packing(report: Report, options, tmp: Path) -> None:
    budget = report.remaining() - 20
    if options.packing == "off" or budget < 60:
        report.add("packing", None, "--packing off" if options.packing == "off" else "no time left in the budget")
        return
    out = tmp / "packing.json"
    command = [sys.executable, "-m", "bench.gpu_packing", "--cells", "tiny,heavy", "--budget-seconds", str(int(budget)),
               "--json", str(out)]
    if options.packing == "quick" or options.quick:
        command.append("--quick")
    if options.allow_cpu:
        command.append("--allow-cpu")
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=budget + 15)
    except subprocess.TimeoutExpired:
        report.add("packing", False, "bench/gpu_packing.py outlived the budget")
        return
    print(done.stdout)
    document = json.loads(out.read_text()) if out.exists() else {}
    report.add("packing", done.returncode == 0,
               f"K=max vs K=1 runs/hour: {document.get('packing', {})}"
               if done.returncode == 0
               else done.stderr.strip()[-300:],
               packing=document)
