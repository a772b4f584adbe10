"""`ablate worker`: start a Celery worker that trains runs, or, with GPUs, a supervisor of one
worker per GPU. The click command (service/cli/cluster.py) only parses options and calls
`start_worker`, lazily, so that the control side never imports the workers package otherwise.

Nothing here imports TensorFlow: the prefork parent must not (workers/app.py refuses to start
if it did); only the pool processes that train load it.
"""

from __future__ import annotations

import os

from rich.markup import escape

from service.cli.output import console
from service.errors import AblateError
from service.settings import Settings
from workers.gpus import Gpu, detect_gpus, select_gpus  # nvidia-smi, never TensorFlow


def start_worker(
    settings: Settings,
    queue: str | None = None,
    gpus: str = "auto",
    runs_per_gpu: int | None = None,
    concurrency: int | None = None,
    hostname: str | None = None,
    loglevel: str = "info",
    gpu_child: bool = False,
) -> int:
    """Run the worker until it stops; return its exit code (non-zero: it could not train).

    With GPUs (`gpus`: auto, none or indices such as 0,2), one worker process per GPU under a
    supervisor, each training `runs_per_gpu` runs at once; without, `concurrency` runs on the
    CPU. `gpu_child` is the worker of one GPU, started by that supervisor. Option errors are
    raised (`AblateError`) before anything starts."""
    queue = queue or settings.queue
    if not gpu_child:
        selected = select_gpus(gpus, detect_gpus())
        if selected:
            if concurrency is not None:
                raise AblateError(
                    "--concurrency is for CPU workers; with GPUs use --runs-per-gpu "
                    "(or --gpus none)"
                )
            per_gpu = runs_per_gpu or settings.runs_per_gpu
            return supervise_gpus(settings, selected, per_gpu, queue, hostname, loglevel)
        if gpus.strip().lower() == "none":
            os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # the pool processes train on the CPU
        elif runs_per_gpu is not None:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            raise AblateError(
                f"--runs-per-gpu {runs_per_gpu}: no GPU found (nvidia-smi lists none"
                + (f", CUDA_VISIBLE_DEVICES={visible}" if visible is not None else "")
                + "); use --concurrency on a CPU worker, or --gpus none"
            )
        # The pool processes size their thread pools to their share of the cores (workers.cpus).
        os.environ["ABLATE_TRAINING_PROCESSES"] = str(concurrency or 1)
    return celery_worker(settings, queue, concurrency or 1, hostname, loglevel, gpu_child)


def celery_worker(
    settings: Settings,
    queue: str,
    concurrency: int,
    hostname: str | None,
    loglevel: str,
    gpu_child: bool,
) -> int:
    """Run one Celery worker (prefork, `concurrency` pool processes) on `queue`."""
    try:
        from workers.app import app
    except ImportError as exc:
        raise AblateError(
            f"the worker needs the training extra: pip install 'ablate[worker]' ({exc})"
        ) from None

    argv = [
        "worker",
        f"--queues={queue}",
        f"--concurrency={concurrency}",
        # prefork: the parent never imports TensorFlow, each pool process trains (see README)
        "--pool=prefork",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    runs = f"{concurrency} run{'s' if concurrency > 1 else ''} at once"
    if gpu_child:
        device = os.environ.get("CUDA_VISIBLE_DEVICES", "?")
        memory = settings.gpu_memory_mb
        where = f"GPU {device}, {runs}, " + (f"{memory} MiB each" if memory else "memory growth")
    else:
        where = f"CPU, {runs}"
    console.print(
        escape(
            f"worker on {settings.broker_url_redacted()} queue {queue}, store {settings.store} "
            f"({where})"
        ),
        highlight=False,
    )
    # As app.worker_main, but keeping the worker's exit code (which it drops): a worker that stops
    # because it cannot train (workers/tasks.py) exits non-zero, for its supervisor to see.
    from celery.bin.celery import celery as celery_command

    celery_command.params[0].default = app
    return celery_command.main(args=argv, standalone_mode=False) or 0


def supervise_gpus(
    settings: Settings,
    gpus: list[Gpu],
    runs_per_gpu: int,
    queue: str,
    hostname: str | None,
    loglevel: str,
) -> int:
    """Start one worker per GPU and watch them until they stop; their exit code."""
    from service.logs import configure_logging
    from workers.supervisor import start_children, supervise

    configure_logging(settings.log_level, settings.log_format)  # the supervisor's own events
    names = ", ".join(f"{gpu.index} ({gpu.name})" for gpu in gpus)
    console.print(
        escape(
            f"GPU workers on {settings.broker_url_redacted()} queue {queue}, "
            f"store {settings.store}: GPUs {names}, {runs_per_gpu} runs per GPU"
        ),
        highlight=False,
    )
    children = start_children(gpus, runs_per_gpu, queue, hostname, loglevel, settings.gpu_memory_mb)
    return supervise(children)
