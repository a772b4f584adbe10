"""The worker's Celery application: `celery -A workers.app worker -Q ablate`.

Importing this module must not import TensorFlow: the task module imports the runner lazily,
inside the task, so only the pool process that trains ever loads TensorFlow and CUDA.
"""

from __future__ import annotations

import multiprocessing.sharedctypes
import sys

from celery.signals import worker_init, worker_shutting_down

from service.logs import configure_logging
from service.queue import make_celery
from service.settings import get_settings

settings = get_settings()
configure_logging(settings.log_level, settings.log_format)
app = make_celery(settings, include=["workers.tasks"])

# Set by the parent when a warm shutdown starts (SIGTERM from `docker stop` or Kubernetes). It
# lives in shared memory created before the pool processes are forked, so they all see it and
# hand their runs back at the next epoch end instead of holding the shutdown for a whole run.
_draining = multiprocessing.sharedctypes.RawValue("b", 0)


def draining() -> bool:
    """Whether this worker is shutting down (read in the pool process, set in the parent)."""
    return bool(_draining.value)


@worker_shutting_down.connect
def _start_draining(**_: object) -> None:
    _draining.value = 1


@worker_init.connect
def _refuse_tensorflow_in_parent(**_: object) -> None:
    # The prefork parent forks the pool processes; TensorFlow (and CUDA) initialised before a
    # fork breaks the children. Fail loudly at start-up instead of mysteriously later.
    if "tensorflow" in sys.modules:
        raise RuntimeError("TensorFlow was imported in the Celery parent process before forking")
