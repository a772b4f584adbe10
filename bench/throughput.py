"""Runs per hour on this machine: one `ablate worker` vs two.

Needs the Redis of the distributed mode (ABLATE_BROKER_URL, default redis://127.0.0.1:6379/0).
For each worker count N (1, then 2; alternating for --repeats rounds) the script starts N
`ablate worker --gpus none -c 1` processes that consume a queue of their own (bench-<uuid>) and
store into a fresh temporary directory; the client (`AblationClient`) opens the same directory
through ABLATE_STORE's path, so workers and client share one local store. Three phases, timed
separately:

1. start-up: from starting the processes until every worker is " ready." (Celery up; the parent
   never imports TensorFlow, so this is fast);
2. warm-up: one minimal run on each worker's private queue, so that each pool process imports
   TensorFlow and Keras before the study (this is the TensorFlow import cost, paid once per pool
   process);
3. steady state: the fixed study (the demo's digits CNN, --runs seeds of its baseline, --epochs
   epochs each) submitted with `AblationClient.submit` and timed until `Study.wait` returns with
   every run finished. Each round uses other seeds, so nothing is reused.

Runs per hour = runs / steady-state seconds, and also counting start-up and warm-up. A
measurement, not a gate: exit code 0 whenever it ran.

    .venv/bin/python -m bench.throughput                   # 16 runs x 3 epochs, 1 round
    .venv/bin/python -m bench.throughput --runs 8 --epochs 2 --repeats 2 --json throughput.json
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
from pathlib import Path

import yaml

from bench.dispatch import finish, minimal_spec

ROOT = Path(__file__).resolve().parent.parent
BROKER = os.environ.get("ABLATE_BROKER_URL", "redis://127.0.0.1:6379/0")
COUNTS = (1, 2)


def study_spec(runs: int, epochs: int, first_seed: int) -> dict:
    """The baseline of examples/seed-study.yaml, `runs` seeds of it."""
    spec = yaml.safe_load((ROOT / "examples" / "seed-study.yaml").read_text())
    spec["name"] = f"throughput-{first_seed}"
    spec["training"]["epochs"] = epochs
    spec["ablation"] = {"strategy": "one_at_a_time", "factors": [], "seeds": list(range(first_seed, first_seed + runs))}
    return spec


class Pool:
    """`count` workers on `queue`, each also on a private warm-up queue, storing into `store`."""

    def __init__(self, count: int, store: Path, logs: Path) -> None:
        self.queue = f"bench-{uuid.uuid4().hex[:10]}"
        self.store = store
        env = {**os.environ, "ABLATE_STORE": str(store), "ABLATE_QUEUE": self.queue,
               "ABLATE_BROKER_URL": BROKER, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.private = [f"{self.queue}-w{index}" for index in range(count)]
        self.logs = [logs / f"{self.queue}-w{index}.log" for index in range(count)]
        started = time.perf_counter()
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "service.cli", "worker", "--gpus", "none", "-c", "1",
                 "-Q", f"{self.queue},{private}", "-n", f"{private}@%h"],
                cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
            )
            for private, log in zip(self.private, self.logs, strict=True)
        ]
        try:
            self._wait_ready()
            self.startup_seconds = time.perf_counter() - started
            from service.client import AblationClient  # celery and kombu, after the workers started

            self.client = AblationClient(broker_url=BROKER, store_url=str(store), queue=self.queue)
            started = time.perf_counter()
            warmups = [
                AblationClient(broker_url=BROKER, store_url=str(store), queue=private).submit(minimal_spec(index))
                for index, private in enumerate(self.private)
            ]
            for study in warmups:
                finish(study, poll=0.05)
            self.warmup_seconds = time.perf_counter() - started
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not all(" ready." in log.read_text() for log in self.logs):
            for process, log in zip(self.processes, self.logs, strict=True):
                if process.poll() is not None:
                    sys.exit(f"a worker exited:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                sys.exit("workers did not start:\n" + "\n".join(log.read_text()[-1000:] for log in self.logs))
            time.sleep(0.05)

    def train(self, spec: dict, poll: float) -> float:
        started = time.perf_counter()
        study = self.client.submit(spec)
        final = study.wait(timeout=3600, poll_seconds=poll)
        seconds = time.perf_counter() - started
        finish(study, poll, final)  # every run succeeded, every message acknowledged
        return seconds

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16, help="runs in the study (seeds of the baseline)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--poll", type=float, default=0.1, help="Study.wait poll seconds")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop workers

    phases = {count: {"startup": [], "warmup": [], "steady": []} for count in COUNTS}
    seed = 1000
    with tempfile.TemporaryDirectory(prefix="ablate-throughput-") as name:
        tmp = Path(name)
        print(f"{args.runs} runs x {args.epochs} epochs (digits, the demo CNN), {args.repeats} rounds", flush=True)
        for round_ in range(args.repeats):
            for count in COUNTS if round_ % 2 == 0 else COUNTS[::-1]:
                pool = Pool(count, tmp / f"store-{round_}-{count}", tmp)
                try:
                    steady = pool.train(study_spec(args.runs, args.epochs, seed), args.poll)
                finally:
                    pool.stop()
                seed += args.runs
                phases[count]["startup"].append(pool.startup_seconds)
                phases[count]["warmup"].append(pool.warmup_seconds)
                phases[count]["steady"].append(steady)
                print(f"  round {round_ + 1}: {count} worker(s): start-up {pool.startup_seconds:.1f} s, "
                      f"warm-up {pool.warmup_seconds:.1f} s, study {steady:.1f} s", flush=True)

    rows = {}
    for count, times in phases.items():
        median = {phase: statistics.median(values) for phase, values in times.items()}
        total = median["startup"] + median["warmup"] + median["steady"]
        rows[count] = {**median, "runs_per_hour": 3600 * args.runs / median["steady"],
                       "runs_per_hour_with_startup": 3600 * args.runs / total}
    print("\n| workers | start-up (s) | warm-up: TensorFlow import + 1st run (s) | study (s) "
          "| runs/hour, steady | runs/hour, with start-up |")
    print("|---|---|---|---|---|---|")
    for count, row in rows.items():
        print(f"| {count} | {row['startup']:.1f} | {row['warmup']:.1f} | {row['steady']:.1f} "
              f"| {row['runs_per_hour']:.0f} | {row['runs_per_hour_with_startup']:.0f} |")
    ratio = rows[2]["runs_per_hour"] / rows[1]["runs_per_hour"]
    ratio_cold = rows[2]["runs_per_hour_with_startup"] / rows[1]["runs_per_hour_with_startup"]
    print(f"\nruns/hour, 2 workers / 1 worker: {ratio:.2f} steady, {ratio_cold:.2f} with start-up "
          f"({os.cpu_count()} CPUs)")

    if args.json:
        document = {"runs": args.runs, "epochs": args.epochs, "repeats": args.repeats,
                    "seconds": phases, "median": rows, "ratio": round(ratio, 4),
                    "ratio_with_startup": round(ratio_cold, 4), "cpus": os.cpu_count()}
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
