"""One-shot check of a GPU host (or a new worker image): does Ablate's GPU path work here?

    docker run --rm --gpus all IMAGE python -m bench.gpu_check            # in the worker image
    python -m bench.gpu_check --json gpu-check.json                        # on a host with the venv
    python -m bench.gpu_check --allow-cpu --quick --packing off            # the test suite's CPU run

Bounded by --budget-seconds (10 minutes); each check runs in fresh processes, as the worker's
training processes do, and its result is written to --json as soon as it is known. Then a table:

- preflight: TensorFlow's build (CUDA, cuDNN), the GPUs it lists (its load error when none),
  driver, compute capability, the NVIDIA wheels installed against infra/constraints-cuda.txt.
  Exit 2 when TensorFlow sees no GPU (unless --allow-cpu).
- cold start: the first kernel in a fresh process, then in a second one (CUDA's JIT cache at
  CUDA_CACHE_PATH works when the second is fast).
- memory cap: a process capped as `ablate worker` caps it allocates until refused; what it got
  must stay within the cap. The driver's figure for the process minus the allocator's is the
  per-process overhead, checked against workers.gpus.PROCESS_OVERHEAD_MB.
- K processes: pinned and capped as the worker's pool, each trains a short run to success, their
  driver memory summed below the card's.
- options (one process): each training.mixed_precision value applied as recorded (output layer
  float32, loss scaling only under float16), augmentation kept on the GPU under bfloat16, XLA
  on and off as recorded with its compile time, peak memory recorded.
- packing: bench/gpu_packing.py's table with the tiny cell and a heavier one (32x32x3, 20k
  samples), medians and spread.

Exit code: 0 all checks passed, 1 a check failed, 2 TensorFlow sees no GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = "--child"


# -- children: each runs in a fresh process and prints one JSON line -------------------------


def child_preflight(_: dict) -> dict:
    """What TensorFlow was built with and sees; also the first cold start (its first kernel)."""
    import importlib.metadata as metadata

    started = time.perf_counter()
    import tensorflow as tf

    from workers.process_setup import _list_gpus, why_no_gpu

    gpus, load_error = _list_gpus(capture=True)
    details = [tf.config.experimental.get_device_details(gpu) for gpu in gpus]
    wheels = {
        d.metadata["Name"]: d.version for d in metadata.distributions() if d.metadata["Name"].startswith("nvidia-")
    }
    pinned = {}
    # In the repository, or where the Dockerfile copies it (/app in the image).
    constraints = next((path for path in (ROOT / "infra" / "constraints-cuda.txt", ROOT / "constraints-cuda.txt")
                        if path.exists()), None)
    if constraints is not None:
        for line in constraints.read_text().splitlines():
            if "==" in line and not line.startswith("#"):
                name, version = line.split("==")
                pinned[name.strip()] = version.strip()
    return {
        "cold_start": child_cold_start({}, started),
        "tensorflow": tf.__version__,
        "build": {k: v for k, v in tf.sysconfig.get_build_info().items() if "cuda" in k or "cudnn" in k},
        "gpus": [{"name": d.get("device_name"), "compute_capability": d.get("compute_capability")} for d in details],
        "no_gpu_reason": None if gpus else why_no_gpu(load_error),
        "wheels": wheels,
        "wheels_off_pin": {n: v for n, v in pinned.items() if wheels.get(n) != v} if wheels else {},
    }


def child_cold_start(_: dict, started: float | None = None) -> dict:
    started = time.perf_counter() if started is None else started
    import tensorflow as tf

    imported = time.perf_counter()
    device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    with tf.device(device):
        images = tf.random.normal((8, 32, 32, 3))
        kernel = tf.random.normal((3, 3, 3, 16))
        value = (
            tf.reduce_sum(tf.nn.conv2d(images, kernel, 1, "SAME"))
            + tf.reduce_sum(tf.matmul(kernel[0, 0], kernel[0, 0], transpose_a=True))
        )
        float(value.numpy())
    return {"import_seconds": imported - started, "first_kernel_seconds": time.perf_counter() - imported,
            "cache_path": os.environ.get("CUDA_CACHE_PATH")}


def child_memory_cap(args: dict) -> dict:
    from service.settings import get_settings
    from workers.gpus import process_memory_mb
    from workers.process_setup import configure_process

    setup = configure_process(gpu_memory_mb=get_settings().gpu_memory_mb)
    import tensorflow as tf

    blocks, block_mb = [], 64
    try:
        while len(blocks) * block_mb < 4 * args["cap_mb"]:  # far past the cap: it must refuse
            blocks.append(tf.identity(tf.zeros((block_mb * 2**18,), tf.float32)))
    except tf.errors.ResourceExhaustedError:
        pass
    peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return {"cap_mb": setup["gpu_memory_limit_mb"], "allocated_mb": len(blocks) * block_mb, "peak_mb": round(peak, 1),
            "driver_mb": process_memory_mb(os.getpid()), "gpu_used_mb": gpu_used_mb(args["gpu"])}


def child_train(args: dict) -> dict:
    """One short run through workers.runner.run; what it recorded."""
    from service.lifecycle.storage import read_metrics
    from service.plan import build_plan
    from service.spec import spec_from_data
    from service.store import LocalStore
    from workers.gpus import process_memory_mb
    from workers.runner import run

    store = LocalStore(Path(args["store"]))
    (spec,) = build_plan(spec_from_data(args["spec"])).runs.values()
    result = run(spec, store)
    metrics = read_metrics(store, spec.run_id)
    environment = metrics.environment if metrics else {}
    return {"run_id": spec.run_id, "state": result.state, "error": result.error, "environment": environment,
            "timings": metrics.timings if metrics else {}, "driver_mb": process_memory_mb(os.getpid())}


def child_options(args: dict) -> dict:
    """Precision options, augmentation under bfloat16, XLA on and off: one process, as a worker."""
    import keras

    from workers import devices

    capabilities = devices.gpu_compute_capabilities()
    out: dict = {"precision": [], "xla": []}
    for requested in (False, "float16", "bfloat16", True):
        spec = training_spec(args, f"precision-{requested}", epochs=1, mixed_precision=requested)
        trained = child_train({**args, "spec": spec})
        expected = devices.choose_precision(requested, capabilities)
        model = keras.saving.load_model(Path(args["store"]) / "runs" / trained["run_id"] / "model.keras")
        out["precision"].append({
            "requested": requested, "expected": expected.policy,
            "recorded": trained["environment"].get("precision_policy"),
            "output_dtype": str(model.layers[-1].dtype_policy.compute_dtype),
            "loss_scaling": isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer),
            "peak_mb": trained["environment"].get("gpu_memory_peak_mb"), "state": trained["state"],
        })
        devices.release_run_memory()
    out["augmentation"] = augmentation_on_device()
    for jit in (False, True):
        # Two epochs at least: the first (tracing, compiling) is timed apart from the steady ones.
        spec = training_spec(args, f"xla-{jit}", epochs=2 if args.get("quick") else 4, jit_compile=jit)
        trained = child_train({**args, "spec": spec})
        out["xla"].append({"requested": jit, "recorded": trained["environment"].get("xla"),
                           "compile_seconds": trained["timings"].get("compile_seconds"),
                           "steady_epoch_seconds": trained["timings"].get("steady_epoch_seconds"),
                           "state": trained["state"]})
    out["gpu"] = bool(capabilities)
    return out


def augmentation_on_device() -> dict:
    """Geometric augmentation under mixed_bfloat16, on the GPU with soft placement off: an op
    without a GPU kernel for its dtype fails instead of moving to the CPU."""
    import keras
    import tensorflow as tf

    from service.spec.network import AugmentationSpec
    from workers.model import build_augmentation

    device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    tf.config.set_soft_device_placement(False)
    try:
        spec = AugmentationSpec(rotation=0.1, zoom=0.1, translation=0.1, random_crop=2)
        layers = build_augmentation(spec, (32, 32, 3))
        with tf.device(device):
            x = tf.random.uniform((8, 32, 32, 3))
            for layer in layers:
                x = layer(x, training=True)
            x.numpy()
        return {"device": device, "ok": True, "dtype": str(x.dtype.name), "layers": [layer.name for layer in layers]}
    except Exception as exc:  # reported, not raised: this is what the check looks for
        return {"device": device, "ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    finally:
        tf.config.set_soft_device_placement(True)
        keras.mixed_precision.set_global_policy("float32")


CHILDREN = {"preflight": child_preflight, "cold_start": child_cold_start, "memory_cap": child_memory_cap,
            "train": child_train, "options": child_options}


# -- the parent ----------------------------------------------------------------------------


def training_spec(args: dict, name: str, epochs: int, **training) -> dict:
    size, per_class = (16, 32) if args.get("quick") else (28, 200)
    return {
        "name": f"gpu-check-{name}".replace("_", "-").lower(),
        "dataset": {
            "kind": "synthetic", "image_size": size, "channels": 1, "classes": 4, "samples_per_class": per_class,
        },
        "model": {"conv_blocks": [{"filters": 8}], "dense": [16]},
        "training": {"epochs": epochs, "batch_size": 32, **training},
        "ablation": {"seeds": [args.get("seed", 0)]},
    }


def gpu_used_mb(index: int | None) -> float | None:
    """The GPU's used memory (all processes) as nvidia-smi reports it."""
    if index is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", f"--id={index}", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20,
        )
        return float(done.stdout.strip().splitlines()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def start_child(name: str, args: dict, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.gpu_check", CHILD, name, json.dumps(args)], cwd=ROOT,
                            env={**env, "TF_CPP_MIN_LOG_LEVEL": env.get("TF_CPP_MIN_LOG_LEVEL", "2")},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_child(process: subprocess.Popen, timeout: float) -> dict:
    try:
        out, err = process.communicate(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        return {"error": f"timed out after {timeout:.0f} s (the check's budget)"}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        return {
            "error": f"exit code {process.returncode}: {err.strip().splitlines()[-1] if err.strip() else 'no output'}"
        }
    return json.loads(lines[-1])


def child(name: str, args: dict, env: dict[str, str], timeout: float) -> dict:
    return finish_child(start_child(name, args, env), timeout)


def main(argv: list[str] | None = None) -> int:
    from bench.gpu_check_run import run_checks  # the checks' order and verdicts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", default="0", help="the GPU to check (nvidia-smi's index)")
    parser.add_argument("--k", type=int, default=2, help="training processes sharing the GPU")
    parser.add_argument("--budget-seconds", type=float, default=600)
    parser.add_argument("--json", type=Path, help="default: gpu-check.json here, or in /tmp where this is read-only")
    parser.add_argument("--allow-cpu", action="store_true", help="without a GPU: check the CPU path")
    parser.add_argument("--quick", action="store_true", help="smallest data (a smoke test)")
    parser.add_argument("--packing", choices=["full", "quick", "off"], default="full")
    options = parser.parse_args(argv)
    if options.json is None:  # the worker image's /app is not the worker user's to write
        options.json = Path(
            "gpu-check.json" if os.access(".", os.W_OK) else Path(tempfile.gettempdir()) / "gpu-check.json"
        )
    with tempfile.TemporaryDirectory(prefix="ablate-gpu-check-") as tmp:
        return run_checks(options, Path(tmp))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == CHILD:
        print(json.dumps(CHILDREN[sys.argv[2]](json.loads(sys.argv[3])), default=str), flush=True)
    else:
        sys.exit(main())
