"""The worker's Celery application: `celery -A workers.app worker -Q ablate`.

Importing this module must not import TensorFlow: the task module imports the runner lazily,
inside the task, so only the pool process that trains ever loads TensorFlow and CUDA.
"""

from __future__ import annotations

import sys

from celery.signals import worker_init

from service.logs import configure_logging
from service.queue import make_celery
from service.settings import get_settings

settings = get_settings()
configure_logging(settings.log_level, settings.log_format)
app = make_celery(settings, include=["workers.tasks"])


@worker_init.connect
def _refuse_tensorflow_in_parent(**_: object) -> None:
    # The prefork parent forks the pool processes; TensorFlow (and CUDA) initialised before a
    # fork breaks the children. Fail loudly at start-up instead of mysteriously later.
    if "tensorflow" in sys.modules:
        raise RuntimeError("TensorFlow was imported in the Celery parent process before forking")
