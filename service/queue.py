"""The Celery application, configured from settings. Shared by the client (which sends tasks by
name and never imports training code) and the workers (which register the task on it).

JSON is the only serializer accepted, for tasks and results. Runs are acknowledged late and
rejected when their worker is lost, one message is prefetched at a time, and Redis's visibility
timeout is longer than a run's time limit so a run still training is never redelivered.
"""

from __future__ import annotations

import ssl

from celery import Celery

from service.settings import Settings

TRAIN_TASK = "ablate.train_run"
_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


def make_celery(settings: Settings, include: list[str] | None = None) -> Celery:
    app = Celery("ablate", include=include or [])
    url = settings.broker_url_with_password()
    app.conf.update(
        broker_url=url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # Sweep for runs of dead workers every few seconds rather than every ~100 s.
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 10)),
            "unacked_restore_throttle": 1,
        },
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.queue,
        task_routes={TRAIN_TASK: {"queue": settings.queue}},
        task_time_limit=settings.hard_time_limit,
        task_soft_time_limit=settings.run_time_limit,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        # A fresh pool process every N runs bounds slow growth (XLA and tf.function caches)
        # at the price of one TensorFlow import; None keeps each process for good.
        worker_max_tasks_per_child=settings.max_runs_per_process,
        task_send_sent_event=True,
    )
    if url.startswith("rediss://"):
        tls = {"ssl_cert_reqs": _CERT_REQS[settings.broker_cert_reqs]}
        if settings.broker_ca_certs:
            tls["ssl_ca_certs"] = settings.broker_ca_certs
        app.conf.broker_use_ssl = tls
        # kombu pools connections per process by URL and transport options, not by TLS
        # settings: keep clients with different certificate settings on separate connections.
        app.conf.broker_transport_options = {
            **app.conf.broker_transport_options,
            "ablate_tls": sorted((key, str(value)) for key, value in tls.items()),
        }
    return app
