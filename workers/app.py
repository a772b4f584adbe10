"""The worker's Celery application: `celery -A workers.app worker -Q ablate`.

Importing this module must not import TensorFlow: the task module imports the runner lazily,
inside the task, so only the pool process that trains ever loads TensorFlow and CUDA.
"""

from __future__ import annotations

import multiprocessing.sharedctypes
import signal
import sys

import structlog
from celery.signals import worker_init, worker_shutting_down
from kombu.transport import TRANSPORT_ALIASES

from service.logs import configure_logging
from service.queue import make_celery
from service.settings import get_settings

settings = get_settings()
configure_logging(settings.log_level, settings.log_format)
app = make_celery(settings, include=["workers.tasks"])
# kombu's Redis transport, except that a message it cannot read is rejected instead of
# stopping the worker (workers/transport.py). Registered under the URL schemes themselves, so
# the worker's banner and logs still name the broker redis:// or rediss://.
TRANSPORT_ALIASES.update(redis="workers.transport:Transport", rediss="workers.transport:Transport")
if not settings.data_roots:
    # Without roots a spec may name any path this worker can read, and the errors it gets back
    # (file not found, not an image...) tell a remote submitter which paths exist here.
    structlog.get_logger(__name__).warning(
        "ABLATE_DATA_ROOTS is not set: studies may read any local path on this worker; "
        "set it to the folders that hold datasets"
    )

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


_time_up = False


def time_up() -> bool:
    """Whether the run this pool process trains has passed ABLATE_RUN_TIME_LIMIT."""
    return _time_up


def watch_soft_time_limit() -> None:
    """At the start of each task, in the pool process: the soft time limit (SIGUSR1 from the
    worker's parent) only raises a flag, read by the run at its next epoch end. Celery's own
    handler raises an exception wherever the signal lands, TensorFlow's native code included,
    which can leave its state half-freed: a pool process died of heap corruption ("free():
    invalid next size") that way. The hard limit still kills a run that never ends an epoch."""
    global _time_up
    _time_up = False
    signal.signal(signal.SIGUSR1, _note_time_up)


def _note_time_up(signum: int, frame: object) -> None:
    global _time_up
    _time_up = True


TENSORFLOW_IN_PARENT_EXIT_CODE = 4
"""The worker's exit code when TensorFlow was imported in its parent before it forked."""


@worker_init.connect
def _refuse_tensorflow_in_parent(**_: object) -> None:
    # The prefork parent forks the pool processes; TensorFlow (and CUDA) initialised before a
    # fork breaks the children. Fail loudly at start-up instead of mysteriously later. Celery
    # logs and swallows an Exception raised by a signal handler (the worker would start
    # anyway); SystemExit is not an Exception, so it stops the worker.
    if "tensorflow" in sys.modules:
        structlog.get_logger(__name__).critical(
            "TensorFlow was imported in the Celery parent process before forking: "
            "stopping the worker"
        )
        raise SystemExit(TENSORFLOW_IN_PARENT_EXIT_CODE)
