"""What does the queue cost? Dispatch latency, and distributed vs embedded wall time.

Needs the Redis of the distributed mode (ABLATE_BROKER_URL, default redis://127.0.0.1:6379/0);
every worker this script starts is an `ablate worker -c 1` subprocess on a queue of its own
(bench-<uuid>) with a local directory store in a temporary folder, and is stopped at the end.

1. Dispatch latency: after one warm-up run (the first run of a pool process imports TensorFlow),
   --runs minimal single-run studies (8x8 synthetic images, 16 samples, one 4-filter conv block,
   1 epoch) are submitted one at a time: submit, poll status.json every --poll-ms until it has
   started_at, then let the run finish (its message acknowledged) before the next. Latency =
   started_at (written by the runner when the attempt starts) - queued_at (written by the client
   right before send_task), both from this machine's clock, millisecond resolution.
2. Wall time of the same study (examples/seed-study.yaml, --epochs, --seeds: 4 variants x 2 seeds
   = 8 runs by default), each side with a fresh empty store: (a) `ablate run SPEC --store A
   --jobs 1` as a subprocess (which spawns one child that imports TensorFlow); (b) a fresh worker
   with ABLATE_STORE=B, started and warmed up with a minimal run outside the timing (so its pool
   process has imported TensorFlow already), timed from client.submit to study.wait() returning
   complete (polling every --wait-poll s). The worker writes the study report after the last
   status.json, so the time until report/index.html exists is printed too. The sides alternate
   for --repeats rounds and the medians give the ratio. A measurement, not a gate: exit code 0.

    .venv/bin/python bench/dispatch.py
    .venv/bin/python bench/dispatch.py --runs 500 --repeats 3 --json queue.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BROKER = os.environ.get("ABLATE_BROKER_URL", "redis://127.0.0.1:6379/0")
LATENCY_TARGET_MS = 50.0
RATIO_TARGET = 1.10


def minimal_spec(seed: int) -> dict:
    return {
        "name": "queue-bench-minimal",
        "dataset": {"kind": "synthetic", "image_size": 8, "classes": 2, "samples_per_class": 8},
        "model": {"conv_blocks": [{"filters": 4}], "dense": []},
        "training": {"epochs": 1, "batch_size": 16},
        "ablation": {"seeds": [seed]},
    }


class Worker:
    """One `ablate worker -c 1` on `queue`, storing into `store`, logging to a file."""

    def __init__(self, store: Path, queue: str, log: Path) -> None:
        self.store, self.queue, self.log = store, queue, log
        env = {**os.environ, "ABLATE_STORE": str(store), "ABLATE_QUEUE": queue,
               "ABLATE_BROKER_URL": BROKER, "TF_CPP_MIN_LOG_LEVEL": "2"}
        command = [sys.executable, "-m", "service.cli", "worker", "--gpus", "none", "-c", "1", "-n", f"{queue}@%h"]
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while " ready." not in log.read_text():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"worker did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
            from service.client import AblationClient  # lazily: see the top of this file

            self.client = AblationClient(broker_url=BROKER, store_url=str(store), queue=queue)
            started = time.perf_counter()
            finish(self.client.submit(minimal_spec(0)), poll=0.05)  # warm-up: TensorFlow import
            self.warmup_seconds = time.perf_counter() - started
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def finish(study, poll: float, final=None) -> None:
    """Wait until every run of `study` succeeded and the worker acknowledged its messages: a task
    goes on after status.json says succeeded (the last run's task writes the study report, ~0.3 s
    here), and the next message would queue behind it. kombu's Redis transport keeps a delivered
    message in the hash "unacked" until the acknowledgement."""
    import redis

    from service.lifecycle.storage import read_status

    final = final or study.wait(timeout=600, poll_seconds=poll)
    if final.counts["succeeded"] != final.total:
        sys.exit(f"study {study.study_id}: not every run succeeded: {dict(final.counts)}")
    task_ids = [read_status(study.store, run_id).task_id.encode() for run_id in study.run_ids]
    broker = redis.Redis.from_url(BROKER)
    while any(task_id in message for message in broker.hvals("unacked") for task_id in task_ids):
        time.sleep(poll)


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def dispatch_latencies(worker: Worker, runs: int, poll: float) -> list[float]:
    """Milliseconds from queued_at to started_at, one run at a time."""
    from service.lifecycle.storage import read_status

    latencies = []
    for index in range(1, runs + 1):
        study = worker.client.submit(minimal_spec(index))
        (run_id,) = study.run_ids
        deadline = time.monotonic() + 120
        while (status := read_status(worker.client.store, run_id)) is None or not status.started_at:
            if time.monotonic() > deadline:
                sys.exit(f"run {run_id} did not start in 120 s")
            time.sleep(poll)
        latencies.append(1000 * seconds_between(status.queued_at, status.started_at))
        finish(study, poll)
        if index % 50 == 0:
            print(f"  {index}/{runs} runs, p50 so far {statistics.median(latencies):.1f} ms", flush=True)
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def time_embedded(spec: Path, store: Path, expected: int) -> float:
    ablate = Path(sys.executable).with_name("ablate")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.perf_counter()
    done = subprocess.run([str(ablate), "run", str(spec), "--store", str(store), "--jobs", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    count = len(list(store.glob("runs/*/metrics.json")))
    if done.returncode != 0 or count != expected:
        sys.exit(f"ablate run failed ({done.returncode}, {count}/{expected} runs):\n"
                 f"{done.stdout}\n{done.stderr}")
    return seconds


def time_distributed(spec: Path, store: Path, tmp: Path, expected: int, poll: float) -> tuple:
    """Seconds until study.wait() returns, until the worker has written the report, and of the
    untimed warm-up run."""
    from service.lifecycle.storage import study_key

    worker = Worker(store, f"bench-{uuid.uuid4().hex[:10]}", tmp / f"worker-{store.name}.log")
    try:
        started = time.perf_counter()
        study = worker.client.submit(spec)
        final = study.wait(timeout=1800, poll_seconds=poll)
        seconds = time.perf_counter() - started
        finish(study, poll, final)  # checks that every run succeeded
        report = store.joinpath(*study_key(study.study_id, "report/index.html").split("/"))
        while not report.is_file():
            if time.perf_counter() - started > seconds + 120:
                sys.exit(f"no report for {study.study_id}")
            time.sleep(0.01)
        with_report = time.perf_counter() - started
    finally:
        worker.stop()
    if len(study.run_ids) != expected:
        sys.exit(f"the distributed study has {len(study.run_ids)} runs, expected {expected}")
    return seconds, with_report, worker.warmup_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="minimal runs timed for the latency")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="status polling, latency part")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--wait-poll", type=float, default=0.1, help="study.wait poll seconds")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop workers

    with tempfile.TemporaryDirectory(prefix="ablate-queue-bench-") as name:
        tmp = Path(name)
        print(f"dispatch latency: {args.runs} minimal runs, one at a time, 1 worker -c 1", flush=True)
        worker = Worker(tmp / "dispatch-store", f"bench-{uuid.uuid4().hex[:10]}", tmp / "worker.log")
        try:
            print(f"  untimed warm-up run (TensorFlow import): {worker.warmup_seconds:.2f} s")
            latencies = dispatch_latencies(worker, args.runs, args.poll_ms / 1000)
        finally:
            worker.stop()

        spec = yaml.safe_load((ROOT / "examples" / "seed-study.yaml").read_text())
        spec["name"] = "queue-bench"
        spec["training"]["epochs"] = args.epochs
        spec["ablation"]["seeds"] = args.seeds
        spec_path = tmp / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
        expected = (1 + len(spec["ablation"]["factors"])) * args.seeds
        print(f"\nwall time: {expected} runs x {args.epochs} epochs, {args.repeats} rounds", flush=True)
        walls: dict[str, list[float]] = {"embedded": [], "distributed": [], "distributed+report": []}
        warmups: list[float] = []
        for round_ in range(args.repeats):
            order = ["embedded", "distributed"] if round_ % 2 == 0 else ["distributed", "embedded"]
            for side in order:
                store = tmp / f"{side}-{round_}"
                if side == "embedded":
                    walls["embedded"].append(time_embedded(spec_path, store, expected))
                else:
                    seconds, with_report, warmup = time_distributed(
                        spec_path, store, tmp, expected, args.wait_poll)
                    walls["distributed"].append(seconds)
                    walls["distributed+report"].append(with_report)
                    warmups.append(warmup)
                extra = f" (untimed warm-up run before: {warmups[-1]:.2f} s)" if side == "distributed" else ""
                print(f"  round {round_ + 1}: {side} {walls[side][-1]:.2f} s{extra}", flush=True)

    stats = {
        "min": min(latencies), "p50": percentile(latencies, 50), "mean": statistics.fmean(latencies),
        "p95": percentile(latencies, 95), "max": max(latencies),
    }
    median = {side: statistics.median(times) for side, times in walls.items()}
    ratio = median["distributed"] / median["embedded"]
    print(f"\n{'dispatch (ms)':<20}" + "".join(f"{key:>9}" for key in stats))
    print(f"{'queued -> started':<20}" + "".join(f"{value:>9.1f}" for value in stats.values()))
    print(f"\n{'side':<20} {'wall times (s)':<28} {'median (s)':>10}")
    for side, times in walls.items():
        print(f"{side:<20} {', '.join(f'{t:.2f}' for t in times):<28} {median[side]:>10.2f}")
    print(f"\ndispatch latency p50 {stats['p50']:.1f} ms, p95 {stats['p95']:.1f} ms "
          f"(target p50 <= {LATENCY_TARGET_MS:.0f} ms)")
    print(f"distributed / embedded wall time: {ratio:.2f} (target <= {RATIO_TARGET:.2f}); "
          f"until the report is written: {median['distributed+report'] / median['embedded']:.2f}")

    if args.json:
        document = {
            "runs": args.runs, "poll_ms": args.poll_ms, "latencies_ms": latencies,
            "latency_ms": stats, "latency_target_ms": LATENCY_TARGET_MS,
            "epochs": args.epochs, "seeds": args.seeds, "repeats": args.repeats,
            "wall_seconds": walls, "median_seconds": median, "warmup_seconds": warmups,
            "ratio": round(ratio, 4), "ratio_target": RATIO_TARGET,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
