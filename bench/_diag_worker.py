"""Scratch: an `ablate worker` with timestamps at Celery's task_received (parent) and task_prerun (child)."""
import sys
import time

from celery.signals import task_postrun, task_prerun, task_received

sys.path[:] = [p for p in sys.path if not p.endswith("/bench")]


@task_received.connect
def _received(request=None, **_):
    print(f"DIAG received {time.time():.6f} {request.id}", file=sys.stderr, flush=True)


@task_prerun.connect
def _prerun(task_id=None, **_):
    print(f"DIAG prerun {time.time():.6f} {task_id}", file=sys.stderr, flush=True)


@task_postrun.connect
def _postrun(task_id=None, **_):
    print(f"DIAG postrun {time.time():.6f} {task_id}", file=sys.stderr, flush=True)


from service.cli import main  # noqa: E402

sys.argv = ["ablate", "worker", *sys.argv[1:]]
main()
