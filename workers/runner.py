"""`run(run_spec, store)`: train one run end to end. The embedded executor and the Celery task
both call this function; it owns no queue and no process management.

Order of writes: run.json, status.json (running), one checkpoint per epoch (each followed by
status.json, both from the checkpoint writer's thread), model.keras, held_out.json (an
out-of-fold run's predictions), metrics.json (last: its presence means success), status.json
(succeeded).
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path

import keras
import structlog

from service import datasets
from service.errors import AblateError
from service.identity import RunSpec
from service.lifecycle.documents import EpochRecord, RunMetrics, RunStatus, TestMetrics, utcnow, worker_name
from service.lifecycle.states import RunState
from service.lifecycle.storage import read_metrics, read_status, run_key, write_run_document, write_status
from service.store.base import Store
from workers import checkpoint, devices
from workers.callbacks import EpochRecorder
from workers.checkpoint import TrainingState
from workers.environment import describe_environment
from workers.evaluation import epoch_timings, evaluate
from workers.holdout import hold_out, store_held_out
from workers.hooks import NO_HOOKS, LeaseLost, RunHooks, RunResult, StopReason, TimeLimitReached
from workers.model import build_model
from workers.optim import build_optimizer, loss_for, set_learning_rate
from workers.pipeline import class_weights, eval_dataset, training_dataset
from workers.run_options import DEFAULT_RUN_OPTIONS, RunOptions
from workers.tensorboard import write_events

log = structlog.get_logger(__name__)


__all__ = ["DatasetChanged", "LeaseLost", "RunHooks", "RunResult", "TimeLimitReached", "run"]


class DatasetChanged(AblateError):
    """The data on disk no longer matches the fingerprint the run was planned with."""


def run(
    run_spec: RunSpec, store: Store, hooks: RunHooks = NO_HOOKS, options: RunOptions = DEFAULT_RUN_OPTIONS
) -> RunResult:
    """Train `run_spec` (or reuse its stored result) and return how it ended.

    After each epoch's checkpoint the recorder asks `hooks` whether to stop, and the runner
    ends the run for that `StopReason`: cancelled, it ends `cancelled` and a later call resumes
    it from that checkpoint; handed back (the worker is shutting down), its status goes back to
    `queued` for another attempt to resume (`RunResult.handed_back`); out of time, it raises
    `TimeLimitReached`, recorded as failed. The lease's fence (`hooks.owns_run`) is asked
    before every write once training started: when it says no, this attempt is stale and stops
    with `LeaseLost`, writing nothing more. `options`: the operator's settings (datasets, model
    factories, GPU memory), read once by the caller.
    """
    run_id = run_spec.run_id
    existing = _stored_result(store, run_id)
    if existing is not None:
        return existing

    bound = log.bind(run_id=run_id)
    # Before anything is written: a process that cannot train as configured (pinned to a GPU
    # TensorFlow does not list, a cap it refused) raises a DeviceError and leaves the run queued.
    devices.configure_gpu_memory(options.gpu_memory_mb)
    write_run_document(store, run_spec)
    previous = read_status(store, run_id)
    status = RunStatus(
        run_id=run_id,
        state=RunState.RUNNING,
        attempt=(previous.attempt if previous else 0) + 1,
        epochs=run_spec.config.training.epochs,
        worker=worker_name(),
        task_id=previous.task_id if previous else None,
        queued_at=previous.queued_at if previous else None,
        started_at=utcnow(),
    )
    write_status(store, status)
    try:
        return _train(run_spec, store, status, bound, hooks, options)
    except LeaseLost:
        bound.warning("lease lost: a newer attempt owns the run; nothing written")
        raise
    except Exception as exc:
        status.state = RunState.FAILED
        status.error = f"{type(exc).__name__}: {exc}"
        _record_memory(status)  # a run that ran out of memory needs its peak most
        write_status(store, status)
        bound.error("run failed", error=status.error)
        devices.forget_frames(exc)  # they hold the model and its tensors
        raise
    finally:
        # This process trains the next run too: free this one's memory (GPU memory included).
        devices.release_run_memory()


def _record_memory(status: RunStatus) -> None:
    try:
        readings = devices.memory_readings()
    except Exception as exc:  # the failure is what gets recorded, whatever the device says
        log.warning("device memory not read", error=f"{type(exc).__name__}: {exc}")
        return
    status.gpu_memory_peak_mb = readings["gpu_memory_peak_mb"]
    status.gpu_memory_driver_mb = readings["gpu_memory_driver_mb"]


def _stored_result(store: Store, run_id: str) -> RunResult | None:
    metrics = read_metrics(store, run_id)
    if metrics is not None:
        return RunResult(
            run_id, RunState.SUCCEEDED, True, metrics.test.accuracy, metrics.epochs_run
        )
    status = read_status(store, run_id)
    if status is not None and status.state.is_reusable:
        return RunResult(run_id, status.state, True, None, status.epoch, status.error)
    return None


def _train(
    run_spec: RunSpec, store: Store, status: RunStatus, bound, hooks: RunHooks, options: RunOptions
) -> RunResult:
    started = time.perf_counter()
    config = run_spec.config
    training = config.training
    data = datasets.load(config.dataset, options=options.data)
    if data.info.fingerprint != run_spec.dataset_fingerprint:
        raise DatasetChanged(
            f"dataset: the data changed since the study was planned "
            f"(fingerprint {data.info.fingerprint[:12]} != {run_spec.dataset_fingerprint[:12]}); "
            "resubmit the spec to plan new runs"
        )
    num_classes = data.info.num_classes
    one_hot = training.label_smoothing > 0
    data, held = hold_out(data, config)  # an out-of-fold run trains without its fold

    # A fresh graph per run: a worker process trains many runs one after another. The previous
    # run's objects were collected when it ended (`devices.release_run_memory`).
    memory = devices.configure_gpu_memory(options.gpu_memory_mb)  # before TensorFlow first touches the GPU
    devices.freeze_imports()
    keras.backend.clear_session(free_memory=False)
    devices.reset_peak_memory()
    keras.utils.set_random_seed(run_spec.seed)
    precision = devices.choose_precision(
        training.mixed_precision, devices.gpu_compute_capabilities()
    )
    keras.mixed_precision.set_global_policy(precision.policy)
    xla = devices.choose_xla(config)
    model = build_model(config, data.info.input_shape, num_classes, options.factory_modules)
    # With XLA a batch of another shape is another compilation: the short last batch of every
    # epoch would be compiled too. Drop it instead (and record how many samples that is).
    samples = len(data.x_train)
    dropped = samples % training.batch_size if xla.applied and samples >= training.batch_size else 0
    if dropped:
        bound.info("XLA: the last, short batch of each epoch is dropped", samples=dropped)
    steps_per_epoch = max(1, (samples - dropped + training.batch_size - 1) // training.batch_size)
    model.compile(
        optimizer=build_optimizer(config, steps_per_epoch),
        loss=loss_for(config),
        metrics=["accuracy"],
        jit_compile=xla.applied,
        steps_per_execution=training.steps_per_execution,
    )
    xla = devices.xla_after_compile(xla, model)
    model.optimizer.build(model.trainable_variables)

    def variables() -> list:
        return [*model.weights, *model.optimizer.variables]

    try:
        state = checkpoint.restore(store, run_spec.run_id, variables(), precision.policy)
    except checkpoint.PolicyChanged as changed:
        # Resuming would mix two policies (or fail on float16's loss-scale variables): start
        # over, say why, and drop the old checkpoints so that no later attempt resumes them.
        status.restart_reason = str(changed)
        bound.warning(
            "checkpoint of another precision policy: restarting", reason=status.restart_reason
        )
        checkpoint.discard(store, run_spec.run_id)
        state = None
    if state is None:
        state = TrainingState(precision_policy=precision.policy)
    else:
        state.precision_policy = precision.policy
        status.resumed_from_epoch = state.epoch
        status.epoch = state.epoch
        status.history = [EpochRecord.model_validate(item) for item in state.history]
        if config.schedule.name == "reduce_on_plateau" and state.learning_rate is not None:
            set_learning_rate(model.optimizer, state.learning_rate)
        bound.info("resuming from checkpoint", epoch=state.epoch)
    write_status(store, status)

    writer = checkpoint.Writer()
    recorder = EpochRecorder(config, store, status, state, variables, writer, hooks)
    train_data = training_dataset(
        data.x_train,
        data.y_train,
        training.batch_size,
        run_spec.seed,
        num_classes,
        one_hot,
        drop_remainder=dropped > 0,
        fraction=training.train_fraction,
        resample=training.resample,
        subset_seed=config.dataset.split_seed,
    )
    val_data = eval_dataset(data.x_val, data.y_val, training.batch_size, num_classes, one_hot)
    fit_started = time.perf_counter()
    try:
        if state.epoch < training.epochs and not _finished_early(state, config):
            model.fit(
                train_data,
                validation_data=val_data,
                class_weight=class_weights(training.class_weight, data.class_names, data.y_train),
                epochs=training.epochs,
                initial_epoch=state.epoch,
                callbacks=[recorder],
                shuffle=False,  # the tf.data pipeline shuffles, seeded
                verbose=0,
            )
    except BaseException:
        writer.close(raise_failure=False)  # its writes land before the failure is recorded
        raise
    writer.close()  # every checkpoint stored before the run's final status
    fit_seconds = time.perf_counter() - fit_started
    stopped = _stopped(recorder.stop_reason, run_spec, store, status, state, hooks, bound)
    if stopped is not None:
        return stopped

    eval_started = time.perf_counter()
    test = evaluate(model, data, training.batch_size, num_classes, one_hot, loss_for(config))
    eval_seconds = time.perf_counter() - eval_started

    hooks.fence(run_spec.run_id)
    with tempfile.TemporaryDirectory(prefix="ablate-") as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        store.put_file(run_key(run_spec.run_id, "model.keras"), path, "application/zip")
    if held is not None:  # before metrics.json: a succeeded out-of-fold run has its predictions
        store_held_out(store, run_spec.run_id, config, model, held, data.class_names)

    tensorboard_seconds = _tensorboard(store, run_spec, status, test, bound)
    readings = devices.memory_readings()
    metrics = RunMetrics(
        run_id=run_spec.run_id,
        seed=run_spec.seed,
        epochs_run=state.epoch,
        stopped_early=recorder.stop_reason is StopReason.EARLY_STOP
        or _finished_early(state, config),
        attempt=status.attempt,
        resumed_from_epoch=status.resumed_from_epoch,
        history=status.history,
        test=test,
        class_names=data.class_names,
        timings={
            **epoch_timings(status.history[status.resumed_from_epoch or 0 :]),
            "fit_seconds": round(fit_seconds, 4),
            "checkpoint_seconds": round(recorder.checkpoint_seconds, 4),
            "eval_seconds": round(eval_seconds, 4),
            "tensorboard_seconds": round(tensorboard_seconds, 4),
            "total_seconds": round(time.perf_counter() - started, 4),
        },
        environment=describe_environment(
            training.mixed_precision,
            precision,
            xla,
            {
                **memory,
                "gpu_memory_driver_mb": readings["gpu_memory_driver_mb"],
                "xla_dropped_samples_per_epoch": dropped,
                "restart_reason": status.restart_reason,
            },
            readings["gpu_memory_peak_mb"],
        ),
    )
    hooks.fence(run_spec.run_id)  # the commit: only the attempt holding the newest lease writes
    store.put_json(run_key(run_spec.run_id, "metrics.json"), metrics.model_dump(mode="json"))
    status.state = RunState.SUCCEEDED
    write_status(store, status)
    bound.info("run succeeded", test_accuracy=test.accuracy, epochs=state.epoch)
    return RunResult(
        run_spec.run_id,
        RunState.SUCCEEDED,
        False,
        test.accuracy,
        state.epoch,
        stop=recorder.stop_reason,
    )


def _stopped(
    reason: StopReason | None,
    run_spec: RunSpec,
    store: Store,
    status: RunStatus,
    state: TrainingState,
    hooks: RunHooks,
    bound,
) -> RunResult | None:
    """End a run that stopped before its last epoch for `reason` (every checkpoint is stored by
    now); None when it goes on to its evaluation (it trained to the end, or stopped early)."""
    run_id = run_spec.run_id
    if reason is StopReason.LEASE_LOST:
        raise LeaseLost(f"run {run_id}: a newer attempt owns the run")
    if reason is StopReason.TIME_LIMIT:
        raise TimeLimitReached(f"the run time limit passed; stopped after epoch {state.epoch}")
    if reason is StopReason.DIVERGED:
        status.state = RunState.DIVERGED
        status.diverged_epoch = state.epoch
        status.error = f"loss became NaN or infinite at epoch {state.epoch}"
        _record_memory(status)
        if hooks.owns_run():  # a stale attempt leaves the owner's files be
            _tensorboard(store, run_spec, status, None, bound)
        write_status(store, status)
        bound.warning("run diverged", epoch=state.epoch)
        return RunResult(run_id, RunState.DIVERGED, False, None, state.epoch, status.error, reason)
    if reason is StopReason.CANCELLED:
        status.state = RunState.CANCELLED
        write_status(store, status)
        bound.info("run cancelled", epoch=state.epoch)
        return RunResult(run_id, RunState.CANCELLED, False, None, state.epoch, stop=reason)
    if reason is StopReason.HANDED_BACK:
        hooks.fence(run_id)
        status.state = RunState.QUEUED
        status.worker = None
        write_status(store, status)
        bound.info("run handed back: the worker is shutting down", epoch=state.epoch)
        return RunResult(run_id, RunState.QUEUED, False, None, state.epoch, stop=reason)
    return None


def _tensorboard(
    store: Store, run_spec: RunSpec, status: RunStatus, test: TestMetrics | None, bound
) -> float:
    """Write the run's TensorBoard event files; return the seconds it took. A failure costs the
    run its curves in TensorBoard, not its result: it is logged and the run goes on."""
    started = time.perf_counter()
    started_at = (
        datetime.fromisoformat(status.started_at).timestamp() if status.started_at else None
    )
    try:
        write_events(store, run_spec, status.history, test, started_at)
    except Exception as exc:
        bound.warning("TensorBoard event files not written", error=f"{type(exc).__name__}: {exc}")
    return time.perf_counter() - started


def _finished_early(state: TrainingState, config) -> bool:
    rule = config.training.early_stopping
    return rule is not None and state.wait > rule.patience
